"""The whole pipeline on 127.0.0.1 without Docker (``clientes-ingest dev``), also used by the system test.

``DevStack.start()`` starts, as child processes each in its own process group: a moto server (S3 + SQS,
provisioned like ``clientes-ingest aws init``), a Prefect server with its UI, the process work pool
``local-process`` with the blocks, the automations of ``automations/`` and the deployments
``ingest-clientes/local``, ``recover-abandoned-jobs/local``, ``clientes-snapshot-ready/local`` and
``purge-old-jobs/local`` applied from prefect.yaml,
a worker, the SQS trigger service and the webhook API. The Prefect server requires HTTP basic auth with an
auth string generated per start (``PREFECT_SERVER_API_AUTH_STRING`` on the server, ``PREFECT_API_AUTH_STRING``
in every child's env; docs/security.md). It waits for each one to answer its health check
before starting the next and fails naming the service and its log file. ``stop()`` terminates every
child and their descendants (a process worker runs flows in new sessions), then kills what is left;
the children are started, health-waited and stopped by a ``supervise.Supervisor``; the provisioning
steps (environment, schema, moto resources, state files) are in ``provision``.
Every child gets the same ``CLIENTES_*`` environment (uploads are stored under
``CLIENTES_S3_UPLOAD_PREFIX``, outside the watched ``incoming/``, so an API upload is not also
picked up by the trigger); state and logs (one file per service) live under the state directory,
which also receives ``stack.json`` (URLs, ports, PIDs) and ``stack.env``.
Requires: the project checkout (prefect.yaml; found from the working directory, ``--project-dir`` or
``CLIENTES_PROJECT_DIR``), the ``dev`` extra (moto[server]) and free ports.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import importlib.util
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

from clientes_ingest.devtools.provision import (
    FAKE_AWS_KEY,
    LOCAL_DEPLOYMENT,
    LOCAL_POOL,
    PURGE_DEPLOYMENT,
    RECOVERY_DEPLOYMENT,
    SNAPSHOT_DEPLOYMENT,
    find_project_dir,
    init_aws,
    prepare_database,
    stack_environment,
    write_state,
)
from clientes_ingest.devtools.supervise import (
    Service,
    StackError,
    Supervisor,
    free_port,
    http_status,
    log_tail,
    port_in_use,
)
from clientes_ingest.exit_codes import EXIT_FAILED

__all__ = ["FAKE_AWS_KEY", "LOCAL_DEPLOYMENT", "LOCAL_POOL", "DevStack", "Service", "StackError", "banner",
           "find_project_dir", "free_port", "http_status", "log_tail", "port_in_use", "run_dev_stack"]

class DevStack:
    """The local stack; ports given as 0 are picked free at ``start()``. Use as a context manager."""

    def __init__(
        self,
        state_dir: str | Path,
        *,
        db_url: str | None = None,
        host: str = "127.0.0.1",
        prefect_port: int = 4200,
        api_port: int = 8000,
        trigger_port: int = 9100,
        moto_port: int = 5000,
        api_token: str | None = None,
        project_dir: str | Path | None = None,
        bucket: str = "clientes-ingest",
        queue_name: str = "clientes-ingest-events",
        startup_timeout: float = 120.0,
        stop_timeout: float = 15.0,
        base_env: Mapping[str, str] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.log_dir = self.state_dir / "logs"
        self.project_dir = find_project_dir(project_dir)
        self.db_url = db_url or f"sqlite:///{self.state_dir / 'clientes.db'}"
        self.host = host
        self.client_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - only compared
        self.ports = {"prefect": prefect_port, "api": api_port, "trigger": trigger_port, "moto": moto_port}
        base = dict(os.environ if base_env is None else base_env)
        given = api_token or base.get("CLIENTES_API_TOKEN")
        self.token_generated = not given
        self.api_token = given or secrets.token_urlsafe(24)
        # The Prefect server's basic-auth string: the caller's Prefect settings are not inherited, so one
        # is always generated (blocks registered in the server hold the database URL and AWS keys).
        self.prefect_auth_string = f"clientes-ingest:{secrets.token_urlsafe(24)}"
        self.bucket, self.queue_name = bucket, queue_name
        self.startup_timeout = startup_timeout
        self._base_env = base
        self.echo = echo or (lambda _message: None)
        self.supervisor = Supervisor(self.log_dir, cwd=self.project_dir, stop_timeout=stop_timeout, echo=self.echo)
        self._lock: IO[str] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The children's environment (built by ``prepare()``)."""
        return self.supervisor.env

    @env.setter
    def env(self, env: dict[str, str]) -> None:
        self.supervisor.env = env

    @property
    def services(self) -> list[Service]:
        return self.supervisor.services

    # ------------------------------------------------------------------------------------------ URLs

    def url(self, service: str) -> str:
        return f"http://{self.client_host}:{self.ports[service]}"

    @property
    def prefect_url(self) -> str:
        return self.url("prefect")

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def api_url(self) -> str:
        return self.url("api")

    @property
    def trigger_url(self) -> str:
        return self.url("trigger")

    @property
    def moto_url(self) -> str:
        return self.url("moto")

    # --------------------------------------------------------------------------------------- start

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> DevStack:
        """Start every service in dependency order; on any failure stop what was started and raise."""
        self.prepare()
        try:
            prepare_database(self.db_url, self.echo)
            if importlib.util.find_spec("moto") is None:
                raise StackError("moto is not installed: install the dev extra, pip install -e '.[dev]'")
            self.add_service("moto", [sys.executable, "-m", "moto.server", "-H", self.host,
                                      "-p", str(self.ports["moto"])], f"{self.moto_url}/moto-api/")
            init_aws(self)
            self.start_prefect_server()
            self.run_tools(("work-pool", self.prefect_args("work-pool", "create", LOCAL_POOL, "--type", "process",
                                                           "--overwrite")),
                           ("blocks", [sys.executable, "-m", "blocks.register"]),
                           ("automations", [sys.executable, "-m", "clientes_ingest.cli", "automations", "apply"]))
            worker_port = free_port(self.client_host)
            worker_args = self.prefect_args("worker", "start", "--pool", LOCAL_POOL, "--type", "process",
                                            "--with-healthcheck")
            worker = self.supervisor.spawn("worker", worker_args,
                                           {"PREFECT_WORKER_WEBSERVER_HOST": self.client_host,
                                            "PREFECT_WORKER_WEBSERVER_PORT": str(worker_port)})
            # While the worker boots: it only needs the pool.
            self.deploy(LOCAL_DEPLOYMENT, RECOVERY_DEPLOYMENT, SNAPSHOT_DEPLOYMENT, PURGE_DEPLOYMENT)
            self.supervisor.wait_http(worker, f"http://{self.client_host}:{worker_port}/health", timeout=60,
                            ready=self._worker_online)
            self.add_service("trigger", [sys.executable, "-m", "deployments.trigger"], f"{self.trigger_url}/health")
            self.add_service("api", [sys.executable, "-m", "deployments.api", "--host", self.host,
                                     "--port", str(self.ports["api"])], f"{self.api_url}/health")
            write_state(self)
        except BaseException:
            self.stop()
            raise
        return self

    def start_prefect_server(self) -> Service:
        """The Prefect server with its UI; only it gets ``PREFECT_SERVER_API_AUTH_STRING`` (basic auth)."""
        return self.add_service("prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host",
                                                   self.host, "--port", str(self.ports["prefect"])],
                                f"{self.prefect_api_url}/health", timeout=self.startup_timeout,
                                extra={"PREFECT_SERVER_API_AUTH_STRING": self.prefect_auth_string})

    def prepare(self) -> None:
        """Lock the state dir, pick the ports and build the children's env (no process started yet)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._choose_ports()
        except BaseException:
            self.stop()
            raise
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.env = stack_environment(self, self._base_env)

    @property
    def inbox(self) -> Path:
        """The one directory whose files runs of the stack may read as local sources."""
        return self.state_dir / "inbox"

    def add_service(self, name: str, args: Sequence[str], health_url: str, *, timeout: float = 60.0,
                    extra: Mapping[str, str] | None = None, ready: Callable[[], bool] | None = None) -> Service:
        """Start a child (own process group, log ``<name>.log``) and wait until ``health_url`` answers 200."""
        return self.supervisor.add_service(name, args, health_url, timeout=timeout, extra=extra, ready=ready)

    def _take_lock(self) -> None:
        lock = (self.state_dir / "stack.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise StackError(f"another dev stack is running with state dir {self.state_dir}: stop it first "
                             f"or pass another --state-dir") from None
        self._lock = lock

    def _choose_ports(self) -> None:
        for name, port in self.ports.items():
            if port == 0:
                self.ports[name] = free_port(self.client_host)
            elif port_in_use(self.host, port):
                raise StackError(f"port {port} on {self.host} ({name}) is in use, maybe by another stack or "
                                 f"service: stop it or pass --{name}-port 0 to pick a free one")

    def settings(self) -> Any:
        """The stack's ``Settings`` (what every child reads from its env)."""
        from clientes_ingest.settings import Settings

        fields = {name: self.env[f"CLIENTES_{name.upper()}"] for name in Settings.model_fields
                  if f"CLIENTES_{name.upper()}" in self.env}
        return Settings.model_validate(fields)  # every field the children read is set explicitly


    def _worker_online(self) -> bool:
        """The worker has registered with its pool (its health endpoint answers before that)."""
        code, body = http_status(f"{self.prefect_api_url}/work_pools/{LOCAL_POOL}/workers/filter", body=b"{}",
                                 headers=self.prefect_auth_header())
        return code == 200 and any(w.get("status") == "ONLINE" for w in json.loads(body or b"[]"))

    def prefect_auth_header(self) -> dict[str, str]:
        """The ``Authorization`` header the stack's Prefect server requires (what Prefect's client sends)."""
        encoded = base64.b64encode(self.prefect_auth_string.encode()).decode()
        return {"Authorization": f"Basic {encoded}"}

    def run_tools(self, *tools: tuple[str, Sequence[str]], timeout: float = 180.0) -> None:
        """Run one-shot commands at once with the stack's env from the project dir (log ``<name>.log``)."""
        self.supervisor.run_tools(*tools, timeout=timeout)

    def prefect_args(self, *args: str) -> list[str]:
        """A ``prefect`` CLI command line (run it with ``run_tools`` against the stack's server)."""
        return [sys.executable, "-m", "prefect", *args]

    def deploy(self, *names: str) -> None:
        """Apply deployments of prefect.yaml in one ``prefect deploy`` (their work pools must exist)."""
        flags = [arg for name in names for arg in ("--name", name)]
        self.run_tools(("deploy", self.prefect_args("--no-prompt", "deploy", *flags)))

    # ---------------------------------------------------------------------------------------- stop

    def processes(self) -> list[psutil.Process]:
        """Live processes of the stack: the services and everything they started."""
        return self.supervisor.processes()

    def seen_pids(self) -> set[int]:
        """Every PID the stack started or saw under its services (to check that none is left)."""
        return self.supervisor.seen_pids()

    def dead_service(self) -> Service | None:
        return self.supervisor.dead_service()

    def stop(self) -> None:
        """Terminate clients first (API, trigger, worker with its flow runs), then the servers; kill leftovers."""
        self.supervisor.stop(servers={"prefect-server", "moto"})
        if self._lock is not None:
            self._lock.close()
            self._lock = None


