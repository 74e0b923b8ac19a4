"""Provisioning of the AWS side (``clientes-ingest aws init``): bucket (versioned), trigger queue, DLQ,
notification.

The bucket keeps object versions, so two files dropped under the same key back to back are both read
as they were when their event was sent (a run pins the version its event names; see ``s3.S3Storage.pin``).

Idempotent: every step reads what exists and only creates or changes what differs, so running it twice
leaves the same resources (and does not make S3 send another test event). Works against real AWS, a
moto server or LocalStack; the endpoint comes from ``CLIENTES_AWS_ENDPOINT_URL``. Requires boto3 and
permissions for s3:CreateBucket/PutBucketVersioning/PutBucketNotification and
sqs:CreateQueue/SetQueueAttributes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from clientes_ingest.s3_client import clients_from_settings

if TYPE_CHECKING:
    from clientes_ingest.settings import Settings

NOTIFICATION_ID = "clientes-ingest-incoming"
MAX_RECEIVE_COUNT = 3
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
# Long enough for the trigger to create a run; it extends visibility while a creation is slow.
VISIBILITY_TIMEOUT_SECONDS = 60
LONG_POLL_SECONDS = 20


class ProvisioningError(RuntimeError):
    """An AWS resource could not be created or configured; the message names it and the cause."""


def dlq_name_for(queue_name: str) -> str:
    """The dead-letter queue that goes with a trigger queue."""
    return f"{queue_name}-dlq"


def init_from_settings(settings: Settings) -> dict[str, str]:
    """``init_resources`` with clients, bucket, queue and prefix taken from settings."""
    s3, sqs = clients_from_settings(settings)
    return init_resources(
        s3, sqs, bucket=settings.s3_bucket, queue_name=settings.sqs_queue_name, prefix=settings.s3_prefix
    )


def init_resources(
    s3_client: Any,
    sqs_client: Any,
    *,
    bucket: str,
    queue_name: str,
    prefix: str = "incoming/",
    max_receive_count: int = MAX_RECEIVE_COUNT,
) -> dict[str, str]:
    """Create (or keep) the versioned bucket, the queue with its DLQ and redrive policy, and the notification.

    Returns ``bucket``, ``bucket_arn``, ``queue_url``, ``queue_arn``, ``dlq_url``, ``dlq_arn`` and
    ``notification_id``.
    """
    region = s3_client.meta.region_name or "us-east-1"
    _ensure_bucket(s3_client, bucket, region)
    _ensure_versioning(s3_client, bucket)
    bucket_arn = f"arn:aws:s3:::{bucket}"

    dlq_url, dlq_arn = _ensure_queue(
        sqs_client, dlq_name_for(queue_name), {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}
    )
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
    queue_url, queue_arn = _ensure_queue(
        sqs_client,
        queue_name,
        {
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
            "ReceiveMessageWaitTimeSeconds": str(LONG_POLL_SECONDS),
            "RedrivePolicy": redrive,
        },
    )
    # Real S3 may only send to a queue whose policy lets this bucket do so; moto/LocalStack ignore it.
    _ensure_queue_attributes(
        sqs_client, queue_url, queue_name, {"Policy": _queue_policy(queue_arn, bucket_arn)}
    )
    _ensure_notification(s3_client, bucket, queue_arn, prefix)
    return {
        "bucket": bucket,
        "bucket_arn": bucket_arn,
        "queue_url": queue_url,
        "queue_arn": queue_arn,
        "dlq_url": dlq_url,
        "dlq_arn": dlq_arn,
        "notification_id": NOTIFICATION_ID,
    }


def _fail(what: str, exc: Exception) -> ProvisioningError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        cause = f"{error.get('Code', '?')} {error.get('Message', '')}".strip()
    else:
        cause = f"{type(exc).__name__}: {exc}"
    return ProvisioningError(f"cannot {what}: {cause}")


def _ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in {"404", "NoSuchBucket", "NotFound"}:
            # 403 means the name belongs to someone else (bucket names are global).
            raise _fail(f"use bucket s3://{bucket} (does it belong to another account?)", exc) from exc
    except BotoCoreError as exc:
        raise _fail(f"reach S3 to check bucket s3://{bucket}", exc) from exc
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise _fail(f"create bucket s3://{bucket}", exc) from exc
    except BotoCoreError as exc:
        raise _fail(f"create bucket s3://{bucket}", exc) from exc


def _ensure_versioning(s3: Any, bucket: str) -> None:
    """Turn on object versioning unless it is on (same-key uploads then keep every version to read)."""
    try:
        if s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled":
            return
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    except (ClientError, BotoCoreError) as exc:
        raise _fail(f"turn on versioning of s3://{bucket}", exc) from exc


def _ensure_queue(sqs: Any, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    """Create the queue if missing, then bring its attributes to ``attributes``; return (url, arn)."""
    try:
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if "NonExistentQueue" not in code and code != "QueueDoesNotExist":
                raise
            # Created without attributes: CreateQueue fails if an existing queue's attributes differ.
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
    except (ClientError, BotoCoreError) as exc:
        raise _fail(f"create SQS queue {name}", exc) from exc
    _ensure_queue_attributes(sqs, url, name, attributes)
    try:
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    except (ClientError, BotoCoreError) as exc:
        raise _fail(f"read SQS queue {name}", exc) from exc
    return url, arn


def _ensure_queue_attributes(sqs: Any, url: str, name: str, wanted: dict[str, str]) -> None:
    try:
        current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {})
        changed = {k: v for k, v in wanted.items() if not _same_attribute(current.get(k), v)}
        if changed:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=changed)
    except (ClientError, BotoCoreError) as exc:
        raise _fail(f"configure SQS queue {name}", exc) from exc


def _same_attribute(current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    # JSON attributes (policies) come back reformatted, and maxReceiveCount as a number.
    try:
        return bool(_normalize(json.loads(current)) == _normalize(json.loads(wanted)))
    except ValueError:
        return current == wanted


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return str(value)


def _queue_policy(queue_arn: str, bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": f"{queue_arn}/s3-notifications",
            "Statement": [
                {
                    "Sid": "AllowBucketNotifications",
                    "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": bucket_arn}},
                }
            ],
        }
    )


def _ensure_notification(s3: Any, bucket: str, queue_arn: str, prefix: str) -> None:
    """Put our queue configuration, keeping any other notification the bucket already has."""
    ours = {
        "Id": NOTIFICATION_ID,
        "QueueArn": queue_arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
    }
    try:
        current = s3.get_bucket_notification_configuration(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise _fail(f"read notifications of s3://{bucket}", exc) from exc
    current.pop("ResponseMetadata", None)
    queues = current.get("QueueConfigurations", [])
    existing = [q for q in queues if q.get("Id") == NOTIFICATION_ID]
    if existing and _same_queue_config(existing[0], ours):
        return  # unchanged: putting it again would make S3 send another s3:TestEvent
    config = {
        k: v for k, v in current.items() if k.endswith("Configurations") or k == "EventBridgeConfiguration"
    }
    config["QueueConfigurations"] = [q for q in queues if q.get("Id") != NOTIFICATION_ID] + [ours]
    try:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    except (ClientError, BotoCoreError) as exc:
        raise _fail(f"configure notifications of s3://{bucket} to {queue_arn}", exc) from exc


def _same_queue_config(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    def rules(config: dict[str, Any]) -> list[tuple[str, str]]:
        raw = config.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        return sorted((r["Name"].lower(), r["Value"]) for r in raw)

    return (
        current.get("QueueArn") == wanted["QueueArn"]
        and sorted(current.get("Events", [])) == sorted(wanted["Events"])
        and rules(current) == rules(wanted)
    )
