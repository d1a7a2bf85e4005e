"""What stays of the orders ``BrokerState`` dropped: final status and fills, about 30 bytes an order.

A busy login finishes tens of thousands of orders a day, and the state answers for each of them
after it leaves (``order_status``, ``order_settled``, ``filled_since``) and recognises them when a
``user/syncrequest`` snapshot brings them back.  A dict entry per order (its id, a tuple of its
fills) cost ~180 bytes; here new entries land in a small dict, and every ``fold_at`` (256) of them
are folded into one immutable segment of flat arrays, sorted by order id, which merges with the
segments before it up to ``merge_max`` (4,096) entries::

    ids    array('q')   order ids, ascending
    codes  bytes        the final status, as an index into the record's table of statuses
    at     array('L')   where each order's fills start in ``fills`` (one more at the end)
    fills  array('q')   fill id, signed quantity (Buy +, Sell -), fill id, ...

A lookup checks the new entries, then the segments newest first whose id range holds the id (the
broker numbers orders as they come, so that is one or two of about two dozen), by bisection.  The record is bounded:
over ``kept`` orders the oldest segments go whole, until at most nine tenths are left.  Not
thread-safe: the state's lock guards it; ``frozen()`` is a read-only view for use outside it.
"""
from __future__ import annotations

import bisect
import itertools
from array import array
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

_ABSENT = object()
MAX_STATUSES = 255


class _Segment:
    __slots__ = ("ids", "codes", "at", "fills", "low", "high")

    def __init__(self, entries: List[Tuple[int, int, tuple]]):
        """``entries``: ``(order id, status code, flat fills)`` sorted by id, ids unique."""
        self.ids = array("q", (e[0] for e in entries))
        self.codes = bytes(e[1] for e in entries)
        self.fills = array("q", itertools.chain.from_iterable(e[2] for e in entries))
        self.at = array("L", itertools.accumulate((len(e[2]) for e in entries), initial=0))
        self.low, self.high = self.ids[0], self.ids[-1]

    @classmethod
    def merged(cls, older: "_Segment", newer: "_Segment") -> "_Segment":
        """One segment of both (an id in both: the newer's entry), built from the arrays."""
        ids, codes = older.ids + newer.ids, older.codes + newer.codes
        shift = len(older.fills)
        at = older.at[:-1] + array("L", (a + shift for a in newer.at))
        fills = older.fills + newer.fills
        order = sorted(range(len(ids)), key=ids.__getitem__)  # (stable: the newer of equal ids last)
        keep = [i for i, j in zip(order, order[1:]) if ids[i] != ids[j]] + order[-1:]
        out = cls.__new__(cls)
        out.ids = array("q", [ids[i] for i in keep])
        out.codes = bytes([codes[i] for i in keep])
        out.fills = array("q", itertools.chain.from_iterable(fills[at[i]:at[i + 1]] for i in keep))
        out.at = array("L", itertools.accumulate((at[i + 1] - at[i] for i in keep), initial=0))
        out.low, out.high = out.ids[0], out.ids[-1]
        return out

    def find(self, oid: int) -> int:
        if oid < self.low or oid > self.high:
            return -1
        i = bisect.bisect_left(self.ids, oid)
        return i if i < len(self.ids) and self.ids[i] == oid else -1

    def __len__(self) -> int:
        return len(self.ids)


def _folds(oid: Any) -> bool:
    return type(oid) is int and -(1 << 63) <= oid < (1 << 63)


def _fills_fold(fills: tuple) -> bool:
    return all(_folds(v) for v in fills)


