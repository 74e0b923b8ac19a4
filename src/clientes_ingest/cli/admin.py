"""The setup commands: ``aws init``, ``blocks register`` and ``dev`` (the local stack)."""

from __future__ import annotations

import argparse
import json

from clientes_ingest.cli.common import EXIT_FAILED, CliError


def cmd_aws_init(args: argparse.Namespace) -> int:
    from clientes_ingest.devtools.aws import ProvisioningError, init_from_settings
    from clientes_ingest.settings import load_settings

    try:
        result = init_from_settings(load_settings())
    except ProvisioningError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_blocks_register(args: argparse.Namespace) -> int:
    from blocks.register import register_all
    from clientes_ingest.settings import load_settings

    for name, outcome in register_all(load_settings()).items():
        print(f"{name}: {outcome}")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from clientes_ingest.devtools.devstack import run_dev_stack

    return run_dev_stack(args)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    aws = sub.add_parser("aws", help="AWS resources").add_subparsers(dest="aws_command", required=True)
    aws.add_parser("init", help="create bucket, queue, DLQ and bucket notification (idempotent)").set_defaults(
        func=cmd_aws_init)
    blocks = sub.add_parser("blocks", help="Prefect blocks").add_subparsers(dest="blocks_command", required=True)
    blocks.add_parser("register", help="create or update the blocks and the database-writers concurrency limit "
                      "from the environment").set_defaults(func=cmd_blocks_register)
    dev = sub.add_parser("dev", help="start the whole stack locally without Docker (Prefect server + UI, "
                                     "worker, moto S3/SQS, trigger, API) until Ctrl-C")
    dev.add_argument("--db", help="SQLAlchemy URL of the stack's database (default: SQLite under --state-dir)")
    dev.add_argument("--state-dir", default=".clientes-dev", help="where the stack keeps its files and logs")
    dev.add_argument("--host", default="127.0.0.1", help="interface the services listen on")
    for name, port in (("prefect", 4200), ("api", 8000), ("trigger", 9100), ("moto", 5000)):
        dev.add_argument(f"--{name}-port", type=int, default=port, help=f"default {port}; 0 picks a free port")
    dev.add_argument("--project-dir", help="checkout with prefect.yaml (default: found from the working directory)")
    dev.set_defaults(func=cmd_dev)
