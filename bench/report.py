"""Turn the measurements of bench.run into figures, target checks, a markdown table and PNG plots.

Which seconds count for each workload: limits, the time of the load itself (process start excluded,
which favours the limit); the pipeline, its end-to-end wall time (Prefect's ephemeral start, staging,
load, finalize) and, apart, its load phase (the job's recorded duration); baselines, the extrapolated
time of the whole file. Peak RSS is given per process role (bench.roles); the target "every
pipeline process <= 256 MiB" is checked per role, and the Prefect ephemeral API server is shown but
not counted (in production the Prefect server is its own deployment). Split-core cases (bench.split_cores)
get their own table, each ratio against the limit measured under the same pinning.
Requires: matplotlib (Agg backend, no display).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.roles import FLOW, describe_roles, role_summary

POD_LIMIT_MIB = 256
CORE_CASES = ("core_pg", "core_pg_subprocess", "core_sqlite_default")

DESCRIPTIONS = {
    "limit_pg_copy_x1": "limit: PostgreSQL COPY of the pre-cleaned valid rows, 1 connection",
    "limit_pg_copy_x2": "limit: PostgreSQL COPY of the pre-cleaned valid rows, 2 connections",
    "core_pg": "project: clientes-ingest run into PostgreSQL (end to end)",
    "core_pg_subprocess": "project: the same, chunks in lean child processes (CLIENTES_CHUNK_ISOLATION=subprocess)",
    "limit_sqlite_executemany": "limit: SQLite bare executemany of the same rows",
    "ref_pg_copy_csv": "reference: psql \\copy (CSV) of core_pg's own two final tables into an empty database",
    "ref_pg_copy_binary": "reference: psql \\copy (binary) of core_pg's own two final tables into an empty database",
    "ref_sqlite_import": "reference: sqlite3 .import of core_sqlite_default's own two final tables",
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
            "peak_rss_mib_flow_process": flow_peak(case) or None}


def pipeline_processes(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Per process role of a pipeline case: count, peak RSS, CPU seconds, whether it is a pipeline process."""
    return role_summary(case["processes"])


def flow_peak(case: dict[str, Any]) -> float:
    return max((r["peak_rss_mib"] for r in pipeline_processes(case) if r["role"] == FLOW), default=0.0)


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
        for name in CORE_CASES:
            case = results["sizes"][label]["cases"].get(name)
            if case is not None:
                out += rss_targets(f"{label} {name}", case)
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
        for name in CORE_CASES:
            if name not in results["sizes"][big]["cases"] or name not in cases:
                continue
            flow_rss = [flow_peak(results["sizes"][s]["cases"][name]) for s in (size, big)]
            out.append(_target(f"memory flat: flow process peak RSS {big} / {size} ({name})",
                               flow_rss[1] / flow_rss[0], 1.1))
    split = results.get("split_cores")
    if split:
        split_lim = limit_pg(split["cases"])
        for name in ("core_pg", "core_pg_subprocess"):
            case = split["cases"].get(name)
            if case is not None:
                out.append(_target(f"split cores {split['size']} {name} (load phase) <= 1.15x its COPY limit "
                                   "(1 connection, server on 1 CPU)", case["job"]["load_s"] / split_lim, 1.15))
                out += rss_targets(f"split cores {split['size']} {name}", case)
    return out


