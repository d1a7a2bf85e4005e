"""Signals for one account and product run one at a time, in arrival order, on the broker's position.

The lane key is ``(account id, product root)`` (``NQ1!`` and ``NQZ6`` share the ``NQ`` lane, so
a continuous and a dated alert for the same account are ordered too).  Each lane job::

    wait until the previous job's orders are settled at the broker (resting, or filled and in
    the position)  ->  exit legs follow the position  ->  read position -> plan -> place

The wait sits at the start of the *next* job rather than the end of this one, so a signal
arriving at an idle lane (the usual case) starts at once and its webhook answer is never held up
by the settle; the next alert on the same lane is the one that waits.  A position change that no
signal caused (a bracket leg filled, a trade made by hand) queues an upkeep job on the lane through
the broker state's listener, so legs are also kept in line between signals.

A connection here needs ``broker_state`` for the socket-fed view; without a fresh one the waits poll
REST and the leg upkeep is skipped (see :mod:`.exit_legs`).
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from phantom_scraper.execution import exit_legs
from phantom_scraper.execution.handover import Handovers
from phantom_scraper.execution.lanes import Lanes, Ticket

logger = logging.getLogger(__name__)

LaneKey = Tuple[int, str]


def lane_key(account_id: int, root: str) -> LaneKey:
    return (int(account_id), str(root).upper())


class AccountLanes:
    def __init__(self, executor_factory: Callable[[], concurrent.futures.Executor]):
        self.lanes = Lanes(executor_factory)
        self.handovers = Handovers()  # busy lanes: previous orders final -> next job started
        # Guards the three dicts below; bookkeeping only.
        self._lock = threading.Lock()
        self._unsettled: Dict[LaneKey, tuple] = {}  # key -> (conn, account id, contract id, order ids)
        self._roots: Dict[int, str] = {}  # contract id -> product root (learnt from signals)
        self._watched: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()  # state -> settings
        self._upkeep_queued: set = set()  # (key, contract id) with an upkeep job waiting

    # ------------------------------------------------------------------ reserving
    def reserve(self, account_ids: Iterable[int], root: str) -> Dict[int, Ticket]:
        """One ticket per account, in call (= arrival) order."""
        return {int(a): self.lanes.reserve(lane_key(a, root)) for a in account_ids}

    # ------------------------------------------------------------------ running
    def submit(self, ticket: Ticket, conn, account_id: int, contract, settings,
               job: Callable[[], Any], *, inline: bool) -> "concurrent.futures.Future[Any]":
        """Run ``job`` (one account of one signal) in its lane; the Future is the job's result.

        The job's broker order ids are read from its result's ``order_ids`` to make the next job
        of this lane wait for them."""
        with self._lock:
            self._roots[contract.id] = contract.root
        self.watch(conn, settings)

        def lane_job():
            try:
                self._settle_previous(ticket.key, settings, conn, ticket)
                result = job()
            finally:
                exit_legs.set_state_behind(False)
            ids = list(getattr(result, "order_ids", None) or [])
            if ids:
                with self._lock:
                    self._unsettled[ticket.key] = (conn, account_id, contract.id, ids)
            return result

        return ticket.submit(lane_job, inline=inline)

    def claim(self, ticket: Ticket, conn, contract, settings, wait_s: float = 0.0) -> Optional[bool]:
        """Take the ticket's lane for the calling thread if it is idle and the ticket is at its
        head; the caller runs the account's work itself, then calls :meth:`release`.

        None: not taken (submit the ticket as usual).  True: taken, and the previous job's orders
        are already settled with the exit legs in line (read from the socket-fed state: nothing to
        wait for, nothing to send).  False: taken, but the caller must first run
        :meth:`settle_claimed` (it may wait; not in a hurry-up path).  ``wait_s``: how long to wait
        here (socket-fed state only) for the previous orders to settle before answering False."""
        with self._lock:
            self._roots[contract.id] = contract.root
        self.watch(conn, settings)
        if not self.lanes.claim(ticket):
            return None
        with self._lock:  # the lane is ours now: only its own jobs change its entry
            pending = self._unsettled.get(ticket.key)
        if pending is not None and pending[0] is not conn:
            pending = None  # placed through a connection since replaced (a new login): nothing to wait for
        ready = pending is None or _settled_now(*pending)  # (outside our lock: it takes the state's)
        if not ready and wait_s > 0:
            state = exit_legs.fresh_state(pending[0])
            ready = state is not None and state.wait_for(lambda _s: _settled_now(*pending), wait_s)
        if ready:
            with self._lock:
                self._unsettled.pop(ticket.key, None)
        return ready

    def settle_claimed(self, ticket: Ticket, settings, conn) -> None:
        """What a lane job does first (wait for the previous job's orders, legs in line).  The
        calling thread then runs the account's work and must :meth:`release` the ticket."""
        self._settle_previous(ticket.key, settings, conn)

    def release(self, ticket: Ticket, conn, account_id: int, contract, result: Any = None,
                exc: Optional[BaseException] = None) -> None:
        """End a claimed ticket: its orders make the next job of the lane wait for them."""
        exit_legs.set_state_behind(False)  # (set by settle_claimed in this thread)
        ids = list(getattr(result, "order_ids", None) or []) if exc is None else []
        if ids:
            with self._lock:
                self._unsettled[ticket.key] = (conn, account_id, contract.id, ids)
        self.lanes.release(ticket, result, exc)

    def _settle_previous(self, key: LaneKey, settings, current_conn, ticket: Optional[Ticket] = None) -> None:
        """Wait until the previous job's orders show as settled.  If they do not in time, the
        socket-fed state is behind this lane's own fills: for the rest of this job (this thread,
        until the job ends) positions and orders are read from the broker instead
        (``exit_legs.set_state_behind``), and the legs are left alone -- never planned from it.
        ``ticket``: the job about to start (its hand-over is measured when it was queued behind them)."""
        exit_legs.set_state_behind(False)
        with self._lock:
            pending = self._unsettled.pop(key, None)
        if pending is None or pending[0] is not current_conn:
            return  # nothing placed, or placed through a connection since replaced (a new login)
        conn, account_id, contract_id, order_ids = pending
        timeout_s = settings.order_ack_timeout_s
        if not exit_legs.wait_settled(conn, account_id, order_ids, timeout_s):
            logger.warning("Lane %s: orders %s not settled in the socket-fed state within %.1f s; this job "
                           "reads the position from the broker", key, order_ids, timeout_s)
            exit_legs.set_state_behind(True)
        elif ticket is not None:
            self._note_handover(conn, order_ids, ticket)
        exit_legs.sync(conn, account_id, contract_id, timeout_s)

    def _note_handover(self, conn, order_ids, ticket: Ticket) -> None:
        state = exit_legs.fresh_state(conn)
        final_at = state.finished_at(order_ids) if state is not None and hasattr(state, "finished_at") else None
        if final_at is not None and ticket.at <= final_at:  # queued behind them: a hand-over
            self.handovers.note(time.monotonic() - final_at)

    def drain(self, account_id: int, settings, timeout_s: float) -> bool:
        """A job at the end of every lane of the account that has work queued, running or not yet
        settled; returns once each has run (the jobs before it finished: in-flight orders answered
        or searched, queued jobs planned -- and refused while a lock holds -- and the last orders
        settled in the socket-fed state), or False after ``timeout_s``."""
        account_id = int(account_id)
        with self._lock:
            keys = {k for k in self._unsettled if k[0] == account_id}
        keys |= {k for k in self.lanes.depth() if k[0] == account_id}
        if not keys:
            return True

        def settle(key):
            with self._lock:
                pending = self._unsettled.get(key)
            if pending is None:
                return
            try:
                self._settle_previous(key, settings, pending[0])
            finally:
                exit_legs.set_state_behind(False)

        futures = [self.lanes.background(key, functools.partial(settle, key)) for key in sorted(keys)]
        _done, waiting = concurrent.futures.wait(futures, timeout=timeout_s)
        return not waiting

    # ------------------------------------------------------------------ upkeep between signals
    def watch(self, conn, settings) -> None:
        """Queue leg upkeep on the lane whenever the broker reports a position change."""
        state = getattr(conn, "broker_state", None)
        if state is None:
            return
        with self._lock:
            if state in self._watched:
                return
            self._watched[state] = settings
        state.add_listener(lambda etype, event, entity: self._on_change(conn, settings, etype, entity),
                           entity_types=("position",))

    def _on_change(self, conn, settings, etype: str, entity: Optional[dict]) -> None:
        """Broker-state listener (socket thread): must be quick; queues a job, never waits."""
        if etype != "position" or not entity:
            return
        account_id, contract_id = entity.get("accountId"), entity.get("contractId")
        state = getattr(conn, "broker_state", None)
        if state is None or not any(exit_legs.is_leg(o) for o in state.working_orders(account_id, contract_id)):
            return  # no exit leg to keep in line (the usual case: no job, no thread hop)
        with self._lock:
            root = self._roots.get(contract_id)
            if root is None:
                return  # a contract no signal traded here: its legs are not ours to manage
            key = lane_key(account_id, root)
            marker = (key, contract_id)
            if marker in self._upkeep_queued:
                return
            self._upkeep_queued.add(marker)

        def upkeep():
            with self._lock:
                self._upkeep_queued.discard(marker)
            try:
                self._settle_previous(key, settings, conn)
                exit_legs.sync(conn, account_id, contract_id, settings.order_ack_timeout_s)
            finally:
                exit_legs.set_state_behind(False)

        future = self.lanes.background(key, upkeep)
        future.add_done_callback(_log_failure)

    def status(self) -> dict:
        return {"busy_lanes": {f"{k[0]}:{k[1]}": n for k, n in self.lanes.depth().items()},
                "handover": self.handovers.status()}


def _settled_now(conn, account_id: int, contract_id: int, order_ids) -> bool:
    """Without waiting or sending: the orders are settled and the exit legs need no change."""
    state = exit_legs.fresh_state(conn)
    if state is None:
        return False
    if not all(state.order_settled(i) for i in order_ids if i is not None):
        return False
    net_pos = state.net_pos(account_id, contract_id)
    return not exit_legs.plan_leg_changes(net_pos, state.working_orders(account_id, contract_id))


def _log_failure(future: "concurrent.futures.Future[Any]") -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("Lane upkeep failed: %s", future.exception())


def cancel_all(tickets: Optional[Dict[int, Ticket]]) -> None:
    for ticket in (tickets or {}).values():
        ticket.cancel()
