"""Turn the measurements of bench.run into figures, target checks, a markdown table and PNG plots.

Which seconds count for each workload: limits, the time of the load itself (process start excluded,
which favours the limit); the pipeline, its end-to-end wall time (Prefect's ephemeral start, staging,
load, finalize) and, apart, its load phase (the job's recorded duration); baselines, the extrapolated
time of the whole file. Requires: matplotlib (Agg backend, no display).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

POD_LIMIT_MIB = 256

DESCRIPTIONS = {
    "limit_pg_copy_x1": "limit: PostgreSQL COPY of the pre-cleaned valid rows, 1 connection",
    "limit_pg_copy_x2": "limit: PostgreSQL COPY of the pre-cleaned valid rows, 2 connections",
    "core_pg": "project: clientes-ingest run into PostgreSQL (end to end)",
    "limit_sqlite_executemany": "limit: SQLite bare executemany of the same rows",
    "core_sqlite_default": "project: clientes-ingest run, embedded default (SQLite, end to end)",
    "original_design": "baseline: original design (re-read file per 10k-line chunk, 100-row inserts), "
                       "EXTRAPOLATED from 3 chunks",
    "pandas_naive": "baseline: pandas read_csv + to_sql(method='multi'), EXTRAPOLATED from 100k lines",
}


def seconds(case: dict[str, Any]) -> float:
    out = case.get("output", {})
    if "extrapolated_seconds" in out:
        return float(out["extrapolated_seconds"])
    if "seconds" in out:
        return float(out["seconds"])
    return float(case["wall_s"])


def rows(case: dict[str, Any]) -> int:
    out = case.get("output", {})
    return int(out.get("extrapolated_rows", out.get("rows", case.get("rows", 0))))


def limit_pg(cases: dict[str, Any]) -> float:
    return min(seconds(c) for name, c in cases.items() if name.startswith("limit_pg_copy"))


def sweep_point(case: dict[str, Any]) -> dict[str, Any]:
    job = case["job"]
    return {"wall_s": case["wall_s"], "load_s": round(job["load_s"], 2), "rows": job["rows_loaded"],
            "rows_per_s_load": round(job["rows_loaded"] / job["load_s"]),
            "rows_per_s_end_to_end": round(job["rows_loaded"] / case["wall_s"]), "task_runs": job["chunk_count"],
            "peak_rss_mib_max_process": case["peak_rss_mib_max_process"],
            "peak_rss_mib_flow_process": case["processes"][0]["peak_rss_mib"] if case["processes"] else None}


def pipeline_processes(case: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": p["name"], "role": "flow run (clientes-ingest)" if "clientes-ingest" in p["cmdline"]
             else ("Prefect ephemeral API server" if "uvicorn" in p["cmdline"] else p["cmdline"][:60]),
             "peak_rss_mib": p["peak_rss_mib"]} for p in case["processes"]]


def targets(results: dict[str, Any], size: str, big: str | None) -> list[dict[str, Any]]:
    try:
        return _targets(results, size, big)
    except (KeyError, ValueError) as exc:  # an interrupted run: report what can be computed
        return [{"target": f"not computed: missing {exc}", "value": 0, "bound": 0, "met": False}]


def _targets(results: dict[str, Any], size: str, big: str | None) -> list[dict[str, Any]]:
    cases = results["sizes"][size]["cases"]
    core, lim = cases["core_pg"], limit_pg(cases)
    out = [
        _target("core load into PostgreSQL (load phase) <= 1.15x COPY limit", core["job"]["load_s"] / lim, 1.15),
        _target("core load into PostgreSQL (end to end) <= 1.15x COPY limit", core["wall_s"] / lim, 1.15),
        _target("core (end to end) >= 50x faster than naive pandas",
                seconds(cases["pandas_naive"]) / core["wall_s"], 50, at_least=True),
        _target("embedded SQLite default end to end <= 1.3x bare executemany",
                cases["core_sqlite_default"]["wall_s"] / seconds(cases["limit_sqlite_executemany"]), 1.3),
    ]
    for label in [s for s in (size, big) if s]:
        for name in ("core_pg", "core_sqlite_default"):
            case = results["sizes"][label]["cases"].get(name)
            if case is None:
                continue
            flow = max((p["peak_rss_mib"] for p in pipeline_processes(case) if p["role"].startswith("flow")),
                       default=0.0)
            out.append(_target(f"{label} {name}: peak RSS of the flow-run process <= {POD_LIMIT_MIB} MiB", flow,
                               POD_LIMIT_MIB))
        task_runs = results["sizes"][label]["cases"]["core_pg"]["job"]["chunk_count"]
        gb = results["sizes"][label]["file"]["bytes"] / 1e9
        out.append(_target(f"{label}: task runs per GB <= 64", task_runs / gb, 64))
    if big:
        big_core = results["sizes"][big]["cases"]["core_pg"]
        scale = results["sizes"][big]["file"]["bytes"] / results["sizes"][size]["file"]["bytes"]
        # The two files need not be exactly 5x apart in bytes: the time ratio is also scaled to 5x.
        for phase, big_s, main_s in (("end to end", big_core["wall_s"], core["wall_s"]),
                                     ("load phase", big_core["job"]["load_s"], core["job"]["load_s"])):
            out.append(_target(f"{big} time <= 5.3x {size} time ({phase}, core_pg; files {scale:.2f}x apart)",
                               big_s / main_s, 5.3))
            out.append(_target(f"... the same scaled to exactly 5x the bytes ({phase})", big_s / main_s * 5 / scale,
                               5.3))
        flow_rss = [max(p["peak_rss_mib"] for p in pipeline_processes(results["sizes"][s]["cases"]["core_pg"])
                        if p["role"].startswith("flow")) for s in (size, big)]
        out.append(_target(f"memory flat: flow process peak RSS {big} / {size} (core_pg)", flow_rss[1] / flow_rss[0],
                           1.1))
    return out


def _target(name: str, value: float, bound: float, *, at_least: bool = False) -> dict[str, Any]:
    met = value >= bound if at_least else value <= bound
    return {"target": name, "value": round(value, 2), "bound": bound, "met": met}


def without_timelines(results: dict[str, Any]) -> dict[str, Any]:
    """The results with RSS timelines thinned to one point a second (the JSON stays small)."""
    def thin(case: dict[str, Any]) -> dict[str, Any]:
        timeline, kept, last = case.get("timeline", []), [], -1.0
        for point in timeline:
            if point[0] - last >= 1.0:
                kept.append(point)
                last = point[0]
        return {**case, "timeline": kept}

    lean = [{**c, "timeline": []} for c in results.get("lean", [])]
    sizes = {size: {**data, "cases": {name: thin(c) for name, c in data["cases"].items()}}
             for size, data in results["sizes"].items()}
    return {**results, "sizes": sizes, "lean": lean}


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# clientes-ingest benchmark, {results['date']}", "",
             f"Command: `{results['command']}`. Machine: {results['machine']['cpus']} CPUs, "
             f"{results['machine']['memory_gib']} GiB, PostgreSQL {results['machine']['postgresql']} "
             f"({results['machine']['postgresql_settings']}). Load average at start: "
             f"{', '.join(f'{x:.1f}' for x in results['machine']['load_avg_at_start'])}.", ""]
    for size, data in results["sizes"].items():
        cases = data["cases"]
        lim_pg = limit_pg(cases)
        lim_sqlite = seconds(cases["limit_sqlite_executemany"])
        lines += [f"## {size} ({data['file']['bytes']:,} bytes)", "",
                  "| workload | seconds | rows | rows/s | x its limit | peak RSS MiB per process | "
                  "CPU s client | CPU s PostgreSQL | machine busy CPU s |",
                  "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
        for name, case in cases.items():
            secs, n = seconds(case), rows(case)
            limit = lim_sqlite if "sqlite" in name else lim_pg
            procs = ", ".join(f"{p['role']} {p['peak_rss_mib']:.0f}" for p in pipeline_processes(case)) \
                if name.startswith("core") else f"{case['peak_rss_mib_max_process']:.0f}"
            label = DESCRIPTIONS.get(name, name)
            if name.startswith("core"):
                label += f"; load phase {case['job']['load_s']:.1f} s ({case['job']['load_s'] / limit:.2f}x), " \
                         f"{case['job']['chunk_count']} task runs"
            lines.append(f"| {label} | {secs:,.1f} | {n:,} | {n / secs:,.0f} | {secs / limit:.2f} | {procs} | "
                         f"{case['cpu_seconds_client']:.1f} | {case['cpu_seconds_server']:.1f} | "
                         f"{case['machine_busy_cpu_s']:.0f} |")
        lines.append("")
    if results.get("lean"):
        lines += ["## Chunk work alone (lean process without Prefect, first chunks of the main file)", "",
                  "| settings | chunks | MiB | rows/s | client CPU s | CPU s per GB | RSS before load MiB "
                  "| peak RSS MiB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for case in results["lean"]:
            out = case["output"]
            mib = out["bytes"] / 2**20
            lines.append(f"| {case['config']} | {out['chunks']} | {mib:.0f} | {out['rows'] / out['seconds']:,.0f} | "
                         f"{out['cpu_seconds']:.1f} | {out['cpu_seconds'] * 1e9 / out['bytes']:.1f} | "
                         f"{out['rss_before_load_mib']} | {case['peak_rss_mib_max_process']} |")
        lines.append("")
    if results["sweep"]:
        lines += ["## Chunk size (core_pg, main file)", "",
                  "| chunk size | task runs | load s | rows/s (load) | end to end s | flow process peak RSS MiB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for p in results["sweep"]:
            lines.append(f"| {p['chunk_size']} | {p['task_runs']} | {p['load_s']:.1f} | {p['rows_per_s_load']:,} | "
                         f"{p['wall_s']:.1f} | {p['peak_rss_mib_flow_process']} |")
        lines.append("")
    lines += ["## Targets", "", "| target | measured | bound | met |", "|---|---:|---:|---|"]
    for t in results.get("targets", []):
        lines.append(f"| {t['target']} | {t['value']} | {t['bound']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def write_plots(results: dict[str, Any], out: Path, stamp: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if results["sweep"]:
        points = sorted(results["sweep"], key=lambda p: p["task_runs"], reverse=True)
        labels = [p["chunk_size"] for p in points]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(labels, [p["rows_per_s_load"] for p in points], marker="o", label="load phase")
        ax.plot(labels, [p["rows_per_s_end_to_end"] for p in points], marker="s", label="end to end")
        for i, p in enumerate(points):
            ax.annotate(f"{p['task_runs']} tasks", (i, p["rows_per_s_load"]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xlabel("chunk size")
        ax.set_ylabel("rows/s")
        ax.set_ylim(bottom=0)
        ax.set_title("clientes-ingest into PostgreSQL: throughput vs chunk size")
        ax.legend()
        fig.tight_layout()
        path = out / f"{stamp}-throughput-vs-chunk-size.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    fig, ax = plt.subplots(figsize=(8, 4))
    for size, data in results["sizes"].items():
        for name in ("core_pg", "core_sqlite_default"):
            timeline = data["cases"].get(name, {}).get("timeline")
            if timeline:
                ax.plot([p[0] for p in timeline], [p[1] for p in timeline], label=f"{size} {name}: flow process",
                        linewidth=1)
    ax.axhline(POD_LIMIT_MIB, color="red", linestyle="--", label=f"pod limit {POD_LIMIT_MIB} MiB")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("RSS MiB")
    ax.set_title("RSS of the flow-run process over time")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"{stamp}-rss-over-time.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Re-render the markdown and plots of a results JSON (e.g. the ``.partial.json`` of an interrupted run)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--main-size", default="1GB")
    parser.add_argument("--big-size", default="5GB")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    big = args.big_size if args.big_size in results["sizes"] and "core_pg" in results["sizes"][args.big_size].get(
        "cases", {}) else None
    results["targets"] = targets(results, args.main_size, big)
    stamp = args.results.name.removesuffix(".json").removesuffix(".partial")
    write_plots(results, args.results.parent, stamp)
    (args.results.parent / f"{stamp}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
