"""flows of clientes-ingest."""
