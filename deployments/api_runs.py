"""The webhook API's endpoints that start runs: ``POST /process`` (a streamed multipart upload, stored,
hashed and planned in one pass) and ``POST /runs`` (an object already in storage, idempotent per object
version). Both pre-register the job, launch its run through ``deployments.launch`` and acknowledge.

The run reads exactly what the request named: an upload's job records its sha256, object version and
chunk plan (the run uses that plan and does not read or hash the file again); a ``/runs`` job and run are
pinned to the version the HEAD saw (version id and ETag).

Requires: the bearer token (``CLIENTES_API_TOKEN``), the storage and database of the ``CLIENTES_*``
settings; S3 objects must be in ``CLIENTES_S3_BUCKET`` or ``CLIENTES_ALLOWED_BUCKETS``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from python_multipart.multipart import parse_options_header
from sqlalchemy.exc import DBAPIError

from clientes_ingest import jobs
from clientes_ingest.chunks import ChunkPlanner
from clientes_ingest.jobs import StagedFile
from clientes_ingest.sources import SourcePolicy
from clientes_ingest.storage import LocalStorage, ObjectVersion, StorageError
from deployments.api_body import body_pieces, read_json
from deployments.api_context import ApiContext, CamelModel, scrub
from deployments.launch import LaunchError, pin_parameters
from deployments.upload import ENVELOPE_SLACK, ApiError, UploadReader, UploadTooLarge, upload_name

logger = logging.getLogger("clientes_ingest.api")

UPLOADS_FULL_RETRY_AFTER = 10  # seconds a client refused for a full upload queue is asked to wait


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


def store_upload(ctx: ApiContext, pull: Callable[[], bytes | None], boundary: bytes) -> StagedFile:
    """Stream the ``file`` part into storage, hashing it and planning its chunks (run in a thread)."""
    reader = UploadReader(pull, boundary, ctx.config.max_upload_bytes)
    name = upload_name(reader.open_file())
    planner = ChunkPlanner(ctx.settings.chunk_size)
    try:
        stored = ctx.storage.store(reader, name, planner.feed)
    except StorageError as exc:
        raise ApiError(503, "cannot store the upload", scrub(str(exc), ctx.secrets)) from None
    reader.drain()
    chunks = tuple(planner.finish())
    return StagedFile(uri=stored.uri, name=stored.name, size=stored.size, sha256=stored.sha256,
                      chunk_size=ctx.settings.chunk_size, chunks=chunks, total_lines=planner.total_lines,
                      version=stored.version)


def runs_router(ctx: ApiContext) -> APIRouter:
    """``POST /process`` and ``POST /runs``, both behind the bearer token."""
    router = APIRouter(tags=["runs"], dependencies=[Depends(ctx.require_token)])

    @router.post("/process", status_code=202, response_model=ProcessResponse,
                 openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                     "type": "object", "required": ["file"],
                     "properties": {"file": {"type": "string", "format": "binary"}}}}}}})
    async def process(request: Request) -> JSONResponse:
        """Upload a CLIENTES file (multipart field ``file``); it is stored, and an ingest run starts."""
        return await process_upload(ctx, request)

    # The body is read by the endpoint (read_json), after the token check: a FastAPI body parameter
    # would be read and parsed before the route's dependencies run.
    @router.post("/runs", response_model=RunResponse,
                 responses={200: {"description": "this object version already has a run"},
                            202: {"description": "run created"}, 413: {"description": "JSON body too large"}},
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/json": {"schema": RunRequest.model_json_schema()}}}})
    async def runs(request: Request) -> JSONResponse:
        """Start a run for an object already in storage; the same object version always answers the same run."""
        return await start_run(ctx, request)

    return router


async def process_upload(ctx: ApiContext, request: Request) -> JSONResponse:
    """``POST /process``: admit the upload, store, hash and plan it in a thread, then start its run."""
    boundary = _admit_upload(ctx, request)
    upload = await _receive_upload(ctx, request, boundary)
    if upload.size == 0:
        raise ApiError(422, f"{upload.name} is empty", "upload a file with at least one line")
    job_id, result = await anyio.to_thread.run_sync(_start, ctx, upload.uri, upload.name, None, upload)
    ctx.metrics.runs.labels("/process", result.mode).inc()
    logger.info("upload %s (%d bytes, %d lines) -> job %d, run %s", upload.name, upload.size,
                upload.total_lines, job_id, result.flow_run_id)
    body = ProcessResponse(job_id=job_id, flow_run_id=result.flow_run_id, total_lines=upload.total_lines,
                           chunks_created=len(upload.chunks), chunk_size=ctx.settings.chunk_size,
                           file_name=upload.name, size_bytes=upload.size, sha256=upload.sha256,
                           mode=result.mode)
    return JSONResponse(body.model_dump(by_alias=True), 202)


def _admit_upload(ctx: ApiContext, request: Request) -> bytes:
    """The upload's multipart boundary, once its type, declared length and the upload queue admit it."""
    config = ctx.config
    media, options = parse_options_header(request.headers.get("content-type", ""))
    if media != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(415, "expected a multipart/form-data upload",
                       'send the file as the form field "file", e.g. curl -F "file=@CLIENTES_IN_0425.dat"')
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > config.max_upload_bytes + ENVELOPE_SLACK:
        raise UploadTooLarge(config.max_upload_bytes)
    admitted = config.max_concurrent_uploads + config.max_queued_uploads
    if ctx.uploads_in_progress >= admitted:  # checked on the event loop: no race with the += of _receive_upload
        raise ApiError(503, f"too many uploads in progress ({admitted})", "retry after the Retry-After seconds",
                       headers={"Retry-After": str(UPLOADS_FULL_RETRY_AFTER), "Connection": "close"})
    boundary: bytes = options[b"boundary"]
    return boundary


