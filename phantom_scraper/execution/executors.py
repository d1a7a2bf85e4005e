"""The worker threads (two executors) and the lanes whose jobs run on them."""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Dict

from phantom_scraper.execution.account_lanes import AccountLanes

# The one owner of the worker threads.  Two pools so a signal task never waits on account tasks
# queued behind other signal tasks in the same bounded pool (that nesting deadlocks once it is full).
# signal: whole signals (TradingService); order: one task per account; barrier: the risk guard's lock
# barriers, which wait on lane jobs (run on "order"), so they must never occupy "order" threads.
EXECUTOR_SIZES = {"signal": 32, "order": 64, "barrier": 8}
_EXECUTORS: Dict[str, concurrent.futures.ThreadPoolExecutor] = {}
_EXECUTOR_LOCK = threading.Lock()  # serialises creation/shutdown of the executors


def executor(kind: str) -> concurrent.futures.ThreadPoolExecutor:
    """The ``"signal"``, ``"order"`` or ``"barrier"`` executor, created on first use."""
    with _EXECUTOR_LOCK:
        pool = _EXECUTORS.get(kind)
        if pool is None:
            pool = _EXECUTORS[kind] = concurrent.futures.ThreadPoolExecutor(
                max_workers=EXECUTOR_SIZES[kind], thread_name_prefix=kind)
        return pool


def shutdown_executors(wait: bool = True) -> None:
    with _EXECUTOR_LOCK:
        pools = list(_EXECUTORS.values())
        _EXECUTORS.clear()
    for pool in pools:  # joined outside the lock
        if pool is not None:
            pool.shutdown(wait=wait)


# One lane per (account, product): see account_lanes.  Its jobs run on the "order" executor.
LANES = AccountLanes(lambda: executor("order"))  # read as executors.LANES at call time (tests swap it)
