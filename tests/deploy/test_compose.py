"""docker-compose.yml, checked without Docker: schema, start-up graph, commands and secrets.

The schema is the Compose Specification JSON schema vendored in tests/deploy/schemas/ (see its
README); commands are parsed by the project's and Prefect's own CLI parsers.
"""

from __future__ import annotations

import json
import re
from graphlib import TopologicalSorter
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_support import REPO, SCHEMAS, SECRET_KEY, check_command, commands_of, parse_prefect_cli

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCS = (REPO / "docs/docker-compose.md").read_text(encoding="utf-8")
DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
PROJECT_IMAGE = "clientes-ingest:local"


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()

    @checker.checks("duration")
    def _duration(value: object) -> bool:
        return not isinstance(value, str) or bool(DURATION.match(value))

    return checker


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / "compose_spec.json").read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema, format_checker=_format_checker())


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec["condition"] for name, spec in deps.items()}


def _is_one_shot(name: str) -> bool:
    return SERVICES[name].get("restart") == "no"


def _healthy(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck")
    return bool(check) and not check.get("disable", False)


def test_matches_the_compose_specification() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(COMPOSE)]
    assert errors == []


def test_schema_check_is_not_vacuous() -> None:
    broken = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    broken["services"]["api"]["healthcheck"]["interval"] = "ten seconds"
    broken["services"]["worker"]["depends_on"]["setup"]["condition"] = "service_done"
    broken["services"]["trigger"]["helthcheck"] = {}
    assert len(list(_validator().iter_errors(broken))) == 3


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_is_healthchecked_or_one_shot(name: str) -> None:
    service = SERVICES[name]
    if _is_one_shot(name):
        assert not _healthy(service)
        waiting = [n for n, s in SERVICES.items() if _depends_on(s).get(name) == "service_completed_successfully"]
        assert waiting, f"nothing waits for one-shot service {name} to complete"
    else:
        assert _healthy(service), f"long-running service {name} has no healthcheck"
        assert service.get("restart") in {"unless-stopped", "always", "on-failure"}


def test_dependencies_exist_and_their_conditions_can_be_met() -> None:
    for name, service in SERVICES.items():
        for dep, condition in _depends_on(service).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            if condition == "service_healthy":
                assert _healthy(SERVICES[dep]), f"{name} waits for {dep} to be healthy; it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert _is_one_shot(dep), f"{name} waits for {dep} to complete; it is long-running"
            else:
                pytest.fail(f"{name} -> {dep}: use service_healthy or service_completed_successfully")


def test_start_up_order() -> None:
    graph = {name: set(_depends_on(s)) for name, s in SERVICES.items()}
    order = list(TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    before = {name: order.index(name) for name in order}
    assert before["mssql-init"] < before["schema"] < before["setup"] < before["worker"] < before["api"]
    assert before["aws-init"] < before["setup"]
    assert before["prefect-server"] < before["setup"] < before["trigger"]


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if s.get("image") == PROJECT_IMAGE))
def test_project_service_commands_exist(name: str) -> None:
    for argv in commands_of(SERVICES[name]["command"]):
        check_command(argv)


def test_services_run_the_expected_programs() -> None:
    programs = {name: [argv[0] for argv in commands_of(s["command"])] for name, s in SERVICES.items()
                if s.get("image") == PROJECT_IMAGE}
    assert programs == {
        "schema": ["clientes-ingest"],
        "aws-init": ["clientes-ingest"],
        "setup": ["prefect", "clientes-ingest", "clientes-ingest", "prefect"],
        "worker": ["prefect"],
        "api": ["clientes-ingest-api"],
        "trigger": ["clientes-ingest-trigger"],
    }


def test_setup_creates_the_pool_and_deploys_the_local_deployments() -> None:
    create, blocks, automations, deploy = commands_of(SERVICES["setup"]["command"])
    assert [check_command(blocks), check_command(automations)] == ["cmd_blocks_register", "cmd_automations_apply"]
    _, args = parse_prefect_cli(create)
    assert (args["name"], args["type"]) == ("local-process", "process")
    _, args = parse_prefect_cli(deploy)
    assert args["names"] == ["ingest-clientes/local", "recover-abandoned-jobs/local", "clientes-snapshot-ready/local",
                             "purge-old-jobs/local"]
    assert "--no-prompt" in deploy, "prefect deploy must not wait for input"
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    declared = [(d["entrypoint"], d["name"], d["work_pool"]["name"]) for d in deployments]
    assert ("flows/ingest.py:ingest_clientes", "local", "local-process") in declared
    assert ("flows/recover.py:recover_abandoned_jobs", "local", "local-process") in declared
    assert ("flows/snapshot.py:clientes_snapshot_ready", "local", "local-process") in declared


def test_trigger_starts_runs_of_the_registered_deployment() -> None:
    deploy = commands_of(SERVICES["setup"]["command"])[-1]
    registered = parse_prefect_cli(deploy)[1]["names"]
    (ingest,) = [name for name in registered if name.startswith("ingest-clientes/")]
    assert SERVICES["trigger"]["environment"]["CLIENTES_DEPLOYMENT"] == ingest


def test_worker_serves_the_local_pool_and_its_healthcheck_port() -> None:
    worker = SERVICES["worker"]
    (argv,) = commands_of(worker["command"])
    function, args = parse_prefect_cli(argv)
    assert function == "prefect.cli.worker.start"
    assert (args["work_pool_name"], args["worker_type"], args["with_healthcheck"]) == ("local-process", "process", True)
    port = worker["environment"]["PREFECT_WORKER_WEBSERVER_PORT"]
    assert f"127.0.0.1:{port}/health" in " ".join(worker["healthcheck"]["test"])


