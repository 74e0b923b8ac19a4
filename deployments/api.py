"""Webhook API (``clientes-ingest-api``): upload a CLIENTES file or name one in storage, follow its job.

Endpoints: ``POST /process`` (multipart upload, field ``file``), ``POST /runs`` (``{"source": "s3://..."}``,
idempotent per object version), ``GET /jobs/{id}``, ``GET /jobs/{id}/rejects`` (JSON pages or CSV),
``GET /health``, ``GET /ready``, ``GET /metrics``; OpenAPI docs at ``/docs`` (see docs/api.md).

Uploads stream (``deployments.upload``): the multipart body is parsed as it arrives and fed to
``Storage.store`` from a worker thread, which hashes it and plans its chunks in the same pass; memory
stays at a few MiB whatever the size, and the event loop never waits on disk, S3 or the database. Runs start through
``deployments.launch`` (a deployment run, or in-process when no Prefect API is configured).
Requires: ``CLIENTES_*`` settings (``CLIENTES_API_TOKEN`` for POSTs, which answer 503 without it),
``CLIENTES_API_MAX_UPLOAD_BYTES`` (default 8 GiB), the database and storage they name.
"""

from __future__ import annotations

import argparse
import csv
import gc
import hashlib
import hmac
import io
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict
from python_multipart.multipart import parse_options_header
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clientes_ingest import jobs
from clientes_ingest.chunks import ChunkPlanner
from clientes_ingest.db import Database, DatabaseUnavailable, ingest_rejects
from clientes_ingest.settings import Settings, load_settings, parse_file_size
from clientes_ingest.storage import LocalStorage, Storage, StorageError
from deployments.launch import LaunchConfig, LaunchError, RunLauncher, build_launcher
from deployments.upload import ENVELOPE_SLACK, ApiError, UploadReader, UploadTooLarge, upload_name

logger = logging.getLogger("clientes_ingest.api")

MAX_REJECTS_PAGE = 1000


class ApiConfig(BaseSettings):
    """Knobs of the API; each field is the env var ``CLIENTES_API_<FIELD>`` (the token is in Settings)."""

    model_config = SettingsConfigDict(env_prefix="CLIENTES_API_", extra="ignore")

    max_upload_bytes: int = 8 * 1024**3
    max_concurrent_uploads: int = Field(default=4, ge=1)
    auth_reads: bool = False  # also require the token on GET /jobs... (rejects hold personal data)
    host: str = "127.0.0.1"  # defaults of --host/--port; a container sets CLIENTES_API_HOST=0.0.0.0
    port: int = 8000

    @field_validator("max_upload_bytes", mode="before")
    @classmethod
    def _size(cls, value: str | int) -> int:
        return parse_file_size(value)


# ------------------------------------------------------------------------------------------- models


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ProcessResponse(CamelModel):
    job_id: int
    flow_run_id: str
    total_lines: int
    chunks_created: int
    chunk_size: int
    file_name: str
    size_bytes: int
    sha256: str
    mode: str


class RunRequest(BaseModel):
    source: str = Field(description="object already in storage, e.g. s3://clientes-ingest/incoming/x.dat")


class RunResponse(CamelModel):
    job_id: int | None
    flow_run_id: str
    source: str
    created: bool
    version: str | None
    mode: str


class ChunkProgress(CamelModel):
    chunk_no: int
    status: str
    attempts: int
    first_line: int
    line_count: int
    rows_loaded: int | None
    rows_rejected: int | None
    duration_s: float | None
    error: str | None


class JobResponse(CamelModel):
    job_id: int
    status: str
    file_name: str
    size_bytes: int | None
    sha256: str | None
    chunk_count: int
    chunks_done: int
    total_lines: int
    blank_lines: int
    rows_loaded: int
    rows_rejected: int
    duration_s: float | None
    error: str | None
    rejects_by_reason: dict[str, int]
    chunks: list[ChunkProgress]


class RejectItem(CamelModel):
    line_number: int
    reason: str
    raw_line: str
    raw_length: int


