"""The interpreter's thread switch interval while the service runs (``PYTHON_SWITCH_INTERVAL_MS``).

A thread woken by an event -- a lane whose previous order's fill just arrived, a webhook whose
broker answer came -- can run only once the thread holding the GIL lets go of it.  A busy thread
(the socket thread parsing a batch of events, another webhook's JSON) lets go when it blocks or
when the switch interval has passed: CPython's default is 5 ms, so each hand-off between threads
may wait up to 5 ms.  The service lowers it while it runs (measured in bench/RESULTS.md, "Lane
turnaround": the side-by-side runs of ``python -m bench.lane_turnaround``).

Process-wide: the first service that starts sets it, the last one that stops puts back the value
it found (tests run several services in one process).  ``0`` leaves the interpreter's value alone.
"""
from __future__ import annotations

import logging
import sys
import threading
from typing import Optional, Set

logger = logging.getLogger(__name__)

_lock = threading.Lock()  # guards the two below
_owners: Set[int] = set()
_saved: Optional[float] = None


def start(owner: object, switch_interval_ms: float) -> None:
    """``owner`` (the service) runs: the first one sets the interval."""
    global _saved
    with _lock:
        first = not _owners
        _owners.add(id(owner))
        if first:
            _saved = None
            if switch_interval_ms and switch_interval_ms > 0:
                _saved = sys.getswitchinterval()
                sys.setswitchinterval(switch_interval_ms / 1000.0)
                logger.info("Thread switch interval %g ms (was %g ms)", switch_interval_ms, _saved * 1000.0)


def stop(owner: object) -> None:
    """``owner`` stopped (a no-op if it never started): the last one puts the interval back."""
    global _saved
    with _lock:
        if id(owner) not in _owners:
            return
        _owners.discard(id(owner))
        if not _owners and _saved is not None:
            sys.setswitchinterval(_saved)
            _saved = None
