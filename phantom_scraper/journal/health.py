"""Whether the journal can be written, known without touching the database.

Every transaction the :class:`~phantom_scraper.journal.journal.Journal` runs goes through
:class:`WatchedBackend`, which records the outcome in a :class:`JournalHealth`:

* a failure (:class:`JournalUnavailableError`: disk full, read-only file system, database down,
  the journal file deleted or replaced) starts an *episode*: one ERROR line, ``available`` false,
  the ``journal_down`` event; later failures in the same episode log nothing (no traceback per
  request);
* the first success after that ends it: one WARNING line, ``available`` true, ``journal_up``.  An
  episode a failed *write* started (a full disk still reads) ends only with a write that works;
* while an episode of *slow* failures lasts (a database that does not answer: a pool or connect
  timeout), calls fail fast (no database round trip, no pool wait) except one probe every
  ``probe_interval_s``: a webhook gets its ``503 journal_unavailable`` at once, and the database
  is still tried often enough to notice it is back.  Failures that come at once (a full disk, a
  read-only file) are simply tried again by the next call: one glitch never refuses the calls after
  it.  Reads still go through while only writes fail;
* SQLite's busy timeout (another writer held the lock) is contention, not an outage: no episode;
* a journal file replaced or deleted under the process (:class:`JournalGoneError`) never ends:
  new signals are refused until a restart opens the file that is really there.

``/health`` reads :attr:`JournalHealth.available` (a field: no query, no journal lock); the
cached counts for status pages are :attr:`JournalHealth.counts`, refreshed by the writer.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Optional, TypeVar

from phantom_scraper import events
from phantom_scraper.journal.errors import JournalGoneError, JournalUnavailableError
from phantom_scraper.journal.intents import PENDING_STATES

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_AFTER_S = 5  # what a refused sender is told (Retry-After)
SLOW_FAILURE_S = 0.5  # a failure that took this long (a timeout) makes the next calls fail fast


class JournalHealth:
    def __init__(self, describe: str, *, probe_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.describe = describe
        self.probe_interval_s = float(probe_interval_s)
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below (bookkeeping only)
        self.available = True
        self.gone: Optional[str] = None  # why the file is not the one opened (never clears)
        self.error: Optional[str] = None  # the episode's first error
        self.since: Optional[float] = None  # wall-clock start of the episode
        self.episodes = 0
        self._writes_only = False  # the episode was started by a write (reads still work)
        self._slow = False  # the last failure took long (a timeout): fail fast between probes
        self._next_probe = 0.0
        self.counts: Optional[Dict[str, Any]] = None  # the last figure the writer computed
        self.counts_at: Optional[float] = None

    # -- outcomes ----------------------------------------------------------------------------------
    def failed(self, exc: BaseException, writing: bool = True, slow: bool = False) -> None:
        with self._lock:
            self._next_probe = self._clock() + self.probe_interval_s
            self._slow = slow
            if isinstance(exc, JournalGoneError) and self.gone is None:
                self.gone = str(exc)
                first_gone = True
            else:
                first_gone = False
            if not self.available and not first_gone:
                return
            starting = self.available
            self.available = False
            if starting:
                self.error, self.since = str(exc), time.time()
                self.episodes += 1
                self._writes_only = writing
            elif not writing:
                self._writes_only = False
        if first_gone:
            log.critical("JOURNAL GONE: %s. New signals are refused (503 journal_unavailable) until the "
                         "process is restarted on the journal that is really there; orders already placed are "
                         "at the broker, reconciled by clOrdId at the next start.", exc)
        else:
            log.error("Journal unavailable (%s): %s. Signals are refused with 503 journal_unavailable until "
                      "it is back; one line per episode.", self.describe, exc)
        events.emit("journal_down", error=str(exc))

    def succeeded(self, writing: bool = True) -> None:
        if self.available:  # the hot path: one attribute read, no lock
            return
        with self._lock:
            if self.available or self.gone is not None or (self._writes_only and not writing):
                return
            self.available = True
            since, error = self.since, self.error
            self.error = self.since = None
        log.warning("Journal available again (%s) after %.1f s (%s)", self.describe,
                    time.time() - (since or time.time()), error)
        events.emit("journal_up")

    def fail_fast(self, writing: bool = True) -> Optional[JournalUnavailableError]:
        """While an episode lasts: the error to raise now without trying (None: try the database)."""
        if self.available:
            return None
        with self._lock:
            if self.available:
                return None
            if self.gone is not None:
                return JournalGoneError(self.gone)
            if (self._writes_only and not writing) or not self._slow:
                return None
            now = self._clock()
            if now >= self._next_probe:
                self._next_probe = now + self.probe_interval_s  # this caller probes; others wait for it
                return None
            return JournalUnavailableError(f"journal unavailable: {self.error}")

    def set_counts(self, counts: Dict[str, Any]) -> None:
        self.counts, self.counts_at = counts, time.time()

    def snapshot(self) -> Dict[str, Any]:
        return {"available": self.available, "error": self.gone or self.error, "since": self.since,
                "gone": self.gone is not None, "episodes": self.episodes}


def _contention(exc: BaseException) -> bool:
    """SQLite's busy timeout ran out (another writer held the lock): not an outage."""
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text or "database is busy" in text


class WatchedBackend:
    """A journal backend whose transaction runners report to a :class:`JournalHealth`."""

    def __init__(self, backend, health: JournalHealth):
        self._backend = backend
        self.health = health

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def _call(self, runner: Callable[..., T], fn, durable: bool, writing: bool = True) -> T:
        early = self.health.fail_fast(writing)
        if early is not None:
            raise early
        started = time.monotonic()
        try:
            result = runner(fn, durable=durable)
        except JournalUnavailableError as exc:
            if not _contention(exc):  # a busy database is not an outage: the next call waits again
                self.health.failed(exc, writing, slow=time.monotonic() - started >= SLOW_FAILURE_S)
            raise
        self.health.succeeded(writing)
        return result

    def write(self, fn, durable: bool = True):
        return self._call(self._backend.write, fn, durable)

    def read(self, fn, durable: bool = True):
        return self._call(self._backend.read, fn, durable, writing=False)

    def run(self, fn, durable: bool = True):
        """One statement; counted as a write (an UPDATE, a heartbeat) -- see :meth:`run_read`."""
        return self._call(self._backend.run, fn, durable)

    def run_read(self, fn, durable: bool = True):
        """One SELECT with no surrounding transaction."""
        return self._call(self._backend.run, fn, durable, writing=False)


def count_rows(db) -> Dict[str, Any]:
    """Signals by status and intents by state (a scan of both tables: never on /health)."""
    def txn(conn: Any):
        return (conn.execute("SELECT status, COUNT(*) FROM signals GROUP BY status").fetchall(),
                conn.execute("SELECT state, COUNT(*) FROM order_intents GROUP BY state").fetchall())

    sig, ints = db.read(txn)
    by_status = {r[0]: r[1] for r in sig}
    by_state = {r[0]: r[1] for r in ints}
    return {
        "signals": sum(by_status.values()),
        "signals_by_status": by_status,
        "intents_by_state": by_state,
        "pending_intents": sum(by_state.get(s, 0) for s in PENDING_STATES),
    }


__all__ = ("JournalHealth", "RETRY_AFTER_S", "WatchedBackend", "count_rows")
