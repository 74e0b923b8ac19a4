"""Helpers shared by the tests of deployment artifacts (prefect.yaml, Dockerfile, compose, k8s/).

These tests need no Docker engine, cluster or network: they parse the files and validate them with
schemas that ship in packages (kubernetes-validate, prefect, prefect-kubernetes) or in
tests/deploy/schemas/.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).resolve().parent / "schemas"
IMAGE_REPOSITORY = "ghcr.io/clientes-ingest/clientes-ingest"


def flow_def(entrypoint: str) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef, ast.Call | None]:
    """The function a prefect.yaml entrypoint names, and its @flow(...) call (None for a bare @flow); read
    by AST, without importing it."""
    path, _, name = entrypoint.partition(":")
    source = REPO / path
    assert source.is_file(), f"entrypoint {entrypoint}: {path} does not exist"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if (isinstance(target, ast.Name) and target.id == "flow") or (
                    isinstance(target, ast.Attribute) and target.attr == "flow"
                ):
                    return node, deco if isinstance(deco, ast.Call) else None
            raise AssertionError(f"entrypoint {entrypoint}: {name} is not decorated with @flow")
    raise AssertionError(f"entrypoint {entrypoint}: no function {name} defined at top level of {path}")


def flow_name(entrypoint: str) -> str:
    """The flow name of an entrypoint: deployments are addressed as <flow name>/<deployment name>."""
    node, call = flow_def(entrypoint)
    for kw in call.keywords if call else []:
        if kw.arg == "name":
            assert isinstance(kw.value, ast.Constant), "flow name must be a literal"
            return str(kw.value.value)
    return node.name.replace("_", "-")  # Prefect's default flow name


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    """All non-empty documents of a (multi-document) YAML file."""
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def project_version() -> str:
    return str(pyproject()["project"]["version"])


def console_scripts() -> dict[str, str]:
    """[project.scripts] of pyproject.toml: command name -> "module:function"."""
    return dict(pyproject()["project"]["scripts"])


def split_shell(script: str) -> list[list[str]]:
    """The simple commands of a `sh -c` script made of `&&`/`;`/newline-separated commands."""
    commands: list[list[str]] = []
    for part in re.split(r"&&|;|\n", script):
        argv = shlex.split(part)
        if argv and argv[0] == "exec":
            argv = argv[1:]
        if argv:
            commands.append(argv)
    return commands


def commands_of(command: list[str] | str) -> list[list[str]]:
    """The argv lists a container command runs (unwrapping `sh -c SCRIPT`)."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if argv and argv[0] in {"sh", "/bin/sh", "bash", "/bin/bash"}:
        flags = [a for a in argv[1:] if a.startswith("-")]
        assert any("c" in f for f in flags), f"shell without -c: {argv}"
        return split_shell(argv[-1])
    return [argv]


