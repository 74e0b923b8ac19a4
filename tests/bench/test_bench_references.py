"""bench.references: the issue's ratios are computed from the one run's cases (pure rendering, no database)."""

from __future__ import annotations

from bench.references import combine, libpq_url, markdown


def proc(wall: float, server: float) -> dict[str, object]:
    return {"wall_s": wall, "cpu_seconds_client": 0.5, "cpu_seconds_server": server, "machine_busy_cpu_s": wall * 2,
            "peak_rss_mib_max_process": 12.0, "load_avg_before": 1.0, "command": "psql ...", "processes": []}


def core(wall: float, load: float) -> dict[str, object]:
    return {"wall_s": wall, "job": {"load_s": load}, "cpu_seconds_client": 30.0, "cpu_seconds_server": 20.0,
            "peak_rss_mib_max_process": 200.0}


def test_a_reference_sums_its_tables_and_keeps_each_apart() -> None:
    ref = combine({"clientes": proc(10.0, 8.0), "ingest_rejects": proc(5.0, 4.0)}, rows=100)
    assert (ref["wall_s"], ref["cpu_seconds_server"], ref["rows"]) == (15.0, 12.0, 100)
    assert ref["tables"]["ingest_rejects"]["wall_s"] == 5.0


def test_the_ratios_are_the_issues_targets_from_the_same_cases() -> None:
    cases = {"core_pg": core(26.0, 15.0), "ref_pg_copy_csv": combine({"clientes": proc(20.0, 1)}, rows=1),
             "ref_pg_copy_binary": combine({"clientes": proc(12.0, 1)}, rows=1), "core_pg_copy_csv": core(30.0, 20.0),
             "core_pg_prefect_server": core(22.0, 15.0),
             "core_sqlite_default": core(36.0, 21.0), "ref_sqlite_import": {**core(30.0, 0), "job": {}},
             "core_sqlite_executemany": core(45.0, 30.0)}
    text = "\n".join(markdown("1GB", cases))
    assert "| core_pg load phase / CSV \\copy of its tables | 0.75x | <= 1.00x |" in text
    assert "| core_pg load phase / binary \\copy of its tables | 1.25x | <= 1.15x |" in text
    assert "| core_pg end to end / CSV \\copy of its tables | 1.30x | <= 1.30x |" in text
    assert "| core_pg_prefect_server end to end / CSV \\copy of its tables | 1.10x | (as deployed) |" in text
    assert "| load phase copy-binary / copy-csv | 0.75x | - |" in text
    assert "| core_sqlite_default end to end / sqlite3 .import | 1.20x | <= 1.50x |" in text  # ADBC, the default
    assert "| core_sqlite_executemany end to end / sqlite3 .import | 1.50x | <= 1.50x |" in text
    assert "| load phase adbc / executemany | 0.70x | - |" in text


def test_psql_gets_a_libpq_url() -> None:
    assert libpq_url("postgresql+psycopg://postgres@127.0.0.1:5432/x") == "postgresql://postgres@127.0.0.1:5432/x"
