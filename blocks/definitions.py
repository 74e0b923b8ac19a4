"""Prefect blocks of clientes-ingest: AWS credentials, the S3 bucket, and the database URL (secret).

Block documents: ``clientes-aws`` (prefect-aws ``AwsCredentials``, with an optional endpoint URL for
LocalStack or a moto server; real AWS when unset), ``clientes-s3`` (prefect-aws ``S3Bucket``, its
``bucket_folder`` is the upload prefix) and ``clientes-db`` (``ClientesDatabase``, the SQLAlchemy URL as
a ``SecretStr``). ``blocks.register`` creates them from ``CLIENTES_*`` settings. Flows load them once at
start (``load_database_url``, ``load_s3_storage``) and pass the results down. Requires a Prefect API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from pydantic import Field, SecretStr

if TYPE_CHECKING:
    from clientes_ingest.s3 import S3Storage
    from clientes_ingest.settings import Settings

AWS_BLOCK = "clientes-aws"
S3_BLOCK = "clientes-s3"
DB_BLOCK = "clientes-db"


class ClientesDatabase(Block):
    """The target database of clientes-ingest: a SQLAlchemy URL kept as a secret."""

    _block_type_name = "Clientes Database"
    _block_type_slug = "clientes-database"
    _description = "SQLAlchemy URL of the clientes-ingest target database (SQL Server, PostgreSQL or SQLite)."

    url: SecretStr = Field(
        description="SQLAlchemy URL, e.g. mssql+pyodbc://user:pass@host/db?driver=ODBC+Driver+18+for+SQL+Server"
    )


def aws_credentials_from_settings(settings: Settings) -> AwsCredentials:
    """``AwsCredentials`` from settings; no keys means boto3's default chain (e.g. IRSA)."""
    return AwsCredentials(
        aws_access_key_id=settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None,
        aws_secret_access_key=settings.aws_secret_access_key,
        region_name=settings.aws_region,
        aws_client_parameters=AwsClientParameters(endpoint_url=settings.aws_endpoint_url or None),
    )


def s3_bucket_from_settings(settings: Settings, credentials: AwsCredentials) -> S3Bucket:
    """``S3Bucket`` for the configured bucket; ``bucket_folder`` carries the upload prefix."""
    return S3Bucket(bucket_name=settings.s3_bucket, bucket_folder=settings.s3_upload_prefix, credentials=credentials)


def database_from_settings(settings: Settings) -> ClientesDatabase:
    return ClientesDatabase(url=settings.db_url)


def load_database_url(name: str = DB_BLOCK) -> str:
    """The database URL stored in the named ``ClientesDatabase`` block."""
    block = cast(ClientesDatabase, ClientesDatabase.load(name))  # sync call: a block, not a coroutine
    return block.url.get_secret_value()


def load_s3_storage(name: str = S3_BLOCK) -> S3Storage:
    """An ``S3Storage`` for the named ``S3Bucket`` block (picklable: it keeps the credentials block)."""
    from clientes_ingest.s3 import S3Storage

    return S3Storage.from_block(cast(S3Bucket, S3Bucket.load(name)))


__all__ = [
    "AWS_BLOCK",
    "DB_BLOCK",
    "S3_BLOCK",
    "AwsCredentials",
    "ClientesDatabase",
    "S3Bucket",
    "aws_credentials_from_settings",
    "database_from_settings",
    "load_database_url",
    "load_s3_storage",
    "s3_bucket_from_settings",
]
