"""Events and automations against a real Prefect server: ``automations apply`` creates every declared
automation once (create or update by name), the ingest flow's job events reach the server with the job as
resource and nothing personal, and the server's automations send their notifications to a local HTTP
sink through the webhook block: a failed job, a crashed ingest run, and the proactive missed-file alarm
(which stays quiet when the scheduled run completes its job in time)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from opskit import REPO, HttpSink, PrefectServer, run_python

from clientes_ingest.db import Database

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(2400)]  # a busy machine: minutes

TOKEN = "sink-token-51c0"  # noqa: S105 - the test sink's own token
WINDOW_SECONDS = 90  # the missed-file window of these tests (CLIENTES_MISSED_FILE_HOURS = 90 s)
GOOD_LINES = "María|Gómez|45678901|Activo|11/13/2021|true|false\nJuan|Pérez|12345678|Inactivo|8/9/2022|false|\n"
DECLARED = sorted(yaml.safe_load(p.read_text().replace("${", "{"))["name"]
                  for p in (REPO / "automations").glob("*.yaml"))


def alert_env(sink: HttpSink, **extra: str) -> dict[str, str]:
    return {"CLIENTES_ALERT_WEBHOOK_URL": sink.url, "CLIENTES_ALERT_WEBHOOK_TOKEN": TOKEN,
            "CLIENTES_MISSED_FILE_HOURS": str(WINDOW_SECONDS / 3600), **extra}


def apply(server: PrefectServer, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "clientes_ingest.cli", "automations", "apply"],
                          env=server.env(**env), cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"automations apply failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def automations(server: PrefectServer) -> list[dict[str, Any]]:
    with server.client() as client:
        response = client.post("/automations/filter", json={})
    response.raise_for_status()
    return list(response.json())


@pytest.fixture(scope="module")
def applied(prefect_server: PrefectServer, http_sink: HttpSink) -> PrefectServer:
    """The automations applied once with a window of 10 s, then again with the tests' window."""
    first = apply(prefect_server, alert_env(http_sink, CLIENTES_MISSED_FILE_HOURS=str(10 / 3600)))
    assert all(f"{name}: created" in first for name in DECLARED), first
    assert "custom-webhook/clientes-alerts: created" in first
    second = apply(prefect_server, alert_env(http_sink))
    assert all(f"{name}: updated" in second for name in DECLARED), second
    prefect_server.applied_at = time.monotonic()
    # The downstream hook of prefect.yaml, applied as the dev stack does (its runs stay scheduled: no worker).
    env = prefect_server.env(CLIENTES_PROJECT_DIR=str(REPO))
    for args in (["work-pool", "create", "local-process", "--type", "process", "--overwrite"],
                 ["--no-prompt", "deploy", "--name", "clientes-snapshot-ready/local"]):
        done = subprocess.run([sys.executable, "-m", "prefect", *args], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    time.sleep(5)  # the server's trigger service loads automations shortly after they change
    return prefect_server


def test_apply_creates_each_declared_automation_once_and_updates_it(applied: PrefectServer) -> None:
    every = automations(applied)
    found = [a for a in every if a["name"].startswith("clientes-ingest: ")]
    assert sorted(a["name"] for a in found) == DECLARED  # applied twice: still one of each
    # The other one is the downstream hook's deployment trigger, created by `prefect deploy`.
    (hook,) = [a for a in every if a not in found]
    assert hook["trigger"]["expect"] == ["clientes.job.completed"]
    assert [a["type"] for a in hook["actions"]] == ["run-deployment"]
    by_name = {a["name"]: a for a in found}
    missed = by_name["clientes-ingest: daily file not loaded"]
    assert missed["trigger"]["posture"] == "Proactive"
    assert missed["trigger"]["within"] == WINDOW_SECONDS  # the second apply updated the first one (10 s)
    for automation in found:
        assert automation["enabled"]
        assert [a["type"] for a in automation["actions"]] == ["send-notification"]


def test_without_a_target_the_automations_notify_nobody(tmp_path: Path) -> None:
    from automations.apply import load_declarations, template_values
    from clientes_ingest.settings import Settings

    declared = load_declarations(template_values(Settings()), None)
    assert sorted(a.name for a in declared) == DECLARED
    assert {action.type for a in declared for action in a.actions} == {"do-nothing"}


def refusing_database(path: Path) -> str:
    """A SQLite database whose clientes table refuses every row: each chunk fails, so the job fails."""
    url = f"sqlite:///{path}"
    db = Database(url)
    db.ensure_schema()
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON clientes BEGIN "
                             "SELECT RAISE(ABORT, 'refused by the test'); END")
    db.dispose()
    return url


