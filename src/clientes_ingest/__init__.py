"""clientes-ingest: Prefect 3 pipeline for the daily CLIENTES_IN_MMYY.dat file."""

__version__ = "0.1.0"
