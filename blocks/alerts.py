"""The notification block the automations of ``automations/`` send their alerts through.

Chosen from the environment, first match wins:
- ``CLIENTES_ALERT_BLOCK=<block-type-slug>/<name>``: an existing notification block of any type
  (e.g. ``sendgrid-email/ops-mail``, ``ms-teams-webhook/ops``), created by you in the UI or code;
- ``CLIENTES_ALERT_SLACK_WEBHOOK_URL``: a Prefect ``SlackWebhook`` block ``clientes-alerts-slack``;
- ``CLIENTES_ALERT_WEBHOOK_URL``: a generic webhook (Prefect ``CustomWebhookNotificationBlock``
  ``clientes-alerts``) that POSTs ``{"subject": ..., "body": ...}`` as JSON, with
  ``Authorization: Bearer <CLIENTES_ALERT_WEBHOOK_TOKEN>`` when that token is set (kept as a block secret).
With none of them the automations still exist and fire (visible in the UI's event feed) but notify nobody.
Requires a Prefect API.
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect.blocks.core import Block
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

from blocks.register import Outcome, upsert_block
from clientes_ingest.settings import Settings

WEBHOOK_BLOCK = "clientes-alerts"
SLACK_BLOCK = "clientes-alerts-slack"


class AlertTargetError(RuntimeError):
    """The configured notification block cannot be used; the message says which and why."""


def alert_block_from_settings(settings: Settings) -> tuple[Block, str] | None:
    """The notification block to save (and its name) from the settings, or None when none is configured."""
    if settings.alert_slack_webhook_url is not None:
        return SlackWebhook(url=settings.alert_slack_webhook_url), SLACK_BLOCK
    if settings.alert_webhook_url is not None:
        token = settings.alert_webhook_token
        return CustomWebhookNotificationBlock(
            name=WEBHOOK_BLOCK, url=settings.alert_webhook_url.get_secret_value(), method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
            headers={"Authorization": "Bearer {{token}}"} if token else None, cookies=None,
            secrets={"token": token.get_secret_value()} if token else {},  # type: ignore[arg-type]
        ), WEBHOOK_BLOCK
    return None


def ensure_alert_block(settings: Settings) -> tuple[UUID | None, str]:
    """The id of the block alerts go to, saved or found; and a line saying which (None: no target)."""
    if settings.alert_block:
        slug, _, name = settings.alert_block.partition("/")
        if not name:
            raise AlertTargetError(f"CLIENTES_ALERT_BLOCK={settings.alert_block!r}: use <block-type-slug>/<name>, "
                                   f"e.g. slack-webhook/ops-alerts")
        try:
            block = cast(Block, Block.load(settings.alert_block))
        except (ValueError, KeyError) as exc:
            raise AlertTargetError(f"cannot load the notification block {settings.alert_block!r}: {exc}") from None
        return block._block_document_id, f"{settings.alert_block} (existing block)"
    wanted = alert_block_from_settings(settings)
    if wanted is None:
        return None, "no notification target (set CLIENTES_ALERT_WEBHOOK_URL or see docs/operations.md)"
    block, name = wanted
    outcome: Outcome = upsert_block(block, name)
    saved = cast(Block, type(block).load(name))
    return saved._block_document_id, f"{saved.get_block_type_slug()}/{name}: {outcome}"
