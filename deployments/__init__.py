"""deployments of clientes-ingest."""
