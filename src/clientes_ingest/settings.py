"""Runtime settings for every entry point, read from the environment (prefix ``CLIENTES_``).

This is the ONLY module that reads the environment: one model, ``Settings``, with one meaning and one
default per variable, and two sections with their own prefixes: ``Settings.api`` (``CLIENTES_API_*``,
the webhook API) and ``Settings.trigger`` (``CLIENTES_TRIGGER_*``, the SQS trigger service). Which
deployment new runs go to and how they are started (``CLIENTES_DEPLOYMENT``, ``CLIENTES_LAUNCH_MODE``)
are shared by the API, the trigger and the recovery flow.

The embedded default needs nothing set: local storage under ``./.clientes-ingest``, SQLite at
``./clientes.db``. Secrets (database URL, AWS secret key, API token) are ``SecretStr`` so they never
show in reprs, logs or Prefect parameters. ``use_settings`` makes a ``Settings`` built in code (e.g. from
CLI options) the one ``load_settings`` answers within a block, so nothing writes the environment.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Literal

from pydantic import ByteSize, Field, SecretStr, TypeAdapter, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clientes_ingest.events import DEFAULT_KEY_PATTERN
from clientes_ingest.guard import RejectPolicy

DEFAULT_DB_URL = "sqlite:///./clientes.db"
DEFAULT_DEPLOYMENT = "ingest-clientes/local"

_BYTE_SIZE: TypeAdapter[ByteSize] = TypeAdapter(ByteSize)


def parse_size(value: str | int) -> int:
    """Bytes from a size: a plain number of bytes, or a number with a unit in pydantic ``ByteSize`` terms
    (case-insensitive): ``KB``/``MB``/``GB``/``TB`` are decimal (``32MB`` = 32,000,000 bytes) and
    ``KiB``/``MiB``/``GiB``/``TiB`` binary (``32MiB`` = 33,554,432 bytes). The one size parser of the project:
    chunk, block and line sizes, the API's upload limit, ``generate --size``."""
    try:
        size = int(_BYTE_SIZE.validate_python(value))
    except ValidationError:
        raise ValueError(f"cannot read size {value!r}: use a number of bytes or a number with a unit, e.g. "
                         f"32MiB (binary) or 32MB (decimal)") from None
    if size <= 0:
        raise ValueError(f"size must be positive, got {value!r}")
    return size


class RetryConfig(BaseSettings):
    """Task retry delays, ``CLIENTES_RETRY_BACKOFF_SECONDS``: read when ``clientes_ingest.tasks`` is imported,
    because Prefect fixes a task's retry delays when the task is declared (tests set it to 0)."""

    model_config = SettingsConfigDict(env_prefix="CLIENTES_RETRY_", extra="ignore")

    backoff_seconds: float = Field(default=2.0, ge=0, description="first retry delay; later ones grow 4x")


class ApiConfig(BaseSettings):
    """Knobs of the webhook API; each field is the env var ``CLIENTES_API_<FIELD>`` (the token is
    ``Settings.api_token``, ``CLIENTES_API_TOKEN``)."""

    model_config = SettingsConfigDict(env_prefix="CLIENTES_API_", extra="ignore")

    max_upload_bytes: int = 8 * 1024**3
    max_json_bytes: int = Field(default=4096, ge=64)  # JSON bodies (POST /runs): a source URI fits in far less
    max_concurrent_uploads: int = Field(default=4, ge=1)
    # Uploads beyond the concurrent ones wait for a slot, at most this many; more are refused with 503.
    max_queued_uploads: int = Field(default=8, ge=0)
    # A request body (upload or JSON) that sends nothing for this long is answered 408 and dropped.
    body_idle_timeout: float = Field(default=30.0, gt=0)
    # GET /jobs... (rejects hold names and DNIs) need the token too; false is for a local dev API only,
    # and main() refuses it on an interface other than loopback.
    auth_reads: bool = True
    host: str = "127.0.0.1"  # defaults of --host/--port; a container sets CLIENTES_API_HOST=0.0.0.0
    port: int = 8000

    @field_validator("max_upload_bytes", "max_json_bytes", mode="before")
    @classmethod
    def _size(cls, value: str | int) -> int:
        return parse_size(value)


class TriggerConfig(BaseSettings):
    """Knobs of the SQS trigger service; each field is the env var ``CLIENTES_TRIGGER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CLIENTES_TRIGGER_", extra="ignore")

    key_pattern: str = DEFAULT_KEY_PATTERN
    queue_url: str | None = None  # default: looked up from CLIENTES_SQS_QUEUE_NAME
    host: str = "0.0.0.0"  # noqa: S104 - probes and Prometheus scrape from outside the pod
    port: int = 9100
    wait_seconds: int = 20
    visibility_timeout: int = 60
    retry_delay_seconds: int = 30


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
        "SQLite adbc, SQL Server fast-executemany; docs/performance.md compares them")
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

    # How runs are started by the API, the trigger and the recovery flow (deployments/launch.py).
    deployment: str = Field(
        default=DEFAULT_DEPLOYMENT, description="deployment whose runs are created in deployment mode; "
        "Kubernetes sets ingest-clientes/k8s")
    launch_mode: Literal["auto", "deployment", "in-process"] = Field(
        default="auto", description="auto: deployment when a Prefect API is configured, else in this process")
    launch_workers: int = Field(default=1, ge=1, description="in-process runs executed at once")
    launch_remember: int = Field(default=10_000, ge=1, description="idempotency keys kept in memory")

    # The dev stack (devtools): the checkout holding prefect.yaml, when not the cwd or one of its parents.
    project_dir: str | None = Field(default=None, description="the project checkout (prefect.yaml) the dev "
                                    "stack deploys from and the local deployment's pull step uses")

    # How a flow run executes its chunks (flows/ingest.py).
    dask_address: str | None = Field(
        default=None, description="run chunks on this Dask scheduler ('local': a local cluster) instead of "
        "a thread pool of chunk_concurrency threads")

    retry: RetryConfig = Field(default_factory=RetryConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    trigger: TriggerConfig = Field(default_factory=TriggerConfig)

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


_ACTIVE: ContextVar[Settings | None] = ContextVar("clientes_settings", default=None)


@contextmanager
def use_settings(settings: Settings) -> Iterator[Settings]:
    """Within the block (and the Prefect tasks it submits), ``load_settings`` starts from ``settings``."""
    token = _ACTIVE.set(settings)
    try:
        yield settings
    finally:
        _ACTIVE.reset(token)


def load_settings(**overrides: object) -> Settings:
    """The settings in use (``use_settings``, else the environment), with explicit overrides applied."""
    values = {k: v for k, v in overrides.items() if v is not None}
    active = _ACTIVE.get()
    if active is None:
        return Settings(**values)  # type: ignore[arg-type]
    if not values:
        return active
    return Settings(**{**dict(active), **values})


def prefect_process_defaults(*, verbose: bool) -> None:
    """Defaults of Prefect's own settings for a command that runs flows in this process (before Prefect is
    imported: it configures logging then). Set values win; Prefect reads only the environment for these."""
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry calls off this machine
    # The ephemeral API starts a server subprocess; on a busy or small machine it needs more than 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
