"""Start ingest runs: one small launcher shared by the webhook API and the SQS trigger.

``launch_ingest(source, job_id=..., idempotency_key=...)`` creates a run of ``ingest-clientes``:

* ``deployment`` mode (a Prefect API is configured, ``PREFECT_API_URL``): a flow run of the deployment
  ``CLIENTES_DEPLOYMENT`` (default ``ingest-clientes/local``; Kubernetes sets ``ingest-clientes/k8s``) is
  created through the API with the idempotency key, so the same key always answers the same flow run; a
  worker executes it.
* ``in-process`` mode (no Prefect server configured): the flow run is created the same way, with
  ``run_deployment``, of ``ingest-clientes/in-process`` (a deployment applied to Prefect's ephemeral API
  that no worker polls) and executed here, on a bounded pool of ``CLIENTES_LAUNCH_WORKERS`` threads
  (default 1; more runs queue, Scheduled). Keys are remembered in a bounded in-memory map and sent to
  Prefect as the flow run's idempotency key.

``CLIENTES_LAUNCH_MODE`` (``auto``, ``deployment``, ``in-process``) overrides the choice; the launcher is
built from ``Settings`` by ``clientes_ingest.resources.build_launcher``. Requires:
prefect (imported lazily, so importing this module stays cheap), and for deployment mode the deployment
applied from prefect.yaml and a worker of its pool.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from clientes_ingest.flow_results import IngestResult
from clientes_ingest.settings import Settings, load_settings, use_settings
from clientes_ingest.storage import ObjectVersion

logger = logging.getLogger("clientes_ingest.launch")

Mode = Literal["deployment", "in-process", "inline"]


class LaunchError(RuntimeError):
    """A run could not be created; the message names the deployment or API and the cause."""


@dataclass(frozen=True)
class LaunchResult:
    """A started (or found) flow run. ``created`` is False when the idempotency key matched an earlier run;
    ``job_id`` is the ingest job the run loads, when known; ``state`` the run's state name when read, and
    ``ended`` whether that state is final (completed, failed, crashed, cancelled)."""

    flow_run_id: str
    created: bool
    mode: Mode
    job_id: int | None = None
    state: str | None = None
    ended: bool = False
    idempotency_key: str | None = None


class RunLauncher(Protocol):
    mode: Mode

    def launch(
        self, source: str, *, job_id: int | None, idempotency_key: str | None, chunk_size: str | None = None,
        pin: dict[str, str] | None = None,
    ) -> LaunchResult:
        """Start the ingest run for ``source`` (or return the run its idempotency key already names).

        ``pin`` (``pin_parameters``) names the content and object version the run must read."""

    def find(self, idempotency_key: str) -> LaunchResult | None:
        """The run an idempotency key already started, if this launcher knows one."""


def flow_parameters(source: str, job_id: int | None, chunk_size: str | None,
                    pin: dict[str, str] | None = None) -> dict[str, Any]:
    """The ingest flow's parameters; unset optional ones are left to the flow's defaults."""
    parameters: dict[str, Any] = {"source": source}
    if job_id is not None:
        parameters["job_id"] = job_id
    if chunk_size is not None:
        parameters["chunk_size"] = chunk_size
    parameters.update(pin or {})
    return parameters


def pin_parameters(sha256: str | None = None, version: ObjectVersion | None = None) -> dict[str, str]:
    """The flow parameters that pin a run to one content (``sha256``) and object version (``version_id``,
    ``etag``): the run reads only those bytes, or fails and loads nothing."""
    values = {"sha256": sha256, "version_id": version.version_id if version else None,
              "etag": version.etag if version else None}
    return {name: value for name, value in values.items() if value}


def _job_id_of(parameters: dict[str, Any] | None) -> int | None:
    value = (parameters or {}).get("job_id")
    return int(value) if value is not None else None


def _sync_client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


class DeploymentLauncher:
    """Creates flow runs of a deployment through Prefect's public API (``run_deployment``, Scheduled, picked
    up by a worker). A key that already names a run of the deployment answers that run (``created`` False).

    Two launches racing with one new key both get the same run from Prefect (its idempotency key), and
    both may report it as created.
    """

    mode: Mode = "deployment"

    def __init__(self, deployment_name: str, client_factory: Callable[[], Any] | None = None,
                 tags: tuple[str, ...] = ("clientes-ingest",)) -> None:
        self.deployment_name = deployment_name
        self.tags = tags
        self._client_factory = client_factory or _sync_client
        self._deployment_id: Any = None

    def prepare(self) -> None:
        """Import what launching needs and find the deployment now (at start-up), not inside a request."""
        from prefect.client.schemas.filters import FlowRunFilter  # noqa: F401
        from prefect.deployments import run_deployment  # noqa: F401

        with self._client_factory() as client:
            self._deployment(client)

    def _deployment(self, client: Any) -> Any:
        if self._deployment_id is None:
            try:
                self._deployment_id = client.read_deployment_by_name(self.deployment_name).id
            except Exception as exc:
                raise LaunchError(f"deployment {self.deployment_name} not found or Prefect API unreachable "
                                  f"({type(exc).__name__}: {exc}); apply it with `prefect deploy --all`") from exc
        return self._deployment_id

    def launch(
        self, source: str, *, job_id: int | None, idempotency_key: str | None, chunk_size: str | None = None,
        pin: dict[str, str] | None = None,
        tags: tuple[str, ...] = (),
    ) -> LaunchResult:
        if idempotency_key is not None:
            found = self.find(idempotency_key)
            if found is not None:
                return found
        run = self.create_run(flow_parameters(source, job_id, chunk_size, pin), idempotency_key, tags)
        return LaunchResult(str(run.id), True, self.mode, _job_id_of(run.parameters), _state_name(run))

    def create_run(self, parameters: dict[str, Any], idempotency_key: str | None,
                   tags: tuple[str, ...] = ()) -> Any:
        """A new flow run of the deployment (``run_deployment``, Scheduled), or the one the key names."""
        from prefect.client.schemas.objects import FlowRun
        from prefect.deployments import run_deployment

        with self._client_factory() as client:
            deployment_id = self._deployment(client)
        try:
            run = run_deployment(deployment_id, parameters=parameters, timeout=0, as_subflow=False,
                                 idempotency_key=idempotency_key, tags=[*self.tags, *tags])
        except Exception as exc:
            self._deployment_id = None  # the deployment may have been re-created: look it up again
            raise LaunchError(f"cannot create a run of {self.deployment_name}: {type(exc).__name__}: {exc}") from exc
        assert isinstance(run, FlowRun)  # the sync call returns the run itself
        return run

    def find(self, idempotency_key: str) -> LaunchResult | None:
        return next(iter(self.find_all([idempotency_key])), None)

    def find_all(self, idempotency_keys: list[str]) -> list[LaunchResult]:
        """The runs of this deployment that these idempotency keys started (``created`` False), in key order."""
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterIdempotencyKey,
        )

        with self._client_factory() as client:
            deployment_id = self._deployment(client)
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=idempotency_keys)),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                limit=len(idempotency_keys),
            )
        runs = sorted(runs, key=lambda r: idempotency_keys.index(r.idempotency_key or idempotency_keys[0]))
        return [LaunchResult(str(r.id), False, self.mode, _job_id_of(r.parameters), _state_name(r),
                             bool(r.state and r.state.is_final()), r.idempotency_key) for r in runs]


def _state_name(run: Any) -> str | None:
    return run.state.name if run.state else None


def _ingest_flow() -> Any:
    from flows.ingest import ingest_clientes

    return ingest_clientes


class InProcessLauncher:
    """Runs the ingest flow in this process on a bounded thread pool.

    Runs are created the way every run is (``DeploymentLauncher.create_run``: ``run_deployment`` with the
    idempotency key) against ``ingest-clientes/in-process``, a deployment this launcher applies to the
    Prefect API it uses (the ephemeral one when no server is configured; no worker polls it), so a run's
    id is known at once and shows in the UI. The pool then executes the run here with
    ``prefect.flow_engine.run_flow_sync``; a queued run waits Scheduled (Late once past due).
    ``on_error(job_id, exc)`` is called when a run raises, e.g. to mark a pre-registered job failed if
    the flow could not.
    """

    mode: Mode = "in-process"
    deployment: str = "in-process"

    def __init__(
        self,
        *,
        workers: int = 1,
        remember: int = 10_000,
        flow: Any | None = None,
        client_factory: Callable[[], Any] | None = None,
        on_error: Callable[[int | None, BaseException], None] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._flow = flow
        self._settings = settings
        self._client_factory = client_factory or _sync_client
        self._runs: DeploymentLauncher | None = None
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-run")
        self._remember = remember
        self._keys: OrderedDict[str, LaunchResult] = OrderedDict()
        self._futures: OrderedDict[str, Future[Any]] = OrderedDict()  # recent runs, for wait()
        self._lock = threading.Lock()
        self.on_error = on_error

    def prepare(self) -> None:
        """Import the flow, reach the Prefect API and apply the in-process deployment now (at start-up),
        not inside the first request.

        A first import holds the GIL for a while, and without a configured server the first client starts
        Prefect's ephemeral API (seconds).
        """
        with self._client_factory() as client:
            error = client.api_healthcheck()
        if error is not None:
            raise LaunchError(f"the Prefect API does not answer: {error}")
        self._deployment_runs()

    def _deployment_runs(self) -> DeploymentLauncher:
        """The launcher of ``<flow>/in-process`` runs, applying that deployment once (an upsert by name)."""
        if self._runs is None:
            flow = self._flow = self._flow or _ingest_flow()
            try:
                flow.to_deployment(name=self.deployment, tags=["clientes-ingest", "in-process"],
                                   description="Runs executed inside the process that created them "
                                               "(API or trigger without a Prefect server).").apply()
            except Exception as exc:
                raise LaunchError(f"cannot apply the in-process deployment through the Prefect API: "
                                  f"{type(exc).__name__}: {exc}") from exc
            self._runs = DeploymentLauncher(f"{flow.name}/{self.deployment}", self._client_factory,
                                            tags=("clientes-ingest", "in-process"))
        return self._runs

    def find(self, idempotency_key: str) -> LaunchResult | None:
        with self._lock:
            found = self._keys.get(idempotency_key)
        return None if found is None else LaunchResult(found.flow_run_id, False, self.mode, found.job_id)

    def launch(
        self, source: str, *, job_id: int | None, idempotency_key: str | None, chunk_size: str | None = None,
        pin: dict[str, str] | None = None,
    ) -> LaunchResult:
        parameters = flow_parameters(source, job_id, chunk_size, pin)
        # One lock around look-up, creation and remembering: two requests with the same key cannot both start.
        with self._lock:
            if idempotency_key is not None and idempotency_key in self._keys:
                found = self._keys[idempotency_key]
                return LaunchResult(found.flow_run_id, False, self.mode, found.job_id)
            runs = self._deployment_runs()
            # A restarted process forgets its keys; Prefect still knows the run by its idempotency key.
            earlier = runs.find(idempotency_key) if idempotency_key is not None else None
            run: Any = None
            if earlier is not None:
                result = LaunchResult(earlier.flow_run_id, False, self.mode, earlier.job_id)
            else:
                run = runs.create_run(parameters, idempotency_key)
                result = LaunchResult(str(run.id), True, self.mode, job_id)
            if idempotency_key is not None:
                self._keys[idempotency_key] = result
                while len(self._keys) > self._remember:
                    self._keys.popitem(last=False)
        if run is not None:
            future = self._executor.submit(self._execute, self._flow, run, parameters)
            with self._lock:
                self._futures[result.flow_run_id] = future
                while len(self._futures) > self._remember:
                    self._futures.popitem(last=False)
        return result

    def _execute(self, flow: Any, run: Any, parameters: dict[str, Any]) -> Any:
        from prefect.flow_engine import run_flow_sync

        try:
            with use_settings(self._settings or load_settings()):
                return run_flow_sync(flow, flow_run=run, parameters=parameters)
        except BaseException as exc:
            logger.error("in-process run %s (job %s) failed: %s", run.id, parameters.get("job_id"), exc)
            if self.on_error is not None:
                try:
                    self.on_error(parameters.get("job_id"), exc)
                except Exception as hook_exc:  # the run's own error is the one worth reporting
                    logger.error("run %s: on_error hook failed: %s", run.id, hook_exc)
            raise

    def wait(self, flow_run_id: str, timeout: float | None = None) -> Any:
        """Block until an in-process run started here ends; its result (re-raises its error)."""
        with self._lock:
            future = self._futures.get(flow_run_id)
        return None if future is None else future.result(timeout)

    def shutdown(self, wait: bool = False) -> None:
        """Stop taking runs; queued runs are dropped (their jobs stay pending), running ones finish."""
        self._executor.shutdown(wait=wait, cancel_futures=True)


class InlineLauncher:
    """Runs the ingest flow in the caller's thread and returns when the run ends: the SQS trigger's
    in-process mode, which acknowledges a message only once its file is loaded (a crash leaves it queued).

    Keys of runs that completed are remembered in memory (bounded); a run that failed is not, so a
    redelivered event runs it again. Across restarts the flow's own check (content already loaded is
    skipped) keeps a redelivery from loading twice. ``run_flow(parameters)`` -> (flow run id, result)
    replaces the flow in tests.
    """

    mode: Mode = "inline"

    def __init__(self, *, remember: int = 10_000, settings: Settings | None = None,
                 run_flow: Callable[[dict[str, Any]], tuple[str, IngestResult]] | None = None) -> None:
        self._settings = settings
        self._run_flow = run_flow or self._run_ingest_flow
        self._done: OrderedDict[str, LaunchResult] = OrderedDict()
        self._remember = remember

    def find(self, idempotency_key: str) -> LaunchResult | None:
        found = self._done.get(idempotency_key)
        return None if found is None else LaunchResult(found.flow_run_id, False, self.mode, found.job_id)

    def launch(
        self, source: str, *, job_id: int | None, idempotency_key: str | None, chunk_size: str | None = None,
        pin: dict[str, str] | None = None,
    ) -> LaunchResult:
        if idempotency_key is not None and (found := self.find(idempotency_key)) is not None:
            return found
        flow_run_id, outcome = self._run_flow(flow_parameters(source, job_id, chunk_size, pin))
        result = LaunchResult(flow_run_id, True, self.mode, outcome.job_id)
        if idempotency_key is not None:
            self._done[idempotency_key] = result
            while len(self._done) > self._remember:
                self._done.popitem(last=False)
        return result

    def _run_ingest_flow(self, parameters: dict[str, Any]) -> tuple[str, IngestResult]:
        with use_settings(self._settings or load_settings()):
            state = _ingest_flow()(**parameters, return_state=True)
        return str(state.state_details.flow_run_id), state.result()  # result() raises the run's error


_LAUNCHERS: dict[tuple[str, str], RunLauncher] = {}
_LAUNCHERS_LOCK = threading.Lock()


def launch_ingest(
    source: str,
    *,
    job_id: int | None,
    idempotency_key: str | None,
    deployment: str | None = None,
    chunk_size: str | None = None,
) -> LaunchResult:
    """Start an ingest run with the process-wide launcher for ``deployment`` (``CLIENTES_DEPLOYMENT``)."""
    from clientes_ingest.resources import build_launcher
    from clientes_ingest.settings import load_settings

    settings = load_settings(deployment=deployment)
    key = (settings.launch_mode, settings.deployment)
    with _LAUNCHERS_LOCK:
        launcher = _LAUNCHERS.get(key)
        if launcher is None:
            launcher = _LAUNCHERS[key] = build_launcher(settings)
    return launcher.launch(source, job_id=job_id, idempotency_key=idempotency_key, chunk_size=chunk_size)
