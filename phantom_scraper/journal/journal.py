"""The durable journal: every signal and every order intent, in SQLite (stdlib ``sqlite3``, WAL)
or, when given a ``postgresql://`` URL, in PostgreSQL (psycopg 3).

Why it exists: orders must never be duplicated or lost.  A signal is recorded (and deduplicated)
before anything is executed; an order intent with its ``clOrdId`` is recorded before its frame is
written; each state change is committed before the caller's next external action.  After a crash,
:meth:`Journal.pending_intents` lists what was in flight so it can be reconciled by ``clOrdId``.

Durability: WAL with ``synchronous=NORMAL`` (the default here).  A committed transaction survives a
crash of the process (exception, ``SIGKILL``, OOM kill): it is in the WAL file the moment
``COMMIT`` returns.  A power loss or OS crash may lose the last few commits (the WAL is fsynced
at checkpoints, not at every commit).  Pass ``synchronous="FULL"`` to fsync on every commit
(slower: one fsync per state change).

Order intent states and their transitions: :mod:`phantom_scraper.journal.intents`.

Owners (overlapping processes): each ``Journal`` holds a process lease (a row in ``owners``, taken
on first use, with a heartbeat every ``lease_ttl_s / 3`` on a ``journal-lease`` thread, released by
``close()``) and stamps it on the intents it creates.  Start-up reconciliation and background
settlement touch only intents whose owner is this process or gone (released, no heartbeat for
``lease_ttl_s``, or no such process on this host), so a new worker never settles an old worker's
live intent.  On Postgres an owner also holds a session advisory lock, and is gone exactly when
Postgres has released it (its process died, on any host): no heartbeat age is needed there.
Exceptions: :mod:`phantom_scraper.journal.errors`.

Backends: this module holds the journal's logic and its SQL, written once for both databases
(``?`` placeholders, no dialect-specific syntax); a backend runs it.  ``journal_sqlite`` (the
default) and ``journal_postgres`` each own connecting, their schema migrations and the three
transaction runners the journal uses: ``write`` (one transaction, writers serialised like SQLite's
``BEGIN IMMEDIATE``), ``read`` (one snapshot) and ``run`` (each statement its own transaction).

Threads (SQLite): one connection shared by all threads, serialised by a lock; every write is one
short ``BEGIN IMMEDIATE`` transaction, which also makes the duplicate check atomic across
processes.  After ``fork()`` the child opens its own connection on first use.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

from phantom_scraper import events
from phantom_scraper.journal.errors import (DuplicateIntentError, InvalidTransitionError, JournalClosedError,  # noqa: F401
                                          JournalError, JournalGoneError, JournalUnavailableError, UnknownRecordError)
from phantom_scraper.journal.health import JournalHealth, WatchedBackend, count_rows
from phantom_scraper.journal.intents import (  # noqa: F401  (re-exported: the journal's vocabulary)
    ACKED, FINAL_STATES, INTENT_STATES, NOT_PLACED, PENDING_STATES, RECEIVED, RECONCILED, RECOVERABLE_STATES,
    REJECTED, RETIRED_KEY_PREFIX, SENDING, SIGNAL_DUPLICATE, SIGNAL_RECEIVED, SKIPPED, UNKNOWN, _CL_ORD_ID_RE,
    INSERT_INTENT, _state_update, insert_one, make_cl_ord_id, provably_not_sent)
from phantom_scraper.journal.records import (MAX_NESTING, NestingTooDeep, _dumps, _intent_dict,  # noqa: F401
                                           _signal_dict, strip_secrets)
from phantom_scraper.journal.schema import SCHEMA_VERSION, SQLITE_MIGRATIONS  # noqa: F401

log = logging.getLogger(__name__)


def is_database_url(target: Any) -> bool:
    """True when ``target`` names a PostgreSQL database (``postgres://`` or ``postgresql://``)."""
    return str(target).startswith(("postgres://", "postgresql://"))


def _owner_lock_key(owner: str) -> int:
    """The Postgres session advisory lock key of an owner id (signed 64-bit)."""
    return int.from_bytes(hashlib.sha256(("phantom-scraper-owner:" + owner).encode("utf-8")).digest()[:8],
                          "big", signed=True)


def _pid_running(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours to signal
    return True


T = TypeVar("T")


class Journal:
    """Signals and order intents in one SQLite file or one PostgreSQL database.  See the module
    docstring.

    ``Journal(path)`` opens (and creates) an SQLite file; ``Journal("postgresql://...")`` a
    PostgreSQL database.  ``synchronous``, ``busy_timeout_ms`` and ``checkpoint_interval_s`` are
    SQLite's; ``pool_max_size`` is Postgres's.
    """

    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000,
                 checkpoint_interval_s: float = 1.0, pool_max_size: int = 8, lease_ttl_s: float = 30.0):
        target = os.fspath(path)
        if is_database_url(target):
            from phantom_scraper.journal.postgres import PostgresBackend
            self._db = PostgresBackend(target, SQLITE_MIGRATIONS, SCHEMA_VERSION, pool_max_size=pool_max_size)
        else:
            from phantom_scraper.journal.sqlite import SqliteBackend
            self._db = SqliteBackend(target, SQLITE_MIGRATIONS, SCHEMA_VERSION, synchronous=synchronous,
                                     busy_timeout_ms=busy_timeout_ms,
                                     checkpoint_interval_s=checkpoint_interval_s)
        # Every transaction reports to self.health (journal/health.py): /health reads it, no query.
        self.health = JournalHealth(self._db.describe())
        self._db = WatchedBackend(self._db, self.health)
        # The file's path (SQLite) or the URL without its password (Postgres), for log lines.
        self.path = self._db.describe()
        self.backend = self._db.name
        self.lease_ttl_s = float(lease_ttl_s)
        # The process lease, taken on first use (and again after fork(): another process).
        # _lease_lock guards the fields below (bookkeeping only: the lease's writes run outside it);
        # _lease_flight is (pid, Event) while one thread of that process takes the lease.
        self._lease_lock = threading.Lock()
        self._lease_flight: Optional[tuple] = None
        self._owner_id: Optional[str] = None
        self._owner_pid: Optional[int] = None
        self._stop_lease = threading.Event()
        self._lease_thread: Optional[threading.Thread] = None

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the lease, close the connection(s); idempotent.  Later calls raise
        :class:`JournalClosedError`."""
        self._stop_lease.set()
        thread = self._lease_thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(5.0)  # (a thread published but not yet started sees the stop at once)
        owner = self._owner_id
        if owner is not None and self._owner_pid == os.getpid() and not self._db.closed:
            try:  # the next start may settle what this process leaves behind
                self._db.run(lambda conn: conn.execute("UPDATE owners SET released = 1 WHERE id = ?", (owner,)))
            except JournalError as exc:
                log.warning("Journal lease not released: %s", exc)
        self._db.close()

    # -- the owner lease ---------------------------------------------------------------------------

    @property
    def owner_id(self) -> str:
        """This process's lease id (taken now if not yet: a row in ``owners`` and a heartbeat).

        Single flight: the first caller of a process takes the lease -- its database writes (on
        Postgres, network I/O) run outside ``_lease_lock`` -- and publishes it under the lock;
        concurrent callers wait for that result (bounded, re-checked) instead of taking their own."""
        pid = os.getpid()
        while True:
            if self._owner_id is not None and self._owner_pid == pid:
                return self._owner_id
            with self._lease_lock:
                if self._owner_id is not None and self._owner_pid == pid:
                    return self._owner_id
                flight = self._lease_flight
                leader = flight is None or flight[0] != pid  # (a flight of the parent before a fork is not ours)
                if leader:
                    flight = self._lease_flight = (pid, threading.Event())
            if not leader:
                flight[1].wait(1.0)  # the leader's writes are bounded by the database timeouts
                continue
            try:
                owner = self._take_lease(pid)
            finally:
                with self._lease_lock:
                    if self._lease_flight is flight:
                        self._lease_flight = None
                flight[1].set()
            return owner

    def _take_lease(self, pid: int) -> str:
        """The lease writes (no lock held), then the result published under ``_lease_lock``."""
        owner, now = uuid.uuid4().hex, time.time()
        if self.backend == "postgres":  # liveness Postgres itself tracks, on any host
            self._db.hold_session_lock(_owner_lock_key(owner))
        self._write(lambda conn: conn.execute(
            "INSERT INTO owners (id, pid, host, started_at, heartbeat_at, released) VALUES (?, ?, ?, ?, ?, 0)",
            (owner, pid, socket.gethostname(), now, now)))
        stop = threading.Event()
        thread = threading.Thread(target=self._heartbeat_loop, args=(owner, stop), daemon=True, name="journal-lease")
        with self._lease_lock:
            self._owner_id, self._owner_pid = owner, pid
            self._stop_lease, self._lease_thread = stop, thread
        thread.start()
        return owner

    def _heartbeat_loop(self, owner: str, stop: threading.Event) -> None:
        interval = max(0.05, self.lease_ttl_s / 3.0)
        while not stop.wait(interval):
            try:
                self._db.run(lambda conn: conn.execute(
                    "UPDATE owners SET heartbeat_at = ? WHERE id = ? AND released = 0", (time.time(), owner)))
            except JournalClosedError:
                return
            except Exception as exc:  # noqa: BLE001 - the one safety net of this thread
                log.warning("Journal lease heartbeat failed: %s", exc)

    def live_owners(self) -> set:
        """Owner ids whose process still runs: not released, heartbeat within ``lease_ttl_s``,
        and (on this host) a process with that pid exists.  Includes this process."""
        me = self.owner_id
        if self.backend == "postgres":
            # An owner is live while its session advisory lock is held: Postgres drops it the
            # moment the process dies, on whatever host.  Dead ones are marked released.
            keys = {_owner_lock_key(r["id"]): r["id"]
                    for r in self._read("SELECT id FROM owners WHERE released = 0") if r["id"] != me}
            free = self._db.session_locks_free(list(keys))
            dead = [keys[k] for k in free]
            if dead:
                marks = ",".join("?" * len(dead))
                self._db.run(lambda conn: conn.execute(f"UPDATE owners SET released = 1 WHERE id IN ({marks})",
                                                       dead), durable=False)
            return {owner for key, owner in keys.items() if key not in free} | {me}
        rows = self._read("SELECT id, pid, host FROM owners WHERE released = 0 AND heartbeat_at > ?",
                          (time.time() - self.lease_ttl_s,))
        here = socket.gethostname()
        return {r["id"] for r in rows if r["host"] != here or _pid_running(r["pid"])} | {me}

    @property
    def closed(self) -> bool:
        return self._db.closed

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- transaction helpers ---------------------------------------------------------------------

    def _write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` in one write transaction, committed before returning (writers are
        serialised, so a read-then-insert inside ``fn`` is atomic across threads and processes)."""
        started = time.perf_counter()
        result = self._db.write(fn)
        events.emit("journal_write", seconds=time.perf_counter() - started)
        return result

    def _read(self, sql: str, params: Iterable[Any] = ()) -> List[Any]:
        """One SELECT, its rows (index- and name-addressable)."""
        return self._db.run_read(lambda conn: conn.execute(sql, tuple(params)).fetchall())

    # public for the modules that keep their own tables in this database (phantom_scraper/journal/tables.py)
    write = _write
    query = _read

    def dedicated_connection(self) -> Any:
        """PostgreSQL only: a connection of its own, outside the pool (LISTEN, session advisory
        locks: the coordinator's)."""
        return self._db.connect()

    # -- signals ---------------------------------------------------------------------------------

    def record_signal(self, recorder: str, payload: Dict[str, Any], explicit_id: Optional[str],
                      payload_hash: Optional[str], window_s: float,
                      now: Optional[float] = None, *, retry_not_sent: bool = False,
                      status: str = SIGNAL_RECEIVED) -> Tuple[str, bool, Optional[str]]:
        """Record a received signal and decide, atomically across threads and processes, whether
        it is a duplicate.  Returns ``(signal_id, is_duplicate, existing_signal_id)``.

        * With an ``explicit_id``: a duplicate if that recorder ever recorded that id (a restart or
          retention's deletion, ``signal_keys``, notwithstanding).  Two distinct ids are two signals.
        * Without one: a duplicate if the same recorder recorded the same ``payload_hash`` within
          the last ``window_s`` seconds (``window_s <= 0`` disables this).  The window counts
          from the original signal; duplicates do not extend it.

        A duplicate is recorded too (status ``duplicate``, ``duplicate_of`` the original); no intent
        can ever be created for it.  ``payload`` is stored with any secret-looking key removed.
        ``payload_hash`` None: the SHA-256 of that stored form (one serialisation per signal).

        ``retry_not_sent``: an explicit id whose first delivery provably placed nothing
        (``intents.provably_not_sent``) is a *retry*: the first delivery gives up its id (its
        record stays) and this one is a new signal, decided in this transaction (retries at once
        execute once).  ``status``: a new signal's first status (``queued`` while starting).
        """
        now = time.time() if now is None else float(now)
        key = None if explicit_id is None or str(explicit_id) == "" else str(explicit_id)
        payload_json = _dumps(payload)
        if payload_hash is None:  # the body's identity: its stored form (keys sorted, secrets removed)
            payload_hash = hashlib.sha256(payload_json.encode("utf-8")).hexdigest()
        signal_id = uuid.uuid4().hex
        retried: List[str] = []

        def txn(conn: Any) -> Optional[str]:
            if key is not None:
                row = conn.execute(
                    "SELECT id, status FROM signals WHERE recorder = ? AND dedupe_key = ? "
                    "AND duplicate_of IS NULL", (recorder, key)).fetchone()
                if row is not None and retry_not_sent and provably_not_sent(row[1], [tuple(i) for i in conn.execute(
                        "SELECT state, error FROM order_intents WHERE signal_id = ?", (row[0],)).fetchall()]):
                    conn.execute("UPDATE signals SET dedupe_key = ?, summary = COALESCE(summary, ?) WHERE id = ?",
                                 (RETIRED_KEY_PREFIX + key, f"retried as {signal_id}", row[0]))
                    retried.append(row[0])
                    row = None
                row = row or conn.execute("SELECT signal_id FROM signal_keys WHERE recorder = ? AND dedupe_key = ?",
                                          (recorder, key)).fetchone()
            elif window_s > 0:
                row = conn.execute(
                    "SELECT id FROM signals WHERE recorder = ? AND payload_hash = ? "
                    "AND received_at > ? AND duplicate_of IS NULL "
                    "ORDER BY received_at DESC LIMIT 1",
                    (recorder, payload_hash, now - window_s)).fetchone()
            else:
                row = None
            existing = row[0] if row is not None else None
            conn.execute(
                "INSERT INTO signals (id, recorder, dedupe_key, payload_hash, payload_json, "
                "received_at, status, summary, duplicate_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (signal_id, recorder, key, payload_hash, payload_json, now,
                 SIGNAL_DUPLICATE if existing else status,
                 f"duplicate of {existing}" if existing else None, existing))
            return existing

        existing = self._write(txn)
        if existing:
            log.info("Signal %s from recorder %s is a duplicate of %s (%s)", signal_id, recorder,
                     existing, "explicit id" if key is not None else "same payload within window")
        elif retried:
            log.warning("Signal id %r from recorder %s arrived again and its first delivery (%s) provably placed "
                        "nothing: executed now as %s", key, recorder, retried[0], signal_id)
        return signal_id, existing is not None, existing

    def set_signal_status(self, signal_id: str, status: str, summary: Optional[str] = None) -> None:
        """Set a signal's status (and summary, when given).  A duplicate's status is fixed."""
        if not status or status == SIGNAL_DUPLICATE:
            raise ValueError(f"cannot set signal status to {status!r}")

        def txn(conn: Any) -> None:
            row = conn.execute("SELECT duplicate_of FROM signals WHERE id = ?",
                               (signal_id,)).fetchone()
            if row is None:
                raise UnknownRecordError(f"no signal {signal_id}")
            if row[0] is not None:
                raise ValueError(f"signal {signal_id} is a duplicate; its status is fixed")
            conn.execute("UPDATE signals SET status = ?, summary = COALESCE(?, summary) "
                         "WHERE id = ?", (status, summary, signal_id))

        # Not durable on Postgres: a lost status is recomputed from the intents at start-up.
        self._db.write(txn, durable=False)

    def signal_status(self, signal_id: str) -> Optional[str]:
        """The signal's status, or None if there is no such signal."""
        rows = self._read("SELECT status FROM signals WHERE id = ?", (signal_id,))
        return rows[0][0] if rows else None

    def get_signal(self, signal_id: str) -> Optional[Dict[str, Any]]:
        """The signal as a dict (``payload`` parsed) with its ``intents``, or None."""
        rows = self._read("SELECT * FROM signals WHERE id = ?", (signal_id,))
        if not rows:
            return None
        signal = _signal_dict(rows[0])
        signal["intents"] = self.intents_for_signal(signal_id)
        return signal

    def recent_signals(self, limit: int = 50) -> List[Dict[str, Any]]:
        """The newest signals first (duplicates included), each with its ``intents`` list."""
        return self._signals_with_intents("", (), "received_at DESC, rowid DESC", limit)

    def signals_between(self, start: Optional[float], end: Optional[float],
                        limit: int = 2000) -> List[Dict[str, Any]]:
        """Signals received in ``[start, end)`` (epoch seconds; None: unbounded), oldest first,
        each with its ``intents`` (the trade history)."""
        lo = -1e18 if start is None else float(start)
        hi = 1e18 if end is None else float(end)
        return self._signals_with_intents("WHERE received_at >= ? AND received_at < ?", (lo, hi),
                                          "received_at, rowid", limit)

    def _signals_with_intents(self, where: str, params: tuple, order: str, limit: int) -> List[Dict[str, Any]]:
        limit = max(0, int(limit))

        def txn(conn: Any) -> Tuple[List[Any], List[Any]]:
            # One read transaction: signals and their intents from the same snapshot.
            srows = conn.execute(f"SELECT * FROM signals {where} ORDER BY {order} LIMIT ?",
                                 (*params, limit)).fetchall()
            ids = [r["id"] for r in srows]
            irows: List[Any] = []
            if ids:
                marks = ",".join("?" * len(ids))
                irows = conn.execute(
                    f"SELECT * FROM order_intents WHERE signal_id IN ({marks}) "
                    "ORDER BY step, account_id, id", ids).fetchall()
            return srows, irows

        srows, irows = self._db.read(txn)
        ids = [r["id"] for r in srows]
        by_signal: Dict[str, List[Dict[str, Any]]] = {i: [] for i in ids}
        for row in irows:
            by_signal[row["signal_id"]].append(_intent_dict(row))
        out = []
        for row in srows:
            signal = _signal_dict(row)
            signal["intents"] = by_signal[signal["id"]]
            out.append(signal)
        return out

    # -- order intents ---------------------------------------------------------------------------

    def create_intent(self, signal_id: str, account_id: int, account_name: Optional[str],
                      step: int, kind: str, request: Dict[str, Any], cl_ord_id: str,
                      now: Optional[float] = None, state: str = "received") -> int:
        """Journal one order about to be sent (state ``received``, or ``sending`` to record the
        intent and the send decision in one commit); returns the intent id.

        Raises :class:`UnknownRecordError` for an unknown signal, ``ValueError`` for a duplicate
        signal or a malformed ``cl_ord_id``, :class:`DuplicateIntentError` if the ``cl_ord_id``
        is already journalled.
        """
        return self.create_intents(
            signal_id, [(account_id, account_name, step, kind, request, cl_ord_id)], now=now, state=state)[0]

    def create_intents(self, signal_id: str, rows: Sequence[Tuple[int, Optional[str], int, str, Dict[str, Any], str]],
                       *, now: Optional[float] = None, state: str = "received") -> List[int]:
        """Journal several intents of one signal in ONE transaction (a fan-out to N accounts is one
        commit, not N).  ``rows``: ``(account_id, account_name, step, kind, request, cl_ord_id)``.
        All or nothing; same errors as :meth:`create_intent`."""
        if state not in (RECEIVED, SENDING):
            raise InvalidTransitionError(f"a new intent starts as received or sending, not {state!r}")
        now = time.time() if now is None else float(now)
        prepared = []
        for account_id, account_name, step, kind, request, cl_ord_id in rows:
            if not isinstance(cl_ord_id, str) or not _CL_ORD_ID_RE.match(cl_ord_id):
                raise ValueError(f"invalid clOrdId {cl_ord_id!r}")
            prepared.append((signal_id, int(account_id), account_name, int(step), kind, cl_ord_id,
                             _dumps(request), state, now, now, self.owner_id))
        db = self._db
        if len(prepared) == 1:  # one order (the usual case): one statement (intents.insert_one)
            started = time.perf_counter()
            intent_id = insert_one(db, signal_id, prepared[0])
            events.emit("journal_write", seconds=time.perf_counter() - started)
            return [intent_id]

        def txn(conn: Any) -> List[int]:
            row = conn.execute("SELECT duplicate_of FROM signals WHERE id = ?",
                               (signal_id,)).fetchone()
            if row is None:
                raise UnknownRecordError(f"no signal {signal_id}")
            if row[0] is not None:
                raise ValueError(f"signal {signal_id} is a duplicate; it must not be executed")
            ids = []
            for values in prepared:
                try:
                    [(intent_id,)] = conn.execute(INSERT_INTENT, values).fetchall()
                except db.IntegrityError as exc:
                    raise DuplicateIntentError(f"clOrdId {values[5]} is already journalled") from exc
                ids.append(int(intent_id))
            return ids

        return self._write(txn)

    def set_intent_state(self, cl_ord_id: str, state: str, *, broker_order_id: Optional[int] = None,
                         transport: Optional[str] = None, latency_ms: Optional[float] = None,
                         error: Optional[str] = None, reconciled: Optional[bool] = None,
                         now: Optional[float] = None) -> None:
        """Move an intent to ``state`` (committed on return).  Fields left None keep their value;
        ``reconciled`` is set automatically when the state is ``reconciled``.

        Raises :class:`InvalidTransitionError` (a ``ValueError``) for a transition the state
        machine does not allow, :class:`UnknownRecordError` for an unknown ``cl_ord_id``.
        """
        now = time.time() if now is None else float(now)
        sql, params = _state_update(cl_ord_id, state, dict(
            broker_order_id=broker_order_id, transport=transport, latency_ms=latency_ms, error=error,
            reconciled=reconciled), now)

        def apply(conn: Any) -> Optional[Any]:
            # A single UPDATE is its own atomic transaction: the state check (WHERE) and the
            # change cannot be split by another thread or process.
            if conn.execute(sql, params).rowcount == 1:
                return None
            return conn.execute("SELECT state FROM order_intents WHERE cl_ord_id = ?",
                                (cl_ord_id,)).fetchone() or ()

        row = self._db.run(apply, durable=state not in RECOVERABLE_STATES)
        if row is None:
            log.debug("Intent %s -> %s", cl_ord_id, state)
            return
        if not row:
            raise UnknownRecordError(f"no order intent {cl_ord_id}")
        raise InvalidTransitionError(f"intent {cl_ord_id}: {row[0]} -> {state} is not allowed")

    def set_intent_states(self, updates: Sequence[Tuple[str, str, Dict[str, Any]]],
                          now: Optional[float] = None) -> List[str]:
        """Apply several ``(cl_ord_id, state, fields)`` changes in ONE transaction.

        Same transition rules as :meth:`set_intent_state`; an update whose transition is not
        allowed (or whose intent is unknown) is skipped and its ``cl_ord_id`` returned, the others
        are committed."""
        now = time.time() if now is None else float(now)
        statements = [(cl_ord_id, *_state_update(cl_ord_id, state, fields, now))
                      for cl_ord_id, state, fields in updates]

        def txn(conn: Any) -> List[str]:
            return [cl for cl, sql, params in statements if conn.execute(sql, params).rowcount != 1]

        skipped = self._db.write(txn, durable=any(state not in RECOVERABLE_STATES for _cl, state, _f in updates))
        for cl in skipped:
            log.error("Intent %s: batched state change not applied (transition not allowed)", cl)
        return skipped

    def finish_signals(self, items: Sequence[Tuple[str, str, Optional[str], Sequence[Tuple[str, str, Dict[str, Any]]]]],
                       now: Optional[float] = None) -> None:
        """What finished signals leave behind, in ONE transaction: for each
        ``(signal_id, status, summary, intent_updates)`` its orders' final states (the same
        transition rules as :meth:`set_intent_states`) and then its status and summary (as
        :meth:`set_signal_status`).  A change that is not allowed (an unknown intent or signal, a
        forbidden transition, a duplicate's fixed status) is skipped and logged; the rest commit."""
        now = time.time() if now is None else float(now)
        intents, signals = [], []
        for signal_id, status, summary, updates in items:
            if not status or status == SIGNAL_DUPLICATE:
                raise ValueError(f"cannot set signal status to {status!r}")
            intents.extend((cl, state, _state_update(cl, state, fields, now)) for cl, state, fields in updates)
            signals.append((signal_id, status, summary))

        def txn(conn: Any) -> Tuple[List[str], List[str]]:
            bad_intents = [f"{cl} -> {state}" for cl, state, (sql, params) in intents
                           if conn.execute(sql, params).rowcount != 1]
            bad_signals = [signal_id for signal_id, status, summary in signals
                           if conn.execute("UPDATE signals SET status = ?, summary = COALESCE(?, summary) "
                                           "WHERE id = ? AND duplicate_of IS NULL",
                                           (status, summary, signal_id)).rowcount != 1]
            return bad_intents, bad_signals

        # Durable as its intent states need (see set_intent_state); a status alone is recomputed
        # from the intents at start-up.
        bad_intents, bad_signals = self._db.write(
            txn, durable=any(state not in RECOVERABLE_STATES for _cl, state, _s in intents))
        for change in bad_intents:
            log.error("Intent %s: final state not applied (unknown intent or transition not allowed)", change)
        for signal_id in bad_signals:
            log.error("Signal %s: final status not applied (unknown signal or a duplicate)", signal_id)

    def get_intent(self, cl_ord_id: str) -> Optional[Dict[str, Any]]:
        rows = self._read("SELECT * FROM order_intents WHERE cl_ord_id = ?", (cl_ord_id,))
        return _intent_dict(rows[0]) if rows else None

    def intents_for_signal(self, signal_id: str) -> List[Dict[str, Any]]:
        rows = self._read("SELECT * FROM order_intents WHERE signal_id = ? "
                          "ORDER BY step, account_id, id", (signal_id,))
        return [_intent_dict(r) for r in rows]

    def signal_ids_with_status(self, status: str) -> List[str]:
        """Ids of the signals whose status is ``status`` (oldest first)."""
        rows = self._read("SELECT id FROM signals WHERE status = ? ORDER BY received_at", (status,))
        return [r[0] for r in rows]

    def pending_intents(self, *, orphaned_only: bool = False) -> List[Dict[str, Any]]:
        """Intents left ``sending`` or ``unknown`` (oldest first).  With ``orphaned_only``, only
        those whose owner is gone (released, lease expired, process not running, or none
        recorded): what start-up reconciles by ``clOrdId`` before accepting new signals."""
        rows = self._read("SELECT * FROM order_intents WHERE state IN (?, ?) ORDER BY id", PENDING_STATES)
        intents = [_intent_dict(r) for r in rows]
        if orphaned_only:
            live = self.live_owners()
            intents = [i for i in intents if i.get("owner") not in live]
        return intents

    def unsettled_intents(self, watch_not_placed_s: float = 86400.0) -> List[Dict[str, Any]]:
        """What background settlement searches for (oldest first): ``unknown`` intents, and
        ``not_placed`` ones younger than ``watch_not_placed_s`` (adopted if they turn up), owned
        by this process or by an owner that is gone, never by another live process."""
        rows = self._read("SELECT * FROM order_intents WHERE state = ? OR (state = ? AND created_at > ?) ORDER BY id",
                          (UNKNOWN, NOT_PLACED, time.time() - watch_not_placed_s))
        others = self.live_owners() - {self.owner_id}
        return [i for i in (_intent_dict(r) for r in rows) if i.get("owner") not in others]

    def intents_by_cl_ord_id(self, cl_ord_ids: Iterable[str]) -> Dict[str, Dict[str, Any]]:
        """``{clOrdId: intent}`` for the given ids that are journaled (for the DUPLICATE check)."""
        ids = sorted(set(cl_ord_ids))
        out: Dict[str, Dict[str, Any]] = {}
        for i in range(0, len(ids), 500):  # SQLite's parameter limit
            chunk = ids[i:i + 500]
            rows = self._read(f"SELECT * FROM order_intents WHERE cl_ord_id IN ({','.join('?' * len(chunk))})", chunk)
            out.update({r["cl_ord_id"]: _intent_dict(r) for r in rows})
        return out

    def mark_in_flight_unknown(self, error: str) -> List[str]:
        """Shutdown: this process's intents still ``sending`` become ``unknown`` (one commit);
        returns their clOrdIds.  The next start reconciles them; nothing is resent."""
        now, owner = time.time(), self.owner_id

        def txn(conn: Any) -> List[str]:
            rows = conn.execute("SELECT cl_ord_id FROM order_intents WHERE state = ? AND owner = ?",
                                (SENDING, owner)).fetchall()
            conn.execute("UPDATE order_intents SET state = ?, error = COALESCE(error, ?), updated_at = ? "
                         "WHERE state = ? AND owner = ?", (UNKNOWN, error, now, SENDING, owner))
            return [r[0] for r in rows]

        return self._write(txn)

    def counts(self) -> Dict[str, Any]:
        """``{"signals": n, "signals_by_status": {...}, "intents_by_state": {...}, "pending_intents": n}``
        (a scan of both tables: for tests and tools, never /health -- see journal/health.py)."""
        counts = count_rows(self._db)
        self.health.set_counts(counts)
        return counts
