"""The journal's SQLite backend: one file, WAL, one connection shared by all threads.

What it owns: opening the file (pragmas, WAL), the versioned migrations (``PRAGMA user_version``,
applied in one ``BEGIN IMMEDIATE`` so two processes starting together cannot both migrate), the
transaction runners the :class:`~phantom_scraper.journal.journal.Journal` calls, the background WAL
checkpointer, and reopening after ``fork()``.  The SQL itself is the journal's (portable, ``?``
placeholders); this module runs it.

Every sqlite3 error is translated here to :class:`JournalUnavailableError` (nothing was recorded).
"""
from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from typing import Any, Callable, Dict, Optional, TypeVar

from phantom_scraper.journal.errors import JournalClosedError, JournalError, JournalGoneError, JournalUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

OPEN_RETRY_S = 30.0  # how long opening retries "database is locked" (processes starting at once)


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqliteBackend:
    """Runs the journal's transactions on one SQLite file.  See the module docstring."""

    name = "sqlite"
    IntegrityError = sqlite3.IntegrityError

    def __init__(self, path: str, migrations: Dict[int, str], schema_version: int, *,
                 synchronous: str = "NORMAL", busy_timeout_ms: int = 5000,
                 checkpoint_interval_s: float = 1.0):
        sync = str(synchronous).upper()
        if sync not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        self.path = os.path.abspath(os.fspath(path))
        self._migrations = dict(migrations)
        self._schema_version = int(schema_version)
        self._synchronous = sync
        self._busy_timeout_ms = int(busy_timeout_ms)
        # Serialises every use of self._conn (and its replacement after a fork): a sqlite3
        # connection must not run statements from two threads at once, and one thread's
        # transaction must not interleave with another's.  Held for one short transaction only.
        self._lock = threading.Lock()
        self._closed = False
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._pid = os.getpid()
        self._conn: Optional[sqlite3.Connection] = self._open()
        self._identity = self._file_identity()  # the file opened: checked before every transaction
        # SQLite's automatic WAL checkpoint runs inside whichever commit crosses the threshold,
        # fsyncing the database while that commit (and so an order) waits ~20 ms.  It is turned
        # off on the writer; a background thread checkpoints on its own connection instead.
        self._checkpoint_interval_s = float(checkpoint_interval_s)
        self._stop_checkpoints = threading.Event()
        self._checkpointer: Optional[threading.Thread] = None
        if self._checkpoint_interval_s > 0:
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                                  name="journal-checkpoint")
            self._checkpointer.start()
        log.info("Journal opened at %s (WAL, synchronous=%s, schema v%d)",
                 self.path, self._synchronous, self._schema_version)

    def describe(self) -> str:
        return self.path

    # -- lifecycle -------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """Connect, switch to WAL, migrate.  Processes starting at once on a new file can see
        ``database is locked`` where SQLite does not wait for its busy timeout (the switch to WAL,
        a WAL being recovered): that is retried, with back-off, for up to ``OPEN_RETRY_S``."""
        deadline = time.monotonic() + max(OPEN_RETRY_S, self._busy_timeout_ms / 1000.0)
        delay = 0.02
        while True:
            try:
                return self._open_once()
            except JournalUnavailableError as exc:
                locked = isinstance(exc.__cause__, sqlite3.OperationalError) and _is_busy(exc.__cause__)
                if not locked or time.monotonic() + delay > deadline:
                    raise
                log.debug("Journal %s busy while opening (%s); trying again", self.path, exc.__cause__)
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(0.5, delay * 2)

    def _open_once(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: no implicit transactions; every write opens its own
            # BEGIN IMMEDIATE and commits it before returning.
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000.0,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalUnavailableError(f"cannot open journal {self.path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalUnavailableError(f"journal {self.path} cannot use WAL (got {mode})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise JournalUnavailableError(f"cannot open journal {self.path}: {exc}") from exc
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply every migration above the file's ``user_version``, in order, in one transaction."""
        conn.execute("BEGIN IMMEDIATE")  # two processes starting together: one migrates
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > self._schema_version:
                raise JournalError(f"journal schema v{version} is newer than this code "
                                   f"(v{self._schema_version})")
            for target in range(version + 1, self._schema_version + 1):
                for statement in self._migrations[target].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                log.info("Journal %s migrated to schema v%d", self.path, target)
            if version < self._schema_version:
                conn.execute(f"PRAGMA user_version = {self._schema_version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _file_identity(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _check_file(self) -> None:
        """The file at our path is still the one our connection has open (one ``stat``): a
        journal deleted or replaced under the process would take every later commit into a
        ghost, and after a restart every signal id would execute again."""
        if self._identity is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise JournalGoneError(f"journal file {self.path} was deleted while this process had it open") from None
        except OSError as exc:
            raise JournalUnavailableError(f"journal file {self.path} cannot be checked: {exc}") from exc
        if (st.st_dev, st.st_ino) != self._identity:
            raise JournalGoneError(f"journal file {self.path} was replaced by another file while this process "
                                   "had it open")

    def _connection(self) -> sqlite3.Connection:
        # Caller holds self._lock.
        if self._closed or self._conn is None:
            raise JournalClosedError("journal is closed")
        if os.getpid() != self._pid:
            # Forked (e.g. gunicorn --preload): never use the parent's handle; abandon it.
            self._pid = os.getpid()
            self._conn = self._open()
            self._identity = self._file_identity()
        self._check_file()
        return self._conn

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database every ``checkpoint_interval_s`` (PASSIVE: never blocks
        a writer), on a connection of its own so the journal lock is never held for it."""
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000.0,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.error("Journal checkpointer cannot open %s: %s", self.path, exc)
            return
        try:
            while not self._stop_checkpoints.wait(self._checkpoint_interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # busy or transient: the next round tries again
                    log.debug("Journal checkpoint skipped: %s", exc)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:
                pass
        finally:
            conn.close()

    def close(self) -> None:
        """Close the connection; idempotent.  Later calls raise :class:`JournalClosedError`."""
        self._stop_checkpoints.set()
        checkpointer = self._checkpointer
        if checkpointer is not None and checkpointer is not threading.current_thread():
            checkpointer.join(5.0)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None and os.getpid() == self._pid:
            conn.close()
            log.info("Journal closed (%s)", self.path)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- transaction runners ---------------------------------------------------------------------
    # ``durable`` is Postgres's (synchronous commit or not); SQLite's durability is the file's
    # ``synchronous`` setting for every commit.

    def write(self, fn: Callable[[Any], T], durable: bool = True) -> T:
        """Run ``fn(conn)`` in one BEGIN IMMEDIATE transaction (writers serialised across threads
        and processes), committed before returning."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise JournalUnavailableError(f"journal write failed: {exc}") from exc
            return result

    def read(self, fn: Callable[[Any], T], durable: bool = True) -> T:
        """Run ``fn(conn)`` in one read transaction: every SELECT sees the same snapshot."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise JournalUnavailableError(f"journal read failed: {exc}") from exc

    def run(self, fn: Callable[[Any], T], durable: bool = True) -> T:
        """Run ``fn(conn)`` with no surrounding transaction: each statement is its own atomic
        transaction (a single guarded UPDATE, a single SELECT)."""
        with self._lock:
            conn = self._connection()
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                raise JournalUnavailableError(f"journal statement failed: {exc}") from exc
