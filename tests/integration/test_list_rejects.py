"""``job_queries.list_rejects`` pages a job's rejects by keyset (after a line number), ``reject_pages`` walks them
all, ``reject_line_at`` turns an offset into a cursor: every reject exactly once, in line order, on SQLite
and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from clientes_ingest import job_queries, jobs
from clientes_ingest.db import Database, ingest_rejects

REASONS = ("field_count", "dni", "fecha_ingreso")


def add_rejects(db: Database, count: int, *, first_line: int = 1) -> tuple[int, list[dict[str, Any]]]:
    """A job with ``count`` rejects on scattered line numbers (gaps of 1 to 3 lines), three reasons."""
    db.ensure_schema()
    job_id = jobs.create_pending_job(db.engine, "file:///tmp/x.dat", "x.dat")
    expected, line = [], first_line
    for i in range(count):
        raw = f'Ana|Pé,rez "{i}"|{10_000_000 + i}|Activo|13/1/2020|true|'
        expected.append({"line_number": line, "reason": REASONS[i % 3], "raw_line": raw, "raw_length": len(raw)})
        line += 1 + i % 3
    with db.engine.begin() as conn:
        conn.execute(ingest_rejects.insert(), [{"job_id": job_id, "chunk_no": 0, **r} for r in expected])
    return job_id, expected


@pytest.fixture
def db(db_url: str) -> Database:
    return Database(db_url)


def test_cursor_pages_return_every_reject_once_in_line_order(db: Database) -> None:
    job_id, expected = add_rejects(db, 1234)
    other_job, _ = add_rejects(db, 50)  # same line numbers in another job: never mixed in
    got: list[dict[str, Any]] = []
    after: int | None = None
    pages = 0
    while page := job_queries.list_rejects(db.engine, job_id, after=after, limit=100):
        assert len(page) <= 100
        got += page
        after = page[-1]["line_number"]
        pages += 1
    assert got == expected and pages == 13
    assert len(job_queries.list_rejects(db.engine, other_job, limit=1000)) == 50


def test_a_reason_filter_pages_through_its_rejects_only(db: Database) -> None:
    job_id, expected = add_rejects(db, 400)
    wanted = [r for r in expected if r["reason"] == "dni"]
    got: list[dict[str, Any]] = []
    after: int | None = None
    while page := job_queries.list_rejects(db.engine, job_id, after=after, limit=7, reason="dni"):
        got += page
        after = page[-1]["line_number"]
    assert got == wanted
    assert job_queries.list_rejects(db.engine, job_id, reason="no_such_reason") == []


@pytest.mark.parametrize("page_size", [1, 50, 100, 101, 5000])
def test_reject_pages_walks_them_all_whatever_the_page_size(db: Database, page_size: int) -> None:
    job_id, expected = add_rejects(db, 100)  # 100 is a multiple of some page sizes: no empty last page
    pages = list(job_queries.reject_pages(db.engine, job_id, page_size=page_size))
    assert [r for page in pages for r in page] == expected
    assert all(pages) and len(pages) == -(-100 // page_size)
    assert list(job_queries.reject_pages(db.engine, job_id, reason="dni", page_size=page_size)) != []
    assert [r for p in job_queries.reject_pages(db.engine, job_id, reason="dni", page_size=page_size) for r in p] == [
        r for r in expected if r["reason"] == "dni"]


def test_an_offset_becomes_the_cursor_of_the_same_page(db: Database) -> None:
    job_id, expected = add_rejects(db, 300, first_line=7)
    for offset in (1, 99, 100, 299):
        after = job_queries.reject_line_at(db.engine, job_id, offset - 1)
        assert after == expected[offset - 1]["line_number"]
        assert job_queries.list_rejects(db.engine, job_id, after=after, limit=50) == expected[offset:offset + 50]
    assert job_queries.reject_line_at(db.engine, job_id, 300) is None
    dni = [r for r in expected if r["reason"] == "dni"]
    assert job_queries.reject_line_at(db.engine, job_id, 10, reason="dni") == dni[10]["line_number"]


def test_the_cli_first_rejects_are_the_first_page(db: Database) -> None:
    job_id, expected = add_rejects(db, 30)
    assert job_queries.list_rejects(db.engine, job_id, limit=10) == expected[:10]  # `clientes-ingest show --rejects 10`
