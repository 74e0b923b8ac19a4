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
