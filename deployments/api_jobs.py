"""The webhook API's read endpoints: ``GET /jobs/{id}`` (status, counts, per-chunk progress) and
``GET /jobs/{id}/rejects`` (JSON pages, or every matching reject as a streamed CSV whose cells cannot
run as spreadsheet formulas).

Requires: the database of the ``CLIENTES_*`` settings and the bearer token (rejects hold personal data;
``CLIENTES_API_AUTH_READS=false`` opens these reads on a local dev API only).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field
from sqlalchemy.exc import DBAPIError

from clientes_ingest import job_queries
from deployments.api_context import ApiContext, CamelModel, scrub
from deployments.upload import ApiError

MAX_REJECTS_PAGE = 1000
MAX_KEY = 2**63 - 1  # largest BIGINT: a larger id, cursor or offset is a 422, not a driver overflow (500)
JOB_ID = Path(ge=1, le=MAX_KEY, description="the jobId of POST /process or POST /runs")


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


# The fields of a job_queries.JobSummary that GET /jobs/{id} shows, and no other: its source URI, owner
# process and heartbeat stay out of the API until a field here names them.
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
    rejects_not_stored: int = Field(default=0, description="rejects counted (in rowsRejected and rejectsByReason) "
                                    "but not stored: over CLIENTES_MAX_STORED_REJECTS")
    chunks: list[ChunkProgress]


class RejectItem(CamelModel):
    line_number: int
    reason: str
    raw_line: str
    raw_length: int


class RejectsPage(CamelModel):
    job_id: int
    offset: int | None = Field(description="the offset asked for; null when the page was asked with after")
    after: int | None = Field(description="the cursor asked for (line number), or null")
    limit: int
    reason: str | None
    total: int
    items: list[RejectItem]
    next_offset: int | None = Field(description="offset of the next page (offset paging only); null at the end")
    next_after: int | None = Field(description="cursor of the next page: pass it as after; null at the end")


def jobs_router(ctx: ApiContext) -> APIRouter:
    """``GET /jobs/{id}`` and ``GET /jobs/{id}/rejects``, behind the token unless ``CLIENTES_API_AUTH_READS=false``."""
    router = APIRouter(tags=["jobs"], dependencies=[Depends(ctx.require_read)])

    @router.get("/jobs/{job_id}", response_model=JobResponse, responses={404: {"description": "no such job"}})
    def get_job(job_id: int = JOB_ID) -> JobResponse:
        """A job's status and counts, its rejects by reason and per-chunk progress."""
        engine = ctx.engine()
        summary = _read_job(ctx, job_id)
        try:
            chunks = job_queries.job_chunks(engine, job_id)
        except DBAPIError as exc:
            raise ctx.db_unavailable(exc) from None
        return JobResponse.model_validate(summary.as_dict() | {
            "error": scrub(summary.error, ctx.secrets) if summary.error else None, "chunks": chunks})

    @router.get("/jobs/{job_id}/rejects", response_model=RejectsPage,
                responses={200: {"content": {"text/csv": {}}}})
    def get_rejects(
        job_id: int = JOB_ID,
        after: int | None = Query(None, ge=0, le=MAX_KEY, description="cursor: the nextAfter of the previous page "
                                                                     "(a line number); every page then costs the same"),
        offset: int = Query(0, ge=0, le=MAX_KEY, description="rejects to skip (scans them); prefer after"),
        limit: int = Query(100, ge=1, le=MAX_REJECTS_PAGE),
        reason: str | None = Query(None, max_length=32, description="only this reason code"),
        format: Literal["json", "csv"] = Query("json", description="csv: every matching reject, streamed"),  # noqa: A002
    ) -> Response:
        """A page of a job's rejects in line order (follow ``nextAfter``); ``format=csv`` downloads all of them."""
        engine = ctx.engine()
        summary = _read_job(ctx, job_id)
        if format == "csv":
            disposition = f'attachment; filename="job-{job_id}-rejects.csv"'
            return StreamingResponse(_rejects_csv(engine, job_id, reason), media_type="text/csv; charset=utf-8",
                                     headers={"Content-Disposition": disposition})
        if after is not None and offset:
            raise ApiError(422, "pass either after or offset, not both",
                           "follow nextAfter from the previous page (or nextOffset, with offset alone)")
        try:
            items, more = _rejects_page(engine, job_id, after, offset, limit, reason)
        except DBAPIError as exc:
            raise ctx.db_unavailable(exc) from None
        total = summary.rejects_by_reason.get(reason, 0) if reason else sum(summary.rejects_by_reason.values())
        by_offset = after is None
        page = RejectsPage(job_id=job_id, offset=offset if by_offset else None, after=after, limit=limit,
                           reason=reason, total=total, items=[RejectItem.model_validate(i) for i in items],
                           next_offset=offset + len(items) if by_offset and more else None,
                           next_after=items[-1]["line_number"] if more else None)
        return JSONResponse(page.model_dump(by_alias=True))

    return router


def _read_job(ctx: ApiContext, job_id: int) -> job_queries.JobSummary:
    try:
        return job_queries.get_job(ctx.db.engine, job_id)
    except job_queries.JobError as exc:
        raise ApiError(404, str(exc), "list jobs with `clientes-ingest jobs`") from None
    except DBAPIError as exc:
        raise ctx.db_unavailable(exc) from None


def _rejects_page(engine: sa.Engine, job_id: int, after: int | None, offset: int, limit: int,
                  reason: str | None) -> tuple[list[dict[str, Any]], bool]:
    """One page of ``job_queries.list_rejects`` (an offset becomes its cursor first) and whether more follow."""
    if offset:
        after = job_queries.reject_line_at(engine, job_id, offset - 1, reason=reason)
        if after is None:  # past the last reject
            return [], False
    rows = job_queries.list_rejects(engine, job_id, after=after, limit=limit + 1, reason=reason)
    return rows[:limit], len(rows) > limit


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula, prefixed with ``'`` (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _rejects_csv(engine: sa.Engine, job_id: int, reason: str | None) -> Iterator[bytes]:
    """Every matching reject as CSV, one ``job_queries.reject_pages`` page at a time (bounded memory)."""
    yield b"line_number,reason,raw_line,raw_length\r\n"
    for rows in job_queries.reject_pages(engine, job_id, reason=reason):
        out = io.StringIO()
        csv.writer(out).writerows((r["line_number"], csv_cell(r["reason"]), csv_cell(r["raw_line"]), r["raw_length"])
                                  for r in rows)
        yield out.getvalue().encode("utf-8")
