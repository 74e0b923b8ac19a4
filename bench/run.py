"""Run the benchmark suite: ``python -m bench.run`` (options: ``--help``; docs/performance.md).

On the same generated file(s), in one run: the limits (PostgreSQL COPY and SQLite executemany of the
pre-cleaned rows), the pipeline through its real command (``clientes-ingest run``) into PostgreSQL and
into the embedded SQLite default, and two baselines (the original design, naive pandas) on a subset,
extrapolated. Every workload is its own process tree, sampled with psutil (peak RSS of each process,
CPU seconds, PostgreSQL server CPU). Writes ``bench/results/<date>.json``, ``<date>.md`` and PNG plots.

* The pipeline cases (``clientes-ingest run`` and ``lean-chunks``) run from a production-like venv
  (bench.pipeline_env: ``pip install .``, no pandas, as in the image); ``--pipeline-env dev`` runs them
  from the interpreter running the bench instead. Limits and baselines always use the latter.
* ``core_pg`` runs twice per size: chunks in the flow-run process's threads (the default) and
  ``core_pg_subprocess`` (``CLIENTES_CHUNK_ISOLATION=subprocess``: chunks in lean child processes).
  Peak RSS is reported per process role (bench.roles: flow run, chunk worker, Prefect API server).
* ``--split-cores`` (bench.split_cores) adds, on the main file, the COPY limit (1 connection) and both
  core_pg variants with PostgreSQL pinned to CPU 1 and the client tree to CPU 0: the database on its
  own host and a 1-core pod. Reported apart, each ratio against the limit measured the same way.

Requires: PostgreSQL (``--pg-admin``, allowed to CREATE DATABASE), matplotlib, pandas, disk space in
the cache directory (bench.prepare), pip (the pipeline venv); ``--split-cores``: 2 CPUs, taskset and
the right to set the affinity of the server's processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from bench import references, report, split_cores
from bench.pipeline_env import REPO, PipelineEnv, dev_env, ensure_pipeline_env
from bench.prepare import cache_dir, ensure_clean, ensure_file
from bench.procmon import TreeSampler
from clientes_ingest.db import Database
from clientes_ingest.job_queries import get_job, job_chunks, list_jobs
from clientes_ingest.settings import parse_size

RESULTS = Path(__file__).resolve().parent / "results"
PG_ADMIN = os.environ.get("CLIENTES_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Bench:
    """One benchmark session: scratch space, throw-away databases, the measurements taken so far."""

    def __init__(self, pg_admin: str, work: Path, env: dict[str, str], pipeline: PipelineEnv | None = None) -> None:
        self.pg_admin = pg_admin
        self.work = work
        self.env = env
        self.pipeline = pipeline or dev_env()
        self.prefix: list[str] = []  # in front of every measured command (split cores: taskset -c 0)
        self.admin = sa.create_engine(pg_admin, isolation_level="AUTOCOMMIT")
        self.results: dict[str, Any] = {}
        self.partial: Path | None = None

    def checkpoint(self) -> None:
        """Save what was measured so far (a long run interrupted keeps its figures)."""
        if self.partial is not None:
            self.partial.write_text(json.dumps(report.without_timelines(self.results), indent=1, default=str))

    def fresh_pg(self, label: str) -> str:
        name = f"clientes_bench_{label}_{uuid.uuid4().hex[:6]}".lower()
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return sa.make_url(self.pg_admin).set(database=name).render_as_string(hide_password=False)

    def drop_pg(self, url: str) -> None:
        Database(url).dispose()
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')

    def scratch(self, label: str) -> Path:
        path = self.work / label
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def measure(self, label: str, cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
                watch_server: bool = True) -> dict[str, Any]:
        """Run ``cmd`` as its own process tree and sample it; the last stdout line may be JSON."""
        log = self.work / f"{label}.log"
        cmd = [*self.prefix, *cmd]
        print(f"[bench] {label}: {' '.join(cmd)}", flush=True)
        load_before = os.getloadavg()[0]
        with log.open("w") as out:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=cwd, env=env or self.env, stdout=out, stderr=subprocess.STDOUT)
            sampler = TreeSampler(proc.pid, watch_names=frozenset({"postgres"}) if watch_server else frozenset())
            sampler.start()
            code = proc.wait()
            wall = time.perf_counter() - started
            sampler.stop()
        text = log.read_text(errors="replace")
        if code != 0:
            raise RuntimeError(f"{label} failed with exit code {code}; log {log}:\n{text[-3000:]}")
        result: dict[str, Any] = {"command": " ".join(cmd), "wall_s": round(wall, 2), "load_avg_before": load_before,
                                  **sampler.summary(), "timeline": sampler.timeline}
        lines = [line for line in text.splitlines() if line.startswith("{")]
        if lines:
            result["output"] = json.loads(lines[-1])
        print(f"[bench] {label}: {wall:.1f}s, peak RSS {result['peak_rss_mib_max_process']} MiB", flush=True)
        return result

    def warm_up(self, data: Path, lines: int = 1000) -> dict[str, Any]:
        """Not measured: read ``data`` once, so the page cache holds it for every case alike, then run
        ``clientes-ingest run`` on its first ``lines`` lines into SQLite in a scratch directory, so the
        first measured case does not alone pay what only a machine's first run pays (Prefect's home
        database created and migrated, the pipeline venv's files read from disk)."""
        started = time.perf_counter()
        with data.open("rb") as source:
            while source.read(16 << 20):
                pass
        home = self.scratch("warm_up")
        try:
            sample = home / "CLIENTES_IN_0101.dat"
            with data.open("rb") as source, sample.open("wb") as out:
                for _ in range(lines):
                    out.write(source.readline())
            run = self.measure("warm_up", [self.pipeline.executable("clientes-ingest"), "run", str(sample), "--quiet"],
                               cwd=home, env=self.pipeline_env(), watch_server=False)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        return {"seconds": round(time.perf_counter() - started, 2), "run_wall_s": run["wall_s"], "lines": lines}

    # --------------------------------------------------------------------------------- workloads

    def case(self, name: str, *args: str, db: str) -> dict[str, Any]:
        return self.measure(name, [sys.executable, "-m", "bench.cases", name, *args, "--db", db])

    def pipeline_env(self, **extra: str) -> dict[str, str]:
        """The environment of a pipeline case: the pipeline venv first on PATH (chunk workers and the
        Prefect server are started with the same interpreter anyway), no PYTHONPATH leaking dev code."""
        env = {k: v for k, v in self.env.items() if k != "PYTHONPATH"}
        if self.pipeline.kind != "dev":
            env["PATH"] = self.pipeline.bin_dir + os.pathsep + env.get("PATH", "")
            env["VIRTUAL_ENV"] = str(Path(self.pipeline.bin_dir).parent)
        return {**env, **extra}

    def core_pg(self, label: str, data: Path, chunk_size: str | None = None, isolation: str = "thread",
                writer: str | None = None, after: Callable[[str], None] | None = None,
                prefect_api_url: str | None = None) -> dict[str, Any]:
        """``clientes-ingest run`` into a fresh PostgreSQL database; ``after(url)`` sees its final tables.
        ``prefect_api_url``: run against that Prefect server instead of Prefect's ephemeral API."""
        url = self.fresh_pg(label)
        try:
            home = self.scratch(label)
            cmd = [self.pipeline.executable("clientes-ingest"), "run", str(data), "--db", url, "--quiet",
                   "--storage-root", str(home / "store")]
            if chunk_size:
                cmd += ["--chunk-size", chunk_size]
            extra = {"CLIENTES_CHUNK_ISOLATION": isolation, **({"CLIENTES_DB_WRITER": writer} if writer else {}),
                     **({"PREFECT_API_URL": prefect_api_url} if prefect_api_url else {})}
            result = self.measure(label, cmd, cwd=home, env=self.pipeline_env(**extra))
            result.update(job_figures(Database(url)), environment=self.pipeline.kind, chunk_isolation=isolation,
                          writer=writer or "auto")
            if after is not None:
                after(url)
        finally:
            self.drop_pg(url)
            shutil.rmtree(self.work / label, ignore_errors=True)
        return result

    def core_sqlite_default(self, label: str, data: Path, writer: str | None = None,
                            after: Callable[[Path], None] | None = None) -> dict[str, Any]:
        """``clientes-ingest run FILE`` in an empty directory: SQLite ./clientes.db and ./.clientes-ingest;
        ``after(path)`` sees the database file with its final tables."""
        home = self.scratch(label)
        env = {k: v for k, v in self.pipeline_env().items()
               if k not in ("CLIENTES_DB_URL", "CLIENTES_STORAGE_ROOT", "CLIENTES_DB_WRITER")}
        if writer:
            env["CLIENTES_DB_WRITER"] = writer
        try:
            result = self.measure(label, [self.pipeline.executable("clientes-ingest"), "run", str(data), "--quiet"],
                                  cwd=home, env=env, watch_server=False)
            db = Database(f"sqlite:///{home / 'clientes.db'}")
            result.update(job_figures(db), environment=self.pipeline.kind, writer=writer or "auto")
            db.dispose()
            if after is not None:
                after(home / "clientes.db")
        finally:
            shutil.rmtree(home, ignore_errors=True)
        return result


