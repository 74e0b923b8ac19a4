"""Deployment mode (docs/security.md, "Sources"): every place that runs flows for others sets
CLIENTES_ALLOWED_LOCAL_ROOTS, so a run cannot read /proc/self/environ or /etc/passwd as a "file";
the CLI's embedded default (nothing set) still reads any local file its user names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import REPO, load_yaml_docs

from clientes_ingest.devtools.devstack import DevStack
from clientes_ingest.settings import Settings
from clientes_ingest.sources import SourceNotAllowed, SourcePolicy

SECRETS_AS_FILES = ("/proc/self/environ", "/etc/passwd", "file:///proc/self/environ")


def settings_from(env: dict[str, Any]) -> Settings:
    fields = {name: env[f"CLIENTES_{name.upper()}"] for name in Settings.model_fields
              if f"CLIENTES_{name.upper()}" in env}
    return Settings.model_validate(fields)


def assert_closed(policy: SourcePolicy) -> None:
    for source in SECRETS_AS_FILES:
        with pytest.raises(SourceNotAllowed):
            policy.check(source)
    with pytest.raises(SourceNotAllowed):
        policy.check("s3://attacker-bucket/incoming/CLIENTES_IN_0425.dat")


def test_kubernetes_flow_pods_read_no_local_file() -> None:
    (configmap,) = [d for d in load_yaml_docs(REPO / "k8s" / "configmap.yaml") if d["kind"] == "ConfigMap"]
    data = configmap["data"]
    assert data["CLIENTES_ALLOWED_LOCAL_ROOTS"] == "none"
    policy = SourcePolicy.from_settings(settings_from(data))
    assert policy.local_roots == () and policy.buckets == {data["CLIENTES_S3_BUCKET"]}
    assert_closed(policy)
    policy.check(f"s3://{data['CLIENTES_S3_BUCKET']}/incoming/CLIENTES_IN_0425.dat")


def test_compose_runs_read_no_local_file() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    env = compose["x-clientes-env"]
    assert env["CLIENTES_ALLOWED_LOCAL_ROOTS"] == "none"
    assert_closed(SourcePolicy.from_settings(settings_from({k: v for k, v in env.items() if "${" not in str(v)})))
    worker = compose["services"]["worker"]["environment"]
    assert worker["CLIENTES_ALLOWED_LOCAL_ROOTS"] == "none"  # the worker that runs ingest-clientes/local


def test_dev_stack_runs_read_local_files_only_from_its_inbox(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "state", project_dir=REPO, base_env={"PATH": "/usr/bin:/bin"},
                     prefect_port=0, api_port=0, trigger_port=0, moto_port=0)
    try:
        stack.prepare()
        policy = SourcePolicy.from_settings(stack.settings())
        assert_closed(policy)
        assert stack.inbox.is_dir()
        policy.check(str(stack.inbox / "CLIENTES_IN_0425.dat"))
        with pytest.raises(SourceNotAllowed):
            policy.check(str(REPO / ".env"))  # the checkout (compose's .env) is not a source
    finally:
        stack.stop()


def test_the_embedded_default_reads_any_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLIENTES_ALLOWED_LOCAL_ROOTS", raising=False)
    SourcePolicy.from_settings(Settings()).check(str(REPO / "README.md"))
