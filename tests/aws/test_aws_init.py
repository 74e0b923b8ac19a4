"""``aws.init_resources`` against a real moto server: idempotent, wired end to end, DLQ after 3 receives."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from support.aws import FAKE_KEY_ID, FAKE_SECRET, unique_aws_name

from clientes_ingest.devtools.aws import (
    NOTIFICATION_ID,
    ProvisioningError,
    dlq_name_for,
    init_from_settings,
    init_resources,
)
from clientes_ingest.events import parse_message
from clientes_ingest.settings import load_settings

MUTATING = (
    "create_bucket",
    "put_bucket_versioning",
    "create_queue",
    "set_queue_attributes",
    "put_bucket_notification_configuration",
)


def snapshot(s3: Any, sqs: Any, bucket: str, queue: str) -> dict[str, Any]:
    urls = sorted(sqs.list_queues(QueueNamePrefix=queue).get("QueueUrls", []))
    attributes = {}
    for url in urls:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        # Timestamps and counters move on their own; the configuration must not.
        for volatile in (
            "LastModifiedTimestamp",
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
        ):
            attrs.pop(volatile, None)
        attributes[url] = attrs
    notification = s3.get_bucket_notification_configuration(Bucket=bucket)
    notification.pop("ResponseMetadata", None)
    buckets = sorted(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"] == bucket)
    return {"queues": urls, "attributes": attributes, "notification": notification, "buckets": buckets}


def receive_all(sqs: Any, url: str, wait: int = 1) -> list[dict[str, Any]]:
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get(
            "Messages", []
        )
        if not got:
            return out
        for message in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        out += got
        wait = 0


def test_init_creates_everything_and_second_run_changes_nothing(
    aws_s3_client: Any, aws_sqs_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket, queue = unique_aws_name("clientes-init"), unique_aws_name("clientes-q")
    first = init_resources(aws_s3_client, aws_sqs_client, bucket=bucket, queue_name=queue, prefix="incoming/")
    before = snapshot(aws_s3_client, aws_sqs_client, bucket, queue)

    assert first["bucket"] == bucket
    assert first["queue_url"].endswith(f"/{queue}") and first["dlq_url"].endswith(f"/{dlq_name_for(queue)}")
    attrs = before["attributes"][first["queue_url"]]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == first["dlq_arn"]
    assert int(redrive["maxReceiveCount"]) == 3
    policy = json.loads(attrs["Policy"])
    statement = policy["Statement"][0]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == f"arn:aws:s3:::{bucket}"
    (config,) = before["notification"]["QueueConfigurations"]
    assert config["Id"] == NOTIFICATION_ID and config["QueueArn"] == first["queue_arn"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    # S3 answers "Prefix" for the rule name it was given as "prefix".
    rules = [(r["Name"].lower(), r["Value"]) for r in config["Filter"]["Key"]["FilterRules"]]
    assert rules == [("prefix", "incoming/")]
    # Same-key uploads keep every version, so each event's run reads the bytes it announced.
    assert aws_s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    calls: list[str] = []
    for client in (aws_s3_client, aws_sqs_client):
        for name in MUTATING:
            if hasattr(client, name):
                real = getattr(client, name)
                monkeypatch.setattr(
                    client, name, lambda *a, _n=name, _r=real, **k: (calls.append(_n), _r(*a, **k))[1]
                )
    second = init_resources(
        aws_s3_client, aws_sqs_client, bucket=bucket, queue_name=queue, prefix="incoming/"
    )
    assert second == first
    assert calls == []
    assert snapshot(aws_s3_client, aws_sqs_client, bucket, queue) == before


def test_notification_reaches_queue_with_encoded_key(
    aws_s3_client: Any, aws_sqs_client: Any, aws_resources: dict[str, str]
) -> None:
    queue_url, bucket = aws_resources["queue_url"], aws_resources["bucket"]
    # S3 announced the new configuration with a test event, once.
    initial = [parse_message(m["Body"]) for m in receive_all(aws_sqs_client, queue_url)]
    assert [p.test_event for p in initial] == [True]

    aws_s3_client.put_object(Bucket=bucket, Key="incoming/CLIENTES IN 0425.dat", Body=b"a|b\n")
    aws_s3_client.put_object(Bucket=bucket, Key="elsewhere/CLIENTES_IN_0425.dat", Body=b"a|b\n")
    messages = receive_all(aws_sqs_client, queue_url)
    assert len(messages) == 1  # the prefix filter kept elsewhere/ out
    assert "CLIENTES+IN+0425.dat" in messages[0]["Body"]  # URL-encoded on the wire...
    (event,) = parse_message(messages[0]["Body"]).events
    assert event.key == "incoming/CLIENTES IN 0425.dat"  # ...and decoded by the parser
    assert event.bucket == bucket and event.is_object_created


def test_unprocessed_message_goes_to_dlq_after_three_receives(
    aws_sqs_client: Any, aws_resources: dict[str, str]
) -> None:
    queue_url, dlq_url = aws_resources["queue_url"], aws_resources["dlq_url"]
    receive_all(aws_sqs_client, queue_url)
    aws_sqs_client.send_message(QueueUrl=queue_url, MessageBody="garbage")
    receives = 0
    for _ in range(5):
        got = aws_sqs_client.receive_message(QueueUrl=queue_url, VisibilityTimeout=0, WaitTimeSeconds=0)
        receives += len(got.get("Messages", []))
    assert receives == 3
    dead = receive_all(aws_sqs_client, dlq_url)
    assert [m["Body"] for m in dead] == ["garbage"]


def test_other_notifications_are_kept(aws_s3_client: Any, aws_sqs_client: Any) -> None:
    bucket, queue = unique_aws_name("clientes-init"), unique_aws_name("clientes-q")
    aws_s3_client.create_bucket(Bucket=bucket)
    other_url = aws_sqs_client.create_queue(QueueName=unique_aws_name("other"))["QueueUrl"]
    other_arn = aws_sqs_client.get_queue_attributes(QueueUrl=other_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    aws_s3_client.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": "someone-else", "QueueArn": other_arn, "Events": ["s3:ObjectRemoved:*"]}
            ]
        },
    )
    init_resources(aws_s3_client, aws_sqs_client, bucket=bucket, queue_name=queue, prefix="incoming/")
    ids = sorted(
        q["Id"]
        for q in aws_s3_client.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    )
    assert ids == sorted([NOTIFICATION_ID, "someone-else"])


def test_changed_prefix_is_updated(aws_s3_client: Any, aws_sqs_client: Any) -> None:
    bucket, queue = unique_aws_name("clientes-init"), unique_aws_name("clientes-q")
    init_resources(aws_s3_client, aws_sqs_client, bucket=bucket, queue_name=queue, prefix="incoming/")
    init_resources(aws_s3_client, aws_sqs_client, bucket=bucket, queue_name=queue, prefix="drop/")
    (config,) = aws_s3_client.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    assert [r["Value"] for r in config["Filter"]["Key"]["FilterRules"]] == ["drop/"]


def test_bucket_outside_us_east_1(aws_env: str) -> None:
    session = boto3.session.Session(
        aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET, region_name="eu-west-1"
    )
    s3, sqs = session.client("s3", endpoint_url=aws_env), session.client("sqs", endpoint_url=aws_env)
    bucket = unique_aws_name("clientes-eu")
    result = init_resources(s3, sqs, bucket=bucket, queue_name=unique_aws_name("clientes-q"))
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    assert ":eu-west-1:" in result["queue_arn"]


def test_init_from_settings_uses_env(
    aws_env: str, monkeypatch: pytest.MonkeyPatch, aws_s3_client: Any
) -> None:
    bucket, queue = unique_aws_name("clientes-env"), unique_aws_name("clientes-q")
    monkeypatch.setenv("CLIENTES_S3_BUCKET", bucket)
    monkeypatch.setenv("CLIENTES_SQS_QUEUE_NAME", queue)
    result = init_from_settings(load_settings())
    assert result["bucket"] == bucket and result["queue_url"].endswith(queue)
    aws_s3_client.head_bucket(Bucket=bucket)


def test_unreachable_endpoint_is_a_clear_error(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id="k", aws_secret_access_key="hidden-secret", region_name="us-east-1"
    )
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    s3 = session.client("s3", endpoint_url="http://127.0.0.1:9", config=config)
    sqs = session.client("sqs", endpoint_url="http://127.0.0.1:9", config=config)
    with pytest.raises(ProvisioningError, match="s3://b-x") as info:
        init_resources(s3, sqs, bucket="b-x", queue_name="q")
    assert "hidden-secret" not in str(info.value)
