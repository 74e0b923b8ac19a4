"""The package's layering: dev tooling (``clientes_ingest.devtools``) is imported only by the CLI and the
tests, never by the pipeline (flows, tasks, services, blocks)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = [ROOT / "flows", ROOT / "blocks", ROOT / "deployments", ROOT / "src" / "clientes_ingest"]
ALLOWED = [ROOT / "src" / "clientes_ingest" / "devtools", ROOT / "src" / "clientes_ingest" / "cli"]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_cli_imports_dev_tooling() -> None:
    offenders = []
    for folder in PIPELINE:
        for path in folder.rglob("*.py"):
            if any(path.is_relative_to(allowed) for allowed in ALLOWED):
                continue
            if any(name.startswith("clientes_ingest.devtools") for name in imported_modules(path)):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_cli_reaches_dev_tooling() -> None:
    # The check above means something only if the scan sees these imports where they are allowed.
    cli_imports = set().union(*(imported_modules(p) for p in (ROOT / "src/clientes_ingest/cli").glob("*.py")))
    assert "clientes_ingest.devtools.devstack" in cli_imports
