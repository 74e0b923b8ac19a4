"""Static checks of the Dockerfile (no Docker engine here): it is parsed by Docker's own parser
(the `dockerfile` package wraps moby/buildkit's Go parser), then its stages, sources, base image,
user and ODBC driver are checked against the repository.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import pytest
from deploy_support import REPO, dockerfile_commands, dockerfile_stages, final_stage_env, pyproject


def _resolve_args(text: str) -> str:
    """Substitute the global ARG defaults (those before the first FROM) into a FROM value."""
    defaults: dict[str, str] = {}
    for command in dockerfile_commands():
        if command.cmd.upper() == "FROM":
            break
        if command.cmd.upper() == "ARG":
            name, _, value = command.value[0].partition("=")
            defaults[name] = value
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), text)


def _stage_names() -> list[str]:
    names = []
    for stage in dockerfile_stages():
        value = stage[0].value
        names.append(value[2] if len(value) == 3 and value[1].upper() == "AS" else "")
    return names


def _copies(stage: list[Any]) -> list[tuple[list[str], str, tuple[str, ...]]]:
    """(sources, destination, flags) of each COPY/ADD of a stage."""
    return [(list(c.value[:-1]), c.value[-1], c.flags) for c in stage if c.cmd.upper() in {"COPY", "ADD"}]


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _matches(path: str, pattern: str) -> bool:
    # Close to Docker's rules (Go filepath.Match plus a leading **/); fnmatch's * also crosses "/",
    # which only makes this check stricter.
    if pattern.startswith("**/"):
        parts = path.split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[i:]), pattern[3:]) for i in range(len(parts)))
    return fnmatch.fnmatchcase(path, pattern)


def _ignored(path: str) -> bool:
    """Whether .dockerignore excludes a context path or one of its parents; the last match wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for line in _dockerignore():
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        if any(_matches(candidate, pattern) for candidate in candidates):
            ignored = not negate
    return ignored


def test_subset_parser_agrees_with_dockerfile_package() -> None:
    # deploy_support falls back to its own parser without the `dockerfile` package (dev extra).
    dockerfile = pytest.importorskip("dockerfile")
    from deploy_support import _parse_dockerfile_subset

    ours = _parse_dockerfile_subset((REPO / "Dockerfile").read_text(encoding="utf-8"))
    theirs = dockerfile.parse_file(str(REPO / "Dockerfile"))
    assert [(c.cmd, c.flags, c.value, c.json) for c in ours] == [(c.cmd, c.flags, c.value, c.json) for c in theirs]


def test_parses_and_is_multi_stage() -> None:
    names = _stage_names()
    assert len(names) >= 2 and all(names), "each stage is named (FROM ... AS name)"
    assert len(set(names)) == len(names)


def test_python_base_image_is_pinned() -> None:
    for stage in dockerfile_stages():
        image = _resolve_args(stage[0].value[0])
        if image in _stage_names():
            continue
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image


def test_copy_sources_exist_and_reach_the_build_context() -> None:
    names = _stage_names()
    for stage in dockerfile_stages():
        for sources, _, flags in _copies(stage):
            from_stage = [f.split("=", 1)[1] for f in flags if f.startswith("--from=")]
            if from_stage:
                assert from_stage[0] in names[: names.index(from_stage[0]) + 1], from_stage
                continue
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert not _ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_check_is_not_vacuous() -> None:
    assert _ignored(".git") and _ignored("tests/deploy/test_dockerfile.py") and _ignored(".env")
    assert _ignored("src/clientes_ingest/__pycache__") and _ignored("CLIENTES_IN_0425.dat")
    assert not _ignored("src/clientes_ingest/settings.py") and not _ignored("README.md")


