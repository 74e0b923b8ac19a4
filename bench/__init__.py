"""Benchmarks of clientes-ingest: limits, the pipeline and baselines on the same generated files.

Run everything with ``python -m bench.run`` (see docs/performance.md). Benchmarks, not tests: they
take minutes and write bench/results/<date>.json, a markdown table and PNG plots.
"""