def parse_prefect_cli(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse `prefect ...` with Prefect's own CLI parser, without running it.

    Returns the command's function name and its bound arguments; raises on an unknown command or
    option, like the real CLI would.
    """
    from prefect.cli._app import _app

    assert argv[0] == "prefect", argv
    _, meta_bound, _ = _app.meta.parse_args(argv[1:], print_error=False, exit_on_error=False)
    tokens = list(meta_bound.arguments.get("tokens", ()))
    func, bound, _ = _app.parse_args(tokens, print_error=False, exit_on_error=False)
    return f"{func.__module__}.{func.__name__}", dict(bound.arguments)


def parse_clientes_cli(argv: list[str]) -> argparse.Namespace:
    """Parse `clientes-ingest ...` with the project's own argparse parser, without running it."""
    from clientes_ingest.cli import build_parser

    assert argv[0] == "clientes-ingest", argv
    parser = build_parser()
    try:
        return parser.parse_args(argv[1:])
    except SystemExit as exc:  # argparse reports errors by exiting
        raise AssertionError(f"clientes-ingest rejects {argv[1:]}") from exc


def check_command(argv: list[str]) -> str:
    """Assert that a command a container runs exists in the project; return what it resolved to."""
    program = argv[0]
    if program == "prefect":
        return parse_prefect_cli(argv)[0]
    if program == "clientes-ingest":
        return str(parse_clientes_cli(argv).func.__name__)
    scripts = console_scripts()
    assert program in scripts, f"{program!r} is neither prefect nor a console script of pyproject.toml"
    assert len(argv) == 1, f"{program} takes its settings from the environment, got args {argv[1:]}"
    module, _, function = scripts[program].partition(":")
    path = REPO / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{program} -> {scripts[program]}: {path.relative_to(REPO)} does not exist"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    assert function in names, f"{program} -> {scripts[program]}: no function {function} in {path.name}"
    return scripts[program]


# Environment-variable names whose values are secrets.
SECRET_KEY = re.compile(r"^[A-Z0-9_]*(PASSWORD|SECRET|TOKEN|DB_URL|API_KEY)[A-Z0-9_]*$")


@dataclass(frozen=True)
class DockerCommand:
    """One instruction, shaped like `dockerfile.Command` (cmd, flags, value, json)."""

    cmd: str
    flags: tuple[str, ...]
    value: tuple[str, ...]
    json: bool


def _parse_dockerfile_subset(text: str) -> tuple[DockerCommand, ...]:
    """A small Dockerfile parser for the syntax this repository uses (no heredocs, default escape)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments inside a continued instruction are dropped too, as Docker does
        if line.endswith("\\"):
            pending += raw.rstrip()[:-1]
            continue
        logical.append(pending + raw)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    commands = []
    for line in logical:
        word, _, rest = line.strip().partition(" ")
        cmd, rest = word.upper(), rest.strip()
        flags: list[str] = []
        if cmd in {"FROM", "COPY", "ADD", "RUN"}:
            while rest.startswith("--"):
                flag, _, rest = rest.partition(" ")
                flags.append(flag)
                rest = rest.strip()
        if rest.startswith("[") and cmd in {"CMD", "ENTRYPOINT", "RUN", "COPY", "ADD", "SHELL", "VOLUME"}:
            commands.append(DockerCommand(cmd, tuple(flags), tuple(json.loads(rest)), True))
            continue
        if cmd == "ENV":
            tokens = shlex.split(rest)
            if "=" in tokens[0]:
                value = tuple(part for token in tokens for part in token.split("=", 1))
            else:
                value = (tokens[0], rest[len(tokens[0]) :].strip())
        elif cmd in {"RUN", "CMD", "ENTRYPOINT", "WORKDIR", "USER", "ARG", "SHELL", "HEALTHCHECK"}:
            value = (rest,)
        else:
            value = tuple(rest.split())
        commands.append(DockerCommand(cmd, tuple(flags), value, False))
    return tuple(commands)


def dockerfile_commands() -> tuple[Any, ...]:
    """The Dockerfile's instructions, parsed by Docker's own (Go) parser from the `dockerfile`
    package when it is installed (dev extra), else by the subset parser above."""
    try:
        import dockerfile
    except ImportError:
        return _parse_dockerfile_subset((REPO / "Dockerfile").read_text(encoding="utf-8"))
    return tuple(dockerfile.parse_file(str(REPO / "Dockerfile")))


def dockerfile_stages() -> list[list[Any]]:
    """The instructions of each build stage (global ARGs before the first FROM are dropped)."""
    stages: list[list[Any]] = []
    for command in dockerfile_commands():
        if command.cmd.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(command)
    return stages


def final_workdir() -> str:
    workdirs = [c.value[0] for c in dockerfile_stages()[-1] if c.cmd.upper() == "WORKDIR"]
    assert workdirs, "the final stage sets no WORKDIR"
    return str(workdirs[-1])


def final_stage_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for command in dockerfile_stages()[-1]:
        if command.cmd.upper() == "ENV":
            values = list(command.value)
            env.update(zip(values[::2], values[1::2], strict=True))
    return env
