"""SQS trigger service (``clientes-ingest-trigger``): S3 "object created" events -> ingest flow runs.

Long-polls the trigger queue. For each S3 record whose key matches ``CLIENTES_TRIGGER_KEY_PATTERN``
(default ``incoming/CLIENTES_IN_*.dat``) it creates a run of the ingest deployment with
``source=s3://bucket/key`` pinned to the object version the event names (``version_id`` and/or ``etag``
parameters: the run reads that version even if the key was uploaded again since) and an idempotency key
from bucket, key, version, ETag and sequencer, so a repeated delivery never makes a second run; then it
deletes the message. Test events and other keys are acknowledged and logged; so are events for a bucket
that is not allowed (``CLIENTES_S3_BUCKET`` and ``CLIENTES_ALLOWED_BUCKETS``: counted as refused, never
launched). A message it cannot parse, or whose run cannot be created, is left on the queue: SQS
redelivers it and, after 3 receives, moves it to the dead-letter queue.

Modes (``CLIENTES_LAUNCH_MODE``, shared with the API): ``deployment`` creates runs through the Prefect API
(``PREFECT_API_URL``; deployment ``CLIENTES_DEPLOYMENT``, default ``ingest-clientes/local``, Kubernetes
sets ``ingest-clientes/k8s``);
``in-process`` runs the flow inside this process and deletes the message only once the load is done
(embedded default, no Prefect server: ``deployments.launch.InlineLauncher``; unlike the webhook's queued
in-process runs, a crash here leaves the event on the queue to be redelivered); ``auto``
(default) picks ``deployment`` when ``PREFECT_API_URL`` is set. Serves ``/health`` and Prometheus
``/metrics`` on ``CLIENTES_TRIGGER_PORT`` (9100). Stops cleanly on SIGTERM/SIGINT after the message in
hand. Requires: the SQS queue (``clientes-ingest aws init``) and ``CLIENTES_AWS_*`` settings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Collection, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from clientes_ingest.events import DEFAULT_KEY_PATTERN, EventParseError, S3ObjectEvent, key_matches, parse_message
from clientes_ingest.s3 import describe_error
from clientes_ingest.settings import Settings, load_settings
from deployments.launch import RunLauncher

logger = logging.getLogger("clientes_ingest.trigger")


def event_pin(event: S3ObjectEvent) -> dict[str, str]:
    """The run parameters that pin the object version the event announced."""
    from clientes_ingest.storage import ObjectVersion
    from deployments.launch import pin_parameters

    return pin_parameters(version=ObjectVersion.of(event.version_id, event.etag))


class TriggerMetrics:
    """Prometheus counters of the service, in their own registry (one per service instance)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        prefix = "clientes_trigger"
        self.received = Counter(f"{prefix}_messages_received", "SQS messages received", registry=self.registry)
        self.runs_created = Counter(f"{prefix}_runs_created", "ingest runs created", registry=self.registry)
        self.duplicates = Counter(
            f"{prefix}_duplicates", "events whose run already existed (redelivery)", registry=self.registry
        )
        self.ignored = Counter(
            f"{prefix}_ignored", "test events and keys outside the pattern, acknowledged", registry=self.registry
        )
        self.refused = Counter(
            f"{prefix}_refused", "events for a bucket that is not allowed, acknowledged without a run",
            registry=self.registry,
        )
        self.failed = Counter(
            f"{prefix}_failed", "messages left for redelivery (unparseable or run not created)", registry=self.registry
        )
        self.last_poll = Gauge(
            f"{prefix}_last_poll_timestamp_seconds", "time of the last successful receive", registry=self.registry
        )


Outcome = Literal["launched", "ignored", "failed"]


