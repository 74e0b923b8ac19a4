"""One enum per status family; each member is the very string stored in the database and shown by the
API and the CLI."""

from __future__ import annotations

from clientes_ingest.statuses import LOADED, Action, ChunkStatus, JobStatus, RecoveryAction


def test_members_are_the_stored_strings() -> None:
    assert [s.value for s in JobStatus] == ["pending", "running", "completed", "completed_with_rejects", "failed",
                                             "rejected_file", "duplicate"]
    assert [s.value for s in ChunkStatus] == ["pending", "running", "done", "failed"]
    assert [a.value for a in Action] == ["load", "resume", "already_loaded", "in_progress", "rejected"]
    assert JobStatus.FAILED == "failed" and f"{ChunkStatus.DONE}" == "done" and str(Action.RESUME) == "resume"
    assert {"resumed", "held by another run", "already loaded", "started", "already started", "failed"} == {
        a.value for a in RecoveryAction}


def test_loaded_means_completed_with_or_without_rejects() -> None:
    assert {s for s in JobStatus if s.loaded} == LOADED == {"completed", "completed_with_rejects"}
    assert [a for a in Action if a.nothing_to_do] == [Action.ALREADY_LOADED, Action.IN_PROGRESS]
