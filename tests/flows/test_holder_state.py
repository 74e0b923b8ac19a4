"""A job's holder is provably dead when its Prefect flow run has ended (crashed, failed, cancelled,
completed), whatever host it ran on; a running or unknown flow run proves nothing. Real temporary
Prefect API (test harness)."""

from __future__ import annotations

import uuid

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Crashed, Running

from clientes_ingest import lease, tasks

pytestmark = pytest.mark.usefixtures("prefect_harness")


@flow
def placeholder() -> None:
    """Only a flow to create runs of."""


def holder(flow_run_id: str) -> lease.Holder:
    return lease.Holder(job_id=1, runs=1, host="a-pod-that-is-gone", pid=1, started="x:1", flow_run_id=flow_run_id,
                       since=None, heartbeat_at=None)


def test_a_holder_whose_flow_run_crashed_is_dead_a_running_one_is_not() -> None:
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(placeholder)
        client.set_flow_run_state(run.id, Running(), force=True)
        assert not tasks.flow_run_ended(str(run.id))
        assert not tasks.holder_is_dead(holder(str(run.id)))  # another host, a running flow run: maybe alive
        client.set_flow_run_state(run.id, Crashed(), force=True)
    assert tasks.flow_run_ended(str(run.id))
    assert tasks.holder_is_dead(holder(str(run.id)))
    assert not tasks.flow_run_ended(str(uuid.uuid4()))  # unknown to this API: nothing proved
    assert not tasks.flow_run_ended(None)
