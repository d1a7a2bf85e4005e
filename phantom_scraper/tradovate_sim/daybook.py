"""The simulator's day, kept where the garbage collector does not walk it.

The exchange keeps every order, report and fill of the day (it is the book a resync reads).  CPython
walks every *tracked* object at each full collection, and a collection stops every thread: in a
day-long soak the standalone simulator's full collections grew from 75 to 180 ms, with every
order in flight waiting (Tradovate has no such stall).  Dicts and tuples holding only strings and
numbers are not tracked; what made the day tracked was

* the ``tradeDate`` object inside each execution report and fill (a dict in a dict is tracked), and
* the engine's ``OrderInfo`` per order (an instance, and its list of bracket children).

So a stored report or fill holds its trade date as a ``(year, month, day)`` tuple, turned back into
Tradovate's object by :func:`wire` on every way out (events, lists, the sync snapshot); and an
order's ``OrderInfo`` is folded into a tuple once the order is finished (:class:`OrderInfos`).

What is left is the containers themselves: a collection visits every entry of every tracked dict or
list, tracked or not, so the day's stores still cost a full pass time as they grow.  A simulator in
a process of its own (``python -m phantom_scraper.tradovate_sim``, the soak's) calls
:func:`freeze_process` once started: what is alive then -- the exchange's containers among it --
moves to the permanent generation, which collections never walk, however large they grow.  Not in a
shared process (the server's embedded simulator: its own collector policy freezes already; tests).
"""
from __future__ import annotations

import gc
from collections.abc import MutableMapping
from dataclasses import fields
from operator import attrgetter
from typing import Any, Callable, Dict, Iterator, List

from .timefmt import date_object

DATED = frozenset({"executionReport", "fill"})  # the per-order entities stored with a tuple trade date
RETIRE_BATCH = 256  # finished orders folded at once; the newest batch stays whole (see retire)
_frozen = {"process": False}  # whether freeze_process ran in this process


class Store(dict):
    """A dict the collector tracks from birth.  A plain empty dict is not tracked until a first
    entry makes it so, and :func:`freeze_process` would miss the day's stores, created empty."""

    __slots__ = ()


def freeze_process() -> None:
    """The simulator runs alone in this process: freeze what is alive now (see the module's text)."""
    _frozen["process"] = True
    gc.collect()
    gc.freeze()


def refreeze() -> None:
    """After a reset made new containers: freeze them too, if this process froze at start."""
    if _frozen["process"]:
        gc.freeze()


def wire(entity: dict) -> dict:
    """A copy of a stored entity as Tradovate sends it (the trade date as its object)."""
    out = dict(entity)
    date = out.get("tradeDate")
    if type(date) is tuple:
        out["tradeDate"] = date_object(date)
    return out


class OrderInfos(MutableMapping):
    """Order id -> the engine's ``OrderInfo``; a finished order's is kept as a tuple.

    ``retire(order_id)`` marks an order finished.  Marked orders are folded a batch at a time, one
    batch behind (an operation that finishes an order may still touch its object a moment later;
    a folded order is read back as a fresh object, and a change to that object is not kept --
    nothing changes a finished order, and a finished order stays finished)."""

    def __init__(self, info_type: Callable[..., Any]):
        self._type = info_type
        names = [f.name for f in fields(info_type)]
        self._row = attrgetter(*names)  # an info's fields as a tuple, in the constructor's order
        self._lists = [i for i, f in enumerate(fields(info_type)) if f.default_factory is list]
        self._live: Dict[int, Any] = Store()
        self._done: Dict[int, tuple] = Store()
        self._marked: List[int] = []
        self._next: List[int] = []

    def retire(self, order_id: int) -> None:
        self._marked.append(order_id)
        if len(self._marked) >= RETIRE_BATCH:
            self._fold(self._next)
            self._next, self._marked = self._marked, []

    def _fold(self, order_ids: List[int]) -> None:
        for oid in order_ids:
            info = self._live.pop(oid, None)
            if info is not None:
                row = list(self._row(info))
                for i in self._lists:
                    row[i] = tuple(row[i])
                self._done[oid] = tuple(row)

    def __getitem__(self, order_id: int) -> Any:
        info = self._live.get(order_id)
        if info is not None:
            return info
        row = list(self._done[order_id])
        for i in self._lists:
            row[i] = list(row[i])
        return self._type(*row)

    def __setitem__(self, order_id: int, info: Any) -> None:
        self._done.pop(order_id, None)
        self._live[order_id] = info

    def __delitem__(self, order_id: int) -> None:
        if self._live.pop(order_id, None) is None:
            del self._done[order_id]

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._live or order_id in self._done

    def __iter__(self) -> Iterator[int]:
        yield from list(self._live)
        yield from list(self._done)

    def __len__(self) -> int:
        return len(self._live) + len(self._done)
