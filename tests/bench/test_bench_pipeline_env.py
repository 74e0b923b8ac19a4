"""bench.pipeline_env: the key of the production-like venv (pure file hashing, no venv created)."""

from __future__ import annotations

from pathlib import Path

from bench.pipeline_env import source_digest, source_files


def make_tree(root: Path) -> None:
    (root / "src" / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "flows").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "src" / "pkg" / "__init__.py").write_text("X = 1\n")
    (root / "src" / "pkg" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0")
    (root / "flows" / "ingest.py").write_text("pass\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("pass\n")


def test_digest_follows_installed_sources_only(tmp_path: Path) -> None:
    make_tree(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in source_files(tmp_path)] == [
        "flows/ingest.py", "pyproject.toml", "src/pkg/__init__.py"]
    before = source_digest(tmp_path)
    (tmp_path / "src" / "pkg" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\1")
    (tmp_path / "tests" / "test_x.py").write_text("changed\n")
    assert source_digest(tmp_path) == before  # caches and tests are not installed
    (tmp_path / "src" / "pkg" / "__init__.py").write_text("X = 2\n")
    assert source_digest(tmp_path) != before


def dockerfile_build_sources(dockerfile: Path) -> set[str]:
    """What the image's build stage copies before ``pip install .`` (the lock is installed apart)."""
    lines = dockerfile.read_text().splitlines()
    build = lines[next(i for i, line in enumerate(lines) if line.startswith("FROM") and " AS build" in line):]
    build = build[:next(i for i, line in enumerate(build) if line.strip() == "RUN pip install --no-deps .")]
    sources: set[str] = set()
    for line in build:
        if line.startswith("COPY "):
            sources.update(part.strip("./") for part in line.split()[1:-1])
    return sources - {"requirements.lock"}


def test_production_like_install_copies_what_the_image_copies() -> None:
    # The bench's pipeline venv must build from the same sources as the image, or it fails (or, worse,
    # measures another package) when a package directory is added to pyproject.toml and the Dockerfile.
    from bench.pipeline_env import REPO, SOURCES
    assert set(SOURCES) == dockerfile_build_sources(REPO / "Dockerfile")
