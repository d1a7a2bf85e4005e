"""Issue 25, findings 4-7: a journal that cannot be written, a journal file that is gone, /health.

4. A full disk (an injected ``database or disk is full`` from SQLite, as ENOSPC gives it): webhooks
   are ``503 journal_unavailable`` with ``Retry-After``, one log line per episode (no traceback per
   request), readiness false; final writes that failed are written again until they land.
5. The journal file deleted or replaced under the process: new signals refused, loudly.
6. ``/health`` reads nothing from the journal and takes no journal lock.
7. This process's own intent left ``sending`` (its final state lost) is settled, never resent.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time

import pytest

from phantom_scraper import events
from phantom_scraper.execution.final_writes import FinalWriter
from phantom_scraper.execution.settlement import Settler
from phantom_scraper.journal.journal import Journal
from tests.helpers import post, wait_for


class FullDisk:
    """An sqlite3 connection whose writes fail as they do on a full disk (SQLITE_FULL)."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "REPLACE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def fill_disk(journal):
    backend = journal._db._backend
    real = backend._conn
    backend._conn = FullDisk(real)

    def free():
        backend._conn = real
    return free


def signal(i):
    return json.dumps({"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": f"full-{i}"})


def test_a_full_disk_answers_503_journal_unavailable_once_per_episode(make_server_app, sim, caplog):
    app = make_server_app()
    client = app.test_client()
    journal = app.extensions["runtime"].service.journal
    assert post(client, signal(0)).status_code == 200
    app.extensions["runtime"].service.settle_writes(10.0)  # its outcome is journaled before the disk fills
    placed = len(sim.orders())
    free = fill_disk(journal)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        try:
            answers = [post(client, signal(i)) for i in range(1, 21)]
            health = client.get("/health")
        finally:
            free()
    assert {r.status_code for r in answers} == {503}, [r.get_data(as_text=True) for r in answers][:2]
    assert {r.get_json()["error"]["code"] for r in answers} == {"journal_unavailable"}
    assert all(int(r.headers["Retry-After"]) > 0 for r in answers)
    assert health.status_code == 503 and health.get_json()["ready"] is False
    assert health.get_json()["checks"]["journal"] is False
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage()[:19] for r in errors] == ["Journal unavailable"], [r.getMessage() for r in errors]
    assert not any(r.exc_info for r in caplog.records)  # no traceback per request
    assert len(sim.orders()) == placed  # nothing was placed
    # space is back: the same id is taken (nothing was recorded for it) and placed once
    wait_for(lambda: post(client, signal(1)).status_code == 200, timeout_s=20, interval_s=0.2)
    assert len(sim.orders()) == 2 * placed  # two accounts: the same two orders as the first signal
    wait_for(lambda: client.get("/health").status_code == 200, timeout_s=20)
    assert any("available again" in r.getMessage() for r in caplog.records)


def test_failed_final_writes_are_written_again_until_they_land(tmp_path):
    journal = Journal(str(tmp_path / "j.sqlite3"))
    seen = []
    unsubscribe = events.subscribe(lambda e: seen.append((e.kind, e.fields.get("count")))
                                   if e.kind.startswith("final_write") else None)
    writer = FinalWriter(journal, linger_s=0)
    try:
        sid, _dup, _ = journal.record_signal("r", {"action": "buy"}, "s-1", None, 0)
        journal.create_intent(sid, 1, "A", 0, "placeorder", {}, "ps-full-1-0", state="sending")
        free = fill_disk(journal)
        after = threading.Event()
        try:
            writer.submit(lambda: (sid, "acked", "ok", [("ps-full-1-0", "acked", {"broker_order_id": 9})]), after.set)
            assert after.wait(10)  # the answer's bookkeeping does not wait for the disk
            wait_for(lambda: ("final_write_failed", 1) in seen, timeout_s=10)
            assert writer.pending_cl_ord_ids() == {"ps-full-1-0"}
        finally:
            free()
        wait_for(lambda: journal.get_intent("ps-full-1-0")["state"] == "acked", timeout_s=20, interval_s=0.05)
        assert journal.get_intent("ps-full-1-0")["broker_order_id"] == 9
        assert journal.signal_status(sid) == "acked"
        assert ("final_write_landed", 1) in seen and writer.pending_cl_ord_ids() == set()
    finally:
        unsubscribe()
        writer.stop()
        journal.close()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_journal_file_gone_under_the_process_refuses_new_signals(make_server_app, sim, tmp_path, caplog, how):
    app = make_server_app()
    client = app.test_client()
    journal = app.extensions["runtime"].service.journal
    assert post(client, signal(0)).status_code == 200
    placed = len(sim.orders())
    path = journal.path
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    else:
        other = Journal(str(tmp_path / "other.sqlite3"))
        other.close()
        os.replace(str(tmp_path / "other.sqlite3"), path)
    with caplog.at_level(logging.INFO):
        answers = [post(client, signal(i)) for i in range(1, 4)]
    assert {r.status_code for r in answers} == {503}
    assert {r.get_json()["error"]["code"] for r in answers} == {"journal_unavailable"}
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and "JOURNAL GONE" in critical[0].getMessage()
    assert client.get("/health").status_code == 503
    assert len(sim.orders()) == placed
    time.sleep(1.2)  # past the probe interval: still refused (the file does not come back)
    assert post(client, signal(9)).status_code == 503


