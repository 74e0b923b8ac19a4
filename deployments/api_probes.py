"""The webhook API's probes: ``GET /health`` (liveness, from the event loop), ``GET /ready`` (database,
storage, Prefect API and launcher checked at once, each bounded in time) and ``GET /metrics`` (Prometheus).
They are open (probes and scrapers call them), so they say only ok / starting / unreachable: the cause
of a failure (which names hosts, users or buckets) goes to the API log, and metrics carry no personal data
(labels are route templates and status codes, never paths, names or ids).

Requires: nothing beyond the app's context; ``/ready`` reaches the services the ``CLIENTES_*`` settings
and ``PREFECT_API_URL`` name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clientes_ingest.storage import LocalStorage, StorageError
from deployments.api_context import ApiContext, scrub

logger = logging.getLogger("clientes_ingest.api")

UNREACHABLE = "unreachable (see the API log)"


def probes_router(ctx: ApiContext) -> APIRouter:
    """``/health``, ``/ready`` and ``/metrics``, never behind the token (probes and scrapers call them)."""
    router = APIRouter(tags=["probes"])

    @router.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: answers from the event loop, no database or storage call."""
        return {"status": "ok", "uploadsInProgress": ctx.uploads_in_progress}

    @router.get("/ready", responses={503: {"description": "a dependency is unreachable"}})
    async def ready() -> JSONResponse:
        """Readiness: the database, the storage and (when configured) the Prefect API answer, and runs can start."""
        checks = await _readiness(ctx)
        failed = [f"{name} {'starting' if result == 'starting' else 'unreachable'}"
                  for name, result in checks.items() if result not in ("ok", "not configured")]
        if failed:
            return JSONResponse({"error": f"not ready: {', '.join(failed)}", "detail": checks}, 503)
        return JSONResponse({"status": "ready", "checks": checks})

    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


async def _readiness(ctx: ApiContext, timeout: float = 5.0) -> dict[str, str]:
    """Each dependency's check, run in threads at once, each bounded by ``timeout`` seconds."""

    def database() -> str:
        ctx.db.check()
        return "ok"

    def storage() -> str:
        from clientes_ingest.s3 import S3Storage

        store = ctx.storage
        if isinstance(store, LocalStorage):
            store.root.mkdir(parents=True, exist_ok=True)
            if not os.access(store.root, os.W_OK):
                raise StorageError(f"storage root {store.root} is not writable")
        elif isinstance(store, S3Storage):
            store.client.head_bucket(Bucket=store.bucket)
        return "ok"

    def prefect() -> str:
        from clientes_ingest.resources import prefect_api_configured

        if not prefect_api_configured():
            return "not configured"
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            error = client.api_healthcheck()
        if error is not None:
            raise error
        return "ok"

    results: dict[str, str] = {}

    async def run(name: str, check: Callable[[], str]) -> None:
        try:
            with anyio.fail_after(timeout):
                results[name] = await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
        except TimeoutError:
            results[name] = f"no answer within {timeout:.0f}s"
        except Exception as exc:  # the cause names hosts, users, buckets: for the log, not for an open probe
            logger.warning("readiness: %s unreachable: %s", name, scrub(f"{type(exc).__name__}: {exc}", ctx.secrets))
            results[name] = UNREACHABLE

    async with anyio.create_task_group() as group:
        for name, check in (("database", database), ("storage", storage), ("prefect", prefect)):
            group.start_soon(run, name, check)
    if ctx.runs_status not in ("ok", "starting"):  # e.g. the deployment was applied after start-up
        await run("runs", ctx.prepare_runs)  # prepare_runs logs why it failed
    runs = results.get("runs", ctx.runs_status)
    results["runs"] = runs if runs in ("ok", "starting") or runs.startswith("no answer") else UNREACHABLE
    return {name: results[name] for name in ("database", "storage", "prefect", "runs")}

