"""The journal's PostgreSQL backend (psycopg 3 and a small psycopg_pool connection pool).

Selected by a ``postgresql://`` URL (``DATABASE_URL``).  It runs the same SQL as SQLite: the journal
writes portable SQL with ``?`` placeholders, and :func:`translate` turns it into psycopg's
(``%s``) with the few SQLite spellings the journal may use (``IFNULL``, ``INSERT OR IGNORE``).
The schema is SQLite's migrations translated by :func:`translate_ddl` (types, identity keys, and a
hidden ``rowid`` column giving insertion order like SQLite's), unless :data:`POSTGRES_MIGRATIONS`
has a hand-written version.

Same semantics as SQLite:

* ``write`` runs one transaction that first takes a transaction-scoped advisory lock
  (:data:`WRITE_LOCK_KEY`): writers are serialised across threads and processes exactly like
  SQLite's ``BEGIN IMMEDIATE``, so a read-then-insert (the dedupe check) is atomic.
* ``read`` is one ``REPEATABLE READ`` read-only transaction (one snapshot).
* ``run`` executes statements in autocommit mode (each statement its own transaction).
* Migrations are versioned (table ``journal_migrations``) and applied at start inside one
  transaction holding the advisory lock :data:`MIGRATE_LOCK_KEY`: two processes starting at once
  migrate once.  DDL is transactional in Postgres, so a failed migration leaves nothing behind.
* Timestamps are stored as epoch seconds (``DOUBLE PRECISION``), i.e. UTC, as in SQLite.

Every psycopg error is translated here to :class:`JournalUnavailableError` (nothing was recorded).
Network calls are bounded: connect timeout, TCP keep-alives and ``tcp_user_timeout``, a pool
checkout timeout and a server-side ``statement_timeout``.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from phantom_scraper.journal.errors import JournalClosedError, JournalError, JournalUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Advisory lock keys (64-bit, this application's own range): one for migrations, one serialising
# journal writers.  Login leases use their own keys (see journal_lease).
MIGRATE_LOCK_KEY = 0x5053_4A4E_0000_0001
WRITE_LOCK_KEY = 0x5053_4A4E_0000_0002

# Hand-written Postgres DDL for a schema version, when translating SQLite's is not right.
POSTGRES_MIGRATIONS: Dict[int, str] = {}

# Connection defaults; anything in the URL wins.
_CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "3",
    "keepalives_count": "3",
    "tcp_user_timeout": "15000",
    "application_name": "phantom_scraper",
}

# Parent processes' pools after a fork: kept referenced so that garbage collection never closes
# (and so terminates, on the server) connections the parent still uses.
_ABANDONED: List[Any] = []


# -- dialect -------------------------------------------------------------------------------------

_INSERT_OR_IGNORE_RE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.I)
_RETURNING_RE = re.compile(r"\bRETURNING\b", re.I)


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """The journal's portable SQL (``?`` placeholders, SQLite spellings) for psycopg."""
    if re.search(r"^\s*INSERT\s+OR\s+REPLACE\b", sql, re.I):
        raise JournalError("INSERT OR REPLACE has no Postgres equivalent here; use "
                           "INSERT ... ON CONFLICT (...) DO UPDATE")
    out = sql.replace("%", "%%").replace("?", "%s")
    out = re.sub(r"\bIFNULL\s*\(", "COALESCE(", out, flags=re.I)
    if _INSERT_OR_IGNORE_RE.match(out):
        out = _INSERT_OR_IGNORE_RE.sub("INSERT INTO", out, count=1)
        m = _RETURNING_RE.search(out)
        if m:
            out = out[:m.start()] + "ON CONFLICT DO NOTHING " + out[m.start():]
        else:
            out = out.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return out


def _strip_comments(ddl: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in ddl.splitlines())


def translate_ddl(ddl: str) -> List[str]:
    """SQLite DDL (as the journal writes it) as Postgres statements: ``INTEGER PRIMARY KEY`` ->
    identity ``BIGINT``, ``INTEGER`` -> ``BIGINT``, ``REAL`` -> ``DOUBLE PRECISION``, ``BLOB`` ->
    ``BYTEA``; a table without an integer key gets a hidden ``rowid`` identity column (SQLite's
    implicit insertion order)."""
    statements = []
    for statement in _strip_comments(ddl).split(";"):
        s = statement.strip()
        if not s:
            continue
        if re.match(r"^(PRAGMA|CREATE\s+TRIGGER|CREATE\s+VIRTUAL)\b", s, re.I):
            raise JournalError(f"SQLite-only DDL needs a hand-written Postgres migration: {s[:60]}")
        has_int_key = bool(re.search(r"\bINTEGER\s+PRIMARY\s+KEY\b", s, re.I))
        s = re.sub(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b",
                   "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", s, flags=re.I)
        s = re.sub(r"\bINTEGER\b", "BIGINT", s, flags=re.I)
        s = re.sub(r"\bREAL\b", "DOUBLE PRECISION", s, flags=re.I)
        s = re.sub(r"\bBLOB\b", "BYTEA", s, flags=re.I)
        s = re.sub(r"\)\s*WITHOUT\s+ROWID\s*$", ")", s, flags=re.I)
        if re.match(r"^CREATE\s+TABLE\b", s, re.I) and not has_int_key:
            close = s.rstrip().rfind(")")
            s = s[:close].rstrip() + ",\n    rowid BIGINT GENERATED ALWAYS AS IDENTITY\n)" + s[close + 1:]
        statements.append(s)
    return statements


