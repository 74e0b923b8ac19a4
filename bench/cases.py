"""The workloads the benchmark compares, each run as its own process so its memory and CPU are its own:
``python -m bench.cases NAME ...`` prints one JSON line (rows, seconds, details) as its last output.

* ``copy-limit``: PostgreSQL ``COPY FROM STDIN`` of the pre-cleaned valid rows (bench.prepare), in
  ``--streams`` parallel connections: what the database can ingest at best.
* ``executemany-limit``: SQLite, a bare ``executemany`` of the same rows (csv reader -> sqlite3).
* ``original-design``: the design the project replaced: every worker re-reads the WHOLE file to find
  its 10k-line chunk, validates line by line and inserts 100-row batches. Measured on a few chunks
  and extrapolated to the whole file.
* ``lean-chunks``: the pipeline's chunk work (``loader.load_chunk``) for the first ``--chunks`` chunks in a
  process that never imports Prefect: what a chunk costs in memory and CPU by itself, and the base of
  the per-pod throughput figure (run pinned to one core with ``taskset``).
* ``pandas-naive``: ``pandas.read_csv`` + validation + ``to_sql(method="multi")`` on the first lines
  of the file, extrapolated to the whole file.

The pipeline itself is run through its real command (``clientes-ingest run``) by bench.run.
Requires: the database named by ``--db`` with the project's schema (created here when missing).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from clientes_ingest.db import CLIENTES_COLUMNS, Database, clientes, ingest_rejects
from clientes_ingest.rules import Reject, parse_line
from clientes_ingest.settings import parse_size

COPY_BLOCK = 8 << 20


def count_lines(path: Path) -> int:
    """Lines of a file (a last line without ``\\n`` counts)."""
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        while block := handle.read(COPY_BLOCK):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def split_points(path: Path, parts: int) -> list[int]:
    """Byte offsets cutting a file into ``parts`` ranges that start on line starts."""
    size = path.stat().st_size
    points = [0]
    with path.open("rb") as handle:
        for k in range(1, parts):
            handle.seek(size * k // parts)
            handle.readline()
            points.append(handle.tell())
    return points + [size]


def copy_limit(clean: Path, db_url: str, streams: int) -> dict[str, Any]:
    """COPY the clean rows into ``clientes`` through ``streams`` connections at once."""
    import psycopg

    db = Database(db_url)
    db.ensure_schema()
    dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    points = split_points(clean, streams)
    columns = ", ".join(f'"{c}"' for c in CLIENTES_COLUMNS)
    errors: list[BaseException] = []

    def load(start: int, end: int) -> None:
        try:
            with psycopg.connect(dsn) as conn, conn.cursor() as cursor, clean.open("rb") as handle:
                handle.seek(start)
                with cursor.copy(f"COPY clientes ({columns}) FROM STDIN (FORMAT csv)") as copy:
                    left = end - start
                    while left > 0:
                        block = handle.read(min(COPY_BLOCK, left))
                        left -= len(block)
                        copy.write(block)
        except BaseException as exc:
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=load, args=(points[i], points[i + 1])) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(clientes)).scalar_one()
    return {"rows": rows, "seconds": seconds, "streams": streams}


def _clean_rows(clean: Path) -> Iterator[tuple[Any, ...]]:
    with clean.open(newline="", encoding="utf-8") as handle:
        for job, line, name, dni, estado, fecha, pep, so in csv.reader(handle):
            yield (int(job), int(line), name, int(dni), estado, fecha, pep == "true",
                   None if so == "" else so == "true")


def executemany_limit(clean: Path, db_url: str) -> dict[str, Any]:
    """SQLite: one transaction, one ``executemany`` streaming the clean rows (same table, same key)."""
    db = Database(db_url)
    db.ensure_schema()
    db.dispose()
    path = db.url.database
    assert path
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # what the project's engine sets
    columns = ", ".join(f'"{c}"' for c in CLIENTES_COLUMNS)
    sql = f"INSERT INTO clientes ({columns}) VALUES ({', '.join('?' * len(CLIENTES_COLUMNS))})"
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(sql, _clean_rows(clean))
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    rows = conn.execute("SELECT count(*) FROM clientes").fetchone()[0]
    conn.close()
    return {"rows": rows, "seconds": seconds}


def original_design(path: Path, db_url: str, chunks: int, chunk_lines: int, batch: int) -> dict[str, Any]:
    """Time ``chunks`` chunks of the original design; extrapolate to every chunk of the file."""
    db = Database(db_url)
    db.ensure_schema()
    total_lines = count_lines(path)
    chunk_count = -(-total_lines // chunk_lines)
    picks = sorted({round(i * (chunk_count - 1) / max(chunks - 1, 1)) for i in range(chunks)})
    rows = rejected = 0
    started = time.perf_counter()
    for index in picks:
        low, high = index * chunk_lines, (index + 1) * chunk_lines
        valid: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []
        with path.open("rb") as handle:  # the whole file, every time: each worker finds its lines itself
            for number, raw in enumerate(handle):
                if not low <= number < high:
                    continue
                parsed = parse_line(raw.rstrip(b"\n"), file_start=number == 0)
                if parsed is None:
                    continue
                if isinstance(parsed, Reject):
                    bad.append({"job_id": 1, "line_number": number + 1, "chunk_no": index, "reason": parsed.reason,
                                "raw_line": parsed.raw_line, "raw_length": parsed.raw_length})
                else:
                    valid.append({"JobId": 1, "LineNumber": number + 1, "NombreCompleto": parsed.nombre_completo,
                                  "DNI": parsed.dni, "Estado": parsed.estado, "FechaIngreso": parsed.fecha_ingreso,
                                  "EsPEP": parsed.es_pep, "EsSujetoObligado": parsed.es_sujeto_obligado})
        with db.engine.begin() as conn:
            for table, items in ((clientes, valid), (ingest_rejects, bad)):
                for i in range(0, len(items), batch):
                    conn.execute(table.insert(), items[i : i + batch])
        rows += len(valid)
        rejected += len(bad)
    seconds = time.perf_counter() - started
    per_chunk = seconds / len(picks)
    return {"rows": rows, "rejects": rejected, "seconds": seconds, "measured_chunks": len(picks),
            "chunk_count": chunk_count, "total_lines": total_lines, "seconds_per_chunk": per_chunk,
            "extrapolated_seconds": per_chunk * chunk_count,
            "extrapolated_rows": round(rows * chunk_count / len(picks))}


def lean_chunks(path: Path, db_url: str, chunks: int, chunk_size: int, block_size: int,
                concurrency: int, writer: str = "auto") -> dict[str, Any]:
    """Stage in place (no copy) and load the first ``chunks`` chunks with ``concurrency`` threads, no Prefect."""
    from concurrent.futures import ThreadPoolExecutor

    import psutil

    from clientes_ingest import jobs, loader, staging
    from clientes_ingest.storage import LocalStorage

    db = Database(db_url, writer=writer)
    db.ensure_schema()
    storage = LocalStorage(path.parent)
    registration = jobs.register_job(db.engine, staging.stage_source(path.resolve().as_uri(), storage, chunk_size))
    picked = registration.pending[:chunks]
    rss_before = psutil.Process().memory_info().rss
    cpu_before = time.process_time()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda c: loader.load_chunk(db, storage, registration.job_id, registration.uri, c,
                                                            block_size=block_size, max_line_bytes=1 << 20), picked))
    seconds = time.perf_counter() - started
    return {"rows": sum(r.rows_loaded for r in results), "rejects": sum(r.rows_rejected for r in results),
            "bytes": sum(c.size for c in picked), "seconds": seconds, "cpu_seconds": time.process_time() - cpu_before,
            "rss_before_load_mib": round(rss_before / 2**20, 1),
            "peak_rss_mib": round(max(r.peak_rss_bytes for r in results) / 2**20, 1),
            "writer": db.writer, "chunks": len(picked), "chunk_size": chunk_size, "block_size": block_size,
            "concurrency": concurrency,
            "affinity": sorted(psutil.Process().cpu_affinity() or []),
            # Which install ran (bench.pipeline_env) and whether pandas got loaded (pyarrow pulls it in when present).
            "clientes_ingest_path": str(Path(loader.__file__).parent), "pandas_imported": "pandas" in sys.modules}


def pandas_naive(path: Path, db_url: str, lines: int) -> dict[str, Any]:
    """read_csv + validation + to_sql(method='multi') on the first ``lines`` lines; extrapolated."""
    import pandas as pd

    db = Database(db_url)
    names = ["nombre", "apellido", "dni", "estado", "fecha", "pep", "sujeto"]
    total_lines = count_lines(path)
    started = time.perf_counter()
    frame = pd.read_csv(path, sep="|", header=None, names=names, dtype=str, nrows=lines, keep_default_na=False,
                        on_bad_lines="skip", engine="c", quoting=csv.QUOTE_NONE, encoding_errors="replace")
    frame["NombreCompleto"] = frame["nombre"].str.strip() + " " + frame["apellido"].str.strip()
    frame["DNI"] = pd.to_numeric(frame["dni"], errors="coerce")
    frame["FechaIngreso"] = pd.to_datetime(frame["fecha"], format="%m/%d/%Y", errors="coerce").dt.date
    frame["EsPEP"] = frame["pep"].str.lower().map({"true": True, "false": False})
    frame["EsSujetoObligado"] = frame["sujeto"].str.lower().map({"true": True, "false": False, "": None})
    ok = (frame["nombre"].str.strip() != "") & (frame["apellido"].str.strip() != "") & \
         (frame["NombreCompleto"].str.len() <= 100) & frame["DNI"].notna() & (frame["DNI"] > 0) & \
         frame["estado"].isin(["Activo", "Inactivo"]) & frame["FechaIngreso"].notna() & frame["EsPEP"].notna()
    valid = frame.loc[ok, ["NombreCompleto", "DNI", "estado", "FechaIngreso", "EsPEP", "EsSujetoObligado"]]
    valid = valid.rename(columns={"estado": "Estado"})
    valid.to_sql("clientes_pandas", db.engine, if_exists="replace", index=False, method="multi", chunksize=1000)
    seconds = time.perf_counter() - started
    per_line = seconds / lines
    return {"rows": int(ok.sum()), "lines": lines, "seconds": seconds, "total_lines": total_lines,
            "extrapolated_seconds": per_line * total_lines,
            "extrapolated_rows": round(int(ok.sum()) * total_lines / lines)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cases", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="case", required=True)
    copy = sub.add_parser("copy-limit")
    copy.add_argument("--clean", type=Path, required=True)
    copy.add_argument("--db", required=True)
    copy.add_argument("--streams", type=int, default=1)
    many = sub.add_parser("executemany-limit")
    many.add_argument("--clean", type=Path, required=True)
    many.add_argument("--db", required=True)
    orig = sub.add_parser("original-design")
    orig.add_argument("--file", type=Path, required=True)
    orig.add_argument("--db", required=True)
    orig.add_argument("--chunks", type=int, default=3)
    orig.add_argument("--chunk-lines", type=int, default=10_000)
    orig.add_argument("--batch", type=int, default=100)
    lean = sub.add_parser("lean-chunks")
    lean.add_argument("--file", type=Path, required=True)
    lean.add_argument("--db", required=True)
    lean.add_argument("--chunks", type=int, default=8)
    lean.add_argument("--chunk-size", type=parse_size, default=32 << 20)
    lean.add_argument("--block-size", type=parse_size, default=1 << 20)
    lean.add_argument("--concurrency", type=int, default=1)
    lean.add_argument("--writer", default="auto", help="CLIENTES_DB_WRITER of the loads (db.WRITERS)")
    naive = sub.add_parser("pandas-naive")
    naive.add_argument("--file", type=Path, required=True)
    naive.add_argument("--db", required=True)
    naive.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.case == "copy-limit":
        result = copy_limit(args.clean, args.db, args.streams)
    elif args.case == "executemany-limit":
        result = executemany_limit(args.clean, args.db)
    elif args.case == "original-design":
        result = original_design(args.file, args.db, args.chunks, args.chunk_lines, args.batch)
    elif args.case == "lean-chunks":
        result = lean_chunks(args.file, args.db, args.chunks, args.chunk_size, args.block_size, args.concurrency,
                             args.writer)
    else:
        result = pandas_naive(args.file, args.db, args.lines)
    result["pid"] = os.getpid()
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
