"""Runtime settings for every entry point, read from the environment (prefix ``CLIENTES_``).

The embedded default needs nothing set: local storage under ``./.clientes-ingest``, SQLite at
``./clientes.db``. Secrets (database URL, AWS secret key, API token) are ``SecretStr`` so they never
show in reprs, logs or Prefect parameters.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clientes_ingest.guard import RejectPolicy

DEFAULT_DB_URL = "sqlite:///./clientes.db"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_size(value: str | int) -> int:
    """Parse a byte size such as ``32MB``, ``32MiB``, ``1GB`` or ``4096`` into bytes.

    ``MB`` and ``MiB`` are both read as binary (MiB) for chunk and block sizes, except ``GB``/``TB``
    style sizes of files, which callers pass through :func:`parse_file_size`.
    """
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"size must be positive, got {value}")
        return value
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"cannot read size {value!r}: use a number with an optional unit, e.g. 32MB or 4MiB")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    prefix = unit[:1] if unit[:1] in "kmgt" else ""
    size = int(number * (1024 ** ("kmgt".index(prefix) + 1) if prefix else 1))
    if size <= 0:
        raise ValueError(f"size must be positive, got {value!r}")
    return size


def parse_file_size(value: str | int) -> int:
    """Parse a file size with decimal units (``1GB`` = 10**9 bytes) and binary ones (``1GiB``)."""
    if isinstance(value, int):
        return parse_size(value)
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"cannot read size {value!r}: use a number with an optional unit, e.g. 1GB")
    unit = (match.group(2) or "").lower()
    if "i" in unit:
        return parse_size(value)
    prefix = unit[:1] if unit[:1] in "kmgt" else ""
    return int(float(match.group(1)) * _UNITS[prefix])


_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(value: str) -> dt.timedelta:
    """An age such as ``30d``, ``12h``, ``2w``, ``90m`` or ``45s`` (positive) as a timedelta."""
    match = _AGE_RE.match(value)
    if not match:
        raise ValueError(f"cannot read age {value!r}: use a number and a unit s, m, h, d or w, e.g. 30d")
    seconds = float(match.group(1)) * _AGE_UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"age must be positive, got {value!r}")
    return dt.timedelta(seconds=seconds)


class Settings(BaseSettings):
    """All knobs of the pipeline; each field is the env var ``CLIENTES_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CLIENTES_", extra="ignore")

    db_url: SecretStr = Field(default=SecretStr(DEFAULT_DB_URL), description="SQLAlchemy URL of the target DB")
    db_writer: Literal["auto", "copy-binary", "copy-csv", "adbc", "executemany", "fast-executemany"] = Field(
        default="auto", description="bulk writer of chunk loads (db.WRITERS): auto = PostgreSQL copy-binary, "
        "SQLite executemany, SQL Server fast-executemany; docs/performance.md compares them")
    storage: Literal["local", "s3"] = "local"
    storage_root: Path = Path("./.clientes-ingest")
    chunk_size: int = Field(default=32 * 1024**2, description="target bytes per chunk (one task run each)")
    # 1 MiB blocks: same throughput as 4 MiB, about 90 MiB less peak RSS per process (bench/results).
    block_size: int = Field(default=1024**2, description="bytes parsed and loaded at a time in a chunk")
    max_line_bytes: int = Field(default=1024**2, description="longer lines are rejected as line_too_long")
    chunk_concurrency: int = Field(default=2, ge=1, description="chunks processed at once in one flow run")
    chunk_isolation: Literal["thread", "subprocess"] = Field(
        default="thread", description="subprocess: each chunk loads in a lean child process without Prefect")
    job_lease_seconds: float = Field(
        default=900, gt=0, description="a 'running' job whose heartbeat is older than this is resumed by a new run")
    max_reject_ratio: float = Field(
        default=0.5, ge=0, le=1, description="a job whose rejected share of non-blank lines exceeds this ends "
        "rejected_file (failed, no row kept); 1 turns the guard off (docs/reliability.md)")
    max_stored_rejects: int = Field(
        default=10_000_000, ge=0, description="reject rows stored per job; rejects beyond it are counted (exactly) "
        "but not stored")
    # Database writers across ALL flow runs (files, pods): each chunk holds one slot of this Prefect global
    # concurrency limit for its whole load (docs/concurrency.md). "" disables it; a name with no limit
    # behind it loads without a limit and logs a warning once per process.
    db_write_limit: str = Field(
        default="clientes-db-writers", description="name of the Prefect global concurrency limit that caps "
        "how many chunks write to the database at once, across every run; empty disables it")
    db_write_slots: int = Field(
        default=2, ge=1, description="slots `clientes-ingest blocks register` gives that limit (chunks writing "
        "at once across every run)")

    retention: str = Field(
        default="30d", description="jobs finished longer ago than this lose their stored file, rejects and rows "
        "(clientes-ingest purge, the purge-old-jobs flow; docs/retention.md)")

    # S3 / SQS (used when storage == "s3" and by the trigger service)
    s3_bucket: str = "clientes-ingest"
    s3_prefix: str = Field(default="incoming/", description="where external systems drop files: the bucket "
                           "notification (and so the trigger) watches this prefix")
    s3_upload_prefix: str = Field(default="uploads/", description="where the pipeline itself stores files it is "
                                  "given (CLI/flow local sources, webhook uploads); outside s3_prefix so that storing "
                                  "a file never triggers a second run of it")
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    sqs_queue_name: str = "clientes-ingest-events"

    # What a run may read (docs/security.md, "Sources"): checked by the flow, the trigger and POST /runs.
    allowed_buckets: str = Field(default="", description="buckets a source may name besides s3_bucket "
                                 "(comma-separated); any other s3:// source is refused before it is opened")
    allowed_local_roots: str | None = Field(
        default=None, description="unset: a local source may be any readable file (the CLI's embedded default); "
        "set (deployment mode): comma-separated directories a local source must resolve under, 'none' for no "
        "local source at all; the local storage root is always allowed")

    # Prefect blocks: when set, flows load these named blocks instead of the values above
    db_block: str | None = None
    s3_block: str | None = None

    api_token: SecretStr | None = None

    # Alerts (automations/, docs/operations.md): where notifications go, and the missed-file window
    alert_webhook_url: SecretStr | None = Field(
        default=None, description="generic webhook the automations POST {subject, body} to")
    alert_webhook_token: SecretStr | None = Field(
        default=None, description="bearer token sent to alert_webhook_url")
    alert_slack_webhook_url: SecretStr | None = Field(default=None, description="Slack incoming-webhook URL")
    alert_block: str | None = Field(
        default=None, description="an existing notification block <type-slug>/<name> (e-mail, Teams, ...)")
    missed_file_hours: float = Field(
        default=4, gt=0, description="alarm when a scheduled run has not completed a job this long after it started")

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        parse_age(value)
        return value.strip()

    @field_validator("db_write_limit")
    @classmethod
    def _limit_name(cls, value: str) -> str:
        return value.strip()

    @field_validator("chunk_size", "block_size", "max_line_bytes", mode="before")
    @classmethod
    def _sizes(cls, value: str | int) -> int:
        return parse_size(value)


def reject_policy(settings: Settings) -> RejectPolicy:
    """The reject guard of a run (``max_reject_ratio``, ``max_stored_rejects``)."""
    return RejectPolicy(max_ratio=settings.max_reject_ratio, max_stored=settings.max_stored_rejects)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides (e.g. from CLI options)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
