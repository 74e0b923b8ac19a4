"""Fixtures of the deployment-artifact tests (see deploy_support.py for the helpers)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deploy_support import REPO, flow_name


@pytest.fixture(scope="session")
def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def deployments(prefect_yaml: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """prefect.yaml's deployments by full name, <flow name>/<deployment name> (e.g. ingest-clientes/k8s)."""
    named = {f"{flow_name(d['entrypoint'])}/{d['name']}": d for d in prefect_yaml["deployments"]}
    assert len(named) == len(prefect_yaml["deployments"]), "two deployments share a full name"
    return named
