"""End-to-end on real processes: ``clientes-ingest dev`` (moto, Prefect server + UI, process worker, SQS
trigger, webhook API) loading into PostgreSQL.

1. ``prefect deployment run ingest-clientes/local`` on an object in the bucket -> the run completes and
   the rows equal a direct local load of the same file; a job left running by a dead run is resumed by
   ``recover-abandoned-jobs/local`` through a run of ``ingest-clientes/local`` (missing chunks only);
2. an upload into ``incoming/`` -> S3 notification -> SQS -> trigger -> one run, completed;
3. ``POST /process`` -> one run, completed -> ``GET /jobs/{id}`` has the counts, while ``/health``
   answered every probe, with no stall of a second or more (what a blocked event loop would cause);
4. the daily schedule of prefect.yaml exists on its deployment and produces scheduled runs;
5. the Prefect UI is served and every job's flow run is visible, completed, through the Prefect API;
   the Prefect API refuses requests without the stack's auth string (the stack's own clients, worker,
   trigger, API and CLI, carried every run above with it);
6. SIGTERM stops the stack and no process it started is left.
The tests share one stack and run in file order (the last one stops it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx
import psutil
import pytest
import sqlalchemy as sa
import yaml
from support.loading import load_file, partly_loaded, rejects, rows

from clientes_ingest.db import Database, ingest_chunks, ingest_jobs
from clientes_ingest.devtools.devstack import port_in_use
from clientes_ingest.devtools.generator import generate
from clientes_ingest.s3 import S3Storage

if TYPE_CHECKING:
    from conftest import RunningStack  # tests/system/conftest.py

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 180.0
LOCAL = "ingest-clientes/local"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A blocked event loop holds a probe for as long as the upload (seconds); CPU contention on a busy shared
# machine delays a probe by tenths of a second. Only the first fails the test.
STALL_S = 1.0


class Reference:
    """Direct local loads (no Prefect) into a database of their own: what each run must produce."""

    def __init__(self, db_url: str, store: Path) -> None:
        self.db, self.store = Database(db_url), store

    def load(self, path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        job_id = load_file(self.db, path, self.store, chunk_size=1 << 30).job_id
        return rows(self.db, job_id), rejects(self.db, job_id)


@pytest.fixture(scope="module")
def reference(new_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return Reference(new_database(), tmp_path_factory.mktemp("reference-store"))


@pytest.fixture(scope="module")
def stack_db(dev_stack: RunningStack) -> Database:
    return Database(dev_stack.db_url)


def clientes_file(tmp_path: Path, mmyy: str, lines: int, seed: int) -> Path:
    path = tmp_path / f"CLIENTES_IN_{mmyy}.dat"
    generate(path, lines=lines, seed=seed)
    return path


def wait_final(stack: RunningStack, run_id: str, timeout: float = RUN_TIMEOUT) -> Any:
    """The flow run once its state is final (or fail with the service logs)."""
    deadline = time.monotonic() + timeout
    with stack.prefect_client() as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(0.5)
    pytest.fail(f"flow run {run_id} not finished within {timeout:.0f}s\n{stack.diagnostics()}")


def local_runs(stack: RunningStack) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with stack.prefect_client() as client:
        deployment = client.read_deployment_by_name(LOCAL)
        return list(client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])), limit=200))


def runs_for_file(stack: RunningStack, file_name: str) -> list[Any]:
    return [r for r in local_runs(stack) if str(r.parameters.get("source", "")).endswith("/" + file_name)]


def job_of_run(db: Database, run_id: str) -> int:
    with db.engine.connect() as conn:
        found = conn.execute(sa.select(ingest_jobs.c.id).where(ingest_jobs.c.flow_run_id == run_id)).scalars().all()
    assert len(found) == 1, f"expected one job for flow run {run_id}, found {found}"
    return int(found[0])


def assert_completed(stack: RunningStack, run: Any) -> None:
    assert run.state.is_completed(), f"run {run.id} ended {run.state.type}: {run.state.message}\n{stack.diagnostics()}"


# ------------------------------------------------------------------------------------------------- 1


def test_e2e_deployment_run_loads_the_same_rows_as_a_local_run(dev_stack: RunningStack, stack_db: Database,
                                                              reference: Reference, tmp_path: Path) -> None:
    path = clientes_file(tmp_path, "0125", lines=3000, seed=101)
    key = f"manual/{path.name}"  # outside incoming/: no notification, this run is the only one
    dev_stack.s3().upload_file(str(path), dev_stack.bucket, key)
    source = f"s3://{dev_stack.bucket}/{key}"

    out = dev_stack.prefect_cli("deployment", "run", LOCAL, "-p", f"source={source}")
    run_id = UUID_RE.search(out)
    assert run_id, out
    run = wait_final(dev_stack, run_id.group(0))
    assert_completed(dev_stack, run)

    job_id = job_of_run(stack_db, str(run.id))
    expected_rows, expected_rejects = reference.load(path)
    assert len(expected_rows) > 2000 and len(expected_rejects) > 300  # a realistic mix of valid and corrupt
    assert rows(stack_db, job_id) == expected_rows
    assert rejects(stack_db, job_id) == expected_rejects
    with stack_db.engine.connect() as conn:
        job = conn.execute(sa.select(ingest_jobs).where(ingest_jobs.c.id == job_id)).mappings().one()
    assert job["status"] == "completed_with_rejects" and job["chunk_count"] > 1  # 64 KB chunks: mapped tasks


# ------------------------------------------------------------------------------------------------- 1b


def test_e2e_recovery_deployment_resumes_a_dead_runs_job_through_the_worker(
    dev_stack: RunningStack, stack_db: Database, reference: Reference, tmp_path: Path
) -> None:
    path = clientes_file(tmp_path, "0625", lines=3000, seed=102)
    key = f"manual/{path.name}"
    s3 = dev_stack.s3()
    s3.upload_file(str(path), dev_stack.bucket, key)
    # What a flow run killed after its first chunk leaves, its pod gone twenty minutes ago (the default
    # lease is 15): a running job with a stale heartbeat and every other chunk still to load.
    registration = partly_loaded(stack_db, f"s3://{dev_stack.bucket}/{key}", S3Storage(s3, dev_stack.bucket),
                                 chunk_size=64 * 1024, loaded=1, heartbeat_age=dt.timedelta(minutes=20))
    job_id, first, rest = registration.job_id, registration.pending[0], registration.pending[1:]
    assert rest, "the file must plan more than one chunk"

    # The on-demand recovery, in its deployment mode: it starts a run of the ingest deployment per job.
    out = dev_stack.prefect_cli("deployment", "run", "recover-abandoned-jobs/local", "-p", f"deployment={LOCAL}")
    recovery_id = UUID_RE.search(out)
    assert recovery_id, out
    assert_completed(dev_stack, wait_final(dev_stack, recovery_id.group(0)))
    (resumed,) = [r for r in local_runs(dev_stack) if r.parameters.get("job_id") == job_id]
    resumed = wait_final(dev_stack, str(resumed.id))
    assert_completed(dev_stack, resumed)

    expected_rows, expected_rejects = reference.load(path)
    assert rows(stack_db, job_id) == expected_rows and rejects(stack_db, job_id) == expected_rejects
    with stack_db.engine.connect() as conn:
        job = conn.execute(sa.select(ingest_jobs).where(ingest_jobs.c.id == job_id)).mappings().one()
        attempts = dict(conn.execute(sa.select(ingest_chunks.c.chunk_no, ingest_chunks.c.attempts)
                                     .where(ingest_chunks.c.job_id == job_id)).all())
    assert (job["status"], job["runs"], job["flow_run_id"]) == ("completed_with_rejects", 2, str(resumed.id))
    assert attempts == {c.index: 1 for c in [first, *rest]}  # the dead run's chunk was not loaded again


# ------------------------------------------------------------------------------------------------- 2


def test_e2e_upload_to_incoming_triggers_exactly_one_run(dev_stack: RunningStack, stack_db: Database,
                                                         reference: Reference, tmp_path: Path) -> None:
    path = clientes_file(tmp_path, "0225", lines=3000, seed=202)
    dev_stack.s3().upload_file(str(path), dev_stack.bucket, f"incoming/{path.name}")
    source = f"s3://{dev_stack.bucket}/incoming/{path.name}"

    deadline = time.monotonic() + 60
    while not (found := runs_for_file(dev_stack, path.name)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found, f"the trigger started no run for {source}\n{dev_stack.diagnostics()}"
    run = wait_final(dev_stack, str(found[0].id))
    assert_completed(dev_stack, run)
    assert run.parameters["source"] == source and "trigger:s3" in run.tags

    expected_rows, expected_rejects = reference.load(path)
    job_id = job_of_run(stack_db, str(run.id))
    assert rows(stack_db, job_id) == expected_rows and rejects(stack_db, job_id) == expected_rejects
    assert len(runs_for_file(dev_stack, path.name)) == 1


# ------------------------------------------------------------------------------------------------- 3


# The prober is a small process of its own: a thread in this long-lived pytest process would also count
# its own pauses (a full garbage collection after hundreds of tests takes ~100 ms) against the API.
PROBE_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import httpx

    url, halt, samples = sys.argv[1], threading.Event(), []

    def poll():
        with httpx.Client(timeout=5) as client:  # one kept-alive connection, like a kubelet probe
            while not halt.is_set():
                sent, started = time.time(), time.perf_counter()
                try:
                    status = client.get(url).status_code
                except httpx.HTTPError:
                    status = 0
                samples.append((sent, status, time.perf_counter() - started))
                halt.wait(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    while not samples and thread.is_alive():
        time.sleep(0.01)
    print("ready", flush=True)
    sys.stdin.readline()
    halt.set()
    thread.join(10)
    print(json.dumps(samples), flush=True)
""")


