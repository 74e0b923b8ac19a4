"""S3 clients and errors: picklable client recipes (settings or a prefect-aws block), retry logging, URIs.

``ClientConfig`` and ``BlockClientFactory`` are what an ``S3Storage`` carries to chunk tasks instead of a
live client; ``clients_from_settings`` builds the S3 and SQS clients of the dev tooling and the trigger.
Requires boto3; credentials come from settings, a block, or boto3's default chain (e.g. IRSA).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr
from urllib3.exceptions import HTTPError as Urllib3Error

from clientes_ingest.storage import StorageError

if TYPE_CHECKING:
    from clientes_ingest.settings import Settings

_log = logging.getLogger("clientes_ingest.s3")  # one logger name for every S3 warning (docs, alerts)
TRANSIENT = (BotoCoreError, Urllib3Error, OSError)
NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
VERSION_GONE = {"NoSuchVersion", "InvalidArgument", "400"}  # a version id the key does not have
PRECONDITION = {"PreconditionFailed", "412"}


def upload_id() -> str:
    """A fresh, time-ordered folder for one upload: ``20260501T120000Z-1a2b3c4d5e6f``."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``; the key is taken verbatim."""
    if not uri.startswith("s3://"):
        raise StorageError(f"{uri} is not an s3:// URI (expected s3://bucket/key)")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise StorageError(f"{uri} is not a valid S3 object URI (expected s3://bucket/key)")
    return bucket, key


def describe_error(exc: BaseException) -> str:
    """A botocore error as ``Code Message`` (other errors as ``Type: message``), for one-line errors."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "?")
        message = error.get("Message") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"{code} {message}".strip()
    return f"{type(exc).__name__}: {exc}"


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))



@dataclass(frozen=True)
class ClientConfig:
    """A picklable recipe for an S3 client (endpoint, region, optional static credentials)."""

    endpoint_url: str | None = None
    region_name: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None

    def __call__(self) -> Any:
        session = boto3.session.Session(
            aws_access_key_id=self.access_key_id.get_secret_value() if self.access_key_id else None,
            aws_secret_access_key=self.secret_access_key.get_secret_value()
            if self.secret_access_key
            else None,
            region_name=self.region_name,
        )
        return session.client("s3", endpoint_url=self.endpoint_url or None, config=client_config())


@dataclass(frozen=True)
class BlockClientFactory:
    """A picklable recipe for an S3 client from a prefect-aws ``AwsCredentials`` block."""

    credentials: Any

    def __call__(self) -> Any:
        return self.credentials.get_s3_client()


def log_retries(client: Any) -> Any:
    """Log a warning for every S3 request that failed and that botocore is about to retry, so an outage
    that the retries ride out still shows (the operation, the attempt and the cause; never the data)."""

    def on_needs_retry(attempts: int, caught_exception: BaseException | None = None, response: Any = None,
                       operation: Any = None, **_kwargs: Any) -> None:
        status = response[0].status_code if response and response[0] is not None else None
        if caught_exception is not None or (status is not None and status >= 500):
            cause = describe_error(caught_exception) if caught_exception is not None else f"HTTP {status}"
            _log.warning("S3 %s attempt %d failed (%s); botocore retries it", getattr(operation, "name", "request"),
                         attempts, cause)

    client.meta.events.register("needs-retry.s3", on_needs_retry)
    return client


def client_config() -> Config:
    """Client options for long streamed transfers from many chunk threads at once."""
    return Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=32,
        connect_timeout=10,
        read_timeout=60,
    )


def clients_from_settings(settings: Settings) -> tuple[Any, Any]:
    """boto3 S3 and SQS clients for the configured endpoint, region and credentials."""
    session = boto3.session.Session(
        aws_access_key_id=settings.aws_access_key_id.get_secret_value()
        if settings.aws_access_key_id
        else None,
        aws_secret_access_key=(
            settings.aws_secret_access_key.get_secret_value() if settings.aws_secret_access_key else None
        ),
        region_name=settings.aws_region,
    )
    endpoint = settings.aws_endpoint_url or None
    s3 = session.client("s3", endpoint_url=endpoint, config=client_config())
    sqs = session.client("sqs", endpoint_url=endpoint, config=client_config())
    return s3, sqs