class RejectsPage(CamelModel):
    job_id: int
    offset: int
    limit: int
    reason: str | None
    total: int
    items: list[RejectItem]
    next_offset: int | None


# ------------------------------------------------------------------------------------------ metrics


class ApiMetrics:
    """Prometheus metrics of one app instance, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        p = "clientes_api"
        self.uploads = Counter(f"{p}_uploads", "files uploaded and stored", registry=self.registry)
        self.upload_bytes = Counter(f"{p}_upload_bytes", "bytes of stored uploads", registry=self.registry)
        self.uploads_active = Gauge(f"{p}_uploads_in_progress", "uploads streaming now", registry=self.registry)
        self.runs = Counter(f"{p}_runs_started", "ingest runs created", ["endpoint", "mode"], registry=self.registry)
        self.existing = Counter(f"{p}_runs_existing", "requests answered with an earlier run (idempotency)",
                                ["endpoint"], registry=self.registry)
        self.errors = Counter(f"{p}_errors", "responses with status >= 400", ["endpoint", "status"],
                              registry=self.registry)


# ------------------------------------------------------------------------------------------ secrets


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold (token, database URL and password, AWS keys), longest first."""
    values = []
    for secret in (settings.api_token, settings.db_url, settings.aws_secret_access_key, settings.aws_access_key_id):
        if secret is not None and secret.get_secret_value():
            values.append(secret.get_secret_value())
    try:
        password = sa.engine.make_url(settings.db_url.get_secret_value()).password
    except Exception:  # an unparseable URL: the whole URL is already in the list
        password = None
    if password:
        values.append(str(password))
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for value in secrets:
        text = text.replace(value, "***")
    return text