def rss_targets(label: str, case: dict[str, Any]) -> list[dict[str, Any]]:
    """'Peak RSS of every pipeline process <= 256 MiB', one line per process role; the Prefect server shown apart."""
    out = []
    for role in pipeline_processes(case):
        count = f" ({role['processes']} processes, the largest)" if role["processes"] > 1 else ""
        if role["pipeline"]:
            out.append(_target(f"{label}: peak RSS of {role['role']}{count} <= {POD_LIMIT_MIB} MiB",
                               role["peak_rss_mib"], POD_LIMIT_MIB))
        elif role["pipeline"] is None:
            out.append({**_target(f"{label}: peak RSS of a {role['role']}{count} (not evaluated: its role is "
                                  "unknown)", role["peak_rss_mib"], POD_LIMIT_MIB), "met": None})
        else:
            out.append({**_target(f"{label}: peak RSS of {role['role']} (not a pipeline process: the Prefect "
                                  "server's own deployment in production)", role["peak_rss_mib"], POD_LIMIT_MIB),
                        "met": None})
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
    thinned = {**results, "sizes": sizes, "lean": lean}
    if results.get("split_cores"):
        split = results["split_cores"]
        thinned["split_cores"] = {**split, "cases": {name: thin(c) for name, c in split["cases"].items()}}
    return thinned


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# clientes-ingest benchmark, {results['date']}", "",
             f"Command: `{results['command']}`. Machine: {results['machine']['cpus']} CPUs, "
             f"{results['machine']['memory_gib']} GiB, PostgreSQL {results['machine']['postgresql']} "
             f"({results['machine']['postgresql_settings']}). Load average at start: "
             f"{', '.join(f'{x:.1f}' for x in results['machine']['load_avg_at_start'])}.", ""]
    env = results.get("pipeline_env")
    if env:
        lines += [f"Pipeline cases (`clientes-ingest run`, lean chunks) ran from the **{env['kind']}** environment "
                  f"(`{env['python']}`; {env['install']}; pandas "
                  f"{'absent' if env['pandas_absent'] else '**installed**: pyarrow imports it, +35-50 MiB a process'}"
                  f"); limits and baselines from the dev environment.", ""]
        if env.get("undeclared_added"):
            lines += [f"**Warning**: the pipeline imports {', '.join(env['undeclared_added'])} but pyproject.toml "
                      "does not declare it: the image built from it would fail (ModuleNotFoundError). The bench "
                      "installed it into the pipeline venv; declare it in pyproject.toml.", ""]
    for size, warm in results.get("warm_up", {}).items():
        lines += [f"Before the {size} cases, not measured: the file read once and `clientes-ingest run` of its first "
                  f"{warm['lines']:,} lines ({warm['run_wall_s']:.1f} s), so the first case does not alone pay a "
                  "cold page cache and Prefect's first start.", ""]
    for size, data in results["sizes"].items():
        lines += [f"## {size} ({data['file']['bytes']:,} bytes)", "", *case_table(data["cases"])]
    if results.get("lean"):
        lines += ["## Chunk work alone (lean process without Prefect, first chunks of the main file)", "",
                  "| settings | chunks | MiB | rows/s | client CPU s | CPU s per GB | RSS before load MiB "
                  "| peak RSS MiB | pandas loaded |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for case in results["lean"]:
            out = case["output"]
            mib = out["bytes"] / 2**20
            lines.append(f"| {case['config']} | {out['chunks']} | {mib:.0f} | {out['rows'] / out['seconds']:,.0f} | "
                         f"{out['cpu_seconds']:.1f} | {out['cpu_seconds'] * 1e9 / out['bytes']:.1f} | "
                         f"{out['rss_before_load_mib']} | {case['peak_rss_mib_max_process']} | "
                         f"{_yes_no(out.get('pandas_imported'))} |")
        lines.append("")
    if results["sweep"]:
        lines += ["## Chunk size (core_pg, main file)", "",
                  "| chunk size | task runs | load s | rows/s (load) | end to end s | flow process peak RSS MiB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for p in results["sweep"]:
            lines.append(f"| {p['chunk_size']} | {p['task_runs']} | {p['load_s']:.1f} | {p['rows_per_s_load']:,} | "
                         f"{p['wall_s']:.1f} | {p['peak_rss_mib_flow_process']} |")
        lines.append("")
    split = results.get("split_cores")
    if split and split.get("cases"):
        pin = split.get("pinning", {})
        lines += [f"## Split cores: PostgreSQL on CPU {pin.get('server_cpus', [1])}, client tree on CPU "
                  f"{pin.get('client_cpus', [0])} ({split['size']}, {split['file']['bytes']:,} bytes)", "",
                  "The database on its own host and the pipeline in a 1-core pod, emulated by CPU affinity "
                  "(bench.split_cores). Ratios are to the COPY limit measured the same way (1 connection).", "",
                  *case_table(split["cases"])]
    lines += ["## Targets", "", "| target | measured | bound | met |", "|---|---:|---:|---|"]
    for t in results.get("targets", []):
        met = "n/a (shown only)" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['value']} | {t['bound']} | {met} |")
    return "\n".join(lines) + "\n"


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def case_table(cases: dict[str, Any]) -> list[str]:
    """The markdown rows of one set of workloads, each against its own limit (PostgreSQL or SQLite)."""
    lim_pg = limit_pg(cases)
    lim_sqlite = seconds(cases["limit_sqlite_executemany"]) if "limit_sqlite_executemany" in cases else None
    lines = ["| workload | seconds | rows | rows/s | x its limit | peak RSS MiB per process | "
             "CPU s client | CPU s PostgreSQL | machine busy CPU s |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for name, case in cases.items():
        secs, n = seconds(case), rows(case)
        limit = lim_sqlite if "sqlite" in name else lim_pg
        ratio = f"{secs / limit:.2f}" if limit else "-"
        procs = describe_roles(case["processes"]) if name.startswith("core") \
            else f"{case['peak_rss_mib_max_process']:.0f}"
        label = DESCRIPTIONS.get(name, name)
        if name.startswith("core"):
            load = case["job"]["load_s"]
            label += f"; load phase {load:.1f} s ({load / limit:.2f}x), " if limit else f"; load phase {load:.1f} s, "
            label += f"{case['job']['chunk_count']} task runs"
            if case.get("chunk_isolation") == "subprocess":
                label += f"; chunk peak RSS (VmHWM) {case['chunk_peak_rss_mib']:.0f} MiB"
        lines.append(f"| {label} | {secs:,.1f} | {n:,} | {n / secs:,.0f} | {ratio} | {procs} | "
                     f"{case['cpu_seconds_client']:.1f} | {case['cpu_seconds_server']:.1f} | "
                     f"{case['machine_busy_cpu_s']:.0f} |")
    return lines + [""]


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
        for name in CORE_CASES:
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
