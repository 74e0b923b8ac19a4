"""The physical references of issue #14 and the writer comparison: ``python -m bench.run --suite writers``.

A reference loads EXACTLY the tables a pipeline run produced (``clientes`` and ``ingest_rejects``, same
schema and keys, exported after the run) into an empty database with the project's schema, with the
database's own bulk tool:

* ``ref_pg_copy_csv`` / ``ref_pg_copy_binary``: ``psql \\copy ... FROM file (FORMAT csv|binary)``, one
  psql process per table (their seconds are summed; each table's share is kept apart, so the cost of
  the rejects is measured too).
* ``ref_sqlite_import``: ``sqlite3 .import`` (CSV) of the embedded run's two tables, one process.

The writers suite runs, on one file and in one session: ``core_pg`` (the default writer, binary COPY),
``core_pg_copy_csv`` (``CLIENTES_DB_WRITER=copy-csv``), both PostgreSQL references of ``core_pg``'s own
tables, ``core_pg_prefect_server`` (``core_pg`` against a Prefect server the bench started before, as a
deployed run talks to one, instead of Prefect's ephemeral API), ``core_sqlite_default`` (the default
writer, ADBC bulk ingest), ``core_sqlite_executemany`` (``CLIENTES_DB_WRITER=executemany``) and the
SQLite reference of the default run's tables. ``markdown`` renders the ratios of that one run.
Requires: psql and sqlite3 on PATH, PostgreSQL (``--pg-admin``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from clientes_ingest.db import Database

if TYPE_CHECKING:
    from bench.run import Bench

TABLES = ("clientes", "ingest_rejects")


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psql takes it (no ``+driver``)."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _table_counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {t: int(conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one()) for t in TABLES}


def pg_references(bench: Bench, source_url: str) -> dict[str, dict[str, Any]]:
    """Export a run's final tables (CSV and binary), then ``\\copy`` each into an empty database."""
    work = bench.scratch("ref_pg")
    expected = _table_counts(Database(source_url))
    for fmt in ("csv", "binary"):
        for table in TABLES:
            copy = f"\\copy {table} TO '{work / f'{table}.{fmt}'}' (FORMAT {fmt})"
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", libpq_url(source_url), "-c", copy],
                           check=True)
    cases: dict[str, dict[str, Any]] = {}
    for fmt in ("csv", "binary"):
        url = bench.fresh_pg(f"ref_{fmt}")
        try:
            target = Database(url)
            target.ensure_schema()
            parts = {}
            for table in TABLES:
                copy = f"\\copy {table} FROM '{work / f'{table}.{fmt}'}' (FORMAT {fmt})"
                parts[table] = bench.measure(f"ref_pg_copy_{fmt}_{table}", [
                    "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", libpq_url(url), "-c", copy])
            loaded = _table_counts(target)
            if loaded != expected:
                raise RuntimeError(f"reference {fmt} loaded {loaded}, the run's tables hold {expected}")
            cases[f"ref_pg_copy_{fmt}"] = combine(parts, rows=expected["clientes"])
        finally:
            bench.drop_pg(url)
    return cases


def sqlite_reference(bench: Bench, source: Path) -> dict[str, Any]:
    """Export the embedded run's two tables to CSV and ``.import`` them into an empty SQLite file."""
    work = bench.scratch("ref_sqlite")
    source_db = Database(f"sqlite:///{source}")
    expected = _table_counts(source_db)
    source_db.dispose()
    for table in TABLES:
        with (work / f"{table}.csv").open("wb") as out:
            subprocess.run(["sqlite3", "-csv", str(source), f"SELECT * FROM {table}"], stdout=out, check=True)
    target = work / "ref.db"
    target_db = Database(f"sqlite:///{target}")
    target_db.ensure_schema()
    target_db.dispose()
    commands = [".mode csv", *(f".import {work / f'{t}.csv'} {t}" for t in TABLES)]
    case = bench.measure("ref_sqlite_import", ["sqlite3", str(target), *commands], watch_server=False)
    target_db = Database(f"sqlite:///{target}")
    loaded = _table_counts(target_db)
    target_db.dispose()
    if loaded != expected:
        raise RuntimeError(f"sqlite3 .import loaded {loaded}, the run's tables hold {expected}")
    case["rows"] = expected["clientes"]
    return case


