"""blocks of clientes-ingest."""
