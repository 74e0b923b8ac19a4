"""Webhook API (``clientes-ingest-api``): upload a CLIENTES file or name one in storage, follow its job.

Endpoints: ``POST /process`` (multipart upload, field ``file``), ``POST /runs`` (``{"source": "s3://..."}``,
idempotent per object version), ``GET /jobs/{id}``, ``GET /jobs/{id}/rejects`` (JSON pages or CSV),
``GET /health``, ``GET /ready``, ``GET /metrics``; OpenAPI docs at ``/docs`` (see docs/api.md).

This module builds the app (``create_app``) and serves it (``main``). The endpoints live by concern:
``api_runs`` (uploads and runs), ``api_jobs`` (jobs and rejects), ``api_probes`` (health, readiness,
metrics); what they share (settings, auth, metrics, secret scrubbing, the context) is in ``api_context``.
Uploads stream (``deployments.upload``): the multipart body is parsed as it arrives and fed to
``Storage.store`` from a worker thread, which hashes it and plans its chunks in the same pass; memory
stays at a few MiB whatever the size, and the event loop never waits on disk, S3 or the database. Runs start through
``deployments.launch`` (a deployment run, or in-process when no Prefect API is configured).
Requires: ``CLIENTES_*`` settings (``CLIENTES_API_TOKEN`` for the POSTs and the ``/jobs...`` reads, which
answer 503 without it), ``CLIENTES_API_MAX_UPLOAD_BYTES`` (default 8 GiB), the database and storage they name.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clientes_ingest import resources
from clientes_ingest.placeholders import exit_on_placeholders
from clientes_ingest.settings import Settings, load_settings
from clientes_ingest.storage import Storage
from deployments.api_context import ApiConfig, ApiContext, ApiMetrics, ScrubSecrets, scrub, secret_values
from deployments.api_jobs import jobs_router
from deployments.api_probes import probes_router
from deployments.api_runs import runs_router
from deployments.launch import RunLauncher
from deployments.upload import ApiError

__all__ = ["ApiConfig", "ApiContext", "ErrorMetricsMiddleware", "configure_logging", "create_app", "main"]

logger = logging.getLogger("clientes_ingest.api")


class ErrorMetricsMiddleware:
    """Counts error responses by route, and turns an unexpected exception into a JSON 500 (logged scrubbed).

    A plain ASGI middleware: it never touches the request body, so uploads keep streaming.
    """

    def __init__(self, app: ASGIApp, ctx: ApiContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app, ctx = self.app, self.ctx
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = {"code": 500, "started": False}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            await app(scope, receive, capture)
        except Exception as exc:
            logger.error("%s %s failed: %s", scope.get("method"), scope.get("path"),
                         scrub(f"{type(exc).__name__}: {exc}", ctx.secrets))
            status["code"] = 500
            if not status["started"]:
                body = JSONResponse({"error": "internal error", "detail": "see the API log"}, status_code=500)
                await body(scope, receive, send)
        route = scope.get("route")
        if int(status["code"]) >= 400:
            ctx.metrics.errors.labels(getattr(route, "path", "unmatched"), str(status["code"])).inc()


def create_app(
    *,
    settings: Settings | None = None,
    config: ApiConfig | None = None,
    launcher: RunLauncher | None = None,
    storage: Storage | None = None,
) -> FastAPI:
    """The FastAPI app; everything it needs can be passed in (tests), else is built from the settings."""
    settings = settings or load_settings()
    config = config or settings.api
    secrets = secret_values(settings)
    ctx_holder: dict[str, ApiContext] = {}

    def default_launcher() -> RunLauncher:
        return resources.build_launcher(settings, on_error=ctx_holder["ctx"].mark_failed)

    ctx = ApiContext(settings=settings, config=config, db=resources.open_database(settings),
                     storage=storage or resources.open_storage(settings), metrics=ApiMetrics(), secrets=secrets,
                     launcher_factory=(lambda: launcher) if launcher is not None else default_launcher)
    ctx_holder["ctx"] = ctx
    guard = ScrubSecrets(secrets)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        logger.addFilter(guard)
        # In the background: the server answers /health at once; /ready says "starting" until it is done.
        threading.Thread(target=ctx.warm_up, name="api-warm-up", daemon=True).start()
        yield
        logger.removeFilter(guard)
        shutdown = getattr(ctx._launcher, "shutdown", None)
        if shutdown is not None:  # queued in-process runs are dropped; running ones finish
            shutdown(wait=False)

    app = FastAPI(title="clientes-ingest API", version="0.1.0", lifespan=lifespan,
                  description="Upload CLIENTES_IN_MMYY.dat files, start ingest runs, follow their jobs.")
    app.state.ctx = ctx

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "detail": exc.detail}, exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "detail": None}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only where and what: the rejected input itself is not echoed back.
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "detail": detail}, 422)

    # Paths in the order of the OpenAPI docs: probes, runs, jobs.
    for router in (probes_router(ctx), runs_router(ctx), jobs_router(ctx)):
        app.include_router(router)
    app.add_middleware(ErrorMetricsMiddleware, ctx=ctx)
    return app


# -------------------------------------------------------------------------------------------- main


def configure_logging(level: str, secrets: list[str]) -> None:
    """One format for the API's and uvicorn's logs, and secret values masked in every log record.

    Prefect configures logging when it is first imported (and replaces the root handlers), so it is
    imported first; our loggers then get their own handler. The record factory masks secrets in records
    of every library, whatever handlers they end up on.
    """
    import prefect.main  # noqa: F401 - applies Prefect's logging configuration now, not mid-request

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for name in ("clientes_ingest", "uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers, named.propagate = [handler], False
        named.setLevel(level.upper())
    make_record = logging.getLogRecordFactory()
    guard = ScrubSecrets(secrets)

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        guard.filter(record)
        return record

    logging.setLogRecordFactory(scrubbed_record)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``clientes-ingest-api``: serve the app with uvicorn."""
    import uvicorn
    from prefect.settings import PREFECT_API_AUTH_STRING

    parser = argparse.ArgumentParser(prog="clientes-ingest-api", description=__doc__.split("\n\n")[0])
    settings = load_settings()
    config = settings.api
    parser.add_argument("--host", default=config.host,
                        help="interface to listen on (default CLIENTES_API_HOST or 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=config.port, help="default CLIENTES_API_PORT or 8000")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if not config.auth_reads and not _loopback(args.host):
        parser.error(f"CLIENTES_API_AUTH_READS=false opens job reads (personal data) without a token: it is for "
                     f"a local dev API on 127.0.0.1 only, not on {args.host}; unset it")
    # Before serving: an example secret (CHANGE-ME) would make a guessable credential.
    exit_on_placeholders(settings, "clientes-ingest-api", {"PREFECT_API_AUTH_STRING": PREFECT_API_AUTH_STRING.value()})
    configure_logging(args.log_level, secret_values(settings))
    app = create_app(settings=settings, config=config)
    app.state.ctx.freeze_gc = True
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, log_config=None)
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


if __name__ == "__main__":
    raise SystemExit(main())
