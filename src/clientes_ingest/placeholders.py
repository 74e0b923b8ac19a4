"""Refusing placeholder secrets at start-up (docs/security.md).

``k8s/secret.example.yaml`` and the docs show secrets as ``CHANGE-ME``, ``...`` or ``<password>``. A
service started with such a value would run with a guessable credential (the API would accept the
token ``CHANGE-ME``), so the API and the trigger call :func:`refuse_placeholders` before serving.
Needs: the loaded ``Settings``; secrets read by other libraries (Prefect's ``PREFECT_API_AUTH_STRING``)
are passed in by the caller.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping

import sqlalchemy as sa
from pydantic import SecretStr

from clientes_ingest.settings import Settings

# What the examples and docs use where a real secret belongs.
_PLACEHOLDER = re.compile(r"change[-_ ]?me|replace[-_ ]?me|^choose[-_]|^<[^<>]*>$|^\.\.\.$|^x{3,}$", re.IGNORECASE)


class PlaceholderSecret(Exception):
    """A secret still holds an example value; the message names the variable, never the value."""


def is_placeholder(value: str) -> bool:
    """Whether a secret value is one of the documented placeholders (``CHANGE-ME``, ``...``, ``<token>``)."""
    return bool(_PLACEHOLDER.search(value.strip()))


def _db_password(url: SecretStr) -> str | None:
    try:
        password = sa.engine.make_url(url.get_secret_value()).password
    except Exception:  # an unparseable URL fails later with its own error
        return None
    return None if password is None else str(password)


def placeholder_secrets(settings: Settings, others: Mapping[str, SecretStr | str | None] | None = None) -> list[str]:
    """The names of the environment variables whose secret is still a placeholder.

    ``others``: secrets of other libraries by variable name, e.g. ``{"PREFECT_API_AUTH_STRING": ...}``
    (a ``user:password`` string is judged by its password).
    """
    found = []
    named = {"CLIENTES_API_TOKEN": settings.api_token, "CLIENTES_AWS_ACCESS_KEY_ID": settings.aws_access_key_id,
             "CLIENTES_AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key, **(others or {})}
    for name, secret in named.items():
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value is not None and is_placeholder(value.rpartition(":")[2]):
            found.append(name)
    password = _db_password(settings.db_url)
    if password is not None and is_placeholder(password):
        found.append("CLIENTES_DB_URL")
    return found


def refuse_placeholders(settings: Settings, service: str,
                        others: Mapping[str, SecretStr | str | None] | None = None) -> None:
    """Raise :class:`PlaceholderSecret` naming every placeholder secret ``service`` was started with."""
    names = placeholder_secrets(settings, others)
    if names:
        raise PlaceholderSecret(
            f"{service} refuses to start: {', '.join(names)} still hold the example placeholder (CHANGE-ME); "
            "create the real Secret (docs/kubernetes.md, '2. Secrets') or set a real value")


def exit_on_placeholders(settings: Settings, service: str,
                         others: Mapping[str, SecretStr | str | None] | None = None) -> None:
    """For a service's ``main``: print the refusal on stderr and exit 2 when a secret is a placeholder."""
    try:
        refuse_placeholders(settings, service, others)
    except PlaceholderSecret as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
