"""Tables another module keeps in the journal's database (the SQLite file or the PostgreSQL database).

A module's own DDL (portable SQL, ``;``-separated) is created once, on first use, through the
journal's backend (:func:`~phantom_scraper.journal.postgres.translate_ddl` on PostgreSQL), and every
write is one journal transaction committed before it returns.  Used by the risk store and the order
strategy store.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, List, TypeVar

T = TypeVar("T")


class JournalTables:
    def __init__(self, journal, ddl: str):
        self.journal = journal
        self._ddl = ddl
        self._ready = False  # set once the tables exist; read without a lock (a bool)

    def ensure(self) -> None:
        """Create the tables on first use.  No lock around it: the DDL is idempotent
        (``IF NOT EXISTS``) and the journal serialises writers, so two first callers at once
        both run it harmlessly, and no thread waits on another's database round trip."""
        if self._ready:
            return
        if getattr(self.journal, "backend", "sqlite") == "postgres":
            from phantom_scraper.journal.postgres import translate_ddl
            statements = translate_ddl(self._ddl)
        else:
            statements = [st for st in self._ddl.split(";") if st.strip()]

        def create(conn):
            for statement in statements:
                conn.execute(statement)
        self.journal.write(create)
        self._ready = True

    def write(self, fn: Callable[[Any], T]) -> T:
        """``fn(conn)`` in one committed journal transaction (the tables created first)."""
        self.ensure()
        return self.journal.write(fn)

    def read(self, sql: str, params: Iterable[Any] = ()) -> List[Any]:
        """One SELECT's rows (index- and name-addressable)."""
        self.ensure()
        return self.journal.query(sql, params)
