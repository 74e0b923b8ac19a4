"""clientes-ingest: Prefect 3 pipeline for the daily CLIENTES_IN_MMYY.dat file."""

import os

# Arrow's jemalloc pool returns freed block buffers to the OS; the default (mimalloc) kept about
# 25 MiB more per process at the same throughput (bench/results). Set before pyarrow is imported;
# an explicit ARROW_DEFAULT_MEMORY_POOL wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

__version__ = "0.1.0"
