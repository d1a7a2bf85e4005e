"""The broker's fills, kept in the journal (table ``broker_fills``): the trade history's source.

A login's socket reports each fill once (a ``fill`` event on :mod:`phantom_scraper.events`, emitted
by ``ops.fill_events``); the ledger queues it on the socket thread (an append, no I/O) and its
``fill-ledger`` thread writes the queue in one transaction per batch.  Until a fill is written its
order is *pending*: ``journaled(order_id)`` is False, so the broker state keeps that order (the
history would lose the fill otherwise).  A failed write keeps the batch queued and is tried again.

The history reads :meth:`between` (and the broker's own copy of today's fills, merged by fill id).
The retention job (``journal.retention``) deletes rows older than the retained window.
"""
from __future__ import annotations

import collections
import datetime as _dt
import logging
import threading
import time
from typing import Any, Deque, Dict, List, Optional

from phantom_scraper import events
from phantom_scraper.journal.tables import JournalTables

logger = logging.getLogger(__name__)

DDL = """
CREATE TABLE IF NOT EXISTS broker_fills (
    fill_id       INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL,
    account_name  TEXT,
    contract_id   INTEGER,
    order_id      INTEGER,
    action        TEXT,
    qty           INTEGER NOT NULL,
    price         REAL NOT NULL,
    at            REAL NOT NULL,      -- the fill's own time, epoch seconds
    trade_date    TEXT,
    recorded_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS broker_fills_at ON broker_fills (at);
"""
_COLUMNS = "fill_id, account_id, account_name, contract_id, order_id, action, qty, price, at, trade_date, recorded_at"


def _epoch(ts: Any) -> float:
    if isinstance(ts, (int, float)):
        return float(ts)
    try:
        return _dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def _trade_date(td: Any, epoch: float) -> str:
    if isinstance(td, dict) and td.get("year"):
        return f"{int(td['year']):04d}-{int(td['month']):02d}-{int(td['day']):02d}"
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%d")


class FillLedger:
    def __init__(self, journal, *, batch_interval_s: float = 0.2, retry_s: float = 2.0):
        self.tables = JournalTables(journal, DDL)
        self._batch_interval_s = batch_interval_s
        self._retry_s = retry_s
        self._queue: Deque[tuple] = collections.deque()  # append/popleft are atomic: no lock on the socket thread
        self._lock = threading.Lock()  # guards _pending
        self._pending: Dict[Any, int] = {}  # order id -> fills queued, not yet written
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._unsubscribe = None
        self.written = 0
        self.last_error: Optional[str] = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FillLedger":
        self.tables.ensure()
        self._unsubscribe = events.subscribe(self.on_event)
        self._thread = threading.Thread(target=self._run, name="fill-ledger", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.flush()  # what is still queued lands now (or stays pending on failure)

    # -- the socket thread ----------------------------------------------------------------------
    def on_event(self, event: events.Event) -> None:
        if event.kind == "fill_snapshot":  # a socket's snapshot: every fill it holds (kept once each)
            for f in event.fields.get("fills") or ():
                self._queue_fill(f, event.at)
            self._wake.set()
            return
        if event.kind != "fill":
            return
        self._queue_fill(event.fields, event.at)
        self._wake.set()

    def _queue_fill(self, f: dict, at: float) -> None:
        if f.get("fill_id") is None or f.get("account_id") is None:
            return
        order_id = f.get("order_id")
        with self._lock:
            self._pending[order_id] = self._pending.get(order_id, 0) + 1
        account = f.get("account")
        self._queue.append((int(f["fill_id"]), int(f["account_id"]), None if account is None else str(account),
                            f.get("contract"), order_id, f.get("side"), int(f.get("qty") or 0),
                            float(f.get("price") or 0.0), f.get("timestamp") or at, f.get("trade_date")))

    # -- readers --------------------------------------------------------------------------------
    def journaled(self, order_id: Any) -> bool:
        """Every fill of the order seen so far is in the journal."""
        with self._lock:
            return order_id not in self._pending

    def pending(self) -> int:
        with self._lock:
            return sum(self._pending.values())

    def between(self, start: Optional[float], end: Optional[float], limit: int = 50_000) -> List[dict]:
        """Fills whose time is in ``[start, end)`` (None: open), oldest first."""
        lo = -1e18 if start is None else float(start)
        hi = 1e18 if end is None else float(end)
        rows = self.tables.read(f"SELECT {_COLUMNS} FROM broker_fills WHERE at >= ? AND at < ? "
                                "ORDER BY at, fill_id LIMIT ?", (lo, hi, int(limit)))
        return [{k: r[k] for k in _COLUMNS.split(", ")} for r in rows]

    # -- writing --------------------------------------------------------------------------------
    def flush(self) -> int:
        """Write what is queued (one transaction); returns how many rows were written."""
        batch = []
        while True:
            try:
                batch.append(self._queue.popleft())
            except IndexError:
                break
        if not batch:
            return 0
        now = time.time()
        rows = []
        for row in batch:  # the broker's time and trading day, parsed here (not on the socket thread)
            at = _epoch(row[8])
            rows.append((*row[:8], at, _trade_date(row[9], at), now))

        def txn(conn: Any) -> None:
            for row in rows:
                conn.execute(f"INSERT OR IGNORE INTO broker_fills ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             row)
        try:
            self.tables.write(txn)
        except Exception as exc:  # noqa: BLE001 - kept queued (its orders stay in the broker state)
            self._queue.extendleft(reversed(batch))
            if self.last_error is None:
                logger.warning("fill ledger: fills not journaled yet (%s); retrying", exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return 0
        self.last_error = None
        with self._lock:
            for row in batch:
                left = self._pending.get(row[4], 0) - 1
                if left > 0:
                    self._pending[row[4]] = left
                else:
                    self._pending.pop(row[4], None)
        self.written += len(batch)
        return len(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(5.0)
            if self._stop.is_set():
                break
            self._wake.clear()
            self._stop.wait(self._batch_interval_s)  # a fan-out's fills land in one transaction
            if self.flush() == 0 and self._queue:
                self._stop.wait(self._retry_s)
                self._wake.set()
