"""The dev stack's Prefect server requires its basic-auth string; the stack's own clients carry it.

Starts the stack's real Prefect server (``DevStack.start_prefect_server``) with the environment every
child gets, then: requests without the string, or with a wrong one, are refused (401); the health route
the supervisor polls stays open; a ``prefect`` CLI client with the stack's env creates the work pool
and reads it back; the request the stack's worker-online probe makes succeeds with its header. The full stack (worker,
trigger, API and flow runs all going through this auth) is tests/system/test_e2e_stack.py.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from clientes_ingest.devtools.devstack import LOCAL_POOL, DevStack

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.system, pytest.mark.slow]


def test_prefect_server_refuses_requests_without_the_stacks_auth_string(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "state", project_dir=REPO, prefect_port=0, api_port=0, trigger_port=0, moto_port=0,
                     startup_timeout=480.0)
    stack.prepare()
    try:
        stack.start_prefect_server()
        api = stack.prefect_api_url
        user, _, password = stack.prefect_auth_string.partition(":")
        assert len(password) >= 24
        assert stack.env["PREFECT_API_AUTH_STRING"] == stack.prefect_auth_string
        assert "PREFECT_SERVER_API_AUTH_STRING" not in stack.env  # only the server process gets it

        for path in ("/block_documents/filter", "/deployments/filter", "/work_pools/filter"):
            assert httpx.post(f"{api}{path}", json={}, timeout=30).status_code == 401, path
            assert httpx.post(f"{api}{path}", json={}, auth=(user, "wrong"), timeout=30).status_code == 401, path
            assert httpx.post(f"{api}{path}", json={}, auth=(user, password), timeout=30).status_code == 200, path
        assert httpx.get(f"{api}/health", timeout=30).status_code == 200  # what the supervisor polls

        # A client with the stack's env: Prefect's CLI creates the pool the worker would serve.
        stack.run_tools(("work-pool", stack.prefect_args("work-pool", "create", LOCAL_POOL, "--type", "process")))
        pools = httpx.post(f"{api}/work_pools/filter", json={}, headers=stack.prefect_auth_header(), timeout=30)
        assert [p["name"] for p in pools.json()] == [LOCAL_POOL]
        # The same CLI without the string is refused.
        env = {k: v for k, v in stack.env.items() if k != "PREFECT_API_AUTH_STRING"}
        refused = subprocess.run(stack.prefect_args("work-pool", "ls"), env=env, capture_output=True, text=True,
                                 timeout=180, cwd=REPO, check=False)
        assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
        header = stack.prefect_auth_header()["Authorization"]
        assert base64.b64decode(header.removeprefix("Basic ")).decode() == stack.prefect_auth_string
        status = httpx.post(f"{api}/work_pools/{LOCAL_POOL}/workers/filter", json={},
                            headers=stack.prefect_auth_header(), timeout=30)
        assert status.status_code == 200 and json.loads(status.text) == []
    finally:
        stack.stop()