class TriggerService:
    """The receive -> launch -> acknowledge loop; ``run`` until ``stop``."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        launcher: RunLauncher,
        *,
        allowed_buckets: Collection[str],
        key_pattern: str = DEFAULT_KEY_PATTERN,
        metrics: TriggerMetrics | None = None,
        wait_seconds: int = 20,
        visibility_timeout: int = 60,
        retry_delay_seconds: int | None = 30,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.launcher = launcher
        self.allowed_buckets = frozenset(allowed_buckets)
        self.key_pattern = key_pattern
        self.metrics = metrics or TriggerMetrics()
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.retry_delay_seconds = retry_delay_seconds
        self._stop = threading.Event()
        self.started_at = time.time()
        self.last_poll: float | None = None
        self.busy_since: float | None = None

    def stop(self) -> None:
        """Ask the loop to end after the message in hand (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def healthy(self) -> bool:
        """Polling recently, or busy with a message (an in-process run can take long), or just started."""
        now = time.time()
        if self.busy_since is not None:
            return True
        grace = max(3 * self.wait_seconds, 60)
        return (self.last_poll or self.started_at) >= now - grace

    def run(self) -> None:
        logger.info("trigger polling %s (pattern %s)", self.queue_url, self.key_pattern)
        failures = 0
        while not self._stop.is_set():
            try:
                self.poll_once()
                failures = 0
            except Exception as exc:  # never die on a queue hiccup: back off and poll again
                failures += 1
                delay = min(30.0, 2.0**failures)
                logger.error("receive from %s failed (%s); retrying in %.0fs", self.queue_url, describe_error(exc),
                             delay)
                self._stop.wait(delay)
        logger.info("trigger stopped")

    def poll_once(self) -> list[Outcome]:
        """One long-poll receive; handle what arrived. Returns the outcome per message."""
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=1,  # one message in hand: a stop or a crash strands nothing else
            WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=self.visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        self.last_poll = time.time()
        self.metrics.last_poll.set(self.last_poll)
        return [self.handle(message) for message in response.get("Messages", [])]

    def handle(self, message: dict[str, Any]) -> Outcome:
        """Process one SQS message; delete it only if every record in it was dealt with."""
        self.metrics.received.inc()
        self.busy_since = time.time()
        message_id = message.get("MessageId", "?")
        receipts = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        try:
            outcome = self._handle(message, message_id, receipts)
        except Exception:  # a bug must not kill the service; SQS will redeliver, then dead-letter
            logger.exception("message %s: unexpected error; left for redelivery", message_id)
            self.metrics.failed.inc()
            self._retry_later(message)
            outcome = "failed"
        finally:
            self.busy_since = None
        return outcome

    def _handle(self, message: dict[str, Any], message_id: str, receipts: str) -> Outcome:
        try:
            parsed = parse_message(message.get("Body", ""))
        except EventParseError as exc:
            logger.warning(
                "message %s (receive %s) is not an S3 notification: %s; left for redelivery / DLQ",
                message_id,
                receipts,
                exc,
            )
            self.metrics.failed.inc()
            self._retry_later(message)
            return "failed"
        if parsed.test_event:
            logger.info("message %s: s3:TestEvent, acknowledged", message_id)
            self.metrics.ignored.inc()
            self._delete(message)
            return "ignored"

        outcomes = [self._launch_record(message, message_id, event) for event in parsed.events]
        if "failed" in outcomes:
            # Records that did start are safe to replay: their idempotency key finds the same run.
            self._retry_later(message)
            return "failed"
        self._delete(message)
        return "launched" if "launched" in outcomes else "ignored"

    def _launch_record(self, message: dict[str, Any], message_id: str, event: S3ObjectEvent) -> Outcome:
        """Start the run of one record of ``message``: ``ignored`` if it is not for us or not allowed."""
        if not event.is_object_created or not key_matches(event.key, self.key_pattern):
            logger.info(
                "message %s: %s %s does not match %s, ignored",
                message_id,
                event.event_name,
                event.uri,
                self.key_pattern,
            )
            self.metrics.ignored.inc()
            return "ignored"
        if event.bucket not in self.allowed_buckets:
            # Acknowledged, never retried: whoever can write to the queue must not make runs read other
            # buckets (the flow refuses them too).
            logger.warning("message %s: %s is in bucket %r, which is not allowed (CLIENTES_S3_BUCKET, "
                           "CLIENTES_ALLOWED_BUCKETS); refused", message_id, event.uri, event.bucket)
            self.metrics.refused.inc()
            return "ignored"
        try:
            with self._keep_invisible(message):
                result = self.launcher.launch(event.uri, job_id=None, idempotency_key=event.idempotency_key,
                                              pin=event_pin(event))
        except Exception as exc:
            logger.error("message %s: cannot start a run for %s: %s", message_id, event.uri, describe_error(exc))
            self.metrics.failed.inc()
            return "failed"
        if result.created:
            logger.info("message %s: run %s created for %s", message_id, result.flow_run_id, event.uri)
            self.metrics.runs_created.inc()
        else:
            logger.info(
                "message %s: run %s already exists for %s (duplicate delivery)",
                message_id,
                result.flow_run_id,
                event.uri,
            )
            self.metrics.duplicates.inc()
        return "launched"

    def _delete(self, message: dict[str, Any]) -> None:
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        except (ClientError, BotoCoreError) as exc:
            # Redelivery is harmless (idempotency key); losing the error is not.
            logger.error("message %s: delete failed (%s); it will come back", message.get("MessageId"),
                         describe_error(exc))

    def _retry_later(self, message: dict[str, Any]) -> None:
        if self.retry_delay_seconds is None:
            return
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=self.retry_delay_seconds,
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("message %s: cannot reschedule (%s)", message.get("MessageId"), describe_error(exc))

    @contextlib.contextmanager
    def _keep_invisible(self, message: dict[str, Any]) -> Iterator[None]:
        """While a launch is slow, keep pushing the message's visibility timeout out."""
        done = threading.Event()
        interval = max(1.0, self.visibility_timeout / 2)

        def extend() -> None:
            while not done.wait(interval):
                try:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=self.visibility_timeout,
                    )
                except (ClientError, BotoCoreError) as exc:
                    logger.warning(
                        "message %s: cannot extend visibility (%s)", message.get("MessageId"), describe_error(exc)
                    )

        thread = threading.Thread(target=extend, name="sqs-visibility", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def serve_http(service: TriggerService, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``/health`` and ``/metrics`` from a daemon thread; ``port`` 0 picks a free port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(service.metrics.registry))
            elif self.path.split("?")[0] == "/health":
                ok = service.healthy()
                body = {
                    "status": "ok" if ok else "stale",
                    "last_poll": service.last_poll,
                    "busy": service.busy_since is not None,
                    "stopping": service.stopping,
                }
                self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain", b"not found: try /health or /metrics\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
            pass  # probes every few seconds would drown the real log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="trigger-http", daemon=True).start()
    return server


def build_launcher(settings: Settings) -> RunLauncher:
    """The trigger's launcher (``resources``): a deployment's runs, or in-process runs it waits for."""
    from clientes_ingest.resources import build_launcher as build

    return build(settings, inline=True, tags=("trigger:s3",))


def install_signal_handlers(service: TriggerService) -> None:
    """SIGTERM (Kubernetes) and SIGINT (Ctrl-C) stop the loop after the message in hand."""

    def handler(signum: int, _frame: Any) -> None:
        logger.info("%s received: stopping after the message in hand", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``clientes-ingest-trigger``: configuration from the environment only."""
    del argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from prefect.settings import PREFECT_API_AUTH_STRING

    from clientes_ingest.placeholders import exit_on_placeholders
    from clientes_ingest.s3 import clients_from_settings
    from clientes_ingest.sources import SourcePolicy

    settings = load_settings()
    # Before serving: an example secret (CHANGE-ME) would make a guessable credential.
    exit_on_placeholders(settings, "clientes-ingest-trigger",
                         {"PREFECT_API_AUTH_STRING": PREFECT_API_AUTH_STRING.value()})
    config = settings.trigger
    _, sqs = clients_from_settings(settings)
    queue_url = config.queue_url
    if not queue_url:
        try:
            queue_url = sqs.get_queue_url(QueueName=settings.sqs_queue_name)["QueueUrl"]
        except (ClientError, BotoCoreError) as exc:
            print(
                f"cannot find SQS queue {settings.sqs_queue_name} ({describe_error(exc)}): "
                "create it with `clientes-ingest aws init` or set CLIENTES_TRIGGER_QUEUE_URL",
                file=sys.stderr,
            )
            return 1
    service = TriggerService(
        sqs,
        queue_url,
        build_launcher(settings),
        allowed_buckets=SourcePolicy.from_settings(settings).buckets,
        key_pattern=config.key_pattern,
        wait_seconds=config.wait_seconds,
        visibility_timeout=config.visibility_timeout,
        retry_delay_seconds=config.retry_delay_seconds,
    )
    server = serve_http(service, config.host, config.port)
    logger.info("serving /health and /metrics on %s:%d", config.host, server.server_address[1])
    install_signal_handlers(service)
    try:
        service.run()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
