"""The SQS trigger service against a real moto server (queue, DLQ and S3 notification from ``aws init``).

These tests use a recording launcher; ``test_trigger_prefect.py`` runs the same loop against Prefect.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from clientes_ingest.events import S3ObjectEvent
from clientes_ingest.flow_results import IngestResult
from clientes_ingest.settings import Settings, TriggerConfig
from clientes_ingest.statuses import Action, JobStatus
from deployments.launch import DeploymentLauncher, InlineLauncher, LaunchResult
from deployments.trigger import (
    TriggerService,
    build_launcher,
    event_pin,
    install_signal_handlers,
    serve_http,
)

INCOMING = "incoming/CLIENTES_IN_0425.dat"


@dataclass(frozen=True)
class Launched:
    """One launch as the recording launcher saw it: the source URI and its idempotency key."""

    uri: str
    idempotency_key: str

    @property
    def key(self) -> str:
        return self.uri.split("/", 3)[3]


class RecordingLauncher:
    """Stands in for Prefect: records launches, dedups by idempotency key, can fail or be slow."""

    mode = "deployment"

    def __init__(self, fail_times: int = 0, delay: float = 0.0, during: Any = None) -> None:
        self.events: list[Launched] = []
        self.keys: dict[str, str] = {}
        self.fail_times = fail_times
        self.delay = delay
        self.during = during

    def launch(self, source: str, *, job_id: int | None, idempotency_key: str | None,
               chunk_size: str | None = None, pin: dict[str, str] | None = None) -> LaunchResult:
        assert idempotency_key is not None and job_id is None
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("Prefect API unreachable")
        if self.during is not None:
            self.during()
        time.sleep(self.delay)
        if idempotency_key in self.keys:
            return LaunchResult(self.keys[idempotency_key], False, "deployment")
        self.events.append(Launched(source, idempotency_key))
        self.keys[idempotency_key] = f"run-{len(self.events)}"
        return LaunchResult(self.keys[idempotency_key], True, "deployment")

    def find(self, idempotency_key: str) -> LaunchResult | None:
        return None


def counter(service: TriggerService, name: str) -> float:
    value = service.metrics.registry.get_sample_value(f"clientes_trigger_{name}_total")
    return float(value or 0.0)


def drain(service: TriggerService, polls: int = 12) -> list[str]:
    """Poll until two empty receives in a row; return every outcome."""
    outcomes: list[str] = []
    empty = 0
    for _ in range(polls):
        got = service.poll_once()
        outcomes += got
        empty = empty + 1 if not got else 0
        if empty == 2:
            break
    return outcomes


def queue_depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def launcher() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture
def service(aws_sqs_client: Any, aws_resources: dict[str, str], launcher: RecordingLauncher) -> TriggerService:
    return TriggerService(
        aws_sqs_client,
        aws_resources["queue_url"],
        launcher,
        allowed_buckets={aws_resources["bucket"]},
        wait_seconds=0,
        visibility_timeout=5,
        retry_delay_seconds=0,  # redeliver failures at once, so 3 receives take no time
    )


def test_test_event_from_init_is_acknowledged_without_a_run(
    service: TriggerService, launcher: RecordingLauncher, aws_sqs_client: Any, aws_resources: dict[str, str]
) -> None:
    assert drain(service) == ["ignored"]
    assert launcher.events == []
    assert counter(service, "ignored") == 1 and counter(service, "messages_received") == 1
    assert queue_depth(aws_sqs_client, aws_resources["queue_url"]) == 0


def test_upload_starts_one_run_with_the_s3_source(
    service: TriggerService, launcher: RecordingLauncher, aws_s3_client: Any, aws_resources: dict[str, str]
) -> None:
    drain(service)
    bucket = aws_resources["bucket"]
    aws_s3_client.put_object(Bucket=bucket, Key=INCOMING, Body=b"a|b\n")
    aws_s3_client.put_object(Bucket=bucket, Key="incoming/CLIENTES_IN_0525 copy.dat", Body=b"a|b\n")
    assert drain(service) == ["launched", "launched"]
    assert sorted(e.uri for e in launcher.events) == [
        f"s3://{bucket}/incoming/CLIENTES_IN_0425.dat",
        f"s3://{bucket}/incoming/CLIENTES_IN_0525 copy.dat",  # arrived as CLIENTES_IN_0525+copy.dat
    ]
    assert counter(service, "runs_created") == 2


def test_same_notification_three_times_makes_one_run(
    service: TriggerService,
    launcher: RecordingLauncher,
    aws_s3_client: Any,
    aws_sqs_client: Any,
    aws_resources: dict[str, str],
) -> None:
    drain(service)
    aws_s3_client.put_object(Bucket=aws_resources["bucket"], Key=INCOMING, Body=b"a|b\n")
    # Capture the real notification, then deliver it three times (at-least-once delivery).
    (message,) = aws_sqs_client.receive_message(QueueUrl=aws_resources["queue_url"], WaitTimeSeconds=1)["Messages"]
    aws_sqs_client.delete_message(QueueUrl=aws_resources["queue_url"], ReceiptHandle=message["ReceiptHandle"])
    for _ in range(3):
        aws_sqs_client.send_message(QueueUrl=aws_resources["queue_url"], MessageBody=message["Body"])
    assert drain(service) == ["launched"] * 3
    assert len(launcher.events) == 1
    assert counter(service, "runs_created") == 1 and counter(service, "duplicates") == 2
    assert queue_depth(aws_sqs_client, aws_resources["queue_url"]) == 0


def test_keys_outside_the_pattern_and_other_events_are_ignored(
    service: TriggerService,
    launcher: RecordingLauncher,
    aws_s3_client: Any,
    aws_sqs_client: Any,
    aws_resources: dict[str, str],
) -> None:
    drain(service)
    bucket = aws_resources["bucket"]
    aws_s3_client.put_object(Bucket=bucket, Key="incoming/README.txt", Body=b"x")
    aws_s3_client.put_object(Bucket=bucket, Key="incoming/old/CLIENTES_IN_0425.dat", Body=b"x")
    removed = {
        "Records": [
            {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": bucket}, "object": {"key": INCOMING}}}
        ]
    }
    aws_sqs_client.send_message(QueueUrl=aws_resources["queue_url"], MessageBody=json.dumps(removed))
    assert drain(service) == ["ignored"] * 3
    assert launcher.events == []
    assert counter(service, "ignored") == 4  # with the s3:TestEvent drained first
    assert queue_depth(aws_sqs_client, aws_resources["queue_url"]) == 0


def test_garbage_lands_in_dlq_after_three_receives_and_service_keeps_going(
    service: TriggerService,
    launcher: RecordingLauncher,
    aws_s3_client: Any,
    aws_sqs_client: Any,
    aws_resources: dict[str, str],
) -> None:
    drain(service)
    aws_sqs_client.send_message(QueueUrl=aws_resources["queue_url"], MessageBody="{not json")
    outcomes = drain(service)
    assert outcomes == ["failed"] * 3
    aws_s3_client.put_object(Bucket=aws_resources["bucket"], Key=INCOMING, Body=b"a|b\n")
    assert drain(service) == ["launched"]
    assert [e.key for e in launcher.events] == [INCOMING]
    dead = aws_sqs_client.receive_message(QueueUrl=aws_resources["dlq_url"], WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in dead] == ["{not json"]
    assert counter(service, "failed") == 3


def test_run_that_cannot_be_created_is_retried_not_lost(
    aws_sqs_client: Any, aws_s3_client: Any, aws_resources: dict[str, str]
) -> None:
    launcher = RecordingLauncher(fail_times=2)
    service = TriggerService(
        aws_sqs_client, aws_resources["queue_url"], launcher, allowed_buckets={aws_resources["bucket"]},
        wait_seconds=0, retry_delay_seconds=0
    )
    drain(service)
    aws_s3_client.put_object(Bucket=aws_resources["bucket"], Key=INCOMING, Body=b"a|b\n")
    assert drain(service) == ["failed", "failed", "launched"]  # third receive: still under maxReceiveCount
    assert len(launcher.events) == 1
    assert counter(service, "failed") == 2 and counter(service, "runs_created") == 1


def test_visibility_is_extended_while_a_launch_is_slow(
    aws_sqs_client: Any, aws_s3_client: Any, aws_resources: dict[str, str]
) -> None:
    queue_url = aws_resources["queue_url"]
    stolen: list[Any] = []

    def peek_while_busy() -> None:
        # Past the 4 s visibility timeout a second consumer would see the message, unless it was extended
        # (every 2 s: the extension may be up to 2 s late on a busy machine before it is too late).
        time.sleep(5.0)
        stolen.extend(aws_sqs_client.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages", []))

    launcher = RecordingLauncher(during=peek_while_busy)
    service = TriggerService(aws_sqs_client, queue_url, launcher, allowed_buckets={aws_resources["bucket"]},
                             wait_seconds=0, visibility_timeout=4)
    drain(service)
    aws_s3_client.put_object(Bucket=aws_resources["bucket"], Key=INCOMING, Body=b"a|b\n")
    assert service.poll_once() == ["launched"]
    assert stolen == []
    assert queue_depth(aws_sqs_client, queue_url) == 0


def test_sigterm_stops_after_the_message_in_hand(
    aws_sqs_client: Any, aws_s3_client: Any, aws_resources: dict[str, str]
) -> None:
    entered, release = threading.Event(), threading.Event()

    def block() -> None:
        entered.set()
        assert release.wait(10)

    launcher = RecordingLauncher(during=block)
    service = TriggerService(aws_sqs_client, aws_resources["queue_url"], launcher,
                             allowed_buckets={aws_resources["bucket"]}, wait_seconds=1)
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    install_signal_handlers(service)
    try:
        drain(service)
        aws_s3_client.put_object(Bucket=aws_resources["bucket"], Key=INCOMING, Body=b"a|b\n")
        loop = threading.Thread(target=service.run)
        loop.start()
        assert entered.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # let the handler run in the main thread
        assert service.stopping and loop.is_alive()  # still busy with the message in hand
        release.set()
        loop.join(10)
        assert not loop.is_alive()
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert len(launcher.events) == 1
    assert queue_depth(aws_sqs_client, aws_resources["queue_url"]) == 0  # finished and acknowledged


def test_queue_errors_do_not_kill_the_loop(aws_sqs_client: Any, launcher: RecordingLauncher) -> None:
    service = TriggerService(aws_sqs_client, "http://127.0.0.1:1/000000000000/missing", launcher,
                             allowed_buckets={"clientes-ingest"}, wait_seconds=0)
    loop = threading.Thread(target=service.run)
    loop.start()
    time.sleep(0.5)
    assert loop.is_alive()
    service.stop()
    loop.join(10)
    assert not loop.is_alive()


def test_health_and_metrics_endpoints(
    service: TriggerService, aws_s3_client: Any, aws_resources: dict[str, str]
) -> None:
    drain(service)
    aws_s3_client.put_object(Bucket=aws_resources["bucket"], Key=INCOMING, Body=b"a|b\n")
    drain(service)
    server = serve_http(service, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/health") as response:  # noqa: S310 - local test server
            assert response.status == 200
            assert json.load(response)["status"] == "ok"
        with urllib.request.urlopen(f"{base}/metrics") as response:  # noqa: S310
            text = response.read().decode()
        assert "clientes_trigger_runs_created_total 1.0" in text
        assert "clientes_trigger_ignored_total 1.0" in text
        for name in ("messages_received", "duplicates", "failed"):
            assert f"clientes_trigger_{name}_total" in text
        service.last_poll = service.started_at = time.time() - 3600  # stuck: no poll for an hour
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/health")  # noqa: S310
        assert info.value.code == 503
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/nope")  # noqa: S310
        assert info.value.code == 404
    finally:
        server.shutdown()


def test_in_process_launcher_runs_each_event_once() -> None:
    calls: list[str] = []
    loaded = IngestResult(job_id=7, action=Action.LOAD, status=JobStatus.COMPLETED, source_uri=f"s3://b/{INCOMING}",
                          file_name=INCOMING.rsplit("/", 1)[-1], size_bytes=None, sha256=None, chunk_count=1,
                          chunks_done=1, total_lines=1, blank_lines=0, rows_loaded=1, rows_rejected=0,
                          duration_s=None, peak_rss_bytes=None, error=None)
    outcomes: Iterator[Exception | IngestResult] = iter([RuntimeError("db down"), loaded])

    def flow(parameters: dict[str, Any]) -> tuple[str, IngestResult]:
        calls.append(parameters["source"])
        assert parameters == {"source": f"s3://b/{INCOMING}", "etag": "e1"}  # the version the event announced
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return f"flow-run-{len(calls)}", outcome

    launcher = InlineLauncher(run_flow=flow)
    event = S3ObjectEvent("ObjectCreated:Put", "b", INCOMING, etag="e1", sequencer="01")

    def launch() -> LaunchResult:
        return launcher.launch(event.uri, job_id=None, idempotency_key=event.idempotency_key, pin=event_pin(event))

    with pytest.raises(RuntimeError):
        launch()  # a failed run is not remembered: the redelivery runs it again
    assert launch() == LaunchResult("flow-run-2", created=True, mode="inline", job_id=7)
    assert launch() == LaunchResult("flow-run-2", created=False, mode="inline", job_id=7)
    assert calls == [f"s3://b/{INCOMING}"] * 2


def test_auto_mode_picks_deployment_only_with_a_prefect_api() -> None:
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        chosen = build_launcher(Settings(launch_mode="auto", deployment="ingest-clientes/local"))
        assert isinstance(chosen, DeploymentLauncher) and chosen.deployment_name == "ingest-clientes/local"
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert isinstance(build_launcher(Settings(launch_mode="auto")), InlineLauncher)
    assert isinstance(build_launcher(Settings(launch_mode="in-process")), InlineLauncher)


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTES_TRIGGER_PORT", "9200")
    monkeypatch.setenv("CLIENTES_TRIGGER_KEY_PATTERN", "drop/*.dat")
    monkeypatch.setenv("CLIENTES_DEPLOYMENT", "ingest-clientes/local")
    settings = Settings()
    config = settings.trigger
    assert (config.port, config.key_pattern, settings.deployment) == (9200, "drop/*.dat", "ingest-clientes/local")
    assert TriggerConfig.model_fields["port"].default == 9100


def forged_event(bucket: str, key: str = INCOMING) -> dict[str, Any]:
    """An S3 record as anyone who can write to the queue could send it."""
    return {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket},
                                                     "object": {"key": key, "eTag": "e1", "sequencer": "01"}}}


def test_events_for_a_bucket_that_is_not_allowed_start_no_run(
    service: TriggerService, launcher: RecordingLauncher, aws_sqs_client: Any, aws_resources: dict[str, str]
) -> None:
    drain(service)
    queue = aws_resources["queue_url"]
    aws_sqs_client.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [forged_event("attacker-bucket")]}))
    assert drain(service) == ["ignored"]  # acknowledged: a retry would be refused again
    mixed = {"Records": [forged_event("attacker-bucket"), forged_event(aws_resources["bucket"])]}
    aws_sqs_client.send_message(QueueUrl=queue, MessageBody=json.dumps(mixed))
    assert drain(service) == ["launched"]
    assert [e.uri for e in launcher.events] == [f"s3://{aws_resources['bucket']}/{INCOMING}"]
    assert counter(service, "refused") == 2
    assert queue_depth(aws_sqs_client, queue) == 0


def test_main_allows_the_configured_bucket_and_the_extra_ones(
    monkeypatch: pytest.MonkeyPatch, aws_resources: dict[str, str]
) -> None:
    from deployments import trigger

    built: list[dict[str, Any]] = []

    class Captured:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(kwargs)

        def run(self) -> None:
            pass

    monkeypatch.setattr(trigger, "TriggerService", Captured)
    monkeypatch.setattr(trigger, "serve_http", lambda *a: type("S", (), {"server_address": ("", 0),
                                                                          "shutdown": lambda self: None})())
    monkeypatch.setattr(trigger, "install_signal_handlers", lambda service: None)
    monkeypatch.setenv("CLIENTES_TRIGGER_QUEUE_URL", aws_resources["queue_url"])
    monkeypatch.setenv("CLIENTES_LAUNCH_MODE", "in-process")
    monkeypatch.setenv("CLIENTES_ALLOWED_BUCKETS", "partner-drop, archive ")
    assert trigger.main([]) == 0
    assert built[0]["allowed_buckets"] == {aws_resources["bucket"], "partner-drop", "archive"}