def test_health_reads_nothing_from_the_journal_and_takes_no_journal_lock(make_server_app):
    app = make_server_app()
    client = app.test_client()
    journal = app.extensions["runtime"].service.journal
    assert client.get("/health").status_code == 200
    calls = []
    real_call = journal._db._call
    # the journal's own threads (lease heartbeat, settlement, final writes) may use it meanwhile:
    # only the calls made by the threads serving /health count
    health_threads = set()
    journal._db._call = lambda *a, **k: (calls.append(a) if threading.get_ident() in health_threads else None) \
        or real_call(*a, **k)

    def get_health():
        health_threads.add(threading.get_ident())
        try:
            return client.get("/health").status_code
        finally:
            health_threads.discard(threading.get_ident())
    backend_lock = journal._db._backend._lock
    answers = []
    try:
        with backend_lock:  # a long transaction (or a scan) holds the journal
            t = threading.Thread(target=lambda: answers.append(get_health()), daemon=True)
            t.start()
            t.join(20)
            assert not t.is_alive(), "/health waited for the journal lock"
        for _ in range(5):
            answers.append(get_health())
    finally:
        journal._db._call = real_call
    assert len(answers) == 6 and set(answers) <= {200, 503} and calls == []  # answered, without the journal


class _Broker:
    def __init__(self, commands):
        self.commands = commands

    def list_commands(self):
        return self.commands


def test_own_sending_intent_with_a_lost_final_state_is_settled_not_resent(tmp_path):
    journal = Journal(str(tmp_path / "j.sqlite3"))
    try:
        sid, _dup, _ = journal.record_signal("r", {"action": "buy"}, "s-1", None, 0)
        old = time.time() - 600
        journal.create_intents(sid, [(1, "A", 0, "placeorder", {}, "ps-lost-1-0"),
                                     (2, "B", 0, "placeorder", {}, "ps-held-1-0"),
                                     (3, "C", 0, "placeorder", {}, "ps-fresh-1-0")], state="sending", now=old)
        journal.set_intent_state("ps-fresh-1-0", "unknown", now=old)
        journal._db.run(lambda c: c.execute("UPDATE order_intents SET state = 'sending', updated_at = ? "
                                            "WHERE cl_ord_id = 'ps-fresh-1-0'", (time.time(),)))
        broker = _Broker([{"orderId": 501, "clOrdId": "ps-lost-1-0"}])
        settler = Settler(journal, lambda _a: broker, settle_period_s=3600, stale_sending_s=120,
                          held=lambda: {"ps-held-1-0"})
        changed = settler.run_once()
        assert changed == [{"cl_ord_id": "ps-lost-1-0", "state": "reconciled", "order_id": 501}]
        assert journal.get_intent("ps-lost-1-0")["state"] == "reconciled"
        assert journal.get_intent("ps-held-1-0")["state"] == "sending"  # its final write is queued
        assert journal.get_intent("ps-fresh-1-0")["state"] == "sending"  # recently sent: in flight
    finally:
        journal.close()


class _DownBackend:
    """A database that does not answer: each call waits out a (scaled-down) pool timeout."""

    def __init__(self):
        self.calls = 0
        self.down = True

    def write(self, fn, durable=True):
        self.calls += 1
        if self.down:
            time.sleep(0.6)
            from phantom_scraper.journal.errors import JournalUnavailableError
            raise JournalUnavailableError("journal write failed: no database connection: pool timeout")
        return "ok"


def test_a_database_that_does_not_answer_is_not_waited_for_by_every_call():
    from phantom_scraper.journal.errors import JournalUnavailableError
    from phantom_scraper.journal.health import JournalHealth, WatchedBackend

    now = [0.0]
    health = JournalHealth("db", probe_interval_s=1.0, clock=lambda: now[0])
    backend = _DownBackend()
    watched = WatchedBackend(backend, health)
    with pytest.raises(JournalUnavailableError):
        watched.write(lambda c: None)
    for _ in range(5):  # within the probe interval: refused at once, the database is not tried
        with pytest.raises(JournalUnavailableError):
            watched.write(lambda c: None)
    assert backend.calls == 1 and health.available is False
    backend.down = False
    now[0] = 1.5  # one probe goes through, and the episode ends
    assert watched.write(lambda c: None) == "ok" and health.available is True and backend.calls == 2


def test_a_failure_that_comes_at_once_does_not_refuse_the_next_call():
    from phantom_scraper.journal.errors import JournalUnavailableError
    from phantom_scraper.journal.health import JournalHealth, WatchedBackend

    class Glitch:
        calls = 0

        def write(self, fn, durable=True):
            Glitch.calls += 1
            if Glitch.calls == 1:
                raise JournalUnavailableError("journal write failed: disk I/O error")
            return "ok"

    watched = WatchedBackend(Glitch(), JournalHealth("db", clock=lambda: 0.0))
    with pytest.raises(JournalUnavailableError):
        watched.write(lambda c: None)
    assert watched.write(lambda c: None) == "ok"  # tried again at once, not refused for a second