async def _receive_upload(ctx: ApiContext, request: Request, boundary: bytes) -> StagedFile:
    """Stream the request body to ``store_upload`` in a worker thread (one of ``upload_limiter``'s slots)."""
    pieces = body_pieces(request, ctx.config.body_idle_timeout).__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await pieces.__anext__()
        except StopAsyncIteration:
            return None

    def pull() -> bytes | None:
        return anyio.from_thread.run(next_chunk)

    ctx.metrics.uploads_active.inc()
    ctx.uploads_in_progress += 1
    try:
        upload: StagedFile = await anyio.to_thread.run_sync(store_upload, ctx, pull, boundary,
                                                            limiter=ctx.upload_limiter)
    finally:
        ctx.metrics.uploads_active.dec()
        ctx.uploads_in_progress -= 1
    ctx.metrics.uploads.inc()
    ctx.metrics.upload_bytes.inc(upload.size)
    return upload


async def start_run(ctx: ApiContext, request: Request) -> JSONResponse:
    """``POST /runs``: start (or find) the run of the object version the request names."""
    body = await read_json(request, RunRequest, ctx.config.max_json_bytes, ctx.config.body_idle_timeout)
    version, key, pinned = await anyio.to_thread.run_sync(_object_version, ctx, body.source)
    existing = await anyio.to_thread.run_sync(ctx.launcher.find, key)
    if existing is None:
        job_id, result = await anyio.to_thread.run_sync(_start, ctx, body.source,
                                                        body.source.rsplit("/", 1)[-1], key, None, pinned)
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


def _start(ctx: ApiContext, source: str, name: str, key: str | None, staged: StagedFile | None = None,
           version: ObjectVersion | None = None) -> tuple[int, Any]:
    """Pre-register the job (with the upload's plan, or the object version), then launch its run pinned
    to that content and version; a run that cannot start fails the job (503)."""
    version = version or (staged.version if staged is not None else None)
    try:
        job_id = jobs.create_pending_job(ctx.engine(), source, name[:255], staged=staged, version=version)
    except DBAPIError as exc:
        raise ctx.db_unavailable(exc) from None
    try:
        result = ctx.launcher.launch(source, job_id=job_id, idempotency_key=key,
                                     chunk_size=str(ctx.settings.chunk_size),
                                     pin=pin_parameters(staged.sha256 if staged is not None else None, version))
    except LaunchError as exc:
        message = scrub(str(exc), ctx.secrets)
        jobs.fail_job(ctx.db.engine, job_id, f"could not start the ingest run: {message}")
        raise ApiError(503, "cannot start the ingest run", message) from None
    return job_id, result


def _object_version(ctx: ApiContext, source: str) -> tuple[str, str, ObjectVersion | None]:
    """The object's version (S3 VersionId or ETag; local size+mtime), the run's idempotency key, and the
    version the run is pinned to."""
    if source.startswith("s3://"):
        from clientes_ingest.resources import open_storage
        from clientes_ingest.s3 import S3Storage, split_s3_uri

        try:
            bucket, key = split_s3_uri(source)
        except StorageError as exc:
            raise ApiError(422, str(exc)) from None
        if not SourcePolicy.from_settings(ctx.settings).bucket_allowed(bucket):
            raise ApiError(422, f"{source} is not in an allowed bucket",
                           "copy the object to CLIENTES_S3_BUCKET, or list its bucket in CLIENTES_ALLOWED_BUCKETS")
        s3 = ctx.storage if isinstance(ctx.storage, S3Storage) else open_storage(ctx.settings, source)
        assert isinstance(s3, S3Storage)  # an s3:// source without an S3 block opens S3 storage
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
        pinned = ObjectVersion.of(head.get("VersionId"), head.get("ETag"))
    elif source.startswith("file://") and isinstance(ctx.storage, LocalStorage) and ctx.storage.owns(source):
        from clientes_ingest.staging import local_path

        try:
            info = local_path(source).stat()
        except OSError:
            raise ApiError(404, f"cannot read {source}: no such file") from None
        version = f"{info.st_size}-{info.st_mtime_ns}"
        identity = f"{local_path(source).resolve()}\n{version}"
        pinned = ObjectVersion(etag=version)  # what LocalStorage.pin compares
    else:
        raise ApiError(422, f"{source} is not an object of the configured storage",
                       f"use s3://{ctx.settings.s3_bucket}/... or a file:// URI under the storage root")
    return version, "api-run:" + hashlib.sha256(identity.encode()).hexdigest(), pinned

