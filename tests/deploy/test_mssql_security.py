"""SQL Server boundaries, checked without a SQL Server (docs/security.md): the app login is least-privilege,
no password is on a sqlcmd command line, the app password cannot break out of its T-SQL literal, and the
connection URLs encrypt (TrustServerCertificate only for the local, self-signed servers).
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from deploy_support import REPO, load_yaml_docs

SCRIPT = (REPO / "sql/mssql-app-login.sql").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
K8S_OBJECTS = [doc for path in sorted((REPO / "k8s").glob("*.yaml")) for doc in load_yaml_docs(path)]
SECURITY_DOC = (REPO / "docs/security.md").read_text(encoding="utf-8")
HOSTILE_PASSWORDS = [
    "Plain-Passw0rd",
    "it's'; DROP LOGIN sa; --",
    "x'); EXEC xp_cmdshell 'id'; --",
    'q"u$(whoami)`id`\\n;GO',
    "'''''''''A1a",
    "ñandú-Ω-密码-1A",
]


def _k8s(kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in K8S_OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _init_script() -> str:
    """The schema Job's init-container shell script as the shell sees it (Kubernetes turns $$ into $)."""
    (init,) = _k8s("Job", "clientes-ingest-schema")["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["sh", "-ec"]
    return str(init["command"][2]).replace("$$", "$")


def _statements(script: str) -> str:
    """The T-SQL with comments removed and whitespace collapsed (upper case)."""
    code = re.sub(r"--[^\n]*", "", script)
    return " ".join(code.split()).upper()


# ------------------------------------------------------------------------------- least privilege


def test_app_login_reads_and_writes_and_has_no_ddl() -> None:
    sql = _statements(SCRIPT)
    assert "ALTER ROLE DB_DATAREADER ADD MEMBER CLIENTES_APP" in sql
    assert "ALTER ROLE DB_DATAWRITER ADD MEMBER CLIENTES_APP" in sql
    # Installs upgraded from the former db_owner grant lose it; nothing grants DDL or server roles.
    assert "ALTER ROLE DB_OWNER DROP MEMBER CLIENTES_APP" in sql
    assert "ALTER ROLE DB_DDLADMIN DROP MEMBER CLIENTES_APP" in sql
    for grant in ("DB_OWNER ADD", "DB_DDLADMIN ADD", "SYSADMIN", "GRANT ", "CONTROL", "SECURITYADMIN"):
        assert grant not in sql, grant


def test_k8s_schema_job_runs_the_script_of_sql_dir() -> None:
    script = _init_script()
    embedded = re.search(r"<<'SQL'\n(.*?)\nSQL\n", script, re.DOTALL)
    assert embedded, "the init container writes the script with a quoted heredoc (no shell expansion)"
    assert embedded.group(1) + "\n" == SCRIPT
    assert "sqlcmd -S mssql -U sa -C -b -i /tmp/app-login.sql" in script


def test_compose_mssql_init_runs_the_script_of_sql_dir() -> None:
    init = COMPOSE["services"]["mssql-init"]
    assert "./sql/mssql-app-login.sql:/sql/mssql-app-login.sql:ro" in init["volumes"]
    assert "sqlcmd -S mssql -U sa -C -b -i /sql/mssql-app-login.sql" in init["command"][0]


def test_runtime_services_connect_as_the_app_login_never_sa() -> None:
    services = COMPOSE["services"]
    users = {name: sa.engine.make_url(s["environment"]["CLIENTES_DB_URL"]).username
             for name, s in services.items() if "CLIENTES_DB_URL" in s.get("environment", {})}
    assert users.pop("schema") == "sa"  # the only DDL, once, before anything runs
    assert set(users) == {"aws-init", "setup", "worker", "api", "trigger"}
    assert set(users.values()) == {"clientes_app"}
    # Kubernetes: the app's Secret holds the app login; the owner URL is only in SQL Server's Secret,
    # read by the schema Job alone.
    secret = _k8s("Secret", "clientes-ingest-secrets")["stringData"]
    assert sa.engine.make_url(secret["CLIENTES_DB_URL"]).username == "clientes_app"
    readers = [o["metadata"]["name"] for o in K8S_OBJECTS if o["kind"] in {"Deployment", "StatefulSet", "Job"}
               and "CLIENTES_SCHEMA_DB_URL" in yaml.safe_dump(o)]
    assert readers == ["clientes-ingest-schema"]


# -------------------------------------------------------------------- passwords, not in argv


def _k8s_commands() -> list[tuple[str, str]]:
    found = []
    for obj in K8S_OBJECTS:
        if obj["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        spec = obj["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            for part in ("command", "args"):
                found.append((container["name"], " ".join(map(str, container.get(part, [])))))
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                found.append((container["name"], " ".join(container.get(probe, {}).get("exec", {}).get("command", []))))
    return found


def test_no_sqlcmd_password_on_a_command_line() -> None:
    sqlcmds = 0
    for name, text in _k8s_commands():
        for line in text.replace("$$", "$").splitlines():
            if "sqlcmd " not in line or line.lstrip().startswith("--"):
                continue
            sqlcmds += 1
            assert not re.search(r"\s-P(\s|$)", line), f"{name}: sqlcmd -P puts the password in `ps`"
            assert "SQLCMDPASSWORD=" in line or 'export SQLCMDPASSWORD="$MSSQL_SA_PASSWORD"' in text, name
    assert sqlcmds == 3  # mssql's readiness probe; the init container's wait loop and its script run


def _escaped_by(shell_lines: str, password: str) -> str:
    """APP_PASSWORD_SQL as the manifest's own shell lines compute it from CLIENTES_APP_PASSWORD."""
    done = subprocess.run(["sh", "-ec", f"{shell_lines}\nprintf '%s' \"$APP_PASSWORD_SQL\""], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "CLIENTES_APP_PASSWORD": password}, check=True)
    return done.stdout


def _literal_after_substitution(escaped: str) -> str:
    """sqlcmd's textual $(APP_PASSWORD_SQL) substitution in the script's DECLARE; returns what the T-SQL
    literal decodes to, asserting the statement ends right after it."""
    (line,) = [ln for ln in SCRIPT.splitlines() if "$(APP_PASSWORD_SQL)" in ln]
    statement = line.replace("$(APP_PASSWORD_SQL)", escaped)
    match = re.fullmatch(r"DECLARE @password nvarchar\(4000\) = N'((?:[^']|'')*)';", statement, re.DOTALL)
    assert match, f"the password broke out of its literal: {statement!r}"
    return match.group(1).replace("''", "'")


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_app_password_stays_inside_its_literal_k8s(password: str) -> None:
    shell = _init_script().split("cat > /tmp/app-login.sql")[0]  # the lines before the heredoc
    lines = [ln for ln in shell.splitlines() if "APP_PASSWORD_SQL" in ln and "sqlcmd" not in ln]
    assert _literal_after_substitution(_escaped_by("\n".join(lines), password)) == password


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_app_password_stays_inside_its_literal_compose(password: str) -> None:
    script = COMPOSE["services"]["mssql-init"]["command"][0].replace("$$", "$")
    lines = "; ".join(part for part in script.split("; ") if "APP_PASSWORD_SQL" in part and "sqlcmd" not in part)
    assert _literal_after_substitution(_escaped_by(lines, password)) == password


def test_the_literal_check_is_not_vacuous() -> None:
    with pytest.raises(AssertionError, match="broke out"):
        _literal_after_substitution("it's'; DROP LOGIN sa; --")  # unescaped


def test_dynamic_login_statement_quotes_again_and_bounds_the_length() -> None:
    sql = _statements(SCRIPT)
    assert "QUOTENAME(@PASSWORD, N'''')" in sql  # QUOTENAME returns NULL past 128 characters:
    assert "LEN(@PASSWORD) > 128" in sql and "THROW" in sql  # so longer ones fail loudly instead


# --------------------------------------------------------------------------------------- TLS


def _odbc_string(url: str) -> str:
    """The ODBC connection string SQLAlchemy's mssql+pyodbc dialect builds from a URL (no connection)."""
    engine_url = sa.engine.make_url(url)
    dialect = engine_url.get_dialect()()
    args, _ = dialect.create_connect_args(engine_url)
    return str(args[0])


def test_example_urls_encrypt_and_trust_only_the_local_self_signed_servers() -> None:
    urls = {"compose app": COMPOSE["x-clientes-env"]["CLIENTES_DB_URL"],
            "compose schema": COMPOSE["services"]["schema"]["environment"]["CLIENTES_DB_URL"],
            "k8s app": _k8s("Secret", "clientes-ingest-secrets")["stringData"]["CLIENTES_DB_URL"],
            "k8s schema": _k8s("Secret", "clientes-ingest-mssql")["stringData"]["CLIENTES_SCHEMA_DB_URL"]}
    for name, url in urls.items():
        url = re.sub(r"\$\{[^}]*\}", "pw", url)
        host = sa.engine.make_url(url).host
        odbc = _odbc_string(url)
        assert "Encrypt=yes" in odbc, name
        # Self-signed certificates of the bundled servers: the one case where the certificate is trusted.
        assert "TrustServerCertificate=yes" in odbc
        assert host in {"mssql", "mssql-0.mssql.clientes-ingest.svc.cluster.local"}, name


def test_security_doc_gives_a_production_url_that_encrypts_and_verifies() -> None:
    section = SECURITY_DOC[SECURITY_DOC.index("## SQL Server"):]
    (url,) = re.findall(r"mssql\+pyodbc://\S+TrustServerCertificate=no\S*", section)
    odbc = _odbc_string(url.rstrip("`"))
    assert "Encrypt=yes" in odbc and "TrustServerCertificate=no" in odbc and "HostNameInCertificate=" in odbc
    assert "dev-only" in section or "development only" in section


def test_doc_shell_lines_escape_like_the_manifests() -> None:
    # What docs/security.md tells an operator to run by hand protects the literal the same way.
    section = SECURITY_DOC[SECURITY_DOC.index("## SQL Server"):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block
    lines = block.group(1).splitlines()
    escape = "\n".join(ln for ln in lines if "APP_PASSWORD_SQL" in ln)
    for password in HOSTILE_PASSWORDS:
        assert _literal_after_substitution(_escaped_by(escape, password)) == password
    (run,) = [ln for ln in lines if "sqlcmd" in ln]
    assert run.endswith("-i sql/mssql-app-login.sql") and " -P" not in run
    assert 'export SQLCMDPASSWORD="$MSSQL_SA_PASSWORD"' in lines
