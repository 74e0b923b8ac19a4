"""The ``schema`` command: print, write or apply the DDL."""

from __future__ import annotations

import argparse
from pathlib import Path

from clientes_ingest.cli.common import database


def cmd_schema(args: argparse.Namespace) -> int:
    from clientes_ingest.db import DIALECTS, schema_ddl

    if args.apply:
        db = database(args)
        db.ensure_schema()
        print(f"schema applied to {db.safe_url}")
        return 0
    if args.write_dir:
        out = Path(args.write_dir)
        out.mkdir(parents=True, exist_ok=True)
        for dialect in DIALECTS:
            (out / f"{dialect}.sql").write_text(schema_ddl(dialect), encoding="utf-8")
            print(f"wrote {out / f'{dialect}.sql'}")
        return 0
    print(schema_ddl(args.dialect), end="")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = sub.add_parser("schema", help="print the DDL for a dialect, or apply it to a database")
    schema.add_argument("--dialect", choices=("mssql", "postgresql", "sqlite"), default="mssql")
    schema.add_argument("--apply", action="store_true", help="create the missing tables in --db")
    schema.add_argument("--db")
    schema.add_argument("--write-dir", help="write <dialect>.sql for every dialect into this directory")
    schema.set_defaults(func=cmd_schema)
