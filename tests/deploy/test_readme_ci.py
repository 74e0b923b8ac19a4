"""CI runs exactly the test command README.md documents (its first code block's second command)."""

from __future__ import annotations

import re

from deploy_support import REPO


def readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, flags=re.S)
    assert block, "README.md starts with a bash block of commands"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readmes_test_command() -> None:
    install_and_run, tests = readme_commands()
    assert "clientes-ingest run" in install_and_run
    assert tests.startswith("pytest")
    ci_lines = [line.strip() for line in (REPO / ".ci/run").read_text(encoding="utf-8").splitlines()]
    assert ci_lines[-1] == tests, "the last step of .ci/run is the README's test command"


def test_the_test_command_runs_in_parallel_files() -> None:
    # Whole test files per worker: module-scoped fixtures (servers, stacks) start once per file.
    _, tests = readme_commands()
    assert re.search(r"-n \d+", tests) and "--dist loadfile" in tests