def job_figures(db: Database) -> dict[str, Any]:
    """What the pipeline recorded about its newest job: counts, load duration, per-chunk RSS and CPU."""
    job_id = list_jobs(db.engine, 1)[0]["id"]
    job = get_job(db.engine, job_id)
    chunks = job_chunks(db.engine, job_id)
    return {
        "job": {"status": job.status, "rows_loaded": job.rows_loaded, "rows_rejected": job.rows_rejected,
                "total_lines": job.total_lines, "chunk_count": job.chunk_count, "load_s": job.duration_s},
        "rows": job.rows_loaded,
        "chunk_peak_rss_mib": round(max(c["peak_rss_bytes"] or 0 for c in chunks) / 2**20, 1),
        "chunk_cpu_s": round(sum(c["cpu_seconds"] or 0 for c in chunks), 2),
    }


def run_size(bench: Bench, size: str, *, baselines: bool, limit_streams: Sequence[int],
             cases: dict[str, Any]) -> dict[str, Any]:
    """Measure every workload on the file of ``size``, into ``cases`` (saved after each one)."""
    data = ensure_file(size)
    clean = ensure_clean(data)
    bench.results.setdefault("warm_up", {})[size] = bench.warm_up(data)
    for streams in limit_streams:
        url = bench.fresh_pg(f"copy{streams}")
        try:
            cases[f"limit_pg_copy_x{streams}"] = bench.case("copy-limit", "--clean", str(clean), "--streams",
                                                            str(streams), db=url)
            bench.checkpoint()
        finally:
            bench.drop_pg(url)
    refs: dict[str, Any] = {}
    cases["core_pg"] = bench.core_pg("core_pg", data,
                                     after=lambda url: refs.update(references.pg_references(bench, url)))
    cases.update(refs)
    bench.checkpoint()
    cases["core_pg_subprocess"] = bench.core_pg("core_pg_subprocess", data, isolation="subprocess")
    bench.checkpoint()
    sqlite_dir = bench.scratch("limit_sqlite")
    try:
        cases["limit_sqlite_executemany"] = bench.case("executemany-limit", "--clean", str(clean),
                                                       db=f"sqlite:///{sqlite_dir / 'limit.db'}")
        bench.checkpoint()
    finally:
        shutil.rmtree(sqlite_dir, ignore_errors=True)
    sqlite_ref: dict[str, Any] = {}
    cases["core_sqlite_default"] = bench.core_sqlite_default(
        "core_sqlite", data, after=lambda path: sqlite_ref.update(references.sqlite_reference(bench, path)))
    cases["ref_sqlite_import"] = sqlite_ref
    bench.checkpoint()
    if baselines:
        for name, extra in (("original-design", ["--chunks", "3"]), ("pandas-naive", ["--lines", "100000"])):
            url = bench.fresh_pg(name.replace("-", "_"))
            try:
                cases[name.replace("-", "_")] = bench.case(name, "--file", str(data), *extra, db=url)
                bench.checkpoint()
            finally:
                bench.drop_pg(url)
    return {"file": {"path": str(data), "bytes": data.stat().st_size, "clean_rows_csv_bytes": clean.stat().st_size},
            "cases": cases}