def test_a_failed_job_emits_its_event_and_the_automation_notifies_the_sink(
    applied: PrefectServer, http_sink: HttpSink, tmp_path: Path
) -> None:
    source = tmp_path / "CLIENTES_IN_0525.dat"
    source.write_text(GOOD_LINES * 50, encoding="utf-8")
    env = {"CLIENTES_DB_URL": refusing_database(tmp_path / "refusing.db"),
           "CLIENTES_STORAGE_ROOT": str(tmp_path / "store")}
    done = run_python(applied, f"from flows.ingest import ingest_clientes; ingest_clientes(source={str(source)!r})",
                      env)
    assert done.returncode != 0 and "IngestFailed" in done.stderr, done.stderr[-3000:]

    events = applied.wait_events("clientes.job.failed")
    assert len(events) == 1, applied.log_tail()
    event = events[0]
    assert event["resource"]["prefect.resource.id"] == "clientes.job.1"
    assert event["resource"]["clientes.file.name"] == "CLIENTES_IN_0525.dat"
    assert len(event["resource"]["clientes.file.sha256"]) == 64
    assert event["payload"]["total_lines"] == 100 and event["payload"]["rows_loaded"] == 0
    assert event["payload"]["chunks_done"] == 0
    related = {(r.get("prefect.resource.role"), r.get("prefect.resource.name")) for r in event["related"]}
    assert ("flow", "ingest-clientes") in related  # emitted from the run: automations can match its flow
    text = json.dumps(event, ensure_ascii=False)
    assert "Gómez" not in text and "45678901" not in text and "refused" not in text

    notification = http_sink.wait_for("job 1 failed", timeout=90)
    assert notification is not None, f"no notification; sink got {http_sink.subjects()}\n{applied.log_tail()}"
    assert "CLIENTES_IN_0525.dat" in notification["json"]["subject"]
    assert "0 of " in notification["json"]["body"]  # chunks loaded: 0 of N
    assert notification["headers"].get("Authorization") == f"Bearer {TOKEN}"
    assert "Gómez" not in json.dumps(notification["json"], ensure_ascii=False)


def test_a_garbage_file_emits_rejected_file_and_the_automation_notifies_the_sink(
    applied: PrefectServer, http_sink: HttpSink, tmp_path: Path
) -> None:
    source = tmp_path / "CLIENTES_IN_0825.dat"
    source.write_text("x\n" * 300 + GOOD_LINES, encoding="utf-8")  # > CLIENTES_MAX_REJECT_RATIO (0.5) rejected
    env = {"CLIENTES_DB_URL": f"sqlite:///{tmp_path / 'garbage.db'}", "CLIENTES_STORAGE_ROOT": str(tmp_path / "store")}
    done = run_python(applied, f"from flows.ingest import ingest_clientes; ingest_clientes(source={str(source)!r})",
                      env)
    assert done.returncode != 0 and "IngestFailed" in done.stderr, done.stderr[-3000:]
    (event,) = applied.wait_events("clientes.job.rejected_file")
    assert event["resource"]["clientes.file.name"] == "CLIENTES_IN_0825.dat"
    assert event["payload"]["total_lines"] == 302 and event["payload"]["rows_loaded"] == 0
    assert event["payload"]["status"] == "rejected_file"
    assert event["payload"]["verdict"].startswith("rejected_file: 99.3% of 302 non-blank lines rejected")
    notification = http_sink.wait_for("file CLIENTES_IN_0825.dat rejected", timeout=90)
    assert notification is not None, f"no notification; sink got {http_sink.subjects()}\n{applied.log_tail()}"
    assert "99.3% of 302 non-blank lines rejected" in notification["json"]["body"]
    assert "field_count" in notification["json"]["body"]  # the top reason


def test_a_crashed_ingest_run_notifies_the_sink(applied: PrefectServer, http_sink: HttpSink) -> None:
    with applied.client() as client:
        flow_id = client.post("/flows/", json={"name": "ingest-clientes"}).json()["id"]
        run = client.post("/flow_runs/", json={"flow_id": flow_id, "name": "crash-test-run",
                                               "state": {"type": "RUNNING"}}).json()
        response = client.post(f"/flow_runs/{run['id']}/set_state",
                               json={"state": {"type": "CRASHED", "message": "pod OOMKilled"}, "force": True})
        response.raise_for_status()
    notification = http_sink.wait_for("ingest run crash-test-run crashed", timeout=90)
    assert notification is not None, f"no notification; sink got {http_sink.subjects()}\n{applied.log_tail()}"
    assert "pod OOMKilled" in notification["json"]["body"]


SCHEDULED_RUN = """
from prefect import tags
from flows.ingest import ingest_clientes
with tags("auto-scheduled"):  # what Prefect's scheduler puts on the daily schedule's runs
    ingest_clientes(source={source!r})
"""


