"""The worker threads (three executors), the lanes whose jobs run on them and what those lanes
expect (the expectation book), owned by whoever runs signals: :class:`Workers`.  The service builds
one and passes it in (``SignalRun.workers``, the risk guard's actions and barriers, the drift
monitor, settlement); nothing reads it from a module global.
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Dict, Optional

from phantom_scraper.execution.account_lanes import AccountLanes
from phantom_scraper.execution.expectation import ExpectationBook

# Separate pools so a signal task never waits on account tasks queued behind other signal tasks in
# the same bounded pool (that nesting deadlocks once it is full).
# signal: whole signals (the service's runs); order: one task per account; barrier: the risk guard's
# lock barriers, which wait on lane jobs (run on "order"), so they must never occupy "order" threads.
EXECUTOR_SIZES = {"signal": 32, "order": 64, "barrier": 8}


class Workers:
    """One set of executors, created on first use, one :class:`AccountLanes` (one lane per
    (account, product), its jobs on the ``"order"`` executor) and one :class:`ExpectationBook`
    (each lane's expected position and its orders in doubt)."""

    def __init__(self, sizes: Optional[Dict[str, int]] = None):
        self._sizes = dict(EXECUTOR_SIZES if sizes is None else sizes)
        self._pools: Dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._lock = threading.Lock()  # serialises creation/shutdown of the executors
        self.lanes = AccountLanes(lambda: self.executor("order"))
        self.book = ExpectationBook()

    def executor(self, kind: str) -> concurrent.futures.ThreadPoolExecutor:
        """The ``"signal"``, ``"order"`` or ``"barrier"`` executor, created on first use."""
        with self._lock:
            pool = self._pools.get(kind)
            if pool is None:
                pool = self._pools[kind] = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._sizes[kind], thread_name_prefix=kind)
            return pool

    def shutdown(self, wait: bool = True) -> None:
        """Stop the executors (queued jobs still run; a later ``executor()`` makes new ones)."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:  # joined outside the lock
            pool.shutdown(wait=wait)


_shared: Optional[Workers] = None
_shared_lock = threading.Lock()


def shared() -> Workers:
    """The workers of the bare module functions called without a service (the documented
    ``recorder_service.execute_trade_simple``, scripts): one set for all such callers, so their
    lanes still order jobs per (account, product).  A service passes its own."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Workers()
        return _shared
