"""The status families of clientes-ingest, one enum each: a job's status, a chunk's status, what a run
does with its file (``Action``) and what a recovery did with an abandoned job (``RecoveryAction``).

They are ``StrEnum``: stored in the database, shown by the API and the CLI, and compared as the plain
strings they are (``JobStatus.FAILED == "failed"``). Pure: no prefect, no database.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"  # registered (e.g. by the API) before its run starts
    RUNNING = "running"  # a run holds it and loads its chunks (heartbeat: the lease)
    COMPLETED = "completed"  # every chunk loaded, no rejects
    COMPLETED_WITH_REJECTS = "completed_with_rejects"  # every chunk loaded, some lines rejected
    FAILED = "failed"  # some chunk could not load (a rerun resumes it), or the run could not start
    REJECTED_FILE = "rejected_file"  # refused as a whole by the reject guard (docs/reliability.md)
    DUPLICATE = "duplicate"  # pre-registered, but its content is another job's (that job loads it)

    @property
    def loaded(self) -> bool:
        """Whether the file is fully loaded (rejected lines are not failures)."""
        return self in LOADED


DONE = (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_REJECTS)  # loaded (a tuple: SQL ``IN`` lists take it)
LOADED = frozenset(DONE)
ACTIVE = (JobStatus.RUNNING, JobStatus.PENDING)  # a run holds the job, or one is about to start: never purged


class ChunkStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"  # rows, rejects and this status committed in one transaction
    FAILED = "failed"  # its last attempt failed; a resumed job loads it again


class Action(StrEnum):
    """What a run does with its file."""

    LOAD = "load"  # a new job: load every chunk
    RESUME = "resume"  # an unfinished job of the same file: load the chunks not committed yet
    ALREADY_LOADED = "already_loaded"  # this content was loaded by a completed job: nothing to do
    IN_PROGRESS = "in_progress"  # another live run is loading this content: nothing to do here
    REJECTED = "rejected"  # this content was refused (rejected_file) by its job: only --force loads it

    @property
    def nothing_to_do(self) -> bool:
        return self in (Action.ALREADY_LOADED, Action.IN_PROGRESS)


class RecoveryAction(StrEnum):
    """What the recover-abandoned-jobs flow did with one abandoned job."""

    RESUMED = "resumed"
    HELD = "held by another run"
    ALREADY_LOADED = "already loaded"
    STARTED = "started"
    ALREADY_STARTED = "already started"
    FAILED = "failed"
