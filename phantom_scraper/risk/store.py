"""Durable risk state in the journal's database: locks, the day's peak P&L, marks, events.

Its own tables (``risk_*``), created if missing through the journal's backend, so they live where
the journal lives (the SQLite file or the PostgreSQL database) and use its transactions: every write
is one transaction committed before the method returns, so a lock taken before a flatten survives a
crash during the flatten.  Portable SQL only (``?`` placeholders, ``RETURNING``, ``ON CONFLICT``).
"""
from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional

from phantom_scraper.journal.tables import JournalTables

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS risk_locks (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL,
    account_name TEXT,
    reason       TEXT NOT NULL,     -- daily_loss_limit | daily_profit_target | trailing_drawdown | kill_switch
    message      TEXT,
    locked_at    REAL NOT NULL,     -- epoch seconds
    until        REAL,              -- epoch seconds of the next session start, NULL: until unlocked
    flatten      INTEGER NOT NULL DEFAULT 1,  -- keep the account flat while locked
    unlocked_at  REAL,
    unlocked_by  TEXT
);
CREATE INDEX IF NOT EXISTS risk_locks_account ON risk_locks (account_id, unlocked_at);
CREATE TABLE IF NOT EXISTS risk_daily (
    account_id   INTEGER NOT NULL,
    trading_day  TEXT NOT NULL,     -- CME trade date, YYYY-MM-DD
    peak         REAL NOT NULL,     -- highest realized + open P&L seen that day (USD)
    last_total   REAL,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (account_id, trading_day)
);
CREATE TABLE IF NOT EXISTS risk_marks (
    account_id   INTEGER NOT NULL,
    name         TEXT NOT NULL,     -- e.g. flattened_close: the window end already flattened
    value        REAL NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE TABLE IF NOT EXISTS risk_events (
    id           INTEGER PRIMARY KEY,
    at           REAL NOT NULL,
    account_id   INTEGER,
    account_name TEXT,
    kind         TEXT NOT NULL,     -- refused | clipped | lock | unlock | flatten | cancel | error
    code         TEXT,
    message      TEXT,
    signal_id    TEXT
);
CREATE INDEX IF NOT EXISTS risk_events_at ON risk_events (at);
"""


class RiskStore:
    def __init__(self, journal):
        self.journal = journal
        self._tables = JournalTables(journal, _SCHEMA)

    def _write(self, fn):
        return self._tables.write(fn)

    def _read(self, sql: str, args: tuple = ()) -> List[dict]:
        return [dict(r) for r in self._tables.read(sql, args)]

    # -- locks -------------------------------------------------------------------------------
    def add_lock(self, account_id: int, account_name: str, reason: str, message: str,
                 locked_at: float, until: Optional[float], flatten: bool = True) -> int:
        return self._write(lambda conn: conn.execute(
            "INSERT INTO risk_locks (account_id, account_name, reason, message, locked_at, until, flatten) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (account_id, account_name, reason, message, locked_at, until, int(bool(flatten)))).fetchone()[0])

    def active_locks(self, now: float) -> Dict[int, dict]:
        """The newest lock of every account still locked at ``now``."""
        rows = self._read("SELECT * FROM risk_locks WHERE unlocked_at IS NULL AND (until IS NULL OR until > ?) "
                          "ORDER BY id", (now,))
        return {r["account_id"]: r for r in rows}

    def unlock(self, account_id: int, by: str, now: float) -> int:
        return self._write(lambda conn: conn.execute(
            "UPDATE risk_locks SET unlocked_at = ?, unlocked_by = ? WHERE account_id = ? AND unlocked_at IS NULL",
            (now, by, account_id)).rowcount)

    # -- the day's peak ------------------------------------------------------------------------
    def peak(self, account_id: int, trading_day: str) -> Optional[float]:
        rows = self._read("SELECT peak FROM risk_daily WHERE account_id = ? AND trading_day = ?",
                          (account_id, trading_day))
        return rows[0]["peak"] if rows else None

    def save_day(self, account_id: int, trading_day: str, peak: float, total: float) -> None:
        def save(conn):
            row = conn.execute("SELECT peak FROM risk_daily WHERE account_id = ? AND trading_day = ?",
                               (account_id, trading_day)).fetchone()
            best = max(peak, row[0]) if row is not None else peak
            conn.execute("INSERT INTO risk_daily (account_id, trading_day, peak, last_total, updated_at) "
                         "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, trading_day) DO UPDATE SET "
                         "peak = excluded.peak, last_total = excluded.last_total, updated_at = excluded.updated_at",
                         (account_id, trading_day, best, total, time.time()))
        self._write(save)

    # -- marks -----------------------------------------------------------------------------------
    def mark(self, account_id: int, name: str) -> Optional[float]:
        rows = self._read("SELECT value FROM risk_marks WHERE account_id = ? AND name = ?", (account_id, name))
        return rows[0]["value"] if rows else None

    def set_mark(self, account_id: int, name: str, value: float) -> None:
        self._write(lambda conn: conn.execute(
            "INSERT INTO risk_marks (account_id, name, value) VALUES (?, ?, ?) "
            "ON CONFLICT (account_id, name) DO UPDATE SET value = excluded.value", (account_id, name, value)))

    # -- events ------------------------------------------------------------------------------------
    def record_event(self, kind: str, *, account_id: Optional[int] = None, account_name: Optional[str] = None,
                     code: Optional[str] = None, message: str = "", signal_id: Optional[str] = None,
                     at: Optional[float] = None) -> None:
        self._write(lambda conn: conn.execute(
            "INSERT INTO risk_events (at, account_id, account_name, kind, code, message, signal_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time() if at is None else at, account_id, account_name, kind, code, message, signal_id)))

    def recent_events(self, limit: int = 50) -> List[dict]:
        return self._read("SELECT * FROM risk_events ORDER BY id DESC LIMIT ?", (int(limit),))

    def close(self) -> None:
        """The journal's owner closes it."""