def size_entry(size: str) -> dict[str, Any]:
    data = ensure_file(size)
    return {"file": {"path": str(data), "bytes": data.stat().st_size}, "cases": {}}


LEAN_CONFIGS = (
    # (label, block size, concurrency, arrow memory pool, pinned to one core)
    ("defaults: 4MiB blocks, 2 chunks at once, mimalloc", "4MiB", 2, "mimalloc", False),
    ("tuned: 1MiB blocks, 1 chunk at once, jemalloc", "1MiB", 1, "jemalloc", False),
    ("tuned, pinned to one core (taskset -c 0)", "1MiB", 1, "jemalloc", True),
)


def run_lean(bench: Bench, size: str, chunks: int = 8) -> list[dict[str, Any]]:
    """The chunk work alone in a process without Prefect, for a few settings (memory and CPU per chunk)."""
    data = ensure_file(size)
    measured = []
    for label, block, concurrency, pool, pinned in LEAN_CONFIGS:
        url = bench.fresh_pg("lean")
        # From the repository root: ``-m bench.cases`` finds bench there, clientes_ingest in the pipeline env.
        cmd = [bench.pipeline.python, "-m", "bench.cases", "lean-chunks", "--file", str(data), "--db", url, "--chunks",
               str(chunks), "--block-size", block, "--concurrency", str(concurrency)]
        if pinned and shutil.which("taskset"):
            cmd = ["taskset", "-c", "0", *cmd]
        try:
            case = bench.measure("lean-chunks", cmd, cwd=REPO, env=bench.pipeline_env(ARROW_DEFAULT_MEMORY_POOL=pool))
        finally:
            bench.drop_pg(url)
        measured.append({"config": label, "environment": bench.pipeline.kind, **case})
    return measured


