"""The order strategies this server started, in the journal's database (either backend).

One row per strategy intent (``intent_id`` = the ``uuid`` sent with ``startorderstrategy``, the
same id as the journal's order intent): the broker's strategy id, the params, this server's own
management (breakeven) and the legs as last seen.  Its table is created if missing through the
journal's backend and every write is one committed transaction, so the breakeven state survives a
crash: ``armed`` (waiting for the trigger) -> ``moving`` (journaled before the stop is modified)
-> ``done`` (or a final state that alerted the trader: ``no_stop``, ``skipped``, ``refused``).  Portable SQL only.
"""
from __future__ import annotations

import itertools
import json
import logging
import time
from typing import Any, Dict, List, Optional

from phantom_scraper.journal.tables import JournalTables

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS order_strategies (
    intent_id    TEXT PRIMARY KEY,
    signal_id    TEXT,
    account_id   INTEGER NOT NULL,
    account_name TEXT,
    contract_id  INTEGER NOT NULL,
    symbol       TEXT,
    strategy_id  INTEGER,              -- the broker's orderStrategy id (NULL until acked)
    direction    INTEGER NOT NULL,     -- +1 long entry, -1 short
    params       TEXT NOT NULL,        -- the params string sent
    meta         TEXT NOT NULL,        -- JSON: brackets, tick, breakeven {trigger, offset} (points)
    status       TEXT NOT NULL,        -- open | closed | failed
    entry_price  REAL,
    be_state     TEXT,                 -- NULL | armed | moving | done | no_stop | skipped | refused
    be_stop      REAL,
    legs         TEXT,                 -- JSON [{orderId, label}]
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS order_strategies_open ON order_strategies (status, contract_id)
"""

_COLUMNS = ("intent_id", "signal_id", "account_id", "account_name", "contract_id", "symbol", "strategy_id",
            "direction", "params", "meta", "status", "entry_price", "be_state", "be_stop", "legs",
            "created_at", "updated_at")


def _row(row: Any) -> Dict[str, Any]:
    out = {name: row[name] for name in _COLUMNS}
    if out["strategy_id"] is None and "intent_order_id" in row.keys() and row["intent_order_id"] is not None:
        out["strategy_id"] = int(row["intent_order_id"])  # found later by the intent's settlement
    out["meta"] = json.loads(out["meta"] or "{}")
    out["legs"] = json.loads(out["legs"]) if out["legs"] else []
    return out


class StrategyStore:
    def __init__(self, journal):
        self.journal = journal
        self._tables = JournalTables(journal, _SCHEMA)
        # A new value after every write of a record (this process is the tables' one writer): a
        # reader that saw a version and still sees it knows no strategy was started or changed since.
        self._versions = itertools.count(1)
        self.version = 0

    def ensure_tables(self) -> None:
        self._tables.ensure()

    def _update(self, intent_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        for key in ("legs", "meta"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key], separators=(",", ":"))
        names = sorted(fields)
        sql = f"UPDATE order_strategies SET {', '.join(n + ' = ?' for n in names)} WHERE intent_id = ?"
        try:
            self._tables.write(lambda conn: conn.execute(sql, tuple(fields[n] for n in names) + (intent_id,)))
        finally:
            self.version = next(self._versions)  # (after the commit; next() is atomic)

    # -- writes ------------------------------------------------------------------------------------
    def record(self, intent_id: str, signal_id: Optional[str], account_id: int, account_name: Optional[str],
               contract_id: int, symbol: str, direction: int, params: str, meta: Dict[str, Any]) -> None:
        """The strategy as planned, before it is sent (status ``open``, no broker id yet)."""
        now = time.time()
        be_state = "armed" if meta.get("breakeven") else None
        values = (intent_id, signal_id, account_id, account_name, contract_id, symbol, None, direction, params,
                  json.dumps(meta, separators=(",", ":")), "open", None, be_state, None, None, now, now)
        sql = (f"INSERT INTO order_strategies ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
               "ON CONFLICT (intent_id) DO NOTHING")
        try:
            self._tables.write(lambda conn: conn.execute(sql, values))
        finally:
            self.version = next(self._versions)  # (after the commit; next() is atomic)

    def acked(self, intent_id: str, strategy_id: int) -> None:
        self._update(intent_id, strategy_id=int(strategy_id))

    def failed(self, intent_id: str) -> None:
        self._update(intent_id, status="failed")

    def closed(self, intent_id: str) -> None:
        self._update(intent_id, status="closed")

    def set_legs(self, intent_id: str, legs: List[Dict[str, Any]], entry_price: Optional[float] = None) -> None:
        fields: Dict[str, Any] = {"legs": legs}
        if entry_price is not None:
            fields["entry_price"] = float(entry_price)
        self._update(intent_id, **fields)

    def set_meta(self, intent_id: str, meta: Dict[str, Any]) -> None:
        """Replace the record's ``meta`` (the read-back keeps its state there)."""
        self._update(intent_id, meta=meta)

    def breakeven(self, intent_id: str, state: str, stop: Optional[float] = None) -> None:
        fields: Dict[str, Any] = {"be_state": state}
        if stop is not None:
            fields["be_stop"] = float(stop)
        self._update(intent_id, **fields)

    # -- reads -------------------------------------------------------------------------------------
    def get(self, intent_id: str) -> Optional[Dict[str, Any]]:
        rows = self._tables.read("SELECT * FROM order_strategies WHERE intent_id = ?", (intent_id,))
        return _row(rows[0]) if rows else None

    def open(self, account_id: Optional[int] = None, contract_id: Optional[int] = None) -> List[Dict[str, Any]]:
        """Open strategies, except those whose order intent the journal shows as rejected (the
        broker never started them; the intent's state is the authority)."""
        sql = ("SELECT s.*, i.broker_order_id AS intent_order_id FROM order_strategies s "
               "LEFT JOIN order_intents i ON i.cl_ord_id = s.intent_id "
               "WHERE s.status = ? AND (i.state IS NULL OR i.state <> ?)")
        params: List[Any] = ["open", "rejected"]
        if account_id is not None:
            sql, params = sql + " AND s.account_id = ?", params + [int(account_id)]
        if contract_id is not None:
            sql, params = sql + " AND s.contract_id = ?", params + [int(contract_id)]
        return [_row(r) for r in self._tables.read(sql + " ORDER BY s.created_at", params)]

    def learned_units(self, limit: int = 500) -> List[Dict[str, Any]]:
        """The most recent read-backs that learned a bracket unit (``meta.readback.unit``), newest
        first: ``[{"symbol", "unit"}]``.  Rows are filtered by text first (portable SQL), then parsed."""
        rows = self._tables.read("SELECT symbol, meta FROM order_strategies WHERE meta LIKE ? "
                                 "ORDER BY updated_at DESC LIMIT ?", ('%"unit":%', int(limit)))
        out = []
        for row in rows:
            unit = ((json.loads(row["meta"] or "{}").get("readback") or {}).get("unit"))
            if unit in ("points", "ticks") and row["symbol"]:
                out.append({"symbol": row["symbol"], "unit": unit})
        return out

    def has_open(self, account_id: int, contract_id: int) -> bool:
        return bool(self.open(account_id, contract_id))

    def breakeven_pending(self, contract_id: Optional[int] = None) -> List[Dict[str, Any]]:
        return [r for r in self.open(contract_id=contract_id)
                if r["be_state"] in ("armed", "moving") and r["strategy_id"] is not None]
