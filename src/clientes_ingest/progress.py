"""In-process progress events: tasks report bytes processed; a CLI progress bar (or anything) listens.

Listeners are called from worker threads and must be thread-safe and quick. Nothing is kept per
event, so memory does not grow with the file. Requires: nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[str, int], None]  # (phase, bytes processed since the last event)

_listeners: list[Listener] = []
_lock = threading.Lock()


def emit(phase: str, nbytes: int) -> None:
    """Report ``nbytes`` more bytes done in ``phase`` ("stage" or "load")."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(phase, nbytes)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener`` for every event emitted while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