class ScrubSecrets(logging.Filter):
    """Log filter: a last guard that masks secret values in any record that passes."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# ------------------------------------------------------------------------------------------ context


@dataclass
class ApiContext:
    """What the endpoints share: settings, handles and the launcher (built on first use)."""

    settings: Settings
    config: ApiConfig
    db: Database
    storage: Storage
    metrics: ApiMetrics
    secrets: list[str]
    launcher_factory: Callable[[], RunLauncher]
    uploads_in_progress: int = 0
    freeze_gc: bool = False  # set by main(): a whole process serving this app
    runs_status: str = "starting"  # readiness of the launcher: "starting", "ok" or why it failed
    _launcher: RunLauncher | None = None
    _launcher_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _schema_ready: bool = False
    _schema_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _upload_limiter: anyio.CapacityLimiter | None = field(default=None, repr=False)

    @property
    def launcher(self) -> RunLauncher:
        with self._launcher_lock:
            if self._launcher is None:
                self._launcher = self.launcher_factory()
            return self._launcher

    @property
    def upload_limiter(self) -> anyio.CapacityLimiter:
        if self._upload_limiter is None:  # created on the event loop's first upload
            self._upload_limiter = anyio.CapacityLimiter(self.config.max_concurrent_uploads)
        return self._upload_limiter

    def engine(self) -> sa.Engine:
        """The engine, with the schema created once per process; 503 if the database is down."""
        try:
            # One thread creates it: the start-up work and an early request racing on CREATE TABLE would
            # make one of them fail with "already exists".
            with self._schema_lock:
                if not self._schema_ready:
                    self.db.ensure_schema()
                    self._schema_ready = True
            return self.db.engine
        except (DatabaseUnavailable, DBAPIError) as exc:
            raise self.db_unavailable(exc) from None

    def db_unavailable(self, exc: BaseException) -> ApiError:
        text = str(exc) if isinstance(exc, DatabaseUnavailable) else self.db.describe_error(exc)
        return ApiError(503, "database unavailable", scrub(text, self.secrets))

    def warm_up(self) -> None:
        """Start-up work that would otherwise stall the first requests; /ready waits for it.

        Preparing the launcher imports Prefect and the flow (imports hold the GIL for long stretches) and
        reaches the Prefect API (in-process mode without a server: starts the ephemeral one). Then the
        objects of those imports are frozen out of the garbage collector, whose full passes over them
        would otherwise pause the event loop for tens of milliseconds at random.
        """
        self.prepare_runs()
        try:
            self.engine()
        except ApiError as exc:  # not fatal: /ready reports it, requests retry it
            logger.warning("%s: %s", exc.message, exc.detail)
        if self.freeze_gc:
            gc.collect()
            gc.freeze()

    def prepare_runs(self) -> str:
        """Prepare the launcher; returns (and keeps for /ready) "ok" or why runs cannot start."""
        try:
            prepare = getattr(self.launcher, "prepare", None)
            if prepare is not None:
                prepare()
            self.runs_status = "ok"
        except Exception as exc:
            self.runs_status = scrub(f"{type(exc).__name__}: {exc}", self.secrets)
            logger.error("cannot prepare ingest runs: %s", self.runs_status)
        return self.runs_status

    def mark_failed(self, job_id: int | None, exc: BaseException) -> None:
        """``on_error`` of in-process runs: a job the flow left pending is marked failed."""
        if job_id is None:
            return
        try:
            job = jobs.get_job(self.db.engine, job_id)
            if job.status == "pending":
                jobs.fail_job(self.db.engine, job_id, scrub(f"run failed before loading: {exc}", self.secrets))
        except Exception as hook_exc:
            logger.error("cannot mark job %s failed: %s", job_id, scrub(str(hook_exc), self.secrets))


def open_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        from clientes_ingest.s3 import S3Storage

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.storage_root)


@dataclass
class StoredUpload:
    uri: str
    name: str
    size: int
    sha256: str
    total_lines: int
    chunk_count: int


def store_upload(ctx: ApiContext, pull: Callable[[], bytes | None], boundary: bytes) -> StoredUpload:
    """Stream the ``file`` part into storage, hashing it and planning its chunks (run in a thread)."""
    reader = UploadReader(pull, boundary, ctx.config.max_upload_bytes)
    name = upload_name(reader.open_file())
    planner = ChunkPlanner(ctx.settings.chunk_size)
    try:
        stored = ctx.storage.store(reader, name, planner.feed)
    except StorageError as exc:
        raise ApiError(503, "cannot store the upload", scrub(str(exc), ctx.secrets)) from None
    reader.drain()
    chunks = planner.finish()
    return StoredUpload(stored.uri, stored.name, stored.size, stored.sha256, planner.total_lines, len(chunks))


# --------------------------------------------------------------------------------------------- app


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
    """The FastAPI app; everything it needs can be passed in (tests), else comes from the environment."""
    settings = settings or load_settings()
    config = config or ApiConfig()
    secrets = secret_values(settings)
    ctx_holder: dict[str, ApiContext] = {}

    def default_launcher() -> RunLauncher:
        return build_launcher(LaunchConfig(), on_error=ctx_holder["ctx"].mark_failed)

    ctx = ApiContext(settings=settings, config=config, db=Database(settings.db_url),
                     storage=storage or open_storage(settings), metrics=ApiMetrics(), secrets=secrets,
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
    bearer = HTTPBearer(auto_error=False, description="CLIENTES_API_TOKEN")

    def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        token = settings.api_token.get_secret_value() if settings.api_token else ""
        if not token:
            raise ApiError(503, "the API token is not configured",
                           "set CLIENTES_API_TOKEN on the API to enable this endpoint")
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "missing or invalid bearer token", "send Authorization: Bearer <CLIENTES_API_TOKEN>",
                           headers={"WWW-Authenticate": "Bearer"})

    def require_read(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if config.auth_reads:
            require_token(credentials)

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

    @app.get("/health", tags=["probes"])
    async def health() -> dict[str, Any]:
        """Liveness: answers from the event loop, no database or storage call."""
        return {"status": "ok", "uploadsInProgress": ctx.uploads_in_progress}

    @app.get("/ready", tags=["probes"], responses={503: {"description": "a dependency is unreachable"}})
    async def ready() -> JSONResponse:
        """Readiness: the database, the storage and (when configured) the Prefect API answer, and runs can start."""
        checks = await _readiness(ctx)
        failed = [f"{name} {'starting' if result == 'starting' else 'unreachable'}"
                  for name, result in checks.items() if result not in ("ok", "not configured")]
        if failed:
            return JSONResponse({"error": f"not ready: {', '.join(failed)}", "detail": checks}, 503)
        return JSONResponse({"status": "ready", "checks": checks})

    @app.get("/metrics", tags=["probes"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/process", status_code=202, response_model=ProcessResponse, tags=["runs"],
              dependencies=[Depends(require_token)],
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["file"],
                  "properties": {"file": {"type": "string", "format": "binary"}}}}}}})
    async def process(request: Request) -> JSONResponse:
        """Upload a CLIENTES file (multipart field ``file``); it is stored, and an ingest run starts."""
        media, options = parse_options_header(request.headers.get("content-type", ""))
        if media != b"multipart/form-data" or not options.get(b"boundary"):
            raise ApiError(415, "expected a multipart/form-data upload",
                           'send the file as the form field "file", e.g. curl -F "file=@CLIENTES_IN_0425.dat"')
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > config.max_upload_bytes + ENVELOPE_SLACK:
            raise UploadTooLarge(config.max_upload_bytes)
        stream = request.stream().__aiter__()

        async def next_chunk() -> bytes | None:
            async for chunk in stream:
                if chunk:
                    return chunk
            return None

        def pull() -> bytes | None:
            return anyio.from_thread.run(next_chunk)

        ctx.metrics.uploads_active.inc()
        ctx.uploads_in_progress += 1
        try:
            upload = await anyio.to_thread.run_sync(store_upload, ctx, pull, options[b"boundary"],
                                                    limiter=ctx.upload_limiter)
        finally:
            ctx.metrics.uploads_active.dec()
            ctx.uploads_in_progress -= 1
        ctx.metrics.uploads.inc()
        ctx.metrics.upload_bytes.inc(upload.size)
        if upload.size == 0:
            raise ApiError(422, f"{upload.name} is empty", "upload a file with at least one line")
        job_id, result = await anyio.to_thread.run_sync(_start, ctx, upload.uri, upload.name, None)
        ctx.metrics.runs.labels("/process", result.mode).inc()
        logger.info("upload %s (%d bytes, %d lines) -> job %d, run %s", upload.name, upload.size,
                    upload.total_lines, job_id, result.flow_run_id)
        body = ProcessResponse(job_id=job_id, flow_run_id=result.flow_run_id, total_lines=upload.total_lines,
                               chunks_created=upload.chunk_count, chunk_size=settings.chunk_size,
                               file_name=upload.name, size_bytes=upload.size, sha256=upload.sha256,
                               mode=result.mode)
        return JSONResponse(body.model_dump(by_alias=True), 202)

    @app.post("/runs", response_model=RunResponse, tags=["runs"], dependencies=[Depends(require_token)],
              responses={200: {"description": "this object version already has a run"},
                         202: {"description": "run created"}})
    async def runs(body: RunRequest) -> JSONResponse:
        """Start a run for an object already in storage; the same object version always answers the same run."""
        version, key = await anyio.to_thread.run_sync(_object_version, ctx, body.source)
        existing = await anyio.to_thread.run_sync(ctx.launcher.find, key)
        if existing is None:
            job_id, result = await anyio.to_thread.run_sync(_start, ctx, body.source,
                                                            body.source.rsplit("/", 1)[-1], key)
            if not result.created:  # another request with this key won the race: ours is not needed
                await anyio.to_thread.run_sync(jobs.fail_job, ctx.db.engine, job_id,
                                               f"duplicate request: run {result.flow_run_id} handles this object")
                job_id = result.job_id if result.job_id is not None else job_id
        else:
            result, job_id = existing, existing.job_id  # type: ignore[assignment]
        if result.created:
            ctx.metrics.runs.labels("/runs", result.mode).inc()
        else:
            ctx.metrics.existing.labels("/runs").inc()
        out = RunResponse(job_id=job_id, flow_run_id=result.flow_run_id, source=body.source,
                          created=result.created, version=version, mode=result.mode)
        return JSONResponse(out.model_dump(by_alias=True), 202 if result.created else 200)

    @app.get("/jobs/{job_id}", response_model=JobResponse, tags=["jobs"], dependencies=[Depends(require_read)],
             responses={404: {"description": "no such job"}})
    def get_job(job_id: int) -> JobResponse:
        """A job's status and counts, its rejects by reason and per-chunk progress."""
        engine = ctx.engine()
        summary = _read_job(ctx, job_id)
        try:
            chunks = jobs.job_chunks(engine, job_id)
        except DBAPIError as exc:
            raise ctx.db_unavailable(exc) from None
        return JobResponse(
            job_id=summary.job_id, status=summary.status, file_name=summary.file_name,
            size_bytes=summary.size_bytes, sha256=summary.sha256, chunk_count=summary.chunk_count,
            chunks_done=summary.chunks_done, total_lines=summary.total_lines, blank_lines=summary.blank_lines,
            rows_loaded=summary.rows_loaded, rows_rejected=summary.rows_rejected, duration_s=summary.duration_s,
            error=scrub(summary.error, ctx.secrets) if summary.error else None,
            rejects_by_reason=summary.rejects_by_reason,
            chunks=[ChunkProgress.model_validate(c) for c in chunks])

    @app.get("/jobs/{job_id}/rejects", tags=["jobs"], dependencies=[Depends(require_read)],
             response_model=RejectsPage, responses={200: {"content": {"text/csv": {}}}})
    def get_rejects(
        job_id: int,
        offset: int = Query(0, ge=0),
        limit: int = Query(100, ge=1, le=MAX_REJECTS_PAGE),
        reason: str | None = Query(None, max_length=32, description="only this reason code"),
        format: Literal["json", "csv"] = Query("json", description="csv: every matching reject, streamed"),  # noqa: A002
    ) -> Response:
        """A page of a job's rejects in line order; ``format=csv`` downloads all of them (filtered by reason)."""
        engine = ctx.engine()
        summary = _read_job(ctx, job_id)
        if format == "csv":
            disposition = f'attachment; filename="job-{job_id}-rejects.csv"'
            return StreamingResponse(_rejects_csv(engine, job_id, reason), media_type="text/csv; charset=utf-8",
                                     headers={"Content-Disposition": disposition})
        try:
            items = jobs.list_rejects(engine, job_id, offset=offset, limit=limit, reason=reason)
        except DBAPIError as exc:
            raise ctx.db_unavailable(exc) from None
        total = summary.rejects_by_reason.get(reason, 0) if reason else sum(summary.rejects_by_reason.values())
        page = RejectsPage(job_id=job_id, offset=offset, limit=limit, reason=reason, total=total,
                           items=[RejectItem.model_validate(i) for i in items],
                           next_offset=offset + len(items) if offset + len(items) < total else None)
        return JSONResponse(page.model_dump(by_alias=True))

    app.add_middleware(ErrorMetricsMiddleware, ctx=ctx)
    return app


