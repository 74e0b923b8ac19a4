"""Dev tooling, imported only by the CLI and the tests: the local stack (``clientes-ingest dev``) and its
process supervisor, the test-file generator, and AWS provisioning (``clientes-ingest aws init``).

Nothing in the pipeline (flows, tasks, services) imports this package.
"""