def combine(parts: dict[str, dict[str, Any]], *, rows: int) -> dict[str, Any]:
    """One reference case from its per-table processes: seconds and CPU summed, each table kept apart."""
    return {
        "wall_s": round(sum(p["wall_s"] for p in parts.values()), 2),
        "cpu_seconds_client": round(sum(p["cpu_seconds_client"] for p in parts.values()), 2),
        "cpu_seconds_server": round(sum(p["cpu_seconds_server"] for p in parts.values()), 2),
        "machine_busy_cpu_s": round(sum(p["machine_busy_cpu_s"] for p in parts.values()), 1),
        "peak_rss_mib_max_process": max(p["peak_rss_mib_max_process"] for p in parts.values()),
        "load_avg_before": min(p["load_avg_before"] for p in parts.values()),
        "rows": rows,
        "tables": {t: {k: p[k] for k in ("wall_s", "cpu_seconds_client", "cpu_seconds_server", "command")}
                   for t, p in parts.items()},
        "processes": [proc for p in parts.values() for proc in p.get("processes", [])],
    }


def run_writers(bench: Bench, data: Path, cases: dict[str, Any]) -> dict[str, Any]:
    """The writers suite on ``data`` (see the module docstring), into ``cases`` (saved after each)."""
    refs: dict[str, dict[str, Any]] = {}
    keep: Callable[[str], None] = lambda url: refs.update(pg_references(bench, url))  # noqa: E731
    cases["core_pg"] = bench.core_pg("core_pg", data, after=keep)
    cases.update(refs)
    bench.checkpoint()
    cases["core_pg_copy_csv"] = bench.core_pg("core_pg_copy_csv", data, writer="copy-csv")
    bench.checkpoint()
    from bench.server_mode import prefect_server  # it imports bench.run, which imports this module

    with prefect_server(bench.pipeline.bin_dir, bench.scratch("prefect_server_home")) as api_url:
        cases["core_pg_prefect_server"] = bench.core_pg("core_pg_prefect_server", data, prefect_api_url=api_url)
    bench.checkpoint()
    sqlite_ref: dict[str, Any] = {}
    cases["core_sqlite_default"] = bench.core_sqlite_default(
        "core_sqlite", data, after=lambda path: sqlite_ref.update(sqlite_reference(bench, path)))
    cases["ref_sqlite_import"] = sqlite_ref
    bench.checkpoint()
    cases["core_sqlite_executemany"] = bench.core_sqlite_default("core_sqlite_executemany", data,
                                                                 writer="executemany")
    bench.checkpoint()
    return cases


def lean_case(bench: Bench, label: str, data: Path, db: str, writer: str, chunks: int) -> dict[str, Any]:
    """``bench.cases lean-chunks``: the chunk loads alone (no Prefect, 2 chunks at a time) with one writer."""
    from bench.pipeline_env import REPO

    cmd = [bench.pipeline.python, "-m", "bench.cases", "lean-chunks", "--file", str(data), "--db", db,
           "--chunks", str(chunks), "--concurrency", "2", "--writer", writer]
    case = bench.measure(label, cmd, cwd=REPO, env=bench.pipeline_env(), watch_server=db.startswith("postgresql"))
    case["job"] = {"load_s": case["output"]["seconds"], "rows_loaded": case["output"]["rows"]}
    return case