class HealthProbe:
    """GETs /health every 20 ms from a polling thread in a separate process; (sent, status, seconds) each."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", PROBE_SCRIPT, url], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline() == "ready\n", "probe did not start"
        self.samples: list[tuple[float, int, float]] = []

    def finish(self) -> None:
        try:
            out, _ = self.process.communicate("stop\n", timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.samples = [tuple(s) for s in json.loads(out.splitlines()[-1])]  # type: ignore[misc]

    def sent_between(self, start: float, end: float) -> int:
        return sum(1 for sent, _, _ in self.samples if start <= sent <= end)


class SlowFile:
    """A file read in 64 KiB pieces with a pause each, so the upload lasts while /health is probed."""

    def __init__(self, path: Path, pause: float) -> None:
        self._file, self._pause = path.open("rb"), pause

    def read(self, size: int = -1) -> bytes:
        time.sleep(self._pause)
        return self._file.read(64 * 1024 if size < 0 else min(size, 64 * 1024))

    def close(self) -> None:
        self._file.close()


def test_e2e_api_upload_runs_once_reports_counts_and_health_stays_fast(
    dev_stack: RunningStack, stack_db: Database, reference: Reference, tmp_path: Path
) -> None:
    path = clientes_file(tmp_path, "0325", lines=20_000, seed=303)
    auth = {"Authorization": f"Bearer {dev_stack.token}"}
    ready = httpx.get(f"{dev_stack.api_url}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert {"database", "storage", "prefect"} <= set(checks) and set(checks.values()) == {"ok"}, checks

    probe = HealthProbe(f"{dev_stack.api_url}/health")
    try:
        upload = SlowFile(path, pause=0.03)  # ~30 pieces: about a second of streaming
        try:
            upload_began = time.time()
            response = httpx.post(f"{dev_stack.api_url}/process", headers=auth, timeout=60,
                                  files={"file": (path.name, upload, "application/octet-stream")})
            upload_ended = time.time()
        finally:
            upload.close()
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["totalLines"] == 20_000 and accepted["mode"] == "deployment"
        run = wait_final(dev_stack, accepted["flowRunId"])
    finally:
        probe.finish()
    assert_completed(dev_stack, run)

    job = httpx.get(f"{dev_stack.api_url}/jobs/{accepted['jobId']}", headers=auth, timeout=10).json()
    expected_rows, expected_rejects = reference.load(path)
    assert job["status"] == "completed_with_rejects"
    assert (job["rowsLoaded"], job["rowsRejected"], job["totalLines"]) == (
        len(expected_rows), len(expected_rejects), 20_000)
    assert job["chunksDone"] == job["chunkCount"] > 1
    assert sum(job["rejectsByReason"].values()) == len(expected_rejects)
    assert rows(stack_db, accepted["jobId"]) == expected_rows
    page = httpx.get(f"{dev_stack.api_url}/jobs/{accepted['jobId']}/rejects", params={"limit": 5}, headers=auth,
                     timeout=10).json()
    assert page["total"] == len(expected_rejects) and len(page["items"]) == 5

    # The upload is stored outside incoming/, so the bucket notification starts no second run.
    assert [str(r.id) for r in runs_for_file(dev_stack, path.name)] == [accepted["flowRunId"]]

    during_upload = probe.sent_between(upload_began, upload_ended)
    assert upload_ended - upload_began > 0.5 and during_upload >= 10, (upload_ended - upload_began, during_upload)
    assert {status for _, status, _ in probe.samples} == {200}
    # Every probe answered (a probe that timed out has status 0), and none was held a second or more.
    stalls = [(round(sent - upload_began, 2), round(seconds * 1000)) for sent, _, seconds in probe.samples
              if seconds >= STALL_S]
    assert stalls == [], f"/health stalled (s after upload start, ms) in {len(probe.samples)} probes: {stalls}"


# ------------------------------------------------------------------------------------------------- 3b


def same_name_files(tmp_path: Path, mmyy: str, seeds: tuple[int, int]) -> list[Path]:
    """Two different files with the same name (in two folders), of different sizes."""
    paths = []
    for n, seed in enumerate(seeds):
        folder = tmp_path / f"copy{n}"
        folder.mkdir()
        paths.append(clientes_file(folder, mmyy, lines=2000 + 700 * n, seed=seed))
    return paths


def assert_each_loaded_once(db: Database, reference: Reference, paths: list[Path], job_ids: list[int]) -> None:
    """Each file's rows are those of its own job, which completed, and no other job holds its content."""
    for path, job_id in zip(paths, job_ids, strict=True):
        expected_rows, expected_rejects = reference.load(path)
        assert rows(db, job_id) == expected_rows and rejects(db, job_id) == expected_rejects, (path, job_id)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        with db.engine.connect() as conn:
            holders = conn.execute(sa.select(ingest_jobs.c.id, ingest_jobs.c.status)
                                   .where(ingest_jobs.c.sha256 == sha)).all()
        assert [tuple(h) for h in holders] == [(job_id, "completed_with_rejects")], (path, holders)


