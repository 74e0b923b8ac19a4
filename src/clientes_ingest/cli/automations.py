"""``clientes-ingest automations apply``: create or update the Prefect automations of ``automations/``.

Idempotent (by automation name); the notification block comes from ``CLIENTES_ALERT_*`` and the
missed-file window from ``CLIENTES_MISSED_FILE_HOURS`` (docs/operations.md). Requires a Prefect API
(``PREFECT_API_URL``).
"""

from __future__ import annotations

import argparse

from clientes_ingest.cli.common import EXIT_FAILED, CliError


def cmd_automations_apply(args: argparse.Namespace) -> int:
    from prefect.settings import get_current_settings

    from automations.apply import AutomationError, apply_all
    from blocks.alerts import AlertTargetError
    from clientes_ingest.settings import load_settings

    if not get_current_settings().api.url:
        raise CliError("no Prefect API to apply automations to: set PREFECT_API_URL (an ephemeral server "
                       "forgets them when this command ends)")
    try:
        target, results = apply_all(load_settings())
    except (AutomationError, AlertTargetError) as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    print(f"notifications: {target}")
    for name, outcome in results.items():
        print(f"{name}: {outcome}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    automations = sub.add_parser("automations", help="Prefect automations (alerts)").add_subparsers(
        dest="automations_command", required=True)
    automations.add_parser("apply", help="create or update the automations declared in automations/ (by name), "
                           "notifying through the block configured by CLIENTES_ALERT_*").set_defaults(
        func=cmd_automations_apply)
