"""Several processes, one PostgreSQL journal: who places orders, and how the others hand over.

Postgres is the coordinator; there is no protocol of our own:

* **Lease.**  Each Tradovate login is owned through a session-level advisory lock
  (``pg_try_advisory_lock``) held on one dedicated connection.  A process is the *owner* when it
  holds the locks of every configured login (all or none: a signal may fan out over several
  logins, so they are never split between processes); otherwise it is a *standby*.  Only the owner
  authenticates, keeps the sockets and places orders, so a login never holds more sockets than the
  design allows.  When the owner dies (crash, ``kill -9``, lost network), Postgres ends its session
  and releases the locks; a standby's next try (every ``lease_poll_interval_s``) takes them, starts
  up (reconciling open intents by ``clOrdId`` first) and becomes the owner.
* **Hand-off.**  A standby that receives a webhook journals the signal as usual (so dedupe is the
  same everywhere), marks it ``pending`` and ``NOTIFY``s the owner, in one transaction.  The owner
  ``LISTEN``s on the lease connection, claims pending signals with ``FOR UPDATE SKIP LOCKED``
  (status back to ``received``: it is now executing exactly like a signal received locally) and
  executes them.  The standby answers the webhook with the outcome once the journal shows it,
  within the webhook budget, else 202.
* A signal pending longer than ``pending_signal_max_age_s`` (no owner took it in time) is marked
  ``expired`` and never executed: a trade alert is not worth placing minutes late.

Threads: one ``coordinator`` thread per process, owning the lease connection (psycopg connections
are not shared between threads here).  The service's callbacks run on that thread.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Callable, List, Optional, Sequence

import psycopg

from phantom_scraper.journal.journal import Journal

log = logging.getLogger(__name__)

CHANNEL = "phantom_pending_signals"
PENDING = "pending"
EXPIRED = "expired"


def lease_key(login_key: str) -> int:
    """The advisory lock key of one login: a stable signed 64-bit number from its name."""
    digest = hashlib.sha256(("phantom-scraper-login:" + login_key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Coordinator:
    """Lease and hand-off for one process.  See the module docstring.

    ``on_acquired()`` is called (on the coordinator thread) when this process becomes the owner;
    it must start the logins and return True, or return False (the lease is released and tried
    again later).  ``on_pending(signal_id, recorder, payload)`` is called for each claimed signal.
    """

    def __init__(self, journal: Journal, login_keys: Sequence[str], *,
                 on_acquired: Callable[[], bool], on_lost: Callable[[], None],
                 on_pending: Callable[[str, str, dict], None],
                 lease_poll_interval_s: float = 1.0, pending_signal_max_age_s: float = 30.0):
        if journal.backend != "postgres":
            raise ValueError("the coordinator needs the PostgreSQL journal")
        self.journal = journal
        self.login_keys = tuple(sorted(set(login_keys)))
        self._keys = [lease_key(k) for k in self.login_keys]
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._on_pending = on_pending
        self.lease_poll_interval_s = float(lease_poll_interval_s)
        self.pending_signal_max_age_s = float(pending_signal_max_age_s)
        self._owner = threading.Event()
        self._first_try = threading.Event()  # set once the first lease attempt is over
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.owner_since: Optional[float] = None

    # -- state -------------------------------------------------------------------------------------

    @property
    def is_owner(self) -> bool:
        return self._owner.is_set()

    def wait_owner(self, timeout_s: float) -> bool:
        return self._owner.wait(timeout_s)

    def status(self) -> dict:
        return {"role": "owner" if self.is_owner else "standby", "logins": list(self.login_keys),
                "owner_since_utc": self.owner_since}

    def start(self, first_try_timeout_s: float = 0.0) -> "Coordinator":
        """Start the thread; wait (bounded) until its first lease attempt is over, so a lone
        instance is the owner when this returns."""
        self._thread = threading.Thread(target=self._run, name="coordinator", daemon=True)
        self._thread.start()
        if first_try_timeout_s > 0:
            self._first_try.wait(first_try_timeout_s)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread; its connection closes, which releases the lease."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    # -- hand-off (any process) --------------------------------------------------------------------

    def hand_off(self, signal_id: str) -> None:
        """Mark a journaled signal pending and wake the owner (one transaction)."""
        def txn(conn) -> None:
            conn.execute("UPDATE signals SET status = ? WHERE id = ? AND duplicate_of IS NULL",
                         (PENDING, signal_id))
            conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, signal_id))

        self.journal.write(txn)
        log.info("Signal %s handed to the login owner (this process is a standby)", signal_id)

    # -- the coordinator thread --------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.journal.dedicated_connection() as conn:
                    self._session(conn)
            except Exception as exc:  # connection lost or refused: the locks are gone with it
                log.error("Coordinator: database session failed: %s", exc)
            self._first_try.set()
            if self.is_owner:
                if self._stop.is_set():  # stopping: the service closes the logins itself
                    self._owner.clear()
                    break
                self._lose()
            self._stop.wait(self.lease_poll_interval_s)
        self._first_try.set()

    def _session(self, conn: psycopg.Connection) -> None:
        while not self._stop.is_set():
            if not self.is_owner:
                if not self._try_acquire(conn):
                    self._first_try.set()
                    self._stop.wait(self.lease_poll_interval_s)
                    conn.execute("SELECT 1")  # keep the session honest while waiting
                    continue
                conn.execute(f"LISTEN {CHANNEL}")
                try:
                    started = self._on_acquired()
                except Exception:
                    log.exception("Coordinator: start-up as owner failed")
                    started = False
                if not started:
                    conn.execute(f"UNLISTEN {CHANNEL}")
                    self._release(conn)
                    self._first_try.set()
                    self._stop.wait(self.lease_poll_interval_s)
                    continue
                self.owner_since = time.time()
                self._owner.set()
                self._first_try.set()
                log.warning("This process now owns login(s) %s", ", ".join(self.login_keys))
            self._claim_all()
            # Wake on a notification, or after the poll interval (a safety net for a lost NOTIFY
            # and the check that the session, and so the lease, is still alive).
            for _ in conn.notifies(timeout=self.lease_poll_interval_s, stop_after=1):
                pass
            conn.execute("SELECT 1")

    def _try_acquire(self, conn: psycopg.Connection) -> bool:
        got: List[int] = []
        for key in self._keys:
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                got.append(key)
            else:
                break
        if len(got) == len(self._keys):
            return True
        for key in got:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return False

    def _release(self, conn: psycopg.Connection) -> None:
        for key in self._keys:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _lose(self) -> None:
        self._owner.clear()
        self.owner_since = None
        log.critical("This process lost the lease of login(s) %s: it stops placing orders",
                     ", ".join(self.login_keys))
        try:
            self._on_lost()
        except Exception:
            log.exception("Coordinator: stopping the logins after losing the lease failed")

    def _claim_all(self) -> None:
        while not self._stop.is_set():
            claimed = self.claim(limit=16)
            if not claimed:
                return
            for signal_id, recorder, payload in claimed:
                try:
                    self._on_pending(signal_id, recorder, payload)
                except Exception:
                    log.exception("Coordinator: executing handed-off signal %s failed", signal_id)

    def claim(self, limit: int = 16) -> List[tuple]:
        """Pending signals for this owner, oldest first, now ``received`` (executing here); too old
        ones become ``expired`` instead."""
        cutoff = time.time() - self.pending_signal_max_age_s

        def txn(conn) -> List[tuple]:
            rows = conn.execute(
                "SELECT id, recorder, payload_json, received_at FROM signals WHERE status = ? "
                "ORDER BY received_at, rowid LIMIT ? FOR UPDATE SKIP LOCKED", (PENDING, int(limit))).fetchall()
            out = []
            for row in rows:
                if row["received_at"] < cutoff:
                    conn.execute("UPDATE signals SET status = ?, summary = ? WHERE id = ?",
                                 (EXPIRED, '{"message": "no login owner took it in time; nothing placed"}',
                                  row["id"]))
                    log.error("Signal %s expired while pending (no owner for %.0f s): nothing placed",
                              row["id"], self.pending_signal_max_age_s)
                    continue
                conn.execute("UPDATE signals SET status = 'received' WHERE id = ?", (row["id"],))
                out.append((row["id"], row["recorder"], json.loads(row["payload_json"])))
            return out

        return self.journal.write(txn)
