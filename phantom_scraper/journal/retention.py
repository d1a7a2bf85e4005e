"""Journal retention: what is older than ``JOURNAL_RETENTION_DAYS`` (default 90) leaves the journal,
in small batches, off the hot path (the server's housekeeping thread calls :func:`prune`).

* Signals received before the cutoff, with their order intents, one transaction per batch of
  ``batch`` signals, a pause between batches (a webhook's commit never waits behind a long
  delete).  A signal with an intent still ``sending`` or ``unknown`` is kept whatever its age: it
  needs attention, and start-up reconciliation reads it.
* Dedupe survives: the explicit id of a deleted signal stays in ``signal_keys`` (recorder, id,
  signal id: a few dozen bytes), and ``Journal.record_signal`` consults it, so an explicit id is
  still executed once per recorder, ever.  (The window dedupe of id-less signals is seconds long.)
* The fill ledger (``broker_fills``) and the risk events (``risk_events``) by their own time.
* The history of the retained window is unchanged: a signal is deleted with its intents, never a
  part of it, and the fills by the same cutoff.

SQLite space: deleted rows' pages go to the file's free list and are reused by new rows, so the
file stops growing once retention runs (it does not shrink).  ``VACUUM`` rewrites the whole file
under an exclusive lock (every webhook would wait), so it never runs on its own: run it offline if
the file must shrink.  The WAL is copied into the file by the journal's checkpointer every second
(PASSIVE, journal/sqlite.py); small delete transactions keep it small.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Optional

from phantom_scraper.journal.intents import PENDING_STATES

logger = logging.getLogger(__name__)

DAY_S = 86400.0


def prune(journal: Any, retention_days: float, *, now: Optional[float] = None, batch: int = 500,
          max_batches: int = 20, pause_s: float = 0.05, stop: Optional[Callable[[], bool]] = None) -> Dict[str, int]:
    """Delete what is older than ``retention_days``; at most ``max_batches`` batches per table per
    call (a backlog is spread over several calls).  Returns the rows deleted per table."""
    now = time.time() if now is None else float(now)
    cutoff = now - float(retention_days) * DAY_S
    done = {"signals": 0, "intents": 0, "keys_kept": 0, "fills": 0, "risk_events": 0}
    for _ in range(max_batches):
        if stop is not None and stop():
            break
        n_signals, n_intents, n_keys = _signals_batch(journal, cutoff, batch)
        done["signals"] += n_signals
        done["intents"] += n_intents
        done["keys_kept"] += n_keys
        if n_signals < batch:
            break
        time.sleep(pause_s)
    for table, pk, key in (("broker_fills", "fill_id", "fills"), ("risk_events", "id", "risk_events")):
        for _ in range(max_batches):
            if stop is not None and stop():
                break
            n = _by_time_batch(journal, table, pk, cutoff, batch)
            done[key] += n
            if n < batch:
                break
            time.sleep(pause_s)
    if any(done.values()):
        logger.info("Journal retention (%g days): deleted %s", retention_days, done)
    return done


def _signals_batch(journal: Any, cutoff: float, batch: int):
    def txn(conn: Any):
        rows = conn.execute(
            "SELECT id, recorder, dedupe_key, duplicate_of FROM signals s WHERE received_at < ? AND NOT EXISTS "
            "(SELECT 1 FROM order_intents i WHERE i.signal_id = s.id AND i.state IN (?, ?)) "
            "ORDER BY received_at LIMIT ?", (cutoff, *PENDING_STATES, int(batch))).fetchall()
        if not rows:
            return 0, 0, 0
        ids = [r[0] for r in rows]
        keys = [(r[1], r[2], r[0]) for r in rows if r[2] is not None and r[3] is None]
        for recorder, key, signal_id in keys:
            conn.execute("INSERT OR IGNORE INTO signal_keys (recorder, dedupe_key, signal_id) VALUES (?, ?, ?)",
                         (recorder, key, signal_id))
        marks = ",".join("?" * len(ids))
        intents = conn.execute(f"DELETE FROM order_intents WHERE signal_id IN ({marks})", ids).rowcount
        conn.execute(f"DELETE FROM signals WHERE id IN ({marks})", ids)
        return len(ids), intents, len(keys)
    return journal.write(txn)


def _by_time_batch(journal: Any, table: str, pk: str, cutoff: float, batch: int) -> int:
    """Rows of ``table`` whose ``at`` is before the cutoff, oldest first (by its key ``pk``)."""
    if not _table_exists(journal, table):
        return 0

    def txn(conn: Any) -> int:
        # (a key-set delete: both databases, no DELETE ... LIMIT)
        ids: List[Any] = [r[0] for r in conn.execute(
            f"SELECT {pk} FROM {table} WHERE at < ? ORDER BY at LIMIT ?", (cutoff, int(batch))).fetchall()]
        if not ids:
            return 0
        conn.execute(f"DELETE FROM {table} WHERE {pk} IN ({','.join('?' * len(ids))})", ids)
        return len(ids)
    return journal.write(txn)


def _table_exists(journal: Any, table: str) -> bool:
    if getattr(journal, "backend", "sqlite") == "postgres":
        rows = journal.query("SELECT to_regclass(CAST(? AS TEXT)) IS NOT NULL", (table,))
    else:
        rows = journal.query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return bool(rows and rows[0][0])


def sqlite_space(journal: Any) -> Optional[Dict[str, int]]:
    """SQLite only: the file's pages and free pages (what ``VACUUM`` would give back), else None."""
    if getattr(journal, "backend", "sqlite") != "sqlite":
        return None
    page_size = journal.query("PRAGMA page_size")[0][0]
    pages = journal.query("PRAGMA page_count")[0][0]
    free = journal.query("PRAGMA freelist_count")[0][0]
    return {"bytes": int(page_size) * int(pages), "free_bytes": int(page_size) * int(free)}
