"""Staging: put a source file in storage (or find it there) while hashing and planning its chunks,
in ONE pass over the bytes in Python (a local file is first copied by the kernel, then that copy is
hashed and planned; see ``LocalStorage.store``). Also resolves dated source templates of scheduled runs.

A run started for a registered job first pins the object version the job names and checks the content
it was registered for (``stage_for_job``): an upload already planned while it was stored is not read
again, and other bytes are never planned or loaded in its place.

Requires: a ``Storage``; for ``s3://`` sources, a storage that owns the URI (``S3Storage``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from pathlib import Path
from urllib.parse import unquote, urlparse

from clientes_ingest import progress
from clientes_ingest.chunks import ChunkPlanner
from clientes_ingest.jobs import JobSource, StagedFile
from clientes_ingest.storage import ObjectVersion, Storage


class SourceError(ValueError):
    """The source cannot be read; the message names it and the cause."""


class ContentMismatch(SourceError):
    """The source's bytes are not the content its job was registered for; nothing of them is loaded."""


TEMPLATE_FIELDS = ("MMYY", "YYYY", "MM", "DD", "YY", "YYYYMMDD")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def resolve_source(source: str, when: dt.datetime | dt.date) -> str:
    """Fill ``{MMYY}``-style placeholders from a date, e.g. ``CLIENTES_IN_{MMYY}.dat`` -> ``CLIENTES_IN_0425.dat``.

    Only the names of ``TEMPLATE_FIELDS`` are substituted, by plain text replacement: no ``str.format``,
    whose field syntax (``{MM.__class__}``, ``{MM!r}``, ``{0}``, format specs) would evaluate attribute
    lookups on the values. Any other brace is an error that names it.
    """
    if "{" not in source and "}" not in source:
        return source
    values = {"MMYY": when.strftime("%m%y"), "YYYY": when.strftime("%Y"), "MM": when.strftime("%m"),
              "DD": when.strftime("%d"), "YY": when.strftime("%y"), "YYYYMMDD": when.strftime("%Y%m%d")}
    allowed = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
    parts, position = [], 0
    for match in _PLACEHOLDER.finditer(source):
        parts += [_literal(source, source[position:match.start()], allowed), values.get(match.group(1), "")]
        if match.group(1) not in values:
            raise SourceError(f"cannot resolve source template {source!r}: unknown placeholder {match.group(0)!r}; "
                              f"use only {allowed}")
        position = match.end()
    parts.append(_literal(source, source[position:], allowed))
    return "".join(parts)


def _literal(source: str, text: str, allowed: str) -> str:
    """Text between placeholders: a brace left in it is unmatched."""
    if "{" in text or "}" in text:
        raise SourceError(f"cannot resolve source template {source!r}: unmatched brace; use only {allowed}")
    return text


def is_remote(source: str) -> bool:
    """Whether the source is a URI of a remote store (``s3://``) rather than a local path."""
    return urlparse(source).scheme not in ("", "file") and len(urlparse(source).scheme) > 1


def local_path(source: str) -> Path:
    """The filesystem path of a local source (plain path or ``file://`` URI)."""
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(source).expanduser()


def check_local_source(source: str) -> Path:
    """Fail with a clear message unless ``source`` is a readable regular file."""
    path = local_path(source)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SourceError(f"cannot read {path}: no such file") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SourceError(f"cannot read {path}: it is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise SourceError(f"cannot read {path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"cannot read {path}: permission denied")
    return path


def stage_source(source: str, storage: Storage, chunk_size: int) -> StagedFile:
    """Store (local path) or scan in place (URI the storage owns) ``source``, planning its chunks."""
    planner = ChunkPlanner(chunk_size)

    def observe(block: bytes) -> None:
        planner.feed(block)
        progress.emit("stage", len(block))

    if storage.owns(source):
        if not storage.exists(source):
            raise SourceError(f"cannot read {source}: no such object")
        stored = storage.scan(source, observe)
    elif is_remote(source):
        raise SourceError(f"cannot read {source}: it is not in the configured storage ({storage!r}); "
                          f"configure the storage of that bucket (CLIENTES_STORAGE=s3, CLIENTES_S3_BUCKET)")
    else:
        path = check_local_source(source)
        try:
            with path.open("rb") as handle:
                stored = storage.store(handle, path.name, observe)
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    chunks = tuple(planner.finish())
    return StagedFile(uri=stored.uri, name=stored.name, size=stored.size, sha256=stored.sha256,
                      chunk_size=chunk_size, chunks=chunks, total_lines=planner.total_lines, version=stored.version)


def stage_for_job(
    source: str, storage: Storage, chunk_size: int, *, job: JobSource | None = None,
    version: ObjectVersion | None = None, sha256: str | None = None,
) -> StagedFile:
    """Stage ``source`` for a run: pin the version it was started for, then check the content.

    ``version`` (from the run's parameters) or else the job's recorded version is pinned first, so every
    read names it (``VersionMismatch`` when the storage no longer has it). A job planned while its upload
    was stored (``job.staged``) is not read again: its plan is used as is, the pinned immutable object
    standing for its sha256. Otherwise the pinned object is read once, and its sha256 must be ``sha256``
    (or the job's) when one is given (``ContentMismatch`` otherwise).
    """
    version = version or (job.version if job is not None else None)
    if version is not None and storage.owns(source):
        storage.pin(source, version)
    expected = sha256 or (job.sha256 if job is not None else None)
    if job is not None and job.staged is not None and job.staged.uri == source:
        if expected != job.staged.sha256:
            raise ContentMismatch(f"{source}: the run was started for sha256 {expected}, but its job was "
                                  f"registered for {job.staged.sha256}; nothing was loaded")
        return job.staged
    staged = stage_source(source, storage, chunk_size)
    if expected is not None and staged.sha256 != expected:
        raise ContentMismatch(f"{source} is not the file its job was registered for: its bytes have sha256 "
                              f"{staged.sha256}, the job expects {expected}; nothing was loaded (store the "
                              "file again to load it as a new job)")
    return staged