class FinishedRecord:
    def __init__(self, kept: int, fold_at: int = 256, merge_max: int = 4096):
        self.kept = kept
        self.fold_at = max(1, min(fold_at, kept // 10 or 1))
        self.merge_max = min(merge_max, kept // 6)
        self._recent: Dict[Any, Tuple[Any, tuple]] = {}  # order id -> (status, flat fills), oldest first
        self._odd: Dict[Any, Tuple[Any, tuple]] = {}  # what cannot fold (an id, status or fill value arrays refuse)
        self._segments: List[_Segment] = []  # oldest first
        self._statuses: List[Any] = []  # status code -> status
        self._codes: Dict[Any, int] = {}
        self._count = 0  # entries in the segments (an id put again after folding counts twice)

    # ------------------------------------------------------------------ writing
    def put(self, oid: Any, status: Any, fills: Optional[tuple] = None) -> List[Any]:
        """Record ``oid`` as dropped with ``status`` and its fills, flat (None: those it has).
        -> the ids forgotten to stay within ``kept`` (usually none)."""
        found = self._lookup(oid)
        fills = (found[1] if found is not None else ()) if fills is None else tuple(fills)
        if found == (status, fills):
            return []  # the same again (a snapshot brought back an order dropped before)
        self._recent.pop(oid, None)  # (re-inserted: it is the newest now)
        self._odd.pop(oid, None)
        self._recent[oid] = (status, fills)
        if len(self._recent) >= self.fold_at:
            self._fold()
        return self._trim() if len(self) > self.kept else []

    def _code(self, status: Any) -> Optional[int]:
        try:
            code = self._codes.get(status)
        except TypeError:  # (unhashable: never folded)
            return None
        if code is None and len(self._statuses) < MAX_STATUSES:
            code = self._codes[status] = len(self._statuses)
            self._statuses.append(status)
        return code

    def _fold(self) -> None:
        entries = []
        for oid, (status, fills) in self._recent.items():
            code = self._code(status) if _folds(oid) and _fills_fold(fills) else None
            if code is None:
                self._odd[oid] = (status, fills)  # (an id or fill past int64, an unhashable status: a dict entry)
            else:
                entries.append((oid, code, fills))
        self._recent = {}
        if entries:
            entries.sort(key=lambda e: e[0])
            self._segments.append(_Segment(entries))
            self._count += len(entries)
            self._merge_newest()

    def _merge_newest(self) -> None:
        """Few segments, so a lookup checks few: the newest two merge while the older is no larger
        than the newer and both fit in ``merge_max`` (a binary counter: an entry is merged about
        log2(merge_max / fold_at) times; 4,096 entries take ~6 ms under the state's lock)."""
        segs = self._segments
        while len(segs) >= 2 and len(segs[-2]) <= len(segs[-1]) and len(segs[-2]) + len(segs[-1]) <= self.merge_max:
            newer, older = segs.pop(), segs.pop()
            segs.append(_Segment.merged(older, newer))
            self._count -= len(older) + len(newer) - len(segs[-1])

    def _trim(self) -> List[Any]:
        """Over ``kept``: the oldest segments go whole, until at most nine tenths are left."""
        keep, gone = self.kept * 9 // 10, []
        while self._segments and len(self) > keep:
            seg = self._segments.pop(0)
            self._count -= len(seg)
            gone.append(seg)
        forgotten = []
        if gone:  # (an id put again since is still known: not forgotten)
            low, high = min(s.low for s in gone), max(s.high for s in gone)
            near = [s.ids for s in self._segments if s.high >= low and s.low <= high]
            known = set(self._recent).union(self._odd, *near)
            forgotten = [oid for oid in dict.fromkeys(itertools.chain.from_iterable(s.ids for s in gone))
                         if oid not in known]
        for entries in (self._odd, self._recent):
            while entries and len(self) > keep:
                oldest = next(iter(entries))
                del entries[oldest]
                forgotten.append(oldest)
        return forgotten

    # ------------------------------------------------------------------ reading
    def _lookup(self, oid: Any) -> Optional[Tuple[Any, tuple]]:
        try:
            found = self._recent.get(oid, _ABSENT)
        except TypeError:  # (unhashable)
            return None
        if found is _ABSENT:
            found = self._odd.get(oid, _ABSENT)
        if found is not _ABSENT:
            return found
        if not _folds(oid):
            return None
        for seg in reversed(self._segments):
            i = seg.find(oid)
            if i >= 0:
                return self._statuses[seg.codes[i]], tuple(seg.fills[seg.at[i]:seg.at[i + 1]])
        return None

    def __contains__(self, oid: Any) -> bool:
        return self._lookup(oid) is not None

    def status(self, oid: Any) -> Any:
        """The dropped order's final status; None when not recorded."""
        found = self._lookup(oid)
        return found[0] if found is not None else None

    def fills(self, oid: Any) -> tuple:
        """The dropped order's fills, flat: (fill id, signed quantity, ...)."""
        found = self._lookup(oid)
        return found[1] if found is not None else ()

    def __len__(self) -> int:
        return self._count + len(self._odd) + len(self._recent)

    def ids(self) -> Iterator[Any]:
        """Every recorded order id, oldest segment first (an id put again may come twice)."""
        for seg in self._segments:
            yield from seg.ids
        yield from self._odd
        yield from self._recent

    def frozen(self) -> "FrozenFinished":
        """A view of the ids recorded now, for membership tests outside the state's lock."""
        return FrozenFinished(list(self._segments), set(self._recent) | set(self._odd))


class FrozenFinished:
    __slots__ = ("_segments", "_recent")

    def __init__(self, segments: Iterable[_Segment], recent: set):
        self._segments, self._recent = list(segments), recent

    def __contains__(self, oid: Any) -> bool:
        try:
            if oid in self._recent:
                return True
        except TypeError:  # (unhashable)
            return False
        return _folds(oid) and any(seg.find(oid) >= 0 for seg in self._segments)
