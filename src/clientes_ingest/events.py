"""Parsing of S3 "object created" notifications as they arrive on the trigger queue (pure, no AWS).

Understands the S3 event notification format (``{"Records": [...]}``, keys URL-encoded with ``+`` for
spaces), the ``s3:TestEvent`` S3 sends when a notification is configured, the same payload wrapped in
an SNS envelope, and EventBridge "Object Created" events (keys not encoded). Requires nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

DEFAULT_KEY_PATTERN = "incoming/CLIENTES_IN_*.dat"


class EventParseError(ValueError):
    """A queue message is not an S3 notification this service understands."""


@dataclass(frozen=True)
class S3ObjectEvent:
    """One S3 record: an event on ``s3://bucket/key``, with what identifies that version of the object."""

    event_name: str
    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_object_created(self) -> bool:
        # S3 names it "ObjectCreated:Put"; some relays keep the "s3:" prefix.
        return self.event_name.removeprefix("s3:").startswith("ObjectCreated")

    @property
    def idempotency_key(self) -> str:
        """Same for every delivery of this event; different for a new upload of the same key."""
        parts = [self.bucket, self.key, self.version_id or "", self.etag or "", self.sequencer or ""]
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
        return f"s3-object-created:{digest}"


@dataclass(frozen=True)
class ParsedMessage:
    """What a queue message said: the S3 test event, or one or more object events."""

    test_event: bool
    events: tuple[S3ObjectEvent, ...] = ()


def key_matches(key: str, pattern: str = DEFAULT_KEY_PATTERN) -> bool:
    """Whether ``key`` matches a glob pattern; ``*`` and ``?`` do not cross a ``/``."""
    return _glob_regex(pattern).fullmatch(key) is not None


def _glob_regex(pattern: str) -> re.Pattern[str]:
    # fnmatch's * also matches "/", so incoming/*.dat would take incoming/old/x.dat; translate per segment.
    out = []
    for char in pattern:
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out))


def parse_message(body: str) -> ParsedMessage:
    """Parse an SQS message body; raise :class:`EventParseError` if it is not an S3 notification."""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise EventParseError(f"message body is not JSON: {exc}") from exc
    return _parse_payload(payload, depth=0)


def _parse_payload(payload: Any, depth: int) -> ParsedMessage:
    if not isinstance(payload, dict):
        raise EventParseError(f"message body is a JSON {type(payload).__name__}, expected an object")
    if payload.get("Event") == "s3:TestEvent":
        return ParsedMessage(test_event=True)
    if "Records" in payload:
        records = payload["Records"]
        if not isinstance(records, list) or not records:
            raise EventParseError("'Records' must be a non-empty list")
        events = tuple(_parse_record(record, i) for i, record in enumerate(records))
        return ParsedMessage(test_event=False, events=events)
    if payload.get("Type") == "Notification" and isinstance(payload.get("Message"), str) and depth == 0:
        # S3 -> SNS -> SQS without raw delivery: the notification is a JSON string inside.
        try:
            inner = json.loads(payload["Message"])
        except ValueError as exc:
            raise EventParseError(f"SNS message is not JSON: {exc}") from exc
        return _parse_payload(inner, depth=1)
    if payload.get("source") == "aws.s3" and isinstance(payload.get("detail"), dict):
        return ParsedMessage(test_event=False, events=(_parse_eventbridge(payload),))
    raise EventParseError("not an S3 notification: no Records, no s3:TestEvent, no EventBridge aws.s3 event")


def _parse_record(record: Any, index: int) -> S3ObjectEvent:
    where = f"record {index}"
    if not isinstance(record, dict):
        raise EventParseError(f"{where} is not an object")
    s3 = _field(record, "s3", dict, where)
    bucket = _field(_field(s3, "bucket", dict, where), "name", str, where)
    obj = _field(s3, "object", dict, where)
    raw_key = _field(obj, "key", str, where)
    # S3 URL-encodes keys in notifications, with "+" for spaces (form encoding).
    key = unquote_plus(raw_key)
    if not bucket or not key:
        raise EventParseError(f"{where} has an empty bucket or key")
    return S3ObjectEvent(
        event_name=_field(record, "eventName", str, where),
        bucket=bucket,
        key=key,
        size=_optional_int(obj.get("size"), where),
        etag=_optional_str(obj.get("eTag") or obj.get("etag")),
        version_id=_optional_str(obj.get("versionId")),
        sequencer=_optional_str(obj.get("sequencer")),
    )


def _parse_eventbridge(payload: dict[str, Any]) -> S3ObjectEvent:
    where = "EventBridge event"
    detail = payload["detail"]
    bucket = _field(_field(detail, "bucket", dict, where), "name", str, where)
    obj = _field(detail, "object", dict, where)
    key = _field(obj, "key", str, where)
    if not bucket or not key:
        raise EventParseError(f"{where} has an empty bucket or key")
    detail_type = str(payload.get("detail-type", ""))
    # "Object Created" -> "ObjectCreated:<reason>", the name S3 notifications use.
    name = detail_type.replace(" ", "") + (f":{detail['reason']}" if detail.get("reason") else "")
    return S3ObjectEvent(
        event_name=name,
        bucket=bucket,
        key=key,
        size=_optional_int(obj.get("size"), where),
        etag=_optional_str(obj.get("etag") or obj.get("eTag")),
        version_id=_optional_str(obj.get("version-id")),
        sequencer=_optional_str(obj.get("sequencer")),
    )


def _field(obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind):
        raise EventParseError(f"{where}: missing or invalid '{name}'")
    return value


def _optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value).strip('"')


def _optional_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise EventParseError(f"{where}: invalid object size {value!r}") from exc


__all__ = [
    "DEFAULT_KEY_PATTERN",
    "EventParseError",
    "ParsedMessage",
    "S3ObjectEvent",
    "key_matches",
    "parse_message",
]
