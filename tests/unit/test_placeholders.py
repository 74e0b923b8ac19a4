"""The API and the trigger refuse to start with a placeholder secret (k8s/secret.example.yaml's CHANGE-ME)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from clientes_ingest.placeholders import PlaceholderSecret, is_placeholder, placeholder_secrets, refuse_placeholders
from clientes_ingest.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", ["CHANGE-ME", "change-me", "CHANGEME", "change_me", "REPLACE-ME", "...",
                                   "<token>", "<CLIENTES_APP_PASSWORD, URL-encoded>", "xxxx", " CHANGE-ME ",
                                   "choose-a-long-random-token", "Choose-A-Strong-Passw0rd"])
def test_placeholders_are_recognised(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", ["kX9#vQ2!rT7$wZ4m", "3f9c1e0b8a7d6c5b4a39281706f5e4d3", "admin", "change",
                                   "exchange-rate-me", "a<b>c"])
def test_real_looking_secrets_pass(value: str) -> None:
    assert not is_placeholder(value)


def _example_secret_env() -> dict[str, str]:
    (secrets, _mssql) = yaml.safe_load_all((REPO / "k8s/secret.example.yaml").read_text(encoding="utf-8"))
    return dict(secrets["stringData"])


def test_every_secret_of_the_example_is_refused() -> None:
    env = _example_secret_env()
    settings = Settings.model_validate({k.removeprefix("CLIENTES_").lower(): v for k, v in env.items()
                                        if k.startswith("CLIENTES_")})
    found = placeholder_secrets(settings, {"PREFECT_API_AUTH_STRING": SecretStr(env["PREFECT_API_AUTH_STRING"])})
    assert sorted(found) == sorted(env)
    with pytest.raises(PlaceholderSecret) as refused:
        refuse_placeholders(settings, "clientes-ingest-api")
    assert "CLIENTES_API_TOKEN" in str(refused.value) and "clientes-ingest-api" in str(refused.value)


def test_real_secrets_are_accepted() -> None:
    settings = Settings(api_token=SecretStr("3f9c1e0b8a7d6c5b4a39281706f5e4d3"),
                        db_url=SecretStr("mssql+pyodbc://clientes_app:kX9vQ2rT7wZ4m@db:1433/clientes"),
                        aws_access_key_id=SecretStr("AKIAEXAMPLE123"), aws_secret_access_key=SecretStr("s3cr3t/KEY+x"))
    assert placeholder_secrets(settings, {"PREFECT_API_AUTH_STRING": SecretStr("admin:9d8c7b6a5f4e")}) == []
    assert placeholder_secrets(Settings()) == []  # the embedded default has no secret to refuse


def _start(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLIENTES_", "PREFECT_API_"))}
    return subprocess.run([sys.executable, "-m", module], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, cwd=REPO, check=False)


@pytest.mark.parametrize(("module", "variable", "value"), [
    ("deployments.api", "CLIENTES_API_TOKEN", "CHANGE-ME"),
    ("deployments.api", "PREFECT_API_AUTH_STRING", "clientes-ingest:CHANGE-ME"),
    ("deployments.trigger", "CLIENTES_DB_URL", "postgresql://app:CHANGE-ME@127.0.0.1:9/clientes"),
    ("deployments.trigger", "PREFECT_API_AUTH_STRING", "clientes-ingest:CHANGE-ME"),
])
def test_services_refuse_to_start_with_a_placeholder(module: str, variable: str, value: str) -> None:
    done = _start(module, **{"CLIENTES_API_TOKEN": "3f9c1e0b8a7d6c5b4a39281706f5e4d3", variable: value,
                             "CLIENTES_API_PORT": "1", "CLIENTES_TRIGGER_PORT": "1"})
    assert done.returncode == 2, done.stderr
    assert variable in done.stderr and "refuses to start" in done.stderr
    assert "CHANGE-ME@" not in done.stderr  # the URL itself is never printed