def run_writers_lean(bench: Bench, data: Path, cases: dict[str, Any], chunks: int = 10**6) -> dict[str, Any]:
    """The writers suite without Prefect: each writer's chunk loads of the whole file (``lean-chunks``,
    no ephemeral API, no staging copy, no finalize) and the references of their own final tables."""
    url = bench.fresh_pg("lean_pg")
    try:
        cases["lean_pg"] = lean_case(bench, "lean_pg", data, url, "copy-binary", chunks)
        cases.update(pg_references(bench, url))
    finally:
        bench.drop_pg(url)
    bench.checkpoint()
    url = bench.fresh_pg("lean_pg_csv")
    try:
        cases["lean_pg_copy_csv"] = lean_case(bench, "lean_pg_copy_csv", data, url, "copy-csv", chunks)
    finally:
        bench.drop_pg(url)
    bench.checkpoint()
    for label, writer in (("lean_sqlite", "executemany"), ("lean_sqlite_adbc", "adbc")):
        home = bench.scratch(label)
        cases[label] = lean_case(bench, label, data, f"sqlite:///{home / 'clientes.db'}", writer, chunks)
        if writer == "executemany":
            cases["ref_sqlite_import"] = sqlite_reference(bench, home / "clientes.db")
        bench.checkpoint()
    return cases


def _r(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def markdown(size: str, cases: dict[str, Any]) -> list[str]:
    """The writers suite's table and the issue's ratios, every figure from this one run."""
    lines = [f"## Writers and physical references ({size})", "",
             "| workload | end to end s | load phase s | CPU s client | CPU s PostgreSQL | peak RSS MiB (max process) "
             "|",
             "|---|---:|---:|---:|---:|---:|"]
    for name, case in cases.items():
        load = case.get("job", {}).get("load_s")
        lines.append(f"| {name} | {case['wall_s']:.1f} | {'-' if load is None else f'{load:.1f}'} | "
                     f"{case['cpu_seconds_client']:.1f} | {case['cpu_seconds_server']:.1f} | "
                     f"{case['peak_rss_mib_max_process']:.0f} |")
    lines.append("")
    for name in ("ref_pg_copy_csv", "ref_pg_copy_binary"):
        tables = cases.get(name, {}).get("tables")
        if tables:
            lines.append(f"{name} per table: " + ", ".join(
                f"{t} {p['wall_s']:.1f} s wall / {p['cpu_seconds_server']:.1f} PostgreSQL CPU s"
                for t, p in tables.items()))
    lines += ["", "| ratio (same run) | value | target |", "|---|---:|---:|"]
    lean = "lean_pg" in cases
    # (binary COPY, CSV COPY, SQLite executemany, SQLite ADBC); the embedded default is ADBC
    names = ("lean_pg", "lean_pg_copy_csv", "lean_sqlite", "lean_sqlite_adbc") if lean else \
        ("core_pg", "core_pg_copy_csv", "core_sqlite_executemany", "core_sqlite_default")
    pg, csv_run, lite, adbc = (cases.get(n) for n in names)
    csv_ref, bin_ref = cases.get("ref_pg_copy_csv"), cases.get("ref_pg_copy_binary")
    ref = cases.get("ref_sqlite_import")
    if pg and csv_ref and bin_ref:
        load = pg["job"]["load_s"]
        lines += [f"| {names[0]} load phase / CSV \\copy of its tables | {_r(load, csv_ref['wall_s'])} | <= 1.00x |",
                  f"| {names[0]} load phase / binary \\copy of its tables | {_r(load, bin_ref['wall_s'])} | "
                  "<= 1.15x |"]
        if not lean:
            lines.append(f"| core_pg end to end / CSV \\copy of its tables | {_r(pg['wall_s'], csv_ref['wall_s'])} | "
                         "<= 1.30x |")
            served = cases.get("core_pg_prefect_server")
            if served:
                lines.append("| core_pg_prefect_server end to end / CSV \\copy of its tables | "
                             f"{_r(served['wall_s'], csv_ref['wall_s'])} | (as deployed) |")
    if pg and csv_run:
        lines.append(f"| load phase copy-binary / copy-csv | {_r(pg['job']['load_s'], csv_run['job']['load_s'])} | - |")
    for case, name in ((adbc, names[3]), (lite, names[2])):
        if case and ref:
            what = "load phase" if lean else "end to end"
            value = case["job"]["load_s"] if lean else case["wall_s"]
            lines.append(f"| {name} {what} / sqlite3 .import | {_r(value, ref['wall_s'])} | <= 1.50x |")
    if lite and adbc:
        lines.append(f"| load phase adbc / executemany | {_r(adbc['job']['load_s'], lite['job']['load_s'])} | - |")
    return lines + [""]
