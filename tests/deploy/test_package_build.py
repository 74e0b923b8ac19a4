"""The installable package as a real install lays it out (the image's ``pip install .``, not editable).

An editable install (the dev venv, CI) finds every module under ``src/`` whatever pyproject.toml lists;
a real install ships only the packages pyproject.toml names. This runs setuptools' ``build_py`` (what a
wheel's files come from) on a copy of what the Dockerfile copies and checks that every Python package
of the repository's installed folders is in the build, and the console scripts' modules too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from deploy_support import REPO, pyproject


def installed_folders() -> dict[str, str]:
    """Each installed folder and the import prefix of its packages, from pyproject's ``package-dir``
    (``"" = "src"``: the packages under src/ are top-level)."""
    return {folder: prefix for prefix, folder in pyproject()["tool"]["setuptools"]["package-dir"].items()}


def repo_packages() -> set[str]:
    """Every folder with an ``__init__.py`` under the installed folders, as an import name."""
    names: set[str] = set()
    for folder, prefix in installed_folders().items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            names.add(".".join(p for p in (prefix, *parts) if p))
    return names


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The files of the build (relative paths), from a copy of the image's build-stage sources."""
    copy = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", *installed_folders()):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, copy / name)
    out = tmp_path_factory.mktemp("build")
    proc = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                           "--build-lib", str(out)], cwd=copy, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def test_a_real_install_ships_every_package(built: set[str]) -> None:
    shipped = {name.rsplit("/", 1)[0].replace("/", ".") for name in built if name.endswith("/__init__.py")}
    assert repo_packages() - shipped == set()
    assert {"clientes_ingest.cli", "clientes_ingest.devtools", "flows"} <= shipped


def test_the_console_scripts_modules_are_in_the_build(built: set[str]) -> None:
    files = built
    for target in pyproject()["project"]["scripts"].values():
        module = target.split(":")[0].replace(".", "/")
        assert f"{module}.py" in files or f"{module}/__init__.py" in files, target