def test_e2e_two_different_same_name_files_through_the_api_both_load_once(
    dev_stack: RunningStack, stack_db: Database, reference: Reference, tmp_path: Path
) -> None:
    paths = same_name_files(tmp_path, "0725", seeds=(701, 702))
    auth = {"Authorization": f"Bearer {dev_stack.token}"}
    accepted = []
    for path in paths:  # back to back: the second is stored before the first run reads a byte
        response = httpx.post(f"{dev_stack.api_url}/process", headers=auth, timeout=60,
                              files={"file": (path.name, path.read_bytes(), "application/octet-stream")})
        assert response.status_code == 202, response.text
        accepted.append(response.json())
    assert accepted[0]["sha256"] != accepted[1]["sha256"] and accepted[0]["jobId"] != accepted[1]["jobId"]
    for answer in accepted:
        assert_completed(dev_stack, wait_final(dev_stack, answer["flowRunId"]))
    assert_each_loaded_once(stack_db, reference, paths, [a["jobId"] for a in accepted])


def test_e2e_two_different_same_name_files_dropped_into_incoming_both_load_once(
    dev_stack: RunningStack, stack_db: Database, reference: Reference, tmp_path: Path
) -> None:
    paths = same_name_files(tmp_path, "0825", seeds=(801, 802))
    s3, key = dev_stack.s3(), f"incoming/{paths[0].name}"
    for path in paths:  # the same key, back to back: the bucket keeps both versions
        s3.upload_file(str(path), dev_stack.bucket, key)

    deadline = time.monotonic() + 90
    while len(found := runs_for_file(dev_stack, paths[0].name)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(found) == 2, f"expected a run per upload, got {len(found)}\n{dev_stack.diagnostics()}"
    finished = [wait_final(dev_stack, str(run.id)) for run in found]
    for run in finished:
        assert_completed(dev_stack, run)
        assert run.parameters.get("etag") or run.parameters.get("version_id"), run.parameters  # pinned
    by_sha = {}
    for run in finished:
        job_id = job_of_run(stack_db, str(run.id))
        with stack_db.engine.connect() as conn:
            sha = conn.execute(sa.select(ingest_jobs.c.sha256).where(ingest_jobs.c.id == job_id)).scalar_one()
        by_sha[sha] = job_id
    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert set(by_sha) == set(shas), "each run must have loaded the version its event announced"
    assert_each_loaded_once(stack_db, reference, paths, [by_sha[sha] for sha in shas])


# ------------------------------------------------------------------------------------------------- 4


def test_e2e_daily_schedule_exists_and_produces_scheduled_runs(dev_stack: RunningStack) -> None:
    project = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    ingest = [d for d in project["deployments"] if d["entrypoint"] == "flows/ingest.py:ingest_clientes"]
    scheduled = [d for d in ingest if d.get("schedules")]
    assert [d["name"] for d in scheduled] == ["k8s"], "prefect.yaml: only ingest-clientes/k8s has the daily schedule"
    declared = scheduled[0]["schedules"][0]
    pool = scheduled[0]["work_pool"]["name"]
    # Its pool gets no worker here: the runs stay Scheduled, which is what this test reads.
    dev_stack.prefect_cli("work-pool", "create", pool, "--type", "kubernetes", "--base-job-template",
                          "deployments/k8s-base-job-template.json", "--overwrite")
    # `prefect deploy --all` must work non-interactively: it re-applies the local deployment and adds k8s.
    dev_stack.prefect_cli("--no-prompt", "deploy", "--all")

    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with dev_stack.prefect_client() as client:
        deployment = client.read_deployment_by_name("ingest-clientes/k8s")
        assert len(deployment.schedules) == 1
        schedule = deployment.schedules[0]
        assert schedule.active
        assert (schedule.schedule.cron, schedule.schedule.timezone) == (declared["cron"], declared["timezone"])
        assert client.read_deployment_by_name(LOCAL).schedules == []

        deadline = time.monotonic() + 90
        upcoming: list[Any] = []
        while not upcoming and time.monotonic() < deadline:
            upcoming = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))), limit=10)
            time.sleep(1)
    assert upcoming, f"the scheduler created no run of ingest-clientes/k8s\n{dev_stack.diagnostics()}"
    zone = ZoneInfo(declared["timezone"])
    now = dt.datetime.now(dt.UTC)
    for run in upcoming:
        start = run.expected_start_time.astimezone(zone)
        assert (start.hour, start.minute) == (6, 0) and run.expected_start_time > now
        assert run.parameters == {"source": declared["parameters"]["source"]}
        assert "{MMYY}" in run.parameters["source"]