def run_split(bench: Bench, size: str) -> dict[str, Any]:
    """The COPY limit (1 connection: the server has one core) and both core_pg variants, PostgreSQL on
    CPU 1 and the client tree on CPU 0 (bench.split_cores)."""
    data = ensure_file(size)
    clean = ensure_clean(data)
    cases: dict[str, Any] = {}
    entry: dict[str, Any] = {"size": size, "file": {"path": str(data), "bytes": data.stat().st_size}, "cases": cases}
    bench.results["split_cores"] = entry
    prefix = split_cores.client_prefix()
    with split_cores.server_pinned(bench.pg_admin) as pinning:
        entry["pinning"] = pinning
        bench.prefix = prefix
        try:
            url = bench.fresh_pg("split_copy1")
            try:
                cases["limit_pg_copy_x1"] = bench.case("copy-limit", "--clean", str(clean), "--streams", "1", db=url)
            finally:
                bench.drop_pg(url)
            bench.checkpoint()
            for name, isolation in (("core_pg", "thread"), ("core_pg_subprocess", "subprocess")):
                cases[name] = bench.core_pg(f"split_{name}", data, isolation=isolation)
                bench.checkpoint()
        finally:
            bench.prefix = []
    return entry


def machine() -> dict[str, Any]:
    engine = sa.create_engine(PG_ADMIN)
    with engine.connect() as conn:
        pg = conn.exec_driver_sql("SHOW server_version").scalar_one()
        settings = {name: conn.exec_driver_sql(f"SHOW {name}").scalar_one()
                    for name in ("shared_buffers", "max_wal_size", "synchronous_commit", "fsync")}
    engine.dispose()
    return {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(), "postgresql": pg,
            "postgresql_settings": settings, "load_avg_at_start": os.getloadavg()}


