"""The one settings model: one meaning and one default per variable, one size parser, settings in use
within a block instead of environment writes, and no other module reading the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from clientes_ingest.settings import DEFAULT_DEPLOYMENT, Settings, load_settings, parse_size, use_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "expected"), [
    ("4096", 4096), (4096, 4096), ("32MB", 32_000_000), ("32MiB", 32 * 2**20), ("32mib", 32 * 2**20),
    ("1GB", 10**9), ("1GiB", 2**30), ("40KB", 40_000), ("40KiB", 40 * 1024), ("1.5MB", 1_500_000),
    ("32 MiB", 32 * 2**20),
])
def test_sizes_are_decimal_with_kb_mb_gb_and_binary_with_kib_mib_gib(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "32XB", "-1", "0", 0, "MB"])
def test_a_bad_size_is_a_clear_error(text: str | int) -> None:
    with pytest.raises(ValueError, match=r"cannot read size|must be positive"):
        parse_size(text)


def test_chunk_size_and_generate_size_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTES_CHUNK_SIZE", "32MB")
    monkeypatch.setenv("CLIENTES_API_MAX_UPLOAD_BYTES", "32MB")
    settings = Settings()
    assert settings.chunk_size == settings.api.max_upload_bytes == parse_size("32MB") == 32_000_000


def test_one_deployment_variable_for_the_api_the_trigger_and_the_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLIENTES_DEPLOYMENT", "CLIENTES_LAUNCH_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert (Settings().deployment, Settings().launch_mode) == (DEFAULT_DEPLOYMENT, "auto") == (
        "ingest-clientes/local", "auto")
    monkeypatch.setenv("CLIENTES_DEPLOYMENT", "ingest-clientes/k8s")
    assert Settings().deployment == "ingest-clientes/k8s"
    assert not hasattr(Settings().trigger, "deployment") and not hasattr(Settings().trigger, "mode")


def test_sections_read_their_own_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTES_API_PORT", "9911")
    monkeypatch.setenv("CLIENTES_TRIGGER_PORT", "9200")
    monkeypatch.setenv("CLIENTES_RETRY_BACKOFF_SECONDS", "0.5")
    settings = Settings()
    assert (settings.api.port, settings.trigger.port, settings.retry.backoff_seconds) == (9911, 9200, 0.5)


def test_use_settings_is_what_load_settings_answers_within_the_block(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLIENTES_DB_URL", "sqlite:///from-env.db")
    chosen = Settings(db_url=f"sqlite:///{tmp_path / 'chosen.db'}", chunk_size="1MiB")
    with use_settings(chosen):
        assert load_settings() is chosen
        overridden = load_settings(chunk_size="2MiB")
        assert overridden.chunk_size == 2 * 2**20
        assert overridden.db_url.get_secret_value() == chosen.db_url.get_secret_value()
    assert load_settings().db_url.get_secret_value() == "sqlite:///from-env.db"


def environment_readers(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                and node.attr in {"environ", "getenv", "putenv"}:
            return True
    return False


def test_only_settings_reads_or_writes_the_environment() -> None:
    # Allowed: settings itself; the package's import of pyarrow's allocator choice (read by Arrow, not us);
    # dev tooling, which builds the environment of the child processes it starts.
    allowed = {ROOT / "src/clientes_ingest/settings.py", ROOT / "src/clientes_ingest/__init__.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("src/clientes_ingest", "flows", "deployments", "blocks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path not in allowed and "devtools" not in path.parts and environment_readers(path)
    ]
    assert offenders == []


def test_the_dev_stack_finds_the_project_dir_through_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clientes_ingest.devtools.provision import find_project_dir

    (tmp_path / "prefect.yaml").write_text("name: clientes-ingest\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setenv("CLIENTES_PROJECT_DIR", str(tmp_path))
    assert find_project_dir() == tmp_path.resolve()
    monkeypatch.delenv("CLIENTES_PROJECT_DIR")
    assert find_project_dir(tmp_path) == tmp_path.resolve()
