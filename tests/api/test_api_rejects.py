"""``GET /jobs/{id}/rejects`` on SQLite and PostgreSQL: JSON pages followed by cursor (``nextAfter``) or by
offset (``nextOffset``, kept for older clients) and the CSV export, all read through ``job_queries.list_rejects``,
give every reject exactly once, in line order, across many pages."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clientes_ingest import jobs
from clientes_ingest.db import Database, ingest_rejects
from deployments.api import create_app

REASONS = ("field_count", "dni", "fecha_ingreso")
COUNT = 12_001  # over two CSV pages of 5000 and twelve JSON pages of 1000


class NoLaunches:
    """These tests start no runs."""


TOKEN = "rejects-token-81d2"


@pytest.fixture
def api(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[TestClient]:
    monkeypatch.setenv("CLIENTES_DB_URL", db_url)
    monkeypatch.setenv("CLIENTES_STORAGE", "local")
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("CLIENTES_API_TOKEN", TOKEN)
    app = create_app(launcher=NoLaunches())  # type: ignore[arg-type]
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture
def job(db_url: str) -> tuple[int, list[tuple[Any, ...]]]:
    """A job with COUNT rejects on scattered line numbers, raw lines that need CSV quoting."""
    db = Database(db_url)
    db.ensure_schema()
    job_id = jobs.create_pending_job(db.engine, "file:///tmp/x.dat", "x.dat")
    other = jobs.create_pending_job(db.engine, "file:///tmp/y.dat", "y.dat")
    expected, line = [], 1
    for i in range(COUNT):
        raw = f'Ana|Pé,rez "{i}"|{10_000_000 + i}|Activo|13/1/2020|true|'
        expected.append((line, REASONS[i % 3], raw, len(raw)))
        line += 1 + i % 3
    columns = ("line_number", "reason", "raw_line", "raw_length")
    with db.engine.begin() as conn:
        for owner in (job_id, other):  # the other job's rejects share line numbers: never mixed in
            conn.execute(ingest_rejects.insert(),
                         [{"job_id": owner, "chunk_no": 0, **dict(zip(columns, r, strict=True))} for r in expected])
    db.dispose()
    return job_id, expected


def items(page: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(i["lineNumber"], i["reason"], i["rawLine"], i["rawLength"]) for i in page["items"]]


def test_following_next_after_gives_every_reject_once_in_order(api: TestClient, job: tuple[int, list]) -> None:
    job_id, expected = job
    got: list[tuple[Any, ...]] = []
    params: dict[str, Any] = {"limit": 1000}
    pages = 0
    while True:
        response = api.get(f"/jobs/{job_id}/rejects", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == COUNT and page["after"] == params.get("after")
        assert page["offset"] == (0 if pages == 0 else None) and page["nextOffset"] in (None, 1000)
        got += items(page)
        pages += 1
        if page["nextAfter"] is None:
            break
        params["after"] = page["nextAfter"]
    assert got == expected and pages == 13


def test_offset_paging_still_works_and_matches_the_cursor_pages(api: TestClient, job: tuple[int, list]) -> None:
    job_id, expected = job
    got: list[tuple[Any, ...]] = []
    offset: int | None = 0
    while offset is not None:
        page = api.get(f"/jobs/{job_id}/rejects", params={"offset": offset, "limit": 1000}).json()
        assert page["offset"] == offset and page["after"] is None
        got += items(page)
        if page["nextOffset"] is not None:  # offset pages name their cursor too, to switch over
            assert page["nextAfter"] == got[-1][0] and page["nextOffset"] == len(got)
        offset = page["nextOffset"]
    assert got == expected

    last = api.get(f"/jobs/{job_id}/rejects", params={"offset": COUNT - 1000, "limit": 1000}).json()
    assert items(last) == expected[-1000:] and last["nextOffset"] is None and last["nextAfter"] is None
    beyond = api.get(f"/jobs/{job_id}/rejects", params={"offset": COUNT + 5}).json()
    assert beyond["items"] == [] and beyond["nextOffset"] is None and beyond["nextAfter"] is None


def test_a_reason_filter_pages_by_cursor_and_the_csv_exports_everything(api: TestClient,
                                                                        job: tuple[int, list]) -> None:
    job_id, expected = job
    dni = [r for r in expected if r[1] == "dni"]
    got: list[tuple[Any, ...]] = []
    params: dict[str, Any] = {"limit": 999, "reason": "dni"}
    while True:
        page = api.get(f"/jobs/{job_id}/rejects", params=params).json()
        assert page["total"] == len(dni) and page["reason"] == "dni"
        got += items(page)
        if page["nextAfter"] is None:
            break
        params["after"] = page["nextAfter"]
    assert got == dni

    download = api.get(f"/jobs/{job_id}/rejects", params={"format": "csv"})
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(download.text)))
    assert table[0] == ["line_number", "reason", "raw_line", "raw_length"]
    assert [(int(a), b, c, int(d)) for a, b, c, d in table[1:]] == expected
    filtered = list(csv.reader(io.StringIO(api.get(f"/jobs/{job_id}/rejects?format=csv&reason=dni").text)))
    assert [(int(a), b, c, int(d)) for a, b, c, d in filtered[1:]] == dni


def test_after_and_offset_together_are_refused(api: TestClient, job: tuple[int, list]) -> None:
    job_id, _ = job
    response = api.get(f"/jobs/{job_id}/rejects", params={"after": 10, "offset": 5})
    assert response.status_code == 422
    assert response.json()["error"] == "pass either after or offset, not both"
    assert api.get(f"/jobs/{job_id}/rejects", params={"after": -1}).status_code == 422