def test_build_stage_installs_the_whole_project() -> None:
    build = dockerfile_stages()[0]
    copied = {source.rstrip("/") for sources, _, _ in _copies(build) for source in sources}
    package_dirs = set(pyproject()["tool"]["setuptools"]["package-dir"].values())
    assert {"pyproject.toml", pyproject()["project"]["readme"]} | {d for d in package_dirs if d} <= copied
    runs = " ".join(c.value[0] for c in build if c.cmd.upper() == "RUN")
    assert re.search(r"pip install (--no-cache-dir )?(--no-deps )?\.(\s|$)", runs), "the project: pip install ."


def test_build_installs_the_hashed_lock_before_the_project() -> None:
    # Reproducible images: every dependency comes from requirements.lock, hash-checked; the project
    # install resolves nothing (--no-deps), so nothing unpinned can slip in.
    build = dockerfile_stages()[0]
    runs = [c.value[0] for c in build if c.cmd.upper() == "RUN"]
    lock_install = [i for i, r in enumerate(runs) if "pip install --require-hashes --no-deps -r requirements.lock" in r]
    project_install = [i for i, r in enumerate(runs) if re.search(r"pip install --no-deps \.(\s|$)", r)]
    assert lock_install and project_install and lock_install[0] < project_install[0]
    assert not [r for r in runs if re.search(r"pip install(?! --require-hashes| --no-deps)", r)], runs
    copied = {source for sources, _, _ in _copies(build) for source in sources}
    assert "requirements.lock" in copied


def test_runtime_stage_has_what_runs_from_the_working_directory() -> None:
    final = dockerfile_stages()[-1]
    copied = {source.rstrip("/") for sources, _, flags in _copies(final) for source in sources
              if not any(f.startswith("--from=") for f in flags)}
    # prefect.yaml entrypoints, the work pool template used by the worker, the DDL.
    assert {"prefect.yaml", "flows", "deployments", "sql"} <= copied
    workdirs = [c.value[0] for c in final if c.cmd.upper() == "WORKDIR"]
    assert workdirs[-1] == "/opt/clientes-ingest"


def test_odbc_driver_18_is_installed() -> None:
    runs = " ".join(c.value[0] for stage in dockerfile_stages()[1:] for c in stage if c.cmd.upper() == "RUN")
    assert "packages.microsoft.com" in runs
    assert re.search(r"ACCEPT_EULA=Y apt-get install [^;&]*\bmsodbcsql18\b", runs)
    assert re.search(r"apt-get install [^;&]*\bunixodbc\b", runs)
    assert "rm -rf /var/lib/apt/lists" in runs


def test_runs_as_a_non_root_numeric_user() -> None:
    final = dockerfile_stages()[-1]
    kinds = [c.cmd.upper() for c in final]
    users = [i for i, k in enumerate(kinds) if k == "USER"]
    assert users, "the final stage sets no USER"
    starts = [i for i, k in enumerate(kinds) if k in {"CMD", "ENTRYPOINT"}]
    assert starts and users[-1] < min(starts), "USER must come before CMD/ENTRYPOINT"
    user = final[users[-1]].value[0]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: Kubernetes' runAsNonRoot needs a numeric non-zero uid"
    created = " ".join(c.value[0] for c in final if c.cmd.upper() == "RUN")
    assert f"--uid {uid}" in created, "the user is created in the image"


def test_matches_the_kubernetes_security_context() -> None:
    from deploy_support import load_yaml_docs

    uid = int(next(c.value[0] for c in reversed(dockerfile_stages()[-1]) if c.cmd.upper() == "USER").split(":")[0])
    for path in ("k8s/api.yaml", "k8s/trigger.yaml", "k8s/prefect-worker.yaml"):
        for doc in load_yaml_docs(REPO / path):
            if doc["kind"] == "Deployment":
                assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid, path


def test_no_entrypoint_so_prefect_args_run_as_the_command() -> None:
    # The Kubernetes worker sets the container's args to `prefect flow-run execute`.
    assert "ENTRYPOINT" not in [c.cmd.upper() for c in dockerfile_stages()[-1]]


def test_runtime_environment() -> None:
    env = final_stage_env()
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["CLIENTES_PROJECT_DIR"] == "/opt/clientes-ingest"