def write_writers(bench: Bench, results: dict[str, Any], size: str, out: Path, stamp: str, *, lean: bool) -> int:
    """``--suite writers[-lean]``: run bench.references' suite on the main file, write its json and markdown."""
    entry = results["sizes"][size]
    run = references.run_writers_lean if lean else references.run_writers
    results["warm_up"] = {size: bench.warm_up(Path(entry["file"]["path"]))}
    run(bench, Path(entry["file"]["path"]), entry["cases"])
    (out / f"{stamp}.json").write_text(json.dumps(report.without_timelines(results), indent=1, default=str))
    head = report.markdown({**results, "sizes": {}, "sweep": [], "lean": []}).split("## Targets")[0]
    text = head + "\n".join(references.markdown(size, entry["cases"]))
    (out / f"{stamp}.md").write_text(text)
    if bench.partial is not None:
        bench.partial.unlink(missing_ok=True)
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=("full", "writers", "writers-lean"), default="full",
                        help="full (default): every workload below; writers: the writer comparison and the physical "
                             "references on the main file only (bench.references); writers-lean: the same with the "
                             "chunk loads alone (no Prefect), the quick one on a shared machine")
    parser.add_argument("--size", default="1GB", help="the main file (default 1GB)")
    parser.add_argument("--big", default="5GB", help="the scale file, run once (default 5GB; 'none' to skip)")
    parser.add_argument("--sweep", default="8MB,64MB",
                        help="extra chunk sizes for core_pg on the main file (the default 32MB is core_pg itself)")
    parser.add_argument("--limit-streams", default="1,2", help="parallel COPY streams measured for the limit")
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="URL allowed to CREATE/DROP DATABASE")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: cache dir/work)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    parser.add_argument("--pipeline-env", choices=("production", "dev"), default="production",
                        help="where the pipeline cases run from: 'production' (default), a venv in the cache dir "
                             "with the project installed as the image installs it (no pandas); 'dev', this "
                             "interpreter")
    parser.add_argument("--split-cores", action="store_true",
                        help="also run the COPY limit (1 connection) and core_pg (thread and subprocess chunk "
                             "isolation) on the main file with PostgreSQL pinned to CPU 1 and the client to CPU 0")
    args = parser.parse_args(argv)

    work = args.work or cache_dir() / "work"
    work.mkdir(parents=True, exist_ok=True)
    # A loaded machine can take longer than the default 20 s to start the ephemeral API server.
    env = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180", **os.environ,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if args.split_cores:
        split_cores.check_cpus()  # fail now, not after an hour of measurements
        split_cores.client_prefix()
    pipeline = ensure_pipeline_env() if args.pipeline_env == "production" else dev_env()
    bench = Bench(args.pg_admin, work, env, pipeline)
    stamp = dt.datetime.now().strftime("%Y-%m-%d") + (f"-{args.tag}" if args.tag else "")
    streams = [int(s) for s in args.limit_streams.split(",") if s]
    results: dict[str, Any] = {"date": dt.datetime.now().isoformat(timespec="seconds"),
                               "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
                               "machine": machine(), "pipeline_env": pipeline.as_dict(), "sizes": {}, "sweep": []}
    args.out.mkdir(parents=True, exist_ok=True)
    bench.results, bench.partial = results, args.out / f"{stamp}.partial.json"
    results["sizes"][args.size] = size_entry(args.size)
    if args.suite != "full":
        return write_writers(bench, results, args.size, args.out, stamp, lean=args.suite == "writers-lean")
    results["sizes"][args.size] = run_size(bench, args.size, baselines=True, limit_streams=streams,
                                           cases=results["sizes"][args.size]["cases"])
    results["lean"] = run_lean(bench, args.size)
    bench.checkpoint()
    if args.big.lower() != "none":
        results["sizes"][args.big] = size_entry(args.big)
        results["sizes"][args.big] = run_size(bench, args.big, baselines=False, limit_streams=streams[-1:],
                                              cases=results["sizes"][args.big]["cases"])
    main_case = results["sizes"][args.size]["cases"]["core_pg"]
    results["sweep"].append({"chunk_size": "32MB", **report.sweep_point(main_case)})
    for chunk in [c for c in args.sweep.split(",") if c]:
        measured = bench.core_pg(f"sweep_{chunk.lower()}", ensure_file(args.size), chunk)
        results["sweep"].append({"chunk_size": chunk, **report.sweep_point(measured)})
        bench.checkpoint()
    if args.split_cores:
        run_split(bench, args.size)
    results["targets"] = report.targets(results, args.size, None if args.big.lower() == "none" else args.big)

    report.write_plots(results, args.out, stamp)
    (args.out / f"{stamp}.json").write_text(json.dumps(report.without_timelines(results), indent=1, default=str))
    markdown = report.markdown(results)
    (args.out / f"{stamp}.md").write_text(markdown)
    bench.partial.unlink(missing_ok=True)
    print(markdown)
    print(f"[bench] wrote {args.out / (stamp + '.json')}, .md and plots; "
          f"file sizes {', '.join(f'{k}={parse_size(k):,}' for k in results['sizes'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
