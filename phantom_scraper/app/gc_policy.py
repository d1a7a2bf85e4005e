"""Garbage collection off the order path.

CPython's cyclic collector runs when allocations cross its thresholds, in whatever thread is
allocating -- often a webhook's, in the middle of a fan-out.  A full (generation 2) collection walks
every tracked object, and a long-running process has a large heap (before issue 29 the broker state
held the whole day's orders, fills and versions; it now drops finished ones), so its pauses grew
through the day: measured 15 -> 46 ms after 10,000 orders, the whole p99 of a 50-account fan-out.

So, while the process runs:

* at start (``start``), and after every idle pass, ``gc.freeze()`` moves every object alive at that
  moment to the permanent generation, which automatic collections do not walk: they only see what
  was allocated since, and stay short;
* after each batch of finished signals (``freeze_now``, called by the final-writes thread) the
  heap is frozen again, so the collections the next signal's allocations trigger walk only what
  that signal made (measured: the socket thread spent a quarter of its time in collections
  triggered while it parsed a fan-out's events);
* every ``interval_s``, when no signal is in flight (``is_idle()``), one full collection runs over
  everything (``gc.unfreeze(); gc.collect(); gc.freeze()``), so cyclic garbage among older objects
  is still reclaimed -- at a moment when no order waits for it; if signals never stop for
  ``MAX_BUSY_INTERVALS`` intervals, it runs anyway.

One collector per process (the first ``start`` begins it, the last ``stop`` ends it and unfreezes).

``pause_stats()``: every automatic collection's pause while the collector runs (``gc.callbacks``:
two calls per collection), the idle passes apart (the last one's time and the objects it walked)
-- the soak benchmark reads it from the status.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Callable, List, Optional

logger = logging.getLogger(__name__)

MAX_BUSY_INTERVALS = 10  # with signals always in flight, a full pass is forced after this many intervals

_lock = threading.Lock()  # guards the module state below
_users: List[Callable[[], bool]] = []
_thread: Optional[threading.Thread] = None
_stop = threading.Event()
stats = {"idle_collections": 0, "last_pause_ms": None, "last_pass_objects": None, "skipped_busy": 0}
# automatic collections (not the idle passes): written by the collecting thread under the GIL
_pauses = {"collections": 0, "total_ms": 0.0, "max_ms": 0.0, "pauses_over_1ms": 0, "gen2": 0}
_gc_state = {"started": 0.0, "idle_pass": False}


def _on_gc(phase: str, info: dict) -> None:
    """``gc.callbacks`` entry: times each automatic collection (collections never overlap)."""
    if _gc_state["idle_pass"]:
        return
    if phase == "start":
        _gc_state["started"] = time.perf_counter()
        return
    ms = (time.perf_counter() - _gc_state["started"]) * 1000.0
    _pauses["collections"] += 1
    _pauses["total_ms"] += ms
    if ms > _pauses["max_ms"]:
        _pauses["max_ms"] = ms
    if ms >= 1.0:
        _pauses["pauses_over_1ms"] += 1
    if info.get("generation") == 2:
        _pauses["gen2"] += 1


def pause_stats() -> dict:
    """Automatic collections since start: count, total and largest pause (ms), how many took 1 ms or more."""
    out = dict(_pauses)
    out["total_ms"], out["max_ms"] = round(out["total_ms"], 1), round(out["max_ms"], 2)
    return {**out, "idle_passes": stats["idle_collections"], "last_idle_pass_ms": stats["last_pause_ms"],
            "last_idle_pass_objects": stats["last_pass_objects"]}


def start(is_idle: Callable[[], bool], interval_s: float = 60.0) -> None:
    """Register a user (``is_idle``: nothing of it in flight) and make sure the collector runs."""
    global _thread
    with _lock:
        _users.append(is_idle)
        if _thread is not None:
            return
        _stop.clear()
        _thread = threading.Thread(target=_run, args=(interval_s,), name="gc-idle", daemon=True)
        thread = _thread
    gc.freeze()  # what start-up built is never walked again by an automatic collection
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)
    thread.start()


def stop(is_idle: Callable[[], bool]) -> None:
    """Unregister; the last user stops the collector and returns the frozen objects to the collector."""
    global _thread
    with _lock:
        if is_idle in _users:
            _users.remove(is_idle)
        if _users or _thread is None:
            return
        thread, _thread = _thread, None
        _stop.set()
    if thread is not threading.current_thread():
        thread.join(5.0)
    if _on_gc in gc.callbacks:
        gc.callbacks.remove(_on_gc)
    gc.unfreeze()


def _idle() -> bool:
    with _lock:
        users = list(_users)
    return all(fn() for fn in users)


def freeze_now() -> None:
    """A point between signals (a batch of them has just finished): what is alive now joins the
    frozen heap, so the automatic collections that follow only walk newer objects.  O(1) (CPython
    splices its lists).  Cyclic garbage frozen with it waits for the next full pass."""
    with _lock:
        running = _thread is not None
    if running:
        gc.freeze()


def collect_if_idle(force: bool = False) -> bool:
    """One full collection now, if nothing is in flight (or ``force``); refreeze after it.
    -> whether it ran."""
    if not force and not _idle():
        stats["skipped_busy"] += 1
        return False
    started = time.perf_counter()
    _gc_state["idle_pass"] = True
    try:
        walked = gc.get_freeze_count() + sum(len(gc.get_objects(g)) for g in range(2))  # (gen 2: ~empty)
        gc.unfreeze()
        gc.collect()
        gc.freeze()
    finally:
        _gc_state["idle_pass"] = False
    pause_ms = round((time.perf_counter() - started) * 1000, 1)
    stats["idle_collections"] += 1
    stats["last_pause_ms"] = pause_ms
    stats["last_pass_objects"] = walked  # what the pass walked, about (the young ones counted before it)
    logger.debug("Idle garbage collection: %.1f ms", pause_ms)
    return True


def _run(interval_s: float) -> None:
    last = time.monotonic()
    while not _stop.wait(interval_s):
        try:
            if collect_if_idle():
                last = time.monotonic()
                continue
            _stop.wait(min(1.0, interval_s))  # busy: try again soon rather than a whole interval later
            overdue = time.monotonic() - last >= MAX_BUSY_INTERVALS * interval_s
            if collect_if_idle(force=overdue):  # never idle for that long: the frozen garbage must go
                last = time.monotonic()
        except Exception:  # noqa: BLE001 - never let the collector thread die silently
            logger.exception("Idle garbage collection failed")
