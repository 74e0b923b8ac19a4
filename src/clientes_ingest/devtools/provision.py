"""Provisioning steps of the dev stack: where the project is, the children's environment, the database
schema, the moto bucket and queues, and the ``stack.json``/``stack.env`` state files.

``devstack.DevStack`` calls these in order while it starts the processes. Requires: the project checkout
(prefect.yaml), and for ``init_aws`` a moto server answering at the stack's endpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from clientes_ingest.devtools.supervise import StackError
from clientes_ingest.exit_codes import EXIT_DB

if TYPE_CHECKING:
    from clientes_ingest.devtools.devstack import DevStack

LOCAL_DEPLOYMENT = "ingest-clientes/local"
RECOVERY_DEPLOYMENT = "recover-abandoned-jobs/local"
SNAPSHOT_DEPLOYMENT = "clientes-snapshot-ready/local"  # the downstream hook (trigger on clientes.job.completed)
PURGE_DEPLOYMENT = "purge-old-jobs/local"
LOCAL_POOL = "local-process"
# The API stores uploads outside the trigger's incoming/ prefix: otherwise the bucket notification would
# start a second run of the same upload, racing the API's run for the content claim.
FAKE_AWS_KEY = "testing"  # moto accepts any key pair; these are not credentials of anything
# Settings of the caller's Prefect that would point the children at another API, home or database.
_FOREIGN_PREFECT = ("PREFECT_API_", "PREFECT_HOME", "PREFECT_PROFILE", "PREFECT_SERVER_DATABASE_",
                    "PREFECT_UI_", "PREFECT_CLOUD_")


def find_project_dir(explicit: str | Path | None = None) -> Path:
    """The checkout holding prefect.yaml: ``explicit``, ``CLIENTES_PROJECT_DIR``, the cwd or its parents."""
    from clientes_ingest.settings import load_settings

    candidates = [Path(p) for p in (explicit, load_settings().project_dir) if p]
    if not candidates:
        cwd = Path.cwd().resolve()
        candidates = [cwd, *cwd.parents, Path(__file__).resolve().parents[2]]
    for directory in candidates:
        if (directory / "prefect.yaml").is_file():
            return directory.resolve()
    raise StackError(f"cannot find prefect.yaml in {', '.join(str(c) for c in candidates[:2])}: run from the "
                     f"project checkout or pass --project-dir")


def stack_environment(stack: DevStack, base_env: Mapping[str, str]) -> dict[str, str]:
    """The children's env: the caller's, minus foreign Prefect/AWS settings, plus the stack's."""
    env = {k: v for k, v in base_env.items()
           if not k.startswith(("AWS_", *_FOREIGN_PREFECT)) and k != "CLIENTES_TRIGGER_QUEUE_URL"}
    env.update({
        "PREFECT_HOME": str(stack.state_dir / "prefect"),
        "PREFECT_API_URL": stack.prefect_api_url,
        "PREFECT_API_AUTH_STRING": stack.prefect_auth_string,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "AWS_ACCESS_KEY_ID": FAKE_AWS_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_AWS_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(stack.state_dir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(stack.state_dir / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "CLIENTES_DB_URL": stack.db_url,
        "CLIENTES_STORAGE": "s3",
        "CLIENTES_STORAGE_ROOT": str(stack.state_dir / "storage"),
        # Deployment mode: runs read local files only from the inbox (docs/security.md, "Sources").
        "CLIENTES_ALLOWED_LOCAL_ROOTS": str(stack.inbox),
        "CLIENTES_S3_BUCKET": stack.bucket,
        "CLIENTES_S3_PREFIX": "incoming/",
        "CLIENTES_SQS_QUEUE_NAME": stack.queue_name,
        "CLIENTES_AWS_ENDPOINT_URL": stack.moto_url,
        "CLIENTES_AWS_REGION": "us-east-1",
        "CLIENTES_AWS_ACCESS_KEY_ID": FAKE_AWS_KEY,
        "CLIENTES_AWS_SECRET_ACCESS_KEY": FAKE_AWS_KEY,
        "CLIENTES_API_TOKEN": stack.api_token,
        "CLIENTES_PROJECT_DIR": str(stack.project_dir),  # prefect.yaml's pull step for the local deployment
        "CLIENTES_DEPLOYMENT": LOCAL_DEPLOYMENT,
        "CLIENTES_LAUNCH_MODE": "deployment",  # the API's and the trigger's runs go to the worker
        "CLIENTES_TRIGGER_HOST": stack.host,
        "CLIENTES_TRIGGER_PORT": str(stack.ports["trigger"]),
        "PYTHONUNBUFFERED": "1",
    })
    # Snappier than the production defaults, and still overridable from the caller's env.
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
    env.setdefault("CLIENTES_TRIGGER_WAIT_SECONDS", "5")  # also bounds how long the trigger takes to stop
    return env


def prepare_database(db_url: str, echo: Callable[[str], None]) -> None:
    """Check the stack's database and create its schema; a clear ``StackError`` otherwise."""
    from sqlalchemy.exc import SQLAlchemyError

    from clientes_ingest.db import Database, DatabaseUnavailable

    db = Database(db_url)
    try:
        db.check()
        db.ensure_schema()
    except DatabaseUnavailable as exc:
        raise StackError(f"{exc}: start it or pass another --db", EXIT_DB) from None
    except SQLAlchemyError as exc:
        raise StackError(f"cannot create the schema in {db.safe_url}: {db.error_text(exc)}") from None
    finally:
        db.dispose()
    echo(f"database {db.safe_url}: schema ready")


def init_aws(stack: DevStack) -> None:
    """Create the bucket, queues and notification in the stack's moto, like ``clientes-ingest aws init``."""
    from clientes_ingest.devtools.aws import ProvisioningError, init_from_settings

    try:
        init_from_settings(stack.settings())
    except ProvisioningError as exc:
        raise StackError(f"aws init against moto at {stack.moto_url} failed: {exc}; see "
                         f"{stack.log_dir / 'moto.log'}") from None
    stack.echo(f"moto: bucket {stack.bucket}, queue {stack.queue_name} (+ DLQ) and the notification created")


def write_state(stack: DevStack) -> None:
    """stack.json for tools and tests, stack.env to ``source`` in a shell; 0600: they hold the token."""
    info = {
        "status": "ready", "pid": os.getpid(), "state_dir": str(stack.state_dir), "log_dir": str(stack.log_dir),
        "prefect_url": stack.prefect_url, "prefect_api_url": stack.prefect_api_url, "api_url": stack.api_url,
        "api_docs_url": f"{stack.api_url}/docs", "trigger_url": stack.trigger_url, "moto_url": stack.moto_url,
        "bucket": stack.bucket, "queue": stack.queue_name, "api_token": stack.api_token,
        "prefect_auth_string": stack.prefect_auth_string,
        "services": {s.name: {"pid": s.pid, "log": str(s.log_path)} for s in stack.services},
    }
    keep = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "CLIENTES_", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION")
    lines = [f"export {k}={json.dumps(v)}" for k, v in sorted(stack.env.items()) if k.startswith(keep)]
    for path, text in ((stack.state_dir / "stack.json", json.dumps(info, indent=2)),
                       (stack.state_dir / "stack.env", "\n".join(lines))):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