class Row(tuple):
    """A row addressable by index and by column name, like ``sqlite3.Row``.  ``keys()`` (and so
    ``dict(row)``) leaves out the hidden ``rowid`` column, so rows look the same on both backends."""

    def __new__(cls, values: Sequence[Any], index: Dict[str, int], keys: List[str]) -> "Row":
        row = super().__new__(cls, values)
        row._index = index
        row._keys = keys
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> List[str]:
        return self._keys


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    desc = cursor.description
    if desc is None:
        return tuple
    names = [d.name for d in desc]
    index = {n: i for i, n in enumerate(names)}
    keys = [n for n in names if n != "rowid"]
    return lambda values: Row(values, index, keys)


class _Conn:
    """What the journal's transaction functions get: ``execute(sql, params)`` in its dialect."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection):
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(translate(sql), tuple(params))


def redact_url(url: str) -> str:
    """``url`` for log lines: host, port, database and user, never the password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://?"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"postgresql://{params.get('user', '')}@{host}:{port}/{params.get('dbname', '')}"


def conninfo_with_defaults(url: str) -> str:
    params = conninfo_to_dict(url)
    for key, value in _CONNECT_DEFAULTS.items():
        params.setdefault(key, value)
    return make_conninfo(**params)


# -- the backend ---------------------------------------------------------------------------------