# ---------------------------------------------------------------------------------------- command


class _Stop(Exception):
    """SIGTERM, turned into an exception in the main thread like Ctrl-C's KeyboardInterrupt."""


def banner(stack: DevStack) -> str:
    token = stack.api_token if stack.token_generated else "$CLIENTES_API_TOKEN"
    lines = [
        f"clientes-ingest dev stack is up (state {stack.state_dir}, logs in {stack.log_dir})",
        f"  Prefect UI        {stack.prefect_url}  (it asks for the auth string below)",
        f"  Webhook API docs  {stack.api_url}/docs",
        f"  Trigger health    {stack.trigger_url}/health",
        f"  S3/SQS (moto)     {stack.moto_url}  bucket {stack.bucket}, queue {stack.queue_name}",
        f"  Database          {_safe(stack.db_url)}",
    ]
    if stack.token_generated:
        lines.append(f"API token (generated for this session): {stack.api_token}")
    lines.append(f"Prefect auth string (generated for this session): {stack.prefect_auth_string}")
    lines += [
        "Upload a file (make one with: clientes-ingest generate CLIENTES_IN_0425.dat --lines 10000):",
        f'  curl -H "Authorization: Bearer {token}" -F "file=@CLIENTES_IN_0425.dat" {stack.api_url}/process',
        "Or drop it in the bucket (the trigger starts the run):",
        f"  AWS_ACCESS_KEY_ID={FAKE_AWS_KEY} AWS_SECRET_ACCESS_KEY={FAKE_AWS_KEY} aws --endpoint-url "
        f"{stack.moto_url} s3 cp CLIENTES_IN_0425.dat s3://{stack.bucket}/incoming/",
        f"Runs of the stack read local files only from {stack.inbox} (or upload them).",
        f"Use the CLI against it: set -a; . {stack.state_dir / 'stack.env'}; set +a; clientes-ingest jobs",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _safe(url: str) -> str:
    from clientes_ingest.db import redact

    return redact(url)


def run_dev_stack(args: argparse.Namespace) -> int:
    """``clientes-ingest dev``: start the stack, print how to use it, stop it on Ctrl-C or SIGTERM."""

    def on_term(_signum: int, _frame: Any) -> None:
        raise _Stop

    began = time.monotonic()

    def echo(message: str) -> None:
        print(f"  [{time.monotonic() - began:5.1f}s] {message}", flush=True)

    previous = signal.signal(signal.SIGTERM, on_term)
    stack: DevStack | None = None
    try:
        stack = DevStack(args.state_dir, db_url=args.db, host=args.host, prefect_port=args.prefect_port,
                         api_port=args.api_port, trigger_port=args.trigger_port, moto_port=args.moto_port,
                         project_dir=args.project_dir, echo=echo)
        print(f"starting the dev stack (logs in {stack.log_dir})", flush=True)
        stack.start()
        print(banner(stack), flush=True)
        while True:
            time.sleep(1)
            dead = stack.dead_service()
            if dead is not None:
                print(f"error: {dead.name} exited with code {dead.process.returncode}; see {dead.log_path}:\n"
                      f"{log_tail(dead.log_path)}\nstopping the stack", file=sys.stderr, flush=True)
                return EXIT_FAILED
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except (KeyboardInterrupt, _Stop):
        print("stopping the dev stack", flush=True)
        return 0 if stack is not None and stack.services else 130
    finally:
        # A second Ctrl-C must not cut the clean-up short; stop() bounds itself with kill timeouts.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)
