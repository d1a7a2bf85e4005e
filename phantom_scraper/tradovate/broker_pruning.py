"""Finished orders leaving ``BrokerState`` (the state's memory stays bounded by what is working).

``prune_finished`` (the housekeeping thread) drops a finished order with its versions, fills and
strategy links once it is settled, journaled (``may_drop``) and referred to by no working order,
``keep_s`` after it finished; a ``user/syncrequest`` snapshot leaves out, as it is read
(tradovate/snapshot.py), the finished orders dropped before and those older than the state's
``keep_s`` (``_left_out_locked``).  What the readers answered for a dropped order stays true: its
final status (``order_status``, ``order_settled``), its fills' signed quantities
(``filled_since``), who made it.  A mixin of ``BrokerState``: it works on the state's own
attributes under the state's ``_lock``.
"""
from __future__ import annotations

import itertools
import sys
import time
from typing import Any, Callable, Iterable, List, Optional

from phantom_scraper.tradovate.finished_record import FinishedRecord
from phantom_scraper.tradovate.order_states import DONE_STATES

FINISHED_KEPT = 100_000  # dropped orders whose final status is still answered (~30 bytes each, fills included)


def new_finished_record() -> FinishedRecord:
    return FinishedRecord(FINISHED_KEPT)


def final_status(status: Any) -> Any:
    """A dropped order's status as kept: one shared string per status, not the decoded copy each
    event or snapshot row brings (tens of thousands of finished orders a day on a busy login)."""
    return sys.intern(status) if type(status) is str else status


class FinishedOrders:
    """Pruning for ``BrokerState`` (its attributes: ``_lock``, ``_entities``, ``_finished``, ...)."""

    def _left_out_locked(self, parsed) -> None:
        """What stays of the finished orders a snapshot left out: final status, fills' signed
        quantities (filled_since), who made them; their fills for the ledger (take_snapshot_fills)."""
        for oid, status in parsed.finished.items():
            if oid in parsed.recorded:
                continue  # recorded when it was dropped (a final status and its fills do not change)
            self._forget_makers_locked(self._finished.put(oid, final_status(status), parsed.gone_fills.get(oid, ())))
        for maker, oid in parsed.made_by:
            self._add_made_locked(maker, oid)
        self._max_fill_id = max(self._max_fill_id, parsed.max_fill_id)
        self._old_fills = parsed.old_fills
        self.left_out_at_sync += len(parsed.finished)

    def take_snapshot_fills(self) -> List[tuple]:
        """``(fill, account id)`` for every fill of the last snapshot: those held (with their order's
        account) and those of orders it left out for their age (handed out once)."""
        with self._lock:
            orders = self._entities.get("order", {})
            held = [(dict(f), (orders.get(f.get("orderId")) or {}).get("accountId"))
                    for f in self._entities.get("fill", {}).values()]
            old, self._old_fills = self._old_fills, []
        return held + old


    def prune_finished(self, keep_s: float, may_drop: Optional[Callable[[dict], bool]] = None,
                       now: Optional[float] = None, limit: int = 5000) -> int:
        """Drop finished orders no one needs any more (see the module docstring) with their
        versions, fills and links; returns how many.  ``may_drop(order)`` (a copy; quick, no I/O)
        runs without the lock.  Off the hot path: the housekeeping thread calls it."""
        now = time.monotonic() if now is None else now
        with self._lock:
            candidates = [self._entities.get("order", {}).get(oid)
                          for oid, at in self._done_at.items() if now - at >= keep_s]
            candidates = [dict(o) for o in candidates[:limit] if o is not None and self._droppable_locked(o)]
        if may_drop is not None:
            candidates = [o for o in candidates if may_drop(o)]
        dropped = 0
        with self._lock:
            orders = self._entities.get("order", {})
            for seen in candidates:
                order = orders.get(seen["id"])
                if order is None or order.get("ordStatus") not in DONE_STATES or not self._droppable_locked(order):
                    continue  # changed meanwhile
                oid = order["id"]
                del orders[oid]
                self._done_at.pop(oid, None)
                self._latest_version.pop(oid, None)
                gone = self._fills_by_order.pop(oid, {})
                fills = tuple(itertools.chain.from_iterable(
                    (int(f.get("id") or 0), (1 if f.get("action") == "Buy" else -1) * int(f.get("qty") or 0))
                    for f in gone.values()))
                for etype, eid in self._of_order.pop(oid, ()):
                    self._entities.get(etype, {}).pop(eid, None)
                self._forget_makers_locked(self._finished.put(oid, final_status(order.get("ordStatus")), fills))
                dropped += 1
            self.pruned_orders += dropped
        return dropped

    def _add_made_locked(self, maker: Any, order_id: Any) -> None:
        """``maker`` (a parent order id, or ``("strategy", id)``) made ``order_id``.  A tuple, not a
        set: a maker makes one to a few orders, and a set costs 216 bytes even for one."""
        made = self._made_by.get(maker, ())
        if order_id not in made:
            self._made_by[maker] = made + (order_id,)

    def _forget_makers_locked(self, forgotten: Iterable[Any]) -> None:
        """Orders the record forgot (over ``FINISHED_KEPT``, oldest first) are no one's makers."""
        for oid in forgotten:
            self._made_by.pop(oid, None)

    def _droppable_locked(self, order: dict) -> bool:
        """Settled (its fill's position event arrived) and no working order of its account and
        contract refers to it (an OCO partner, a bracket child) or shares its OCO group."""
        key = (order.get("accountId"), order.get("contractId"))
        oid = order["id"]
        if oid in self._unposted_fills.get(key, ()):
            return False
        orders = self._entities.get("order", {})
        oco = order.get("ocoId")
        for live_id in self._live.get(key, ()):
            live = orders.get(live_id) or {}
            if oid in (live.get("parentId"), live.get("ocoId")) or live_id in (order.get("parentId"), oco) \
                    or (oco is not None and live.get("ocoId") == oco):
                return False
        return True
