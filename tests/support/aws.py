"""Pytest fixtures for AWS tests: a real moto server on 127.0.0.1 (started here), clients, buckets, queues.

One moto server serves the whole session; every test gets uniquely named buckets and queues, so tests
do not see each other's objects or messages. Credentials are fake and AWS config files are hidden, so
nothing can reach real AWS. Do not combine with moto's in-process ``mock_aws`` in the same test: both
share moto's global backends and the mock resets them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from clientes_ingest.devtools.supervise import free_port

REGION = "us-east-1"
FAKE_KEY_ID = "testing"
FAKE_SECRET = "testing-secret"

__all__ = [
    "aws_bucket",
    "aws_env",
    "aws_resources",
    "aws_s3_client",
    "aws_sqs_client",
    "moto_endpoint",
    "unique_aws_name",
]


def unique_aws_name(prefix: str) -> str:
    """A bucket/queue name no other test uses (lowercase, S3-valid)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto server (S3, SQS, ...) running in a thread for the test session."""
    # moto's werkzeug logs every request; failures would be buried under them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    """Environment for boto3 and ``CLIENTES_*`` settings pointing at the moto server; returns its URL."""
    values = {
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "CLIENTES_AWS_ENDPOINT_URL": moto_endpoint,
        "CLIENTES_AWS_REGION": REGION,
        "CLIENTES_AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "CLIENTES_AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return moto_endpoint


def _client(service: str, endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET, region_name=REGION
    ).client(service, endpoint_url=endpoint)


@pytest.fixture
def aws_s3_client(aws_env: str) -> Any:
    return _client("s3", aws_env)


@pytest.fixture
def aws_sqs_client(aws_env: str) -> Any:
    return _client("sqs", aws_env)


@pytest.fixture
def aws_bucket(aws_s3_client: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket (also set as ``CLIENTES_S3_BUCKET``)."""
    name = unique_aws_name("clientes-test")
    aws_s3_client.create_bucket(Bucket=name)
    monkeypatch.setenv("CLIENTES_S3_BUCKET", name)
    return name


@pytest.fixture
def aws_resources(aws_s3_client: Any, aws_sqs_client: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Bucket, trigger queue, DLQ and notification made by ``aws.init_resources`` (unique names).

    Also exported as ``CLIENTES_S3_BUCKET`` and ``CLIENTES_SQS_QUEUE_NAME``.
    """
    from clientes_ingest.devtools.aws import init_resources

    bucket = unique_aws_name("clientes-test")
    queue = unique_aws_name("clientes-events")
    resources = init_resources(
        aws_s3_client, aws_sqs_client, bucket=bucket, queue_name=queue, prefix="incoming/"
    )
    monkeypatch.setenv("CLIENTES_S3_BUCKET", bucket)
    monkeypatch.setenv("CLIENTES_SQS_QUEUE_NAME", queue)
    return resources
