"""The dev stack's failure paths, fast: each error names the service, port or database and where to look,
nothing it started outlives ``stop()`` (even a child that ignores SIGTERM, and its grandchild in a session
of its own), and the banner tells how to use the stack. No Prefect server is started here.
"""

from __future__ import annotations

import socket
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from clientes_ingest.cli import main
from clientes_ingest.devtools.devstack import DevStack, StackError, banner, free_port

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE_DB = "postgresql+psycopg://app:s3cr3t-pw@127.0.0.1:1/clientes"


def make_stack(tmp_path: Path, **kwargs: object) -> DevStack:
    ports = {"prefect_port": 0, "api_port": 0, "trigger_port": 0, "moto_port": 0}
    return DevStack(tmp_path / "state", project_dir=REPO, base_env={"PATH": "/usr/bin:/bin"},
                    **{**ports, **kwargs})  # type: ignore[arg-type]


def test_unreachable_database_fails_before_any_process_and_hides_the_password(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, db_url=UNREACHABLE_DB)
    with pytest.raises(StackError) as raised:
        stack.start()
    message = str(raised.value)
    assert raised.value.code == 3
    assert "127.0.0.1:1/clientes" in message and "unreachable" in message and "--db" in message
    assert "s3cr3t-pw" not in message
    assert stack.services == [] and stack.seen_pids() == set()


def test_cli_dev_reports_an_unreachable_database_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    code = main(["dev", "--db", UNREACHABLE_DB, "--state-dir", str(tmp_path / "state"), "--prefect-port", "0",
                 "--api-port", "0", "--trigger-port", "0", "--moto-port", "0"])
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("error: database ") and "s3cr3t-pw" not in err


def test_a_port_in_use_is_named_with_the_option_that_avoids_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = make_stack(tmp_path, api_port=port)
        with pytest.raises(StackError, match=rf"port {port} on 127.0.0.1 \(api\) is in use.*--api-port 0"):
            stack.start()


def test_a_second_stack_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    first = make_stack(tmp_path)
    first.prepare()
    try:
        with pytest.raises(StackError, match="another dev stack is running with state dir"):
            make_stack(tmp_path).prepare()
    finally:
        first.stop()
    make_stack(tmp_path).prepare()  # the lock went with stop()


def test_a_service_that_exits_is_named_with_its_log_and_last_lines(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    stack.prepare()
    try:
        with pytest.raises(StackError) as raised:
            stack.add_service("broken", [sys.executable, "-c", "print('cannot bind: boom'); raise SystemExit(4)"],
                              f"http://127.0.0.1:{free_port()}/health", timeout=30)
    finally:
        stack.stop()
    message = str(raised.value)
    assert message.startswith("broken exited with code 4")
    assert str(stack.log_dir / "broken.log") in message and "cannot bind: boom" in message


# A service that answers nothing, ignores SIGTERM and has a grandchild in a session of its own (like a
# process worker's flow run): stop() must still leave none of them running.
STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    print("grandchild", child.pid, flush=True)
    time.sleep(120)
""")


def test_a_silent_service_times_out_and_stop_kills_it_and_its_detached_grandchild(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, stop_timeout=1.0)
    stack.prepare()
    try:
        with pytest.raises(StackError, match=r"stubborn did not answer http://127\.0\.0\.1:\d+/health within 2s"):
            stack.add_service("stubborn", [sys.executable, "-c", STUBBORN], f"http://127.0.0.1:{free_port()}/health",
                              timeout=2)
        log_path = stack.log_dir / "stubborn.log"
        deadline = time.monotonic() + 30  # the service is still running: on a busy machine it may print late
        while "grandchild " not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = int(log_path.read_text().split("grandchild ")[1].split()[0])
        assert psutil.pid_exists(grandchild)
    finally:
        stack.stop()  # add_service leaves stopping to its caller (start() does it on failure)
    assert grandchild in stack.seen_pids() and len(stack.seen_pids()) == 2
    assert [pid for pid in stack.seen_pids() if _running(pid)] == []


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_banner_shows_urls_and_a_ready_curl_with_the_generated_token(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, prefect_port=4210, api_port=8010, trigger_port=9110, moto_port=5010)
    text = banner(stack)
    assert stack.token_generated and len(stack.api_token) >= 24
    assert "Prefect UI        http://127.0.0.1:4210" in text
    assert "http://127.0.0.1:8010/docs" in text
    assert f'curl -H "Authorization: Bearer {stack.api_token}" -F "file=@CLIENTES_IN_0425.dat" ' \
           "http://127.0.0.1:8010/process" in text
    assert "sqlite:///" in text  # the default database lives in the state dir

    given = make_stack(tmp_path / "other", api_token="set-by-the-user")
    assert not given.token_generated
    text = banner(given)
    assert "set-by-the-user" not in text and "Bearer $CLIENTES_API_TOKEN" in text


def test_one_shot_tools_run_together_and_a_failure_names_the_tool_and_its_log(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    stack.prepare()
    try:
        with pytest.raises(StackError) as raised:
            stack.run_tools(("fine", [sys.executable, "-c", "print('ok')"]),
                            ("blocks", [sys.executable, "-c", "import sys; print('no API at x'); sys.exit(2)"]))
    finally:
        stack.stop()
    message = str(raised.value)
    assert message.startswith("blocks failed with code 2") and "no API at x" in message
    assert str(stack.log_dir / "blocks.log") in message and "fine" not in message.split(":")[0]
    assert "ok" in (stack.log_dir / "fine.log").read_text()
