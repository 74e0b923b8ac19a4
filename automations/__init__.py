"""Prefect automations of clientes-ingest, declared as YAML in this folder and applied by ``apply``."""
