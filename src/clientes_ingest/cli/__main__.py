"""``python -m clientes_ingest.cli``: the same as the ``clientes-ingest`` command."""

import sys

from clientes_ingest.cli import main

sys.exit(main())
