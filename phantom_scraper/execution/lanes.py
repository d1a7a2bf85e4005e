"""One lane per (account, product root): work for one account and contract runs one job at a time,
in the order it was *reserved*.

Why reserve: a signal's place in line is fixed when the webhook arrives (``reserve`` in arrival
order), but its job only exists after the symbol is resolved and the account planned.  A job whose
ticket is not yet at the head waits in the lane -- never in a thread -- so no worker thread ever
blocks on another signal, and a slow symbol lookup cannot let a later alert overtake an earlier one.

::

    reserve(key) -> Ticket        (arrival order; cheap, under the lock only)
    ticket.submit(job) -> Future  (runs when every earlier ticket of the lane is done or cancelled)
    ticket.cancel()               (the signal will not run on this lane: the next one may go)

Jobs of one lane never overlap; lanes are independent, so different accounts and different
contracts of one account stay parallel.  A job submitted to an idle lane with ``inline=True`` runs
at once in the submitting thread (no hand-off on the hot path); later jobs of that lane are handed
to ``executor``.  ``background(key, job)`` reserves and submits in one go (bracket-leg upkeep after
a fill).  ``claim(ticket)`` takes an idle lane whose head is that ticket for the calling thread,
which runs the work itself and ``release``-s it (a fan-out writes every claimed account's frame in
one batch).  The lock guards the lane dicts only; jobs run outside it.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Hashable, Optional

logger = logging.getLogger(__name__)


def _CLAIMED() -> None:  # the job of a claimed ticket: its work runs in the claiming thread
    raise AssertionError("a claimed ticket's job is never run by the lane")


def _RAN() -> None:  # the job of a ticket whose job has run (the job itself is let go)
    raise AssertionError("a ticket's job runs once")


class Ticket:
    """A place in one lane.  ``submit`` or ``cancel`` it exactly once."""

    __slots__ = ("lanes", "key", "seq", "at", "job", "future", "inline", "done")

    def __init__(self, lanes: "Lanes", key: Hashable, seq: int):
        self.lanes = lanes
        self.key = key
        self.seq = seq
        self.at = time.monotonic()  # reserved (the signal's place in line)
        self.job: Optional[Callable[[], Any]] = None
        self.future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
        self.inline = False
        self.done = False  # cancelled, or its job has been taken to run

    def submit(self, job: Callable[[], Any], *, inline: bool = False) -> "concurrent.futures.Future[Any]":
        self.lanes._submit(self, job, inline)
        return self.future

    def cancel(self) -> None:
        self.lanes._cancel(self)

    def __repr__(self) -> str:
        return f"<Ticket {self.key!r} #{self.seq}>"


class Lanes:
    def __init__(self, executor_factory: Callable[[], concurrent.futures.Executor]):
        self._executor_factory = executor_factory
        self._seq = itertools.count(1)
        # Guards _lanes and _running and every Ticket's job/inline/done fields; bookkeeping only.
        self._lock = threading.Lock()
        self._lanes: Dict[Hashable, Deque[Ticket]] = {}
        self._running: set = set()  # keys whose head job is executing

    # ------------------------------------------------------------------ public
    def reserve(self, key: Hashable) -> Ticket:
        with self._lock:
            ticket = Ticket(self, key, next(self._seq))
            self._lanes.setdefault(key, deque()).append(ticket)
        return ticket

    def background(self, key: Hashable, job: Callable[[], Any]) -> "concurrent.futures.Future[Any]":
        """Queue ``job`` at the end of the lane (never inline)."""
        return self.reserve(key).submit(job)

    def claim(self, ticket: Ticket) -> bool:
        """Take ``ticket``'s lane for the calling thread now, if it is idle and the ticket is at its
        head (the usual case); the caller runs the work itself and must ``release`` the ticket.
        False: leave the ticket alone (``submit`` or ``cancel`` it as usual)."""
        with self._lock:
            lane = self._lanes.get(ticket.key)
            if ticket.done or ticket.job is not None or ticket.key in self._running \
                    or not lane or lane[0] is not ticket:
                return False
            ticket.job, ticket.done = _CLAIMED, True
            self._running.add(ticket.key)
        ticket.future.set_running_or_notify_cancel()
        return True

    def release(self, ticket: Ticket, result: Any = None, exc: Optional[BaseException] = None) -> None:
        """End a claimed ticket's work: its future gets ``result`` (or ``exc``), the lane moves on."""
        try:
            if exc is not None:
                ticket.future.set_exception(exc)
            else:
                ticket.future.set_result(result)
        finally:
            self._finish(ticket)

    def busy(self, key: Hashable) -> bool:
        with self._lock:
            return bool(self._lanes.get(key))

    def depth(self) -> Dict[Hashable, int]:
        with self._lock:
            return {k: len(q) for k, q in self._lanes.items() if q}

    # ------------------------------------------------------------------ internals
    def _submit(self, ticket: Ticket, job: Callable[[], Any], inline: bool) -> None:
        with self._lock:
            if ticket.done or ticket.job is not None:
                raise RuntimeError(f"{ticket!r} was already submitted or cancelled")
            ticket.job, ticket.inline = job, inline
            runnable = self._take_head_locked(ticket.key)
        self._start(runnable)

    def _cancel(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.done or ticket.job is not None:
                return  # already running/ran, or cancelled before
            ticket.done = True
            lane = self._lanes.get(ticket.key)
            if lane is not None and ticket in lane:
                lane.remove(ticket)
            runnable = self._take_head_locked(ticket.key)
            if lane is not None and not lane and ticket.key not in self._running:
                self._lanes.pop(ticket.key, None)
        ticket.future.cancel()
        self._start(runnable)

    def _take_head_locked(self, key: Hashable) -> Optional[Ticket]:
        """The head ticket if it has a job and the lane is idle (marks the lane running)."""
        if key in self._running:
            return None
        lane = self._lanes.get(key)
        if not lane:
            self._lanes.pop(key, None)
            return None
        head = lane[0]
        if head.job is None:
            return None
        head.done = True
        self._running.add(key)
        return head

    def _start(self, ticket: Optional[Ticket], from_lane: bool = False) -> None:
        if ticket is None:
            return
        if ticket.inline and not from_lane:
            self._run(ticket, chain=False)  # the submitter's own job only: it has its own answer to give
            return
        try:
            self._executor_factory().submit(self._run, ticket)
        except RuntimeError as exc:  # executor shut down: fail this job, keep the lane moving
            if not ticket.future.done():
                ticket.future.set_exception(exc)
            self._finish(ticket)

    def _run(self, ticket: Ticket, chain: bool = True) -> None:
        """Run the job, then (``chain``: in a worker) the lane's next ones while they are ready, in
        this same thread (a busy lane's jobs follow each other without a hand-off each time)."""
        while ticket is not None:
            # A job usually closes over its own ticket (ticket.job -> job -> ticket): it is let go
            # before its result is handed over, so no reference cycle is left and the ticket, its
            # future and everything the job held are freed at once, not by a full collection.
            job, ticket.job = ticket.job, _RAN
            try:
                if ticket.future.set_running_or_notify_cancel():
                    try:
                        result = job()
                    except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                        job = None
                        ticket.future.set_exception(exc)
                    else:
                        job = None
                        ticket.future.set_result(result)
            finally:
                job = None
                following = self._done_take_next(ticket)
                if not chain:
                    self._start(following, from_lane=True)
                    following = None
                ticket = following

    def _finish(self, ticket: Ticket) -> None:
        self._start(self._done_take_next(ticket), from_lane=True)

    def _done_take_next(self, ticket: Ticket) -> Optional[Ticket]:
        """``ticket``'s work is over: the lane moves on.  -> the next ticket to run (marked
        running), if its job is ready."""
        with self._lock:
            self._running.discard(ticket.key)
            lane = self._lanes.get(ticket.key)
            if lane and lane[0] is ticket:
                lane.popleft()
            return self._take_head_locked(ticket.key)
