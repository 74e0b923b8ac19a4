"""Supervision of a stack's child processes: start each in a session of its own with a log file, wait
until it answers its health check, run one-shot tools, and stop everything with its descendants.

``Supervisor`` is what ``clientes-ingest dev`` (``devstack``) starts its services with. Errors name the
service and its log file and end with the log's last lines. Stopping sends one SIGTERM per process group
(a Prefect worker takes a second one as "kill the flow runs now"), then kills what outlives the timeout,
including descendants in sessions of their own (a process worker runs flows in new sessions).
Requires: psutil; POSIX (process groups, ``os.killpg``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from clientes_ingest.exit_codes import EXIT_FAILED


class StackError(RuntimeError):
    """The stack could not start; the message names the service and where its log is."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Service:
    """A long-running child process of the stack."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def http_status(url: str, *, timeout: float = 2.0, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of a GET (or a JSON POST when ``body`` is given); 0 when nothing answers."""
    headers = {**({"Content-Type": "application/json"} if body else {}), **(headers or {})}
    request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - our own http:// URLs
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (OSError, ValueError):
        return 0, b""


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "(log is empty)"


class Supervisor:
    """The children of one stack: started with ``env`` from ``cwd``, logged to ``<log_dir>/<name>.log``."""

    def __init__(self, log_dir: Path, *, cwd: Path, stop_timeout: float = 15.0,
                 echo: Callable[[str], None] | None = None) -> None:
        self.log_dir = log_dir
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.env: dict[str, str] = {}
        self.services: list[Service] = []
        self._echo = echo or (lambda _message: None)
        self._seen: dict[int, psutil.Process] = {}  # every process of the stack, to check they are gone

    # --------------------------------------------------------------------------------------- start

    def add_service(self, name: str, args: Sequence[str], health_url: str, *, timeout: float = 60.0,
                    extra: Mapping[str, str] | None = None, ready: Callable[[], bool] | None = None) -> Service:
        """Start a child (own process group, log ``<name>.log``) and wait until ``health_url`` answers 200."""
        service = self.spawn(name, args, extra)
        self.wait_http(service, health_url, timeout=timeout, ready=ready)
        return service

    def spawn(self, name: str, args: Sequence[str], extra: Mapping[str, str] | None = None) -> Service:
        """Start a child without waiting for it (``wait_http`` later)."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            # A session of its own: Ctrl-C in the terminal reaches only us, and we stop the group in order.
            process = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env={**self.env, **(extra or {})}, cwd=self.cwd,
                                       start_new_session=True)
        service = Service(name, process, log_path)
        self.services.append(service)
        self._remember(process.pid)
        self._echo(f"{name}: started (pid {process.pid}, log {log_path})")
        return service

    def wait_http(self, service: Service, url: str, *, timeout: float,
                  ready: Callable[[], bool] | None = None) -> None:
        """Wait until ``url`` answers 200 (and ``ready()`` holds); StackError if the child exits or times out."""
        name = service.name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = service.process.poll()
            if code is not None:
                raise StackError(f"{name} exited with code {code} before answering {url}; see {service.log_path}:\n"
                                 f"{log_tail(service.log_path)}")
            if http_status(url)[0] == 200 and (ready is None or ready()):
                self._echo(f"{name}: healthy at {url}")
                return
            time.sleep(0.25)
        raise StackError(f"{name} did not answer {url} within {timeout:.0f}s; see {service.log_path}:\n"
                         f"{log_tail(service.log_path)}")

    def run_tools(self, *tools: tuple[str, Sequence[str]], timeout: float = 180.0) -> None:
        """Run one-shot commands at once with the stack's env from ``cwd`` (log ``<name>.log``)."""
        running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        for name, args in tools:
            log_path = self.log_dir / f"{name}.log"
            with log_path.open("ab") as log:
                log.write(f"$ {' '.join(args)}\n".encode())
                log.flush()
                running.append((name, subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=log,
                                                       stderr=subprocess.STDOUT, env=self.env,
                                                       cwd=self.cwd), log_path))
        deadline = time.monotonic() + timeout
        failures: list[str] = []
        try:
            for name, process, log_path in running:
                try:
                    code = process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    failures.append(f"{name} did not finish within {timeout:.0f}s; see {log_path}")
                    continue
                if code != 0:
                    failures.append(f"{name} failed with code {code}; see {log_path}:\n{log_tail(log_path)}")
                else:
                    self._echo(f"{name}: done")
        finally:  # timed out, or Ctrl-C while waiting: no tool outlives the call
            for _name, process, _log in running:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        if failures:
            raise StackError("\n".join(failures))

    # ---------------------------------------------------------------------------------------- stop

    def _remember(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self._seen.setdefault(pid, psutil.Process(pid))

    def processes(self) -> list[psutil.Process]:
        """Live processes of the stack: the services and everything they started."""
        for service in self.services:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(service.pid).children(recursive=True):
                    self._remember(child.pid)
        return [p for p in self._seen.values() if _alive(p)]

    def seen_pids(self) -> set[int]:
        """Every PID the stack started or saw under its services (to check that none is left)."""
        return set(self._seen)

    def dead_service(self) -> Service | None:
        return next((s for s in self.services if s.process.poll() is not None), None)

    def stop(self, servers: Collection[str] = ()) -> None:
        """Terminate the clients (a worker with its flow runs), then the ``servers`` they use; kill leftovers."""
        self._terminate([s for s in reversed(self.services) if s.name not in servers])
        self._terminate([s for s in reversed(self.services) if s.name in servers])
        leftovers = [p for p in self._seen.values() if _alive(p)]  # e.g. a flow run whose worker died earlier
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        self._kill_after_timeout(leftovers)
        for service in self.services:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(timeout=5)  # reap, so no zombie outlives the stack
        self.services.clear()

    def _terminate(self, services: list[Service]) -> None:
        """SIGTERM each service's group and its descendants (flow runs sit in sessions of their own)."""
        targets: list[psutil.Process] = []
        for service in services:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(service.pid)
                targets += [root, *root.children(recursive=True)]  # before the parent dies and they re-parent
        for proc in targets:
            self._remember(proc.pid)
        groups = {s.pid for s in services if s.process.poll() is None}
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGTERM)
        # Exactly one SIGTERM each: a Prefect worker takes a second one as "kill the flow runs now".
        for proc in targets:
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) not in groups:
                    proc.terminate()
        self._kill_after_timeout(targets)

    def _kill_after_timeout(self, procs: list[psutil.Process]) -> None:
        _, alive = psutil.wait_procs([p for p in procs if _alive(p)], timeout=self.stop_timeout)
        for proc in alive:
            self._echo(f"pid {proc.pid} did not stop within {self.stop_timeout:.0f}s: killing it")
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