# ------------------------------------------------------------------------------------ endpoint helpers


def _read_job(ctx: ApiContext, job_id: int) -> jobs.JobSummary:
    try:
        return jobs.get_job(ctx.db.engine, job_id)
    except jobs.JobError as exc:
        raise ApiError(404, str(exc), "list jobs with `clientes-ingest jobs`") from None
    except DBAPIError as exc:
        raise ctx.db_unavailable(exc) from None


def _start(ctx: ApiContext, source: str, name: str, key: str | None) -> tuple[int, Any]:
    """Pre-register the job, then launch its run; a run that cannot start fails the job (503)."""
    try:
        job_id = jobs.create_pending_job(ctx.engine(), source, name[:255])
    except DBAPIError as exc:
        raise ctx.db_unavailable(exc) from None
    try:
        result = ctx.launcher.launch(source, job_id=job_id, idempotency_key=key,
                                     chunk_size=str(ctx.settings.chunk_size))
    except LaunchError as exc:
        message = scrub(str(exc), ctx.secrets)
        jobs.fail_job(ctx.db.engine, job_id, f"could not start the ingest run: {message}")
        raise ApiError(503, "cannot start the ingest run", message) from None
    return job_id, result


def _object_version(ctx: ApiContext, source: str) -> tuple[str, str]:
    """The object's version (S3 VersionId or ETag; local size+mtime) and the run's idempotency key."""
    if source.startswith("s3://"):
        from clientes_ingest.s3 import S3Storage, split_s3_uri

        try:
            bucket, key = split_s3_uri(source)
        except StorageError as exc:
            raise ApiError(422, str(exc)) from None
        if bucket != ctx.settings.s3_bucket:
            raise ApiError(422, f"{source} is not in the configured bucket {ctx.settings.s3_bucket}",
                           "point CLIENTES_S3_BUCKET at it, or copy the object there")
        s3 = ctx.storage if isinstance(ctx.storage, S3Storage) else S3Storage.from_settings(ctx.settings, source)
        try:
            head = s3.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"}:
                raise ApiError(404, f"cannot read {source}: no such object") from None
            raise ApiError(503, f"cannot check {source}", scrub(f"{type(exc).__name__}: {exc}", ctx.secrets)) \
                from None
        version = head.get("VersionId") or str(head.get("ETag", "")).strip('"')
        identity = f"{bucket}\n{key}\n{head.get('VersionId') or ''}\n{head.get('ETag', '')}"
    elif source.startswith("file://") and isinstance(ctx.storage, LocalStorage) and ctx.storage.owns(source):
        from clientes_ingest.staging import local_path

        try:
            info = local_path(source).stat()
        except OSError:
            raise ApiError(404, f"cannot read {source}: no such file") from None
        version = f"{info.st_size}-{info.st_mtime_ns}"
        identity = f"{local_path(source).resolve()}\n{version}"
    else:
        raise ApiError(422, f"{source} is not an object of the configured storage",
                       f"use s3://{ctx.settings.s3_bucket}/... or a file:// URI under the storage root")
    return version, "api-run:" + hashlib.sha256(identity.encode()).hexdigest()


