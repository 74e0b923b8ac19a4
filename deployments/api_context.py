"""What the webhook API's endpoints share: its settings (``ApiConfig``, the ``Settings.api`` section), metrics,
secret scrubbing, the bearer-token checks and ``ApiContext`` (database, storage, launcher, readiness of start-up work).

Requires: ``CLIENTES_*`` settings (``CLIENTES_API_TOKEN`` for the endpoints that need the token) and the
database and storage they name.
"""

from __future__ import annotations

import gc
import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import sqlalchemy as sa
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy.exc import DBAPIError

from clientes_ingest import job_queries, jobs
from clientes_ingest.db import Database, DatabaseUnavailable
from clientes_ingest.settings import ApiConfig, Settings
from clientes_ingest.statuses import JobStatus
from clientes_ingest.storage import Storage
from deployments.launch import RunLauncher
from deployments.upload import ApiError

logger = logging.getLogger("clientes_ingest.api")

BEARER = HTTPBearer(auto_error=False, description="CLIENTES_API_TOKEN")


class CamelModel(BaseModel):
    """Base of the response models: camelCase in JSON, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# ------------------------------------------------------------------------------------------ metrics


class ApiMetrics:
    """Prometheus metrics of one app instance, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        p = "clientes_api"
        self.uploads = Counter(f"{p}_uploads", "files uploaded and stored", registry=self.registry)
        self.upload_bytes = Counter(f"{p}_upload_bytes", "bytes of stored uploads", registry=self.registry)
        self.uploads_active = Gauge(f"{p}_uploads_in_progress", "uploads streaming now", registry=self.registry)
        self.runs = Counter(f"{p}_runs_started", "ingest runs created", ["endpoint", "mode"], registry=self.registry)
        self.existing = Counter(f"{p}_runs_existing", "requests answered with an earlier run (idempotency)",
                                ["endpoint"], registry=self.registry)
        self.errors = Counter(f"{p}_errors", "responses with status >= 400", ["endpoint", "status"],
                              registry=self.registry)


# ------------------------------------------------------------------------------------------ secrets


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold (token, database URL and password, AWS keys), longest first."""
    values = []
    for secret in (settings.api_token, settings.db_url, settings.aws_secret_access_key, settings.aws_access_key_id):
        if secret is not None and secret.get_secret_value():
            values.append(secret.get_secret_value())
    try:
        password = sa.engine.make_url(settings.db_url.get_secret_value()).password
    except Exception:  # an unparseable URL: the whole URL is already in the list
        password = None
    if password:
        values.append(str(password))
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for value in secrets:
        text = text.replace(value, "***")
    return text


class ScrubSecrets(logging.Filter):
    """Log filter: a last guard that masks secret values in any record that passes."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# ------------------------------------------------------------------------------------------ context


@dataclass
class ApiContext:
    """What the endpoints share: settings, handles and the launcher (built on first use)."""

    settings: Settings
    config: ApiConfig
    db: Database
    storage: Storage
    metrics: ApiMetrics
    secrets: list[str]
    launcher_factory: Callable[[], RunLauncher]
    uploads_in_progress: int = 0
    freeze_gc: bool = False  # set by main(): a whole process serving this app
    runs_status: str = "starting"  # readiness of the launcher: "starting", "ok" or why it failed
    _launcher: RunLauncher | None = None
    _launcher_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _schema_ready: bool = False
    _schema_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _upload_limiter: anyio.CapacityLimiter | None = field(default=None, repr=False)

    @property
    def launcher(self) -> RunLauncher:
        with self._launcher_lock:
            if self._launcher is None:
                self._launcher = self.launcher_factory()
            return self._launcher

    @property
    def upload_limiter(self) -> anyio.CapacityLimiter:
        if self._upload_limiter is None:  # created on the event loop's first upload
            self._upload_limiter = anyio.CapacityLimiter(self.config.max_concurrent_uploads)
        return self._upload_limiter

    def engine(self) -> sa.Engine:
        """The engine, with the schema created once per process; 503 if the database is down."""
        try:
            # One thread creates it: the start-up work and an early request racing on CREATE TABLE would
            # make one of them fail with "already exists".
            with self._schema_lock:
                if not self._schema_ready:
                    self.db.ensure_schema()
                    self._schema_ready = True
            return self.db.engine
        except (DatabaseUnavailable, DBAPIError) as exc:
            raise self.db_unavailable(exc) from None

    def db_unavailable(self, exc: BaseException) -> ApiError:
        text = str(exc) if isinstance(exc, DatabaseUnavailable) else self.db.describe_error(exc)
        return ApiError(503, "database unavailable", scrub(text, self.secrets))

    def warm_up(self) -> None:
        """Start-up work that would otherwise stall the first requests; /ready waits for it.

        Preparing the launcher imports Prefect and the flow (imports hold the GIL for long stretches) and
        reaches the Prefect API (in-process mode without a server: starts the ephemeral one). Then the
        objects of those imports are frozen out of the garbage collector, whose full passes over them
        would otherwise pause the event loop for tens of milliseconds at random.
        """
        self.prepare_runs()
        try:
            self.engine()
        except ApiError as exc:  # not fatal: /ready reports it, requests retry it
            logger.warning("%s: %s", exc.message, exc.detail)
        if self.freeze_gc:
            gc.collect()
            gc.freeze()

    def prepare_runs(self) -> str:
        """Prepare the launcher; returns (and keeps for /ready) "ok" or why runs cannot start."""
        try:
            prepare = getattr(self.launcher, "prepare", None)
            if prepare is not None:
                prepare()
            self.runs_status = "ok"
        except Exception as exc:
            self.runs_status = scrub(f"{type(exc).__name__}: {exc}", self.secrets)
            logger.error("cannot prepare ingest runs: %s", self.runs_status)
        return self.runs_status

    def mark_failed(self, job_id: int | None, exc: BaseException) -> None:
        """``on_error`` of in-process runs: a job the flow left pending is marked failed."""
        if job_id is None:
            return
        try:
            job = job_queries.get_job(self.db.engine, job_id)
            if job.status == JobStatus.PENDING:
                jobs.fail_job(self.db.engine, job_id, scrub(f"run failed before loading: {exc}", self.secrets))
        except Exception as hook_exc:
            logger.error("cannot mark job %s failed: %s", job_id, scrub(str(hook_exc), self.secrets))

    # ---------------------------------------------------------------------------------------- auth

    def require_token(self, credentials: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> None:
        """Dependency of the mutating endpoints: the bearer token, compared in constant time."""
        token = self.settings.api_token.get_secret_value() if self.settings.api_token else ""
        if not token:
            raise ApiError(503, "the API token is not configured",
                           "set CLIENTES_API_TOKEN on the API to enable this endpoint")
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "missing or invalid bearer token", "send Authorization: Bearer <CLIENTES_API_TOKEN>",
                           headers={"WWW-Authenticate": "Bearer"})

    def require_read(self, credentials: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> None:
        """Dependency of the ``/jobs...`` reads: the token, unless ``CLIENTES_API_AUTH_READS=false`` (local dev)."""
        if self.config.auth_reads:
            self.require_token(credentials)

