"""What a run may read (``sources.SourcePolicy``): buckets from CLIENTES_S3_BUCKET and
CLIENTES_ALLOWED_BUCKETS; local paths anywhere on the CLI's embedded default, only under
CLIENTES_ALLOWED_LOCAL_ROOTS (symlinks resolved) or the local storage root in deployment mode."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from clientes_ingest import tasks
from clientes_ingest.settings import Settings
from clientes_ingest.sources import SourceNotAllowed, SourcePolicy


def policy(tmp_path: Path, **settings: Any) -> SourcePolicy:
    return SourcePolicy.from_settings(Settings(storage_root=tmp_path / "store", **settings))


def test_buckets_are_the_configured_one_plus_the_listed_ones(tmp_path: Path) -> None:
    only = policy(tmp_path, s3_bucket="clientes-ingest")
    only.check("s3://clientes-ingest/incoming/CLIENTES_IN_0425.dat")
    with pytest.raises(SourceNotAllowed, match=r"bucket 'attacker-bucket' is not allowed .*CLIENTES_ALLOWED_BUCKETS"):
        only.check("s3://attacker-bucket/incoming/CLIENTES_IN_0425.dat")
    more = policy(tmp_path, s3_bucket="clientes-ingest", allowed_buckets=" partner-drop,archive ,")
    assert more.buckets == {"clientes-ingest", "partner-drop", "archive"}
    more.check("s3://partner-drop/x/CLIENTES_IN_0425.dat")
    for source in ("s3://attacker-bucket/incoming/x.dat", "s3://clientes-ingest.evil/incoming/x.dat",
                   "s3://partner/x.dat", "s3:///x.dat"):
        with pytest.raises(SourceNotAllowed):
            more.check(source)


@pytest.mark.parametrize("source", ["gs://clientes-ingest/x.dat", "http://127.0.0.1/x.dat", "ftp://h/x.dat"])
def test_other_schemes_are_refused(tmp_path: Path, source: str) -> None:
    with pytest.raises(SourceNotAllowed, match="only s3:// and local sources"):
        policy(tmp_path).check(source)


def test_without_allowed_roots_any_local_path_passes(tmp_path: Path) -> None:
    open_policy = policy(tmp_path)
    assert open_policy.local_roots is None  # the CLI's embedded default: the user reads their own files
    for source in ("/etc/passwd", str(tmp_path / "x.dat"), "file:///tmp/x.dat", "relative/x.dat"):
        open_policy.check(source)


def test_in_deployment_mode_local_sources_must_be_under_an_allowed_root(tmp_path: Path) -> None:
    inbox, other = tmp_path / "inbox", tmp_path / "other"
    inbox.mkdir()
    other.mkdir()
    (inbox / "CLIENTES_IN_0425.dat").write_text("a\n")
    (inbox / "passwd.dat").symlink_to("/etc/passwd")
    (inbox / "sub").symlink_to(other)
    closed = policy(tmp_path, allowed_local_roots=f"{inbox}, /nonexistent-root")
    closed.check(str(inbox / "CLIENTES_IN_0425.dat"))
    closed.check((inbox / "CLIENTES_IN_0425.dat").as_uri())
    closed.check(str(tmp_path / "store" / "objects" / "ab" / "x.dat"))  # the storage root always
    for source in ("/etc/passwd", "/proc/self/environ", "file:///etc/passwd", "file:///proc/self/environ",
                   str(inbox / "passwd.dat"),  # a symlink out of the root
                   str(inbox / "sub" / "x.dat"), str(inbox / ".." / "other" / "x.dat"), str(tmp_path / "inbox2"),
                   "relative.dat"):
        with pytest.raises(SourceNotAllowed, match="local sources must be under CLIENTES_ALLOWED_LOCAL_ROOTS"):
            closed.check(source)


@pytest.mark.parametrize("value", ["none", "", "NONE"])
def test_none_allows_no_local_source_but_the_storage(tmp_path: Path, value: str) -> None:
    closed = policy(tmp_path, allowed_local_roots=value)
    closed.check(str(tmp_path / "store" / "x.dat"))
    with pytest.raises(SourceNotAllowed):
        closed.check(str(tmp_path / "x.dat"))
    s3 = policy(tmp_path, allowed_local_roots=value, storage="s3")
    with pytest.raises(SourceNotAllowed):  # S3 storage: the local storage root is not a door either
        s3.check(str(tmp_path / "store" / "x.dat"))


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLIENTES_ALLOWED_BUCKETS", "partner-drop")
    monkeypatch.setenv("CLIENTES_ALLOWED_LOCAL_ROOTS", str(tmp_path))
    from_env = SourcePolicy.from_settings(Settings())
    assert "partner-drop" in from_env.buckets
    assert from_env.local_roots is not None and Path(os.path.realpath(tmp_path)) in from_env.local_roots


class Untouchable:
    """A storage that fails the test if the flow's staging task asks it anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"storage.{name} was used for a source that is not allowed")


def test_the_staging_task_checks_before_it_asks_the_storage(tmp_path: Path) -> None:
    closed = policy(tmp_path, s3_bucket="clientes-ingest", allowed_local_roots="none")
    for source in ("s3://attacker-bucket/incoming/CLIENTES_IN_0425.dat", "/proc/self/environ", "/etc/passwd"):
        with pytest.raises(SourceNotAllowed):
            tasks.stage_file.fn(source, Untouchable(), 1 << 20, closed)  # type: ignore[arg-type]
