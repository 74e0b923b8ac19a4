"""The flows over many jobs (purge, recover) raise one shared failure type that carries every job's result."""

from __future__ import annotations

import pytest

from clientes_ingest.failures import SomeJobsFailed
from flows.purge import PurgeFailed
from flows.recover import RecoveryFailed


@pytest.mark.parametrize("failure", [PurgeFailed, RecoveryFailed])
def test_a_batch_flow_failure_carries_every_result(failure: type[SomeJobsFailed]) -> None:
    results = [{"job_id": 7, "error": None}, {"job_id": 8, "error": "boom"}, {"job_id": 9, "error": "boom"}]
    with pytest.raises(failure) as raised:
        failure.check(results, [8, 9], "job(s) could not be done", then="; try again")
    assert str(raised.value) == "2 of 3 job(s) could not be done: 8, 9; try again"
    assert raised.value.results is results
    assert isinstance(raised.value, SomeJobsFailed)


def test_nothing_is_raised_when_no_job_failed() -> None:
    SomeJobsFailed.check([{"job_id": 1}], [], "job(s) could not be done")
