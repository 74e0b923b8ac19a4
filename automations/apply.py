"""Create or update the Prefect automations declared in ``automations/*.yaml``, by name (idempotent).

Each YAML file is one automation in Prefect's own schema (``prefect automation create --from-file``
reads the same shape). ``${missed_file_seconds}`` and ``${missed_file_hours}`` are filled from
``CLIENTES_MISSED_FILE_HOURS``. A ``send-notification`` action without a ``block_document_id`` goes
to the notification block of ``blocks.alerts`` (from ``CLIENTES_ALERT_*``); with no target configured
it becomes ``do-nothing``, so the automation still fires and shows in the UI. An automation whose
name exists is updated in place (extra copies of that name are deleted); a new name is created.
Run as ``clientes-ingest automations apply`` or ``python -m automations.apply``; the dev stack, the
compose ``setup`` service and the k8s ``prefect-deploy`` job run it. Requires a Prefect API.
"""

from __future__ import annotations

import string
import sys
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import yaml
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore
from pydantic import ValidationError

from blocks.alerts import ensure_alert_block
from clientes_ingest.settings import Settings

DECLARATIONS = Path(__file__).resolve().parent
Outcome = Literal["created", "updated"]


class AutomationError(ValueError):
    """A declaration cannot be read or is not a valid automation; the message names the file."""


def template_values(settings: Settings) -> dict[str, str]:
    """The ``${...}`` values the declarations may use."""
    return {"missed_file_seconds": str(round(settings.missed_file_hours * 3600)),
            "missed_file_hours": f"{settings.missed_file_hours:g}"}


def load_declarations(
    values: dict[str, str], block_id: UUID | None, directory: Path = DECLARATIONS
) -> list[AutomationCore]:
    """Every ``*.yaml`` of ``directory`` (sorted), filled and validated, notifications pointed at ``block_id``."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(string.Template(path.read_text(encoding="utf-8")).substitute(values))
            data["actions"] = [_target(action, block_id) for action in data.get("actions", [])]
            found.append(AutomationCore.model_validate(data))
        except (KeyError, ValueError, yaml.YAMLError, ValidationError) as exc:
            raise AutomationError(f"{path}: not a valid automation: {exc}") from None
    if not found:
        raise AutomationError(f"no automation declared in {directory} (*.yaml)")
    return found


def _target(action: dict[str, Any], block_id: UUID | None) -> dict[str, Any]:
    if action.get("type") != "send-notification" or action.get("block_document_id"):
        return action
    if block_id is None:
        return {"type": "do-nothing"}
    return {**action, "block_document_id": str(block_id)}


def apply_automations(automations: list[AutomationCore]) -> dict[str, Outcome]:
    """Create each automation, or update the one with its name; name -> created/updated."""
    results: dict[str, Outcome] = {}
    with get_client(sync_client=True) as client:
        for wanted in automations:
            existing = client.read_automations_by_name(wanted.name)
            if not existing:
                client.create_automation(wanted)
                results[wanted.name] = "created"
                continue
            current, *extra = existing
            for duplicate in extra:
                client.delete_automation(duplicate.id)
            client.update_automation(current.id, wanted)
            results[wanted.name] = "updated"
    return results


def apply_all(settings: Settings, directory: Path = DECLARATIONS) -> tuple[str, dict[str, Outcome]]:
    """The notification block, then every declared automation; (target line, name -> outcome)."""
    block_id, target = ensure_alert_block(settings)
    return target, apply_automations(load_declarations(template_values(settings), block_id, directory))


if __name__ == "__main__":
    from clientes_ingest.cli import main

    sys.exit(main(["automations", "apply"]))
