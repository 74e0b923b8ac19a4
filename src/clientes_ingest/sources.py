"""What a run may read: the allow-lists a source name is checked against before anything is opened
(pure, no Prefect, no IO but resolving a local path).

A source names a bucket or a local file, and callers choose it (an S3 event, ``POST /runs``, a Prefect
run's parameters), so it is checked: an ``s3://`` source must be in ``CLIENTES_S3_BUCKET`` or
``CLIENTES_ALLOWED_BUCKETS``; a local source, in deployment mode (``CLIENTES_ALLOWED_LOCAL_ROOTS`` set),
must resolve (symlinks followed) under one of those roots or the local storage root. Requires: Settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from clientes_ingest.settings import Settings
from clientes_ingest.staging import SourceError, is_remote, local_path


class SourceNotAllowed(SourceError):
    """The source names a bucket or a path outside the allow-lists; the message says which setting opens it."""


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass(frozen=True)
class SourcePolicy:
    """The buckets and local roots a run may read; ``local_roots`` None means any local file."""

    buckets: frozenset[str]
    local_roots: tuple[Path, ...] | None

    @classmethod
    def from_settings(cls, settings: Settings) -> SourcePolicy:
        buckets = frozenset([settings.s3_bucket, *_items(settings.allowed_buckets)])
        raw = settings.allowed_local_roots
        if raw is None:
            return cls(buckets, None)
        roots = [] if raw.strip().lower() in ("", "none") else _items(raw)
        storage_root = settings.storage_root if settings.storage == "local" else None
        return cls(buckets, _resolved([*roots, *([storage_root] if storage_root else [])]))

    def bucket_allowed(self, bucket: str) -> bool:
        return bucket in self.buckets

    def check(self, source: str) -> None:
        """Raise ``SourceNotAllowed`` unless ``source`` is in an allowed bucket or under an allowed root."""
        if source.startswith("s3://"):
            bucket = urlparse(source).netloc
            if not self.bucket_allowed(bucket):
                raise SourceNotAllowed(
                    f"cannot read {source}: bucket {bucket!r} is not allowed (allowed: "
                    f"{', '.join(sorted(self.buckets))}); add it to CLIENTES_ALLOWED_BUCKETS if runs may read it")
            return
        if is_remote(source):
            raise SourceNotAllowed(f"cannot read {source}: only s3:// and local sources are supported")
        if self.local_roots is None:
            return
        path = Path(os.path.realpath(local_path(source)))
        if not any(path.is_relative_to(root) for root in self.local_roots):
            where = ", ".join(str(r) for r in self.local_roots) or "none"
            raise SourceNotAllowed(
                f"cannot read {local_path(source)}: local sources must be under CLIENTES_ALLOWED_LOCAL_ROOTS "
                f"(allowed: {where}); copy the file there or upload it")


def _resolved(roots: Iterable[str | Path]) -> tuple[Path, ...]:
    return tuple(Path(os.path.realpath(Path(root).expanduser())) for root in roots)