class PostgresBackend:
    """Runs the journal's transactions on a PostgreSQL database.  See the module docstring."""

    name = "postgres"
    IntegrityError = psycopg.IntegrityError

    def __init__(self, url: str, migrations: Dict[int, str], schema_version: int, *,
                 pool_max_size: int = 8, pool_timeout_s: float = 5.0,
                 statement_timeout_ms: int = 5000):
        self.url = url
        self._conninfo = conninfo_with_defaults(url)
        self._migrations = dict(migrations)
        self._schema_version = int(schema_version)
        self._pool_max_size = max(1, int(pool_max_size))
        self._pool_timeout_s = float(pool_timeout_s)
        self._statement_timeout_ms = int(statement_timeout_ms)
        # Guards self._pool/self._pid replacement after a fork and self._closed; held only to
        # swap references, never across a query.
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self._held: List[tuple] = []  # (pid, connection) holding session locks (hold_session_lock)
        self.migrate()
        self._pool: Optional[ConnectionPool] = self._open_pool()
        log.info("Journal opened at %s (PostgreSQL, schema v%d, pool of up to %d)",
                 self.describe(), self._schema_version, self._pool_max_size)

    def describe(self) -> str:
        return redact_url(self.url)

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        """A dedicated connection (not from the pool): for LISTEN and session advisory locks."""
        try:
            return psycopg.connect(self._conninfo, autocommit=True, row_factory=_row_factory, **kwargs)
        except psycopg.Error as exc:
            raise JournalUnavailableError(f"cannot connect to {self.describe()}: {exc}") from exc

    def hold_session_lock(self, key: int) -> None:
        """Take the session advisory lock ``key`` on a connection of its own, kept until
        :meth:`close` or this process's end: Postgres releases it the moment the process dies
        (any host), which is how other processes tell it is gone (:meth:`session_locks_free`)."""
        conn = self.connect()
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (int(key),))
        except psycopg.Error as exc:
            conn.close()
            raise JournalUnavailableError(f"cannot take a session lock on {self.describe()}: {exc}") from exc
        with self._lock:
            self._held.append((os.getpid(), conn))

    def session_locks_free(self, keys: Sequence[int]) -> set:
        """The ``keys`` no session holds now (their holders are gone)."""
        def probe(conn: Any) -> set:
            free = set()
            for key in keys:
                if conn.execute("SELECT pg_try_advisory_lock(?)", (int(key),)).fetchone()[0]:
                    conn.execute("SELECT pg_advisory_unlock(?)", (int(key),))
                    free.add(key)
            return free
        return self.run(probe, durable=False) if keys else set()

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(f"SET statement_timeout = {self._statement_timeout_ms}")
        conn.execute("SET TIME ZONE 'UTC'")
        # Commits wait for the WAL flush only when the caller asks for durability (the default,
        # see write/run): a crash of the database server may lose the last few non-durable commits,
        # like SQLite's synchronous=NORMAL on an OS crash.  A crash of this process loses nothing.
        conn.execute("SET synchronous_commit = off")

    def _open_pool(self) -> ConnectionPool:
        pool = ConnectionPool(
            self._conninfo, min_size=1, max_size=self._pool_max_size, open=False,
            kwargs={"autocommit": True, "row_factory": _row_factory}, configure=self._configure,
            timeout=self._pool_timeout_s, name="journal")
        try:
            pool.open(wait=True, timeout=self._pool_timeout_s + 10)
        except (PoolTimeout, psycopg.Error) as exc:
            pool.close()
            raise JournalUnavailableError(f"cannot connect to {self.describe()}: {exc}") from exc
        return pool

    def migrate(self) -> None:
        """Apply every schema version above the database's, in order, in one transaction under
        an advisory lock (idempotent; concurrent starts migrate once)."""
        with self.connect() as conn:
            try:
                conn.execute("BEGIN")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK_KEY,))
                conn.execute("CREATE TABLE IF NOT EXISTS journal_migrations ("
                             "version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
                version = conn.execute("SELECT COALESCE(MAX(version), 0) FROM journal_migrations"
                                       ).fetchone()[0]
                if version > self._schema_version:
                    raise JournalError(f"journal schema v{version} is newer than this code "
                                       f"(v{self._schema_version})")
                for target in range(version + 1, self._schema_version + 1):
                    ddl = POSTGRES_MIGRATIONS.get(target)
                    statements = translate_ddl(ddl if ddl is not None else self._migrations[target])
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute("INSERT INTO journal_migrations (version, applied_at) VALUES (%s, %s)",
                                 (target, time.time()))
                    log.info("Journal %s migrated to schema v%d", self.describe(), target)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.info.transaction_status != pq.TransactionStatus.IDLE and not conn.closed:
                    try:
                        conn.execute("ROLLBACK")
                    except psycopg.Error:
                        pass
                if isinstance(exc, psycopg.Error):
                    raise JournalUnavailableError(f"cannot migrate {self.describe()}: {exc}") from exc
                raise

    def _get_pool(self) -> ConnectionPool:
        with self._lock:
            if self._closed or self._pool is None:
                raise JournalClosedError("journal is closed")
            if os.getpid() == self._pid:
                return self._pool
            # Forked (e.g. gunicorn --preload): never use the parent's connections.
            _ABANDONED.append(self._pool)
            self._pid = os.getpid()
            self._pool = None
        pool = self._open_pool()  # outside the lock: connecting is network I/O
        with self._lock:
            if self._pool is None and not self._closed:
                self._pool = pool
                return pool
            current = self._pool
        pool.close()
        if current is None:
            raise JournalClosedError("journal is closed")
        return current

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
            held, self._held = self._held, []
        for pid, conn in held:
            if pid == os.getpid():  # a parent's connection is the parent's to close
                conn.close()
        if pool is not None and os.getpid() == self._pid:
            pool.close()
            log.info("Journal closed (%s)", self.describe())

    @property
    def closed(self) -> bool:
        return self._closed

    # -- transaction runners ---------------------------------------------------------------------

    def _session(self, begin: Optional[str], fn: Callable[[Any], T], what: str) -> T:
        pool = self._get_pool()
        try:
            with pool.connection() as conn:
                if begin is None:
                    return fn(_Conn(conn))
                conn.execute(begin)
                try:
                    result = fn(_Conn(conn))
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                        try:
                            conn.execute("ROLLBACK")
                        except psycopg.Error:
                            pass
                    raise
        except PoolTimeout as exc:
            raise JournalUnavailableError(f"journal {what} failed: no database connection: {exc}") from exc
        except psycopg.Error as exc:
            raise JournalUnavailableError(f"journal {what} failed: {exc}") from exc

    def write(self, fn: Callable[[Any], T], durable: bool = True) -> T:
        """Run ``fn(conn)`` in one transaction, writers serialised (like BEGIN IMMEDIATE).
        ``durable``: the commit returns once its WAL is flushed to disk (synchronous commit)."""
        sync = "SET LOCAL synchronous_commit = on; " if durable else ""
        return self._session(f"BEGIN; {sync}SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})", fn, "write")

    def read(self, fn: Callable[[Any], T], durable: bool = True) -> T:
        """Run ``fn(conn)`` in one read-only snapshot."""
        return self._session("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", fn, "read")

    def run(self, fn: Callable[[Any], T], durable: bool = True) -> T:
        """Run ``fn(conn)``: each statement its own transaction (autocommit), or, when ``durable``,
        all of them in one transaction with a synchronous commit."""
        if durable:
            return self._session("BEGIN; SET LOCAL synchronous_commit = on", fn, "statement")
        return self._session(None, fn, "statement")
