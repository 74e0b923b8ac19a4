"""The hashed lock files match pyproject.toml, offline (no package index is reached).

requirements.lock (runtime: the Docker image) and requirements-dev.lock (runtime + dev + bench:
.ci/run) are written by `.ci/lock` (uv pip compile --generate-hashes). A fresh compile needs the index,
so instead of recompiling this checks what a fresh compile would have to agree with: the header is
`.ci/lock`'s command, the packages pyproject.toml declares are exactly the ones the lock says it pinned
for clientes-ingest, every pin satisfies its declared specifier, every pin has hashes, and the two
locks pin the same versions.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

import pytest
from deploy_support import REPO, pyproject
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

LOCKS = {"requirements.lock": (), "requirements-dev.lock": ("dev", "bench")}
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


@dataclass
class Pin:
    name: str
    version: str
    marker: str | None
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def parse_lock(text: str) -> list[Pin]:
    """The pins of a `uv pip compile` output: name, version, marker, hashes and its `# via` sources."""
    pins: list[Pin] = []
    in_via = False
    for line in text.splitlines():
        entry = ENTRY.match(line)
        if entry:
            pins.append(Pin(canonicalize_name(entry.group(1)), entry.group(2), entry.group(3)))
            in_via = False
            continue
        stripped = line.strip()
        if stripped.startswith("--hash=sha256:"):
            pins[-1].hashes.append(stripped.split(":", 1)[1].rstrip(" \\"))
        elif stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                pins[-1].via.append(rest)
        elif in_via and stripped.startswith("#   "):
            pins[-1].via.append(stripped.removeprefix("#   ").strip())
        elif stripped and not stripped.startswith("#"):
            raise AssertionError(f"unexpected line in a lock: {line!r}")
    return pins


def _declared(extras: tuple[str, ...]) -> list[Requirement]:
    project = pyproject()["project"]
    specs = [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]
    return [Requirement(spec) for spec in specs]


def _lock(name: str) -> tuple[str, list[Pin]]:
    text = (REPO / name).read_text(encoding="utf-8")
    return text, parse_lock(text)


def _lock_commands() -> dict[str, list[str]]:
    """The `uv pip compile` command lines of .ci/lock, by output file, with its common options expanded."""
    script = (REPO / ".ci/lock").read_text(encoding="utf-8")
    common = shlex.split(re.search(r"^common=\((.*)\)$", script, re.MULTILINE).group(1))
    commands = {}
    for line in script.splitlines():
        if line.startswith("uv pip compile"):
            argv = [arg for word in shlex.split(line) for arg in (common if word == "${common[@]}" else [word])]
            argv = [a for a in argv if a not in {"--quiet", "$@"}]
            commands[argv[argv.index("-o") + 1]] = argv
    return commands


@pytest.mark.parametrize(("name", "extras"), LOCKS.items())
def test_lock_header_is_the_command_of_ci_lock(name: str, extras: tuple[str, ...]) -> None:
    text, _ = _lock(name)
    header = text.splitlines()[1].lstrip("#").strip()
    command = _lock_commands()[name]
    assert shlex.split(header) == command, f"{name} was not written by .ci/lock: run .ci/lock"
    assert [command[i + 1] for i, a in enumerate(command) if a == "--extra"] == list(extras)
    assert "--generate-hashes" in command


@pytest.mark.parametrize(("name", "extras"), LOCKS.items())
def test_lock_pins_exactly_what_pyproject_declares(name: str, extras: tuple[str, ...]) -> None:
    _, pins = _lock(name)
    declared = {canonicalize_name(r.name) for r in _declared(extras)}
    direct = {p.name for p in pins if "clientes-ingest (pyproject.toml)" in p.via}
    assert direct - declared == set(), f"{name} pins packages pyproject.toml no longer declares: run .ci/lock"
    assert declared - direct == set(), f"pyproject.toml declares packages {name} lacks: run .ci/lock"


@pytest.mark.parametrize(("name", "extras"), LOCKS.items())
def test_every_pin_satisfies_its_declared_specifier(name: str, extras: tuple[str, ...]) -> None:
    _, pins = _lock(name)
    by_name: dict[str, list[Pin]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(pin)
    for requirement in _declared(extras):
        for pin in by_name[canonicalize_name(requirement.name)]:
            assert requirement.specifier.contains(Version(pin.version), prereleases=True), (
                f"{name}: {pin.name}=={pin.version} is outside pyproject.toml's {requirement}: run .ci/lock")
        for extra in requirement.extras:  # e.g. psycopg[binary] pulls psycopg-binary
            assert any(f"{requirement.name}" in via for p in pins for via in p.via if p.name != requirement.name), extra


@pytest.mark.parametrize("name", LOCKS)
def test_every_pin_has_hashes(name: str) -> None:
    _, pins = _lock(name)
    assert len(pins) > 50
    unhashed = [p.name for p in pins if not p.hashes]
    assert unhashed == []
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for p in pins for h in p.hashes)


def test_dev_lock_pins_the_runtime_versions() -> None:
    # CI tests the versions the image ships.
    def versions(name: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for pin in _lock(name)[1]:  # markers may differ (the dev extras widen some), versions may not
            found.setdefault(pin.name, set()).add(pin.version)
        return found

    runtime, dev = versions("requirements.lock"), versions("requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime


def test_the_check_sees_a_drifted_pyproject() -> None:
    # Not vacuous: a dependency added to pyproject.toml without relocking is reported.
    _, pins = _lock("requirements.lock")
    declared = {canonicalize_name(r.name) for r in _declared(())} | {"sqlglot"}
    direct = {p.name for p in pins if "clientes-ingest (pyproject.toml)" in p.via}
    assert declared - direct == {"sqlglot"}
    pin = next(p for p in pins if p.name == "python-multipart")
    assert not Requirement("python-multipart<0.0.18").specifier.contains(Version(pin.version))


def test_security_floors() -> None:
    declared = {canonicalize_name(r.name): r for r in _declared(("dev",))}
    # deployments/upload.py imports python_multipart (0.0.13+); before 0.0.18: CVE-2024-53981 (DoS).
    assert not declared["python-multipart"].specifier.contains(Version("0.0.17"))
    assert declared["python-multipart"].specifier.contains(Version("0.0.18"))
    # Prefect integrations are bounded like prefect itself: a new minor of a 0.x integration may break.
    for name in ("prefect", "prefect-aws", "prefect-kubernetes", "prefect-dask"):
        assert any(spec.operator == "<" for spec in declared[name].specifier), name


def test_ci_and_docker_install_from_the_locks() -> None:
    ci = (REPO / ".ci/run").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements-dev.lock" in ci
    assert re.search(r"--no-deps -e \.", ci), "the project itself is still installed (editable), alone"
    assert "install -q -e '.[dev,bench]'" not in ci, "installing from pyproject.toml would resolve again"