@pytest.mark.parametrize(("name", "port", "path"), [("api", 8000, "/health"), ("trigger", 9100, "/health"),
                                                    ("prefect-server", 4200, "/api/health")])
def test_http_healthchecks_hit_the_published_port(name: str, port: int, path: str) -> None:
    service = SERVICES[name]
    assert f"127.0.0.1:{port}{path}" in " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{port}:{port}" in service["ports"]


def test_prefect_server_command() -> None:
    function, args = parse_prefect_cli(SERVICES["prefect-server"]["command"])
    assert function == "prefect.cli.server.start"
    assert args["host"] == "0.0.0.0"  # noqa: S104 - the server must be reachable from other containers
    import prefect

    # The version the tests and the dev stack's real server run.
    assert SERVICES["prefect-server"]["image"] == f"prefecthq/prefect:{prefect.__version__}-python3.11"


def test_prefect_server_requires_auth_and_every_client_sends_it() -> None:
    server = SERVICES["prefect-server"]["environment"]
    assert server["PREFECT_SERVER_API_AUTH_STRING"].startswith("${PREFECT_API_AUTH_STRING:?")
    clients = [name for name, s in SERVICES.items() if "PREFECT_API_URL" in s.get("environment", {})]
    assert set(clients) == {"schema", "aws-init", "setup", "worker", "api", "trigger"}
    for name in clients:
        sent = SERVICES[name]["environment"]["PREFECT_API_AUTH_STRING"]
        assert sent.split(":?")[0] == server["PREFECT_SERVER_API_AUTH_STRING"].split(":?")[0], name


def test_mssql_service() -> None:
    mssql = SERVICES["mssql"]
    assert mssql["image"] == "mcr.microsoft.com/mssql/server:2022-CU16-ubuntu-22.04"
    assert "sqlcmd" in " ".join(mssql["healthcheck"]["test"])
    assert any(v.endswith(":/var/opt/mssql") for v in mssql["volumes"])
    named = {v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", []) if not v.startswith("./")}
    assert set(COMPOSE["volumes"]) >= named


def test_sqlserver_check_service_and_its_documented_command() -> None:
    """`docker compose up -d --wait sqlserver` starts the SQL Server of `pytest -m mssql` (and only that
    command starts it); the documented test URL points at its published port."""
    checks = SERVICES["sqlserver"]
    assert checks["image"] == SERVICES["mssql"]["image"] and checks["profiles"] == ["checks"]
    assert "sqlcmd" in " ".join(checks["healthcheck"]["test"]) and "volumes" not in checks
    (port,) = checks["ports"]
    host_port = port.split(":")[1]
    assert port.startswith("127.0.0.1:") and port.endswith(":1433") and host_port != "1433"
    docs = (REPO / "docs/sqlserver-checks.md").read_text(encoding="utf-8")
    assert "docker compose up -d --wait sqlserver" in docs and "pytest -m mssql" in docs
    assert f"@127.0.0.1:{host_port}/master?driver=FreeTDS" in docs
    conftest = (REPO / "tests/conftest.py").read_text(encoding="utf-8")
    assert 'MSSQL_ENV = "CLIENTES_TEST_MSSQL_URL"' in conftest and "CLIENTES_TEST_MSSQL_URL=" in docs


def test_build_contexts_have_their_dockerfile() -> None:
    for name, service in SERVICES.items():
        build = service.get("build")
        if build:
            context = REPO / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name


def _environment_items() -> list[tuple[str, str, str]]:
    items = []
    for name, service in SERVICES.items():
        env = service.get("environment", {})
        pairs = env.items() if isinstance(env, dict) else (e.partition("=")[::2] for e in env)
        items += [(name, key, str(value)) for key, value in pairs]
    return items


def test_secrets_come_from_the_environment_not_the_file() -> None:
    for service, key, value in _environment_items():
        if SECRET_KEY.match(key):
            assert "${" in value, f"{service}.{key} holds a literal secret"
    sqlcmds = 0
    for name, service in SERVICES.items():
        argvs = [service.get("command") or [], service.get("healthcheck", {}).get("test", [])]
        # Words, not shell tokens: the scripts nest quotes inside $(...), which shlex cannot follow.
        tokens = [t for argv in argvs for a in argv for t in a.split()]
        # sqlcmd's -P would put the password in the process's command line (`ps`): SQLCMDPASSWORD instead.
        assert "-P" not in tokens, name
        for i, token in enumerate(tokens):
            if token.endswith("/sqlcmd"):
                sqlcmds += 1
                assert any(t.startswith("SQLCMDPASSWORD=") for t in tokens[:i]), f"{name}: no SQLCMDPASSWORD"
    assert sqlcmds == 3  # the healthchecks of mssql and sqlserver, and mssql-init


def test_required_variables_are_documented() -> None:
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required == {"MSSQL_SA_PASSWORD", "CLIENTES_API_TOKEN", "PREFECT_API_AUTH_STRING", "CLIENTES_APP_PASSWORD"}
    assert all(name in DOCS for name in required)


def test_docs_show_the_ports_the_upload_and_the_ui() -> None:
    published = {p.split(":")[-2] for s in SERVICES.values() for p in s.get("ports", [])}
    assert published == {"1433", "5000", "4200", "8000", "9100", "14330"}
    assert all(port in DOCS for port in published)
    assert "docker compose up" in DOCS
    assert 'curl -H "Authorization: Bearer $CLIENTES_API_TOKEN" -F file=@CLIENTES_IN_0425.dat' in DOCS
    assert "http://127.0.0.1:4200" in DOCS