# ------------------------------------------------------------------------------------------------- 5


def test_e2e_ui_is_served_and_every_job_run_is_visible(dev_stack: RunningStack, stack_db: Database) -> None:
    page = httpx.get(f"{dev_stack.prefect_url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<!DOCTYPE html>" in page.text and "Prefect" in page.text

    with stack_db.engine.connect() as conn:
        job_runs = {r for r in conn.execute(sa.select(ingest_jobs.c.flow_run_id)).scalars() if r}
    assert len(job_runs) >= 3, "runs of the tests above (run this module whole)"
    runs = {str(r.id): r for r in local_runs(dev_stack)}
    assert job_runs <= set(runs), job_runs - set(runs)
    assert all(runs[r].state.is_completed() for r in job_runs)


def test_e2e_prefect_api_refuses_requests_without_the_auth_string(dev_stack: RunningStack) -> None:
    api = dev_stack.info["prefect_api_url"]
    auth = dev_stack.info["prefect_auth_string"]
    # Blocks hold the database URL and AWS keys: reading them is what an open server gave away.
    for path in ("/block_documents/filter", "/deployments/filter", "/flow_runs/filter"):
        assert httpx.post(f"{api}{path}", json={}, timeout=10).status_code == 401, path
        assert httpx.post(f"{api}{path}", json={}, auth=("clientes-ingest", "wrong"), timeout=10).status_code == 401
        user, _, password = auth.partition(":")
        assert httpx.post(f"{api}{path}", json={}, auth=(user, password), timeout=10).status_code == 200, path
    assert httpx.get(f"{api}/health", timeout=10).status_code == 200  # probes stay open
    # Prefect's own client with the string works; the CLI env carries it too.
    with dev_stack.prefect_client() as client:
        assert client.read_work_pool("local-process").name == "local-process"
    assert "local-process" in dev_stack.prefect_cli("work-pool", "inspect", "local-process")


# ------------------------------------------------------------------------------------------------- 6


def test_e2e_sigterm_stops_the_stack_and_leaves_nothing_running(dev_stack: RunningStack) -> None:
    services = {name: s["pid"] for name, s in dev_stack.info["services"].items()}
    assert set(services) == {"moto", "prefect-server", "worker", "trigger", "api"}
    alive_before = {p.pid for p in dev_stack.descendants()}
    assert set(services.values()) <= alive_before

    code = dev_stack.terminate()
    output = dev_stack.output.read_text()
    assert code == 0, output
    assert "stopping the dev stack" in output
    assert "Prefect UI" in output and "curl -H" in output  # the banner was printed when it came up

    left = [pid for pid in dev_stack.seen if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"still running after stop: {left}"
    new_children = {p.pid for p in psutil.Process().children(recursive=True)} - dev_stack.children_before
    assert new_children == set(), new_children
    for url in (dev_stack.info[k] for k in ("prefect_url", "api_url", "trigger_url", "moto_url")):
        port = int(url.rsplit(":", 1)[1])
        assert not port_in_use("127.0.0.1", port), f"{url} still bound"
