"""The Kubernetes configuration, measured: flow runs against a running Prefect server, one chunk at a time.

``python -m bench.run`` measures ``clientes-ingest run`` on Prefect's ephemeral API, as the CLI uses it.
On Kubernetes the flow-run pod talks to the Prefect server's deployment instead, and the client side of
the ephemeral API (which imports Prefect's server modules into the flow-run process) is not there.
This starts ``prefect server start`` on 127.0.0.1 (its own PREFECT_HOME under the work dir), points
``PREFECT_API_URL`` at it, and runs ``clientes-ingest run`` into PostgreSQL with
``CLIENTES_CHUNK_CONCURRENCY=1`` in both isolation modes, on each size, from the production-like install;
peak RSS per process (flow run, chunk worker) as in bench.run.

    python -m bench.server_mode [--sizes 1GB,5GB] [--tag X]

Writes ``bench/results/<date>[-tag]-server-mode.{json,md}``. Requires: PostgreSQL (``--pg-admin``), the
cached input files (bench.prepare), a free port for the Prefect server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.pipeline_env import ensure_pipeline_env
from bench.prepare import cache_dir, ensure_file
from bench.roles import CHUNK_WORKER, FLOW, role_summary
from bench.run import PG_ADMIN, RESULTS, Bench, machine
from clientes_ingest.devtools.supervise import free_port

POD_LIMIT_MIB = 256
MODES = ("thread", "subprocess")


@contextmanager
def prefect_server(python_bin: str, home: Path, timeout: float = 120) -> Iterator[str]:
    """A Prefect server on 127.0.0.1 for the duration of the block; yields its API URL."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    proc = subprocess.Popen([os.path.join(python_bin, "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 - 127.0.0.1
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start; see {home / 'server.log'}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# clientes-ingest against a Prefect server, {results['date']}", "",
             f"Command: `{results['command']}`. Pipeline from the production-like install "
             f"({results['pipeline_env']}); `PREFECT_API_URL` at a local `prefect server start`; "
             "`CLIENTES_CHUNK_CONCURRENCY=1`; PostgreSQL. Load average at start: "
             f"{', '.join(f'{x:.1f}' for x in results['machine']['load_avg_at_start'])}.", "",
             "| size | chunk isolation | end to end s | load phase s | peak RSS MiB per process "
             "| all processes together MiB | every process <= 256 MiB |",
             "|---|---|---:|---:|---|---:|---|"]
    for case in results["cases"]:
        roles = role_summary(case["processes"])
        per = ", ".join(f"{r['role']} {r['peak_rss_mib']:.0f}" + (f" (x{r['processes']})" if r["processes"] > 1 else "")
                        for r in roles)
        total = sum(r["peak_rss_mib"] * r["processes"] for r in roles)
        ok = all(r["peak_rss_mib"] <= POD_LIMIT_MIB for r in roles if r["role"] in (FLOW, CHUNK_WORKER))
        lines.append(f"| {case['size']} | {case['chunk_isolation']} | {case['wall_s']:.1f} | "
                     f"{case['job']['load_s']:.1f} | {per} | {total:.0f} | {'yes' if ok else '**no**'} |")
    lines += ["", "Peak RSS is each process's own peak (sampled every 100 ms); \"together\" adds the peaks, an "
              "upper bound of what one pod holding them all would use at once."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server_mode", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1GB,5GB")
    parser.add_argument("--pg-admin", default=PG_ADMIN)
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    work = cache_dir() / "work" / "server-mode"
    work.mkdir(parents=True, exist_ok=True)
    pipeline = ensure_pipeline_env()
    results: dict[str, Any] = {"date": dt.datetime.now().isoformat(timespec="seconds"),
                               "command": " ".join(["python -m bench.server_mode",
                                                    *(sys.argv[1:] if argv is None else argv)]),
                               "machine": machine(), "pipeline_env": pipeline.kind, "cases": []}
    with prefect_server(pipeline.bin_dir, work) as api_url:
        bench = Bench(args.pg_admin, work, {**os.environ, "PREFECT_API_URL": api_url,
                                            "CLIENTES_CHUNK_CONCURRENCY": "1"}, pipeline)
        for size in [s for s in args.sizes.split(",") if s]:
            data = ensure_file(size)
            for mode in MODES:
                case = bench.core_pg(f"server-{size}-{mode}", data, isolation=mode)
                case.pop("timeline", None)
                results["cases"].append({"size": size, **case})
    stamp = dt.date.today().isoformat() + (f"-{args.tag}" if args.tag else "") + "-server-mode"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stamp}.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / f"{stamp}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
