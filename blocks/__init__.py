"""Prefect blocks of clientes-ingest: definitions (``blocks.definitions``) and idempotent registration
(``python -m blocks.register``). Importing this package loads nothing; its modules require Prefect."""
