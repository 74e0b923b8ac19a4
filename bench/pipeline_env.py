"""A production-like Python environment for the pipeline cases: the project installed as the image
installs it (``Dockerfile``: ``pip install .``, no extras, not editable), in a venv of the cache dir.

Why: the dev venv has the ``bench`` extra (pandas), and pyarrow imports pandas on first use when it is
installed: +35-50 MiB RSS in every pipeline process that the production image never pays.

``ensure_pipeline_env()`` creates ``<cache>/pipeline-venv`` once (``python -m venv`` + ``pip install``
of a copy of pyproject.toml, README.md, src/, flows/, blocks/, deployments/: what the Dockerfile
copies, so pip never writes build files into the working tree). Third-party versions are pinned to
the dev venv's (``pip freeze`` as constraints) so the two environments differ only by the extras.
The venv is keyed by a hash of those files: when the source changed, the project alone is
reinstalled (``--no-deps --force-reinstall``); when pyproject.toml changed, the venv is made anew.
A module the pipeline imports but pyproject.toml does not declare (so the image would fail with
ModuleNotFoundError) is installed from the dev venv's version and recorded (``undeclared_added``):
the report flags it, as the image needs it declared.
Requires: pip able to install the dependencies (here: the local mirror configured for pip).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.prepare import cache_dir

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "src", "flows", "blocks", "deployments", "automations")
SKIPPED_PARTS = ("__pycache__", ".egg-info", ".mypy_cache", ".pytest_cache")
PANDAS_CHECK = "import importlib.util, json; print(json.dumps(importlib.util.find_spec('pandas') is None))"
# What a flow run and a chunk worker import; a ModuleNotFoundError here is a dependency pyproject.toml misses.
IMPORT_CHECK = ("import clientes_ingest.rules, clientes_ingest.loader, clientes_ingest.chunks, "
                "clientes_ingest.chunk_worker, clientes_ingest.cli, flows.ingest")


@dataclass(frozen=True)
class PipelineEnv:
    """Where the pipeline cases run from, and what was checked about it."""

    kind: str  # "production-like" (the cache venv) or "dev" (the interpreter running the bench)
    bin_dir: str
    python: str
    pandas_absent: bool
    source_digest: str
    install: str
    action: str  # "created", "reinstalled project", "reused", "-"
    undeclared_added: tuple[str, ...] = ()  # imported by the pipeline, missing from pyproject.toml's dependencies

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def executable(self, name: str) -> str:
        """The path of a console script (``clientes-ingest``) of this environment."""
        return str(Path(self.bin_dir) / name)


def source_files(root: Path = REPO) -> list[Path]:
    """The files the image installs from, sorted (build and cache leftovers excluded)."""
    files: list[Path] = []
    for name in SOURCES:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and not any(s in part for part in p.parts
                                                                               for s in SKIPPED_PARTS)
                      and p.suffix not in (".pyc", ".pyo")]
    return sorted(files)


def source_digest(root: Path = REPO) -> str:
    """sha256 over the relative paths and contents of ``source_files``: changes when the installed code would."""
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def dev_env() -> PipelineEnv:
    """The interpreter running the benchmark (the dev venv, with the bench extra)."""
    bin_dir = Path(sys.executable).parent
    return PipelineEnv("dev", str(bin_dir), sys.executable, _pandas_absent(sys.executable), source_digest(), "dev",
                       "-")


def ensure_pipeline_env(root: Path = REPO, venv: Path | None = None) -> PipelineEnv:
    """Create or refresh the production-like venv; raise RuntimeError naming the failed step."""
    venv = venv or cache_dir() / "pipeline-venv"
    stamp = venv / "clientes-bench-source.json"
    python = venv / "bin" / "python"
    digest, deps_digest = source_digest(root), hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()
    previous = json.loads(stamp.read_text()) if stamp.exists() and python.exists() else None
    if previous is None or previous["deps_digest"] != deps_digest:
        shutil.rmtree(venv, ignore_errors=True)
        _step(["python -m venv", str(venv)], [sys.executable, "-m", "venv", str(venv)])
        _install(root, python, venv, [])
        action, added = "created", []
    elif previous["digest"] != digest:
        _install(root, python, venv, ["--force-reinstall", "--no-deps"])
        action, added = "reinstalled project", list(previous.get("undeclared_added", []))
    else:
        action, added = "reused", list(previous.get("undeclared_added", []))
    added += _add_undeclared(python, venv)
    stamp.write_text(json.dumps({"digest": digest, "deps_digest": deps_digest, "undeclared_added": added}))
    return PipelineEnv("production-like", str(venv / "bin"), str(python), _pandas_absent(str(python)), digest,
                       "pip install <copy of the repo> (no extras, not editable; versions pinned to the dev venv)",
                       action, tuple(added))


def _add_undeclared(python: Path, venv: Path, attempts: int = 5) -> list[str]:
    """Install the modules the pipeline imports but the project does not declare; return their names."""
    added: list[str] = []
    for _ in range(attempts):
        proc = subprocess.run([str(python), "-c", IMPORT_CHECK], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return added
        missing = re.search(r"ModuleNotFoundError: No module named '([\w]+)", proc.stderr)
        if missing is None:
            raise RuntimeError(f"pipeline venv: the pipeline modules do not import:\n{proc.stderr[-2000:]}")
        name = missing.group(1)
        print(f"[bench] pipeline venv: the pipeline imports {name} but pyproject.toml does not declare it; "
              f"installing it (the image built from pyproject.toml would fail the same way)", flush=True)
        _step(["pip install", name], [str(python), "-m", "pip", "install", "-q", "-c",
                                      str(venv.parent / "pipeline-venv-constraints.txt"), name])
        added.append(name)
    raise RuntimeError(f"pipeline venv: still missing modules after installing {added}")


def _install(root: Path, python: Path, venv: Path, options: list[str]) -> None:
    """``pip install`` a copy of what the Dockerfile copies, constrained to the dev venv's versions."""
    copy = venv.parent / "pipeline-venv-src"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    for name in SOURCES:
        path = root / name
        if path.is_dir():
            shutil.copytree(path, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, copy / name)
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout
    constraints = venv.parent / "pipeline-venv-constraints.txt"
    constraints.write_text("".join(line + "\n" for line in frozen.splitlines()
                                   if line and not line.startswith(("-e", "clientes-ingest", "clientes_ingest"))))
    try:
        _step(["pip install", *options, str(copy)],
              [str(python), "-m", "pip", "install", "-q", "-c", str(constraints), *options, str(copy)])
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _step(what: list[str], cmd: list[str]) -> None:
    print(f"[bench] pipeline venv: {' '.join(what)}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline venv: {' '.join(what)} failed (exit {proc.returncode}); fix it or run with "
                           f"--pipeline-env dev:\n{(proc.stdout + proc.stderr)[-2000:]}")


def _pandas_absent(python: str) -> bool:
    out = subprocess.run([python, "-c", PANDAS_CHECK], capture_output=True, text=True, check=True).stdout
    return bool(json.loads(out))


if __name__ == "__main__":
    print(json.dumps(ensure_pipeline_env().as_dict(), indent=1))
