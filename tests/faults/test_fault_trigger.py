"""Faults 4 and 6, through the real trigger process (``python -m deployments.trigger``, in-process mode)
against the moto server and PostgreSQL: the same S3 event delivered three times plus the same content
uploaded under a second key load one job's rows; poison messages go to the dead-letter queue after 3
receives while the trigger keeps serving good messages and stays healthy.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faultkit import Child, Reference, children, free_port, jobs_table, wait_until
from support.aws import FAKE_KEY_ID, FAKE_SECRET, REGION
from support.loading import rejects, rows

from clientes_ingest.db import Database
from clientes_ingest.events import parse_message

pytestmark = [pytest.mark.postgres, pytest.mark.system]

KEY = "incoming/CLIENTES_IN_0425.dat"
COPY_KEY = "incoming/CLIENTES_IN_0425-resent.dat"
GOOD_KEY = "incoming/CLIENTES_IN_0525.dat"


def metrics(port: int) -> dict[str, float]:
    """The trigger's counters; {} while its server does not answer (it may be busy running a flow)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
    except OSError:
        return {}
    return {m[1]: float(m[2]) for m in re.finditer(r"^clientes_trigger_(\w+)_total (\S+)$", text, re.M)}


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:  # noqa: S310
            return int(response.status)
    except OSError:
        return 0


def notification_of(sqs: Any, queue_url: str) -> str:
    """The body of the (non-test) S3 notification waiting in the queue, left in the queue."""
    for _ in range(10):
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                           WaitTimeSeconds=1).get("Messages", []):
            if not parse_message(message["Body"]).test_event:
                return str(message["Body"])
    raise AssertionError("the upload's notification did not arrive")


def queue_size(sqs: Any, queue_url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.mark.timeout(240)
def test_duplicate_events_and_uploads_load_once_and_poison_messages_are_dead_lettered(
    reference: Reference, aws_resources: dict[str, str], aws_s3_client: Any, aws_sqs_client: Any,
    moto_endpoint: str, new_pg: Callable[[], str], child_env: dict[str, str], tmp_path: Path,
) -> None:
    url = new_pg()
    bucket, queue, dlq = aws_resources["bucket"], aws_resources["queue_url"], aws_resources["dlq_url"]
    port = free_port()
    env = {**child_env, "CLIENTES_DB_URL": url, "CLIENTES_S3_BUCKET": bucket,
           "CLIENTES_AWS_ENDPOINT_URL": moto_endpoint, "CLIENTES_AWS_REGION": REGION,
           "CLIENTES_AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
           "CLIENTES_AWS_SECRET_ACCESS_KEY": FAKE_SECRET, "CLIENTES_SQS_QUEUE_NAME": queue.rsplit("/", 1)[-1],
           "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"), "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
           "CLIENTES_LAUNCH_MODE": "in-process", "CLIENTES_TRIGGER_HOST": "127.0.0.1",
           "CLIENTES_TRIGGER_PORT": str(port), "CLIENTES_TRIGGER_WAIT_SECONDS": "1",
           "CLIENTES_TRIGGER_RETRY_DELAY_SECONDS": "0"}

    # Fault 4, queued before the trigger starts: one upload whose event arrives three times, and the same
    # bytes uploaded again under another key (a second, different event).
    aws_s3_client.upload_file(str(reference.path), bucket, KEY)
    body = notification_of(aws_sqs_client, queue)
    for _ in range(2):
        aws_sqs_client.send_message(QueueUrl=queue, MessageBody=body)
    aws_s3_client.upload_file(str(reference.path), bucket, COPY_KEY)

    with children() as started:
        trigger = Child([sys.executable, "-m", "deployments.trigger"], env, tmp_path, "trigger")
        started.append(trigger)
        wait_until(lambda: health(port) == 200, timeout=60, interval=0.2, what="the trigger's /health", child=trigger)
        wait_until(lambda: metrics(port).get("runs_created", 0) == 2 and queue_size(aws_sqs_client, queue) == 0,
                   timeout=120, interval=0.2, what="both keys' events handled", child=trigger)
        # At least our two extra deliveries were recognised (S3 may deliver an event more than once itself).
        assert metrics(port)["duplicates"] >= 2
        ((job_id, status, loaded, rejected, _),) = jobs_table(url)  # one job for both keys and all deliveries
        assert (status, loaded, rejected) == ("completed_with_rejects", len(reference.rows), len(reference.rejects))
        db = Database(url)
        assert rows(db) == reference.rows and rejects(db) == reference.rejects

        # Fault 6: poison messages, then a good upload behind them.
        missing = json.loads(body)
        missing["Records"][0]["s3"]["object"]["key"] = "incoming/CLIENTES_IN_9999.dat"  # no such object
        poison = ["{not json", "[]", '{"Records": "nope"}', "\u00e9\u00e8" * 60_000, json.dumps(missing)]
        for text in poison:
            aws_sqs_client.send_message(QueueUrl=queue, MessageBody=text)
        good = tmp_path / "CLIENTES_IN_0525.dat"
        good.write_text("Zoë|Ñúñez|30111222|Activo|2/29/2024|false|\nbad line\n", encoding="utf-8")
        aws_s3_client.upload_file(str(good), bucket, GOOD_KEY)

        def settled() -> bool:
            return (queue_size(aws_sqs_client, dlq) == len(poison) and len(jobs_table(url)) == 2
                    and queue_size(aws_sqs_client, queue) == 0)
        wait_until(settled, timeout=120, interval=0.3, what="poison dead-lettered and the good file loaded",
                   child=trigger)
        assert trigger.alive() and health(port) == 200
        assert metrics(port)["failed"] == 3 * len(poison)  # each poison message was received exactly 3 times

    dead = []
    for _ in range(5):
        got = aws_sqs_client.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        dead += [m["Body"] for m in got.get("Messages", [])]
        if len(dead) == len(poison):
            break
    assert sorted(dead) == sorted(poison)
    second = jobs_table(url)[1]
    assert second[1:4] == ("completed_with_rejects", 1, 1)
    assert [r[1:] for r in rows(Database(url), second[0])][0][0] == "Zoë Ñúñez"