def _rejects_csv(engine: sa.Engine, job_id: int, reason: str | None, page: int = 5000) -> Iterator[bytes]:
    """Every reject of a job as CSV, read in keyset pages (no OFFSET scans) so it streams in bounded memory."""
    r = ingest_rejects.c
    yield b"line_number,reason,raw_line,raw_length\r\n"
    after = 0
    while True:
        query = sa.select(r.line_number, r.reason, r.raw_line, r.raw_length).where(
            r.job_id == job_id, r.line_number > after)
        if reason:
            query = query.where(r.reason == reason)
        with engine.connect() as conn:
            rows = conn.execute(query.order_by(r.line_number).limit(page)).all()
        if not rows:
            return
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        yield out.getvalue().encode("utf-8")
        after = rows[-1][0]


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
        from deployments.launch import prefect_api_configured

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
        except Exception as exc:
            results[name] = scrub(f"{type(exc).__name__}: {exc}", ctx.secrets)

    async with anyio.create_task_group() as group:
        for name, check in (("database", database), ("storage", storage), ("prefect", prefect)):
            group.start_soon(run, name, check)
    if ctx.runs_status not in ("ok", "starting"):  # e.g. the deployment was applied after start-up
        await run("runs", ctx.prepare_runs)
    results["runs"] = results.get("runs", ctx.runs_status)
    return {name: results[name] for name in ("database", "storage", "prefect", "runs")}


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

    parser = argparse.ArgumentParser(prog="clientes-ingest-api", description=__doc__.split("\n\n")[0])
    config = ApiConfig()
    parser.add_argument("--host", default=config.host,
                        help="interface to listen on (default CLIENTES_API_HOST or 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=config.port, help="default CLIENTES_API_PORT or 8000")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(args.log_level, secret_values(settings))
    app = create_app(settings=settings, config=config)
    app.state.ctx.freeze_gc = True
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, log_config=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
