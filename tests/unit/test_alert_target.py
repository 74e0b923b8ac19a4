"""Which notification block the automations use, from CLIENTES_ALERT_* (no Prefect API needed to build it)."""

from __future__ import annotations

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from pydantic import SecretStr

from blocks.alerts import SLACK_BLOCK, WEBHOOK_BLOCK, alert_block_from_settings
from clientes_ingest.settings import Settings


def test_no_target_configured() -> None:
    assert alert_block_from_settings(Settings()) is None


def test_generic_webhook_posts_subject_and_body_with_the_token_as_a_secret() -> None:
    built = alert_block_from_settings(Settings(alert_webhook_url=SecretStr("https://alerts.example/hook"),
                                               alert_webhook_token=SecretStr("tok-1")))
    assert built is not None
    block, name = built
    assert name == WEBHOOK_BLOCK and isinstance(block, CustomWebhookNotificationBlock)
    args = block._build_request_args(body="the body", subject="the subject")
    assert args["url"] == "https://alerts.example/hook" and args["method"] == "POST"
    assert args["json"] == {"subject": "the subject", "body": "the body"}
    assert args["headers"] == {"Authorization": "Bearer tok-1"}
    assert "tok-1" not in repr(block.headers) and "tok-1" not in str(block.model_dump())  # kept as a secret


def test_without_a_token_no_authorization_header() -> None:
    built = alert_block_from_settings(Settings(alert_webhook_url=SecretStr("http://127.0.0.1:9/x")))
    assert built is not None and built[0]._build_request_args(body="b", subject="s")["headers"] is None


def test_slack_wins_over_the_generic_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTES_ALERT_SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X")
    monkeypatch.setenv("CLIENTES_ALERT_WEBHOOK_URL", "https://alerts.example/hook")
    built = alert_block_from_settings(Settings())
    assert built is not None
    block, name = built
    assert name == SLACK_BLOCK and isinstance(block, SlackWebhook)
    assert block.url.get_secret_value() == "https://hooks.slack.com/services/T/B/X"
