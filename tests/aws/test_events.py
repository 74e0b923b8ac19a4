"""Pure parsing of S3 notifications (no AWS, no Prefect)."""

from __future__ import annotations

import json

import pytest

from clientes_ingest.events import (
    DEFAULT_KEY_PATTERN,
    EventParseError,
    S3ObjectEvent,
    key_matches,
    parse_message,
)


def s3_record(
    key: str, *, bucket: str = "clientes-ingest", event: str = "ObjectCreated:Put", **obj: object
) -> dict:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event,
        "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": {"key": key, **obj}},
    }


def body(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


def test_plain_record_gives_bucket_key_and_identity() -> None:
    parsed = parse_message(
        body(
            s3_record("incoming/CLIENTES_IN_0425.dat", size=10, eTag="abc", sequencer="0055", versionId="v1")
        )
    )
    assert not parsed.test_event
    (event,) = parsed.events
    assert event == S3ObjectEvent(
        event_name="ObjectCreated:Put",
        bucket="clientes-ingest",
        key="incoming/CLIENTES_IN_0425.dat",
        size=10,
        etag="abc",
        version_id="v1",
        sequencer="0055",
    )
    assert event.uri == "s3://clientes-ingest/incoming/CLIENTES_IN_0425.dat"
    assert event.is_object_created


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("incoming%2FCLIENTES_IN_0425.dat", "incoming/CLIENTES_IN_0425.dat"),
        ("incoming/CLIENTES+IN+0425.dat", "incoming/CLIENTES IN 0425.dat"),
        ("incoming/a%2Bb.dat", "incoming/a+b.dat"),
        ("incoming/Mar%C3%ADa.dat", "incoming/María.dat"),
        ("incoming/x%3Dy%26z.dat", "incoming/x=y&z.dat"),
    ],
)
def test_keys_are_url_decoded(raw: str, decoded: str) -> None:
    (event,) = parse_message(body(s3_record(raw))).events
    assert event.key == decoded
    assert event.uri == f"s3://clientes-ingest/{decoded}"


def test_several_records_in_one_message() -> None:
    parsed = parse_message(body(s3_record("incoming/a.dat"), s3_record("incoming/b.dat", bucket="other")))
    assert [(e.bucket, e.key) for e in parsed.events] == [
        ("clientes-ingest", "incoming/a.dat"),
        ("other", "incoming/b.dat"),
    ]


def test_test_event_is_recognised() -> None:
    msg = json.dumps(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-01-01T00:00:00Z", "Bucket": "b"}
    )
    parsed = parse_message(msg)
    assert parsed.test_event
    assert parsed.events == ()


def test_removed_event_is_parsed_but_not_object_created() -> None:
    (event,) = parse_message(body(s3_record("incoming/a.dat", event="ObjectRemoved:Delete"))).events
    assert not event.is_object_created
    (prefixed,) = parse_message(body(s3_record("incoming/a.dat", event="s3:ObjectCreated:Copy"))).events
    assert prefixed.is_object_created


def test_sns_envelope_is_unwrapped() -> None:
    inner = body(s3_record("incoming%2FCLIENTES_IN_0425.dat", eTag="e1"))
    envelope = json.dumps({"Type": "Notification", "MessageId": "m", "Message": inner})
    (event,) = parse_message(envelope).events
    assert event.key == "incoming/CLIENTES_IN_0425.dat"


def test_eventbridge_object_created() -> None:
    msg = json.dumps(
        {
            "version": "0",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "detail": {
                "bucket": {"name": "clientes-ingest"},
                "object": {"key": "incoming/CLIENTES IN+1.dat", "size": 5, "etag": "e", "sequencer": "61"},
                "reason": "PutObject",
            },
        }
    )
    (event,) = parse_message(msg).events
    # EventBridge keys are not URL-encoded: "+" stays "+".
    assert event.key == "incoming/CLIENTES IN+1.dat"
    assert event.is_object_created
    assert (event.etag, event.sequencer, event.size) == ("e", "61", 5)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not json",
        "[1, 2]",
        "42",
        json.dumps({"hello": "world"}),
        json.dumps({"Records": []}),
        json.dumps({"Records": "nope"}),
        json.dumps({"Records": [1]}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}),
        json.dumps(
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {}}}]}
        ),
        body(s3_record("")),
        body(s3_record("incoming/a.dat", size="big")),
        json.dumps({"Type": "Notification", "Message": "not json"}),
        json.dumps(
            {"Type": "Notification", "Message": json.dumps({"Type": "Notification", "Message": "{}"})}
        ),
        json.dumps({"source": "aws.s3", "detail": {"bucket": {"name": "b"}}}),
    ],
)
def test_garbage_raises_parse_error(garbage: str) -> None:
    with pytest.raises(EventParseError):
        parse_message(garbage)


def test_idempotency_key_is_stable_per_event_and_differs_per_upload() -> None:
    first = parse_message(body(s3_record("incoming/a.dat", eTag="e1", sequencer="01"))).events[0]
    again = parse_message(body(s3_record("incoming/a.dat", eTag="e1", sequencer="01"))).events[0]
    reupload = parse_message(body(s3_record("incoming/a.dat", eTag="e2", sequencer="02"))).events[0]
    other_bucket = parse_message(
        body(s3_record("incoming/a.dat", bucket="b2", eTag="e1", sequencer="01"))
    ).events[0]
    assert first.idempotency_key == again.idempotency_key
    assert len({first.idempotency_key, reupload.idempotency_key, other_bucket.idempotency_key}) == 3
    # Quoted and unquoted ETags are the same object version.
    quoted = parse_message(body(s3_record("incoming/a.dat", eTag='"e1"', sequencer="01"))).events[0]
    assert quoted.idempotency_key == first.idempotency_key


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("incoming/CLIENTES_IN_0425.dat", True),
        ("incoming/CLIENTES_IN_.dat", True),
        ("incoming/CLIENTES_IN_0425.dat.tmp", False),
        ("incoming/old/CLIENTES_IN_0425.dat", False),
        ("other/CLIENTES_IN_0425.dat", False),
        ("incoming/clientes_in_0425.dat", False),
        ("incoming/README.txt", False),
    ],
)
def test_default_key_pattern(key: str, expected: bool) -> None:
    assert key_matches(key, DEFAULT_KEY_PATTERN) is expected


def test_custom_pattern_with_question_mark_and_regex_chars() -> None:
    assert key_matches("in/[x]/F_1.dat", "in/[x]/F_?.dat")
    assert not key_matches("in/[x]/F_12.dat", "in/[x]/F_?.dat")
    assert not key_matches("in/x/F_1.dat", "in/[x]/F_?.dat")