def occurred(event: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(event["occurred"].replace("Z", "+00:00"))


def scheduled_pending(server: PrefectServer, count: int) -> dict[str, Any]:
    """The latest Pending event of an auto-scheduled run (the alarm's window starts there).

    Waits for ``count`` of them: events reach the server asynchronously, and Pending events of the other
    runs (failed job, downstream hook) must not end the wait early."""
    deadline = time.monotonic() + 60
    while True:
        found = [e for e in server.events("prefect.flow-run.Pending")
                 if any(r["prefect.resource.id"] == "prefect.tag.auto-scheduled" for r in e["related"])]
        if len(found) >= count or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(found) == count, [e["related"] for e in found]
    return max(found, key=occurred)


def downstream_runs(server: PrefectServer, timeout: float) -> list[dict[str, Any]]:
    """Parameters of the runs of clientes-snapshot-ready/local, once there is at least one."""
    deadline = time.monotonic() + timeout
    with server.client() as client:
        deployment = client.get("/deployments/name/clientes-snapshot-ready/local").json()
        while True:
            runs = client.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [deployment["id"]]}}}).json()
            if runs or time.monotonic() > deadline:
                return [run["parameters"] for run in runs]
            time.sleep(1)


def test_the_missed_file_alarm_fires_only_when_no_job_completes_in_the_window(
    applied: PrefectServer, http_sink: HttpSink, tmp_path: Path
) -> None:
    # More than a window after the automations were applied, with no scheduled run yet: no alarm.
    time.sleep(max(0.0, applied.applied_at + WINDOW_SECONDS + 15 - time.monotonic()))
    assert "daily CLIENTES_IN file was not loaded" not in " ".join(http_sink.subjects())
    env = {"CLIENTES_DB_URL": f"sqlite:///{tmp_path / 'ok.db'}", "CLIENTES_STORAGE_ROOT": str(tmp_path / "store")}
    subject = "daily CLIENTES_IN file was not loaded"
    window = dt.timedelta(seconds=WINDOW_SECONDS)
    # A scheduled run that loads its file: its clientes.job.completed arrives within the window.
    source = tmp_path / "CLIENTES_IN_0625.dat"
    source.write_text(GOOD_LINES, encoding="utf-8")
    done = run_python(applied, SCHEDULED_RUN.format(source=str(source)), env)
    assert done.returncode == 0, done.stderr[-3000:]
    pending = occurred(scheduled_pending(applied, 1))
    (completed,) = applied.wait_events("clientes.job.completed")
    assert occurred(completed) - pending < window, "the run took longer than the window: nothing to prove"
    # The downstream hook: the completion started one run of clientes-snapshot-ready/local for that job.
    assert downstream_runs(applied, timeout=60) == [{"job_id": completed["payload"]["job_id"]}]
    quiet_until = (pending + window - dt.datetime.now(dt.UTC)).total_seconds() + 20
    assert http_sink.wait_for(subject, timeout=quiet_until) is None, "alarm fired although the job completed"

    # A scheduled run whose file never arrived: it fails, no job completes, the alarm fires after the window.
    done = run_python(applied, SCHEDULED_RUN.format(source=str(tmp_path / "CLIENTES_IN_0725.dat")), env)
    assert done.returncode != 0
    pending = occurred(scheduled_pending(applied, 2))
    notification = http_sink.wait_for(subject, timeout=WINDOW_SECONDS + 120)
    assert notification is not None, f"no alarm; sink got {http_sink.subjects()}\n{applied.log_tail()}"
    assert notification["at"] >= pending + window  # not before the window ended
    assert f"{WINDOW_SECONDS / 3600:g} h" in notification["json"]["body"]  # CLIENTES_MISSED_FILE_HOURS


def test_job_rows_are_not_in_any_event(applied: PrefectServer) -> None:
    """Whatever the jobs above emitted, no event on the server carries a line's personal data."""
    for name in ("clientes.job.completed", "clientes.job.failed"):
        for event in applied.events(name):
            text = json.dumps(event, ensure_ascii=False)
            assert "María" not in text and "Gómez" not in text and "12345678" not in text


def test_an_existing_notification_block_can_be_the_target(applied: PrefectServer, http_sink: HttpSink) -> None:
    """CLIENTES_ALERT_BLOCK=<type>/<name> (e.g. an e-mail block made in the UI) wins over the webhook settings."""
    code = ("from prefect.blocks.notifications import CustomWebhookNotificationBlock as B\n"
            f"B(name='ops', url={http_sink.url + '/other'!r}, json_data={{'body': '{{{{body}}}}'}}).save('ops-other')\n"
            "print(B.load('ops-other')._block_document_id)")
    done = run_python(applied, code, {})
    assert done.returncode == 0, done.stderr[-2000:]
    block_id = done.stdout.split()[-1]
    out = apply(applied, alert_env(http_sink, CLIENTES_ALERT_BLOCK="custom-webhook/ops-other"))
    assert "notifications: custom-webhook/ops-other (existing block)" in out
    ours = [a for a in automations(applied) if a["name"].startswith("clientes-ingest: ")]
    assert {action["block_document_id"] for a in ours for action in a["actions"]} == {block_id}
    missing = subprocess.run([sys.executable, "-m", "clientes_ingest.cli", "automations", "apply"],
                             env=applied.env(CLIENTES_ALERT_BLOCK="custom-webhook/nope"), cwd=REPO,
                             capture_output=True, text=True, timeout=180, check=False)
    assert missing.returncode == 1 and "cannot load the notification block 'custom-webhook/nope'" in missing.stderr
