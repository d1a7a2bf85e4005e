"""The durable journal: schema, restart, dedupe (threads and processes), intent state machine,
clOrdId format, crash recovery, secrets.

Tests taking ``target`` or ``journal`` run once per backend: SQLite, and Postgres when
``TEST_DATABASE_URL`` is set (skipped with the reason otherwise).  Tests taking ``db_path`` check
SQLite's file format itself."""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from phantom_scraper.journal.journal import (
    FINAL_STATES,
    SCHEMA_VERSION,
    INTENT_STATES,
    DuplicateIntentError,
    InvalidTransitionError,
    Journal,
    JournalClosedError,
    UnknownRecordError,
    make_cl_ord_id,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = 1_700_000_000.0


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "sub" / "dir" / "journal.sqlite3")


@pytest.fixture
def target(journal_target):
    """An SQLite path or a Postgres URL (see conftest.journal_target)."""
    return journal_target


@pytest.fixture
def journal(target):
    j = Journal(target)
    yield j
    j.close()


def _set_schema_version(target, version):
    if target.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("INSERT INTO journal_migrations (version, applied_at) VALUES (%s, 0)", (version,))
    else:
        conn = sqlite3.connect(target)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.close()


def _stored_text(target):
    """Everything the journal stored, as text (the file's bytes, or every row of every table)."""
    if target.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(target, autocommit=True) as conn:
            return "".join(str(conn.execute(f"SELECT array_agg(t::text) FROM {table} t").fetchone()[0])
                           for table in ("signals", "order_intents")).encode()
    folder = os.path.dirname(target)
    out = b""
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            out += f.read()
    return out


def _signal(j, explicit_id=None, payload=None, h="hash-1", now=T0, window_s=60.0, recorder="rec"):
    return j.record_signal(recorder, payload or {"action": "buy", "ticker": "NQ1!"}, explicit_id,
                           h, window_s, now=now)


def _intent(j, signal_id, account_id=1001, step=0):
    cl = make_cl_ord_id(signal_id, account_id, step)
    j.create_intent(signal_id, account_id, f"DEMO{account_id}", step, "placeorder",
                    {"accountId": account_id, "action": "Buy", "orderQty": 1, "clOrdId": cl}, cl)
    return cl


# -- schema and restart --------------------------------------------------------------------------

def test_creates_parent_dirs_wal_and_versioned_schema(db_path):
    Journal(db_path).close()
    assert os.path.exists(db_path)
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert {"signals", "order_intents"} <= tables


def test_reopen_keeps_data(target):
    j = Journal(target)
    sid, dup, existing = _signal(j, explicit_id="tv-1")
    assert (dup, existing) == (False, None)
    cl = _intent(j, sid)
    j.set_intent_state(cl, "sending")
    j.set_intent_state(cl, "acked", broker_order_id=555, transport="websocket", latency_ms=12.5)
    j.set_signal_status(sid, "done", "1/1 acked")
    j.close()

    j2 = Journal(target)
    try:
        sig = j2.get_signal(sid)
        assert sig["status"] == "done" and sig["summary"] == "1/1 acked"
        assert sig["payload"] == {"action": "buy", "ticker": "NQ1!"}
        [intent] = sig["intents"]
        assert intent["state"] == "acked" and intent["broker_order_id"] == 555
        assert intent["transport"] == "websocket" and intent["latency_ms"] == 12.5
        assert intent["request"]["clOrdId"] == cl
        assert j2.signal_status(sid) == "done"
        assert j2.signal_status("nope") is None
    finally:
        j2.close()


def test_close_is_idempotent_and_later_use_raises(target):
    j = Journal(target)
    j.close()
    j.close()
    assert j.closed
    with pytest.raises(JournalClosedError):
        _signal(j)


def test_refuses_a_newer_schema(target):
    Journal(target).close()
    _set_schema_version(target, 99)
    with pytest.raises(Exception, match="newer"):
        Journal(target)


# -- dedupe --------------------------------------------------------------------------------------

def test_explicit_id_is_a_duplicate_forever_and_across_reopen(target):
    j = Journal(target)
    sid, dup, _ = _signal(j, explicit_id="tv-42", h="a")
    assert not dup
    j.close()

    j = Journal(target)
    try:
        # Hours later, different payload hash: still the same explicit id.
        sid2, dup2, existing = _signal(j, explicit_id="tv-42", h="b", now=T0 + 86_400)
        assert dup2 and existing == sid and sid2 != sid
        assert j.signal_status(sid2) == "duplicate"
        # Same id for another recorder is a different signal.
        _, dup3, _ = _signal(j, explicit_id="tv-42", recorder="other")
        assert not dup3
        # A distinct explicit id with the same payload hash is a distinct signal.
        _, dup4, _ = _signal(j, explicit_id="tv-43", h="a", now=T0 + 1)
        assert not dup4
    finally:
        j.close()


def test_hash_dedupe_within_window_only(journal):
    sid, dup, _ = _signal(journal, h="h", now=T0, window_s=60)
    assert not dup
    _, dup, existing = _signal(journal, h="h", now=T0 + 59.9, window_s=60)
    assert dup and existing == sid
    # Duplicates do not extend the window: counted from the original.
    _, dup, _ = _signal(journal, h="h", now=T0 + 60.0, window_s=60)
    assert not dup
    _, dup, _ = _signal(journal, h="other", now=T0 + 60.5, window_s=60)
    assert not dup
    _, dup, _ = _signal(journal, h="h", now=T0 + 61, window_s=60, recorder="rec2")
    assert not dup


def test_hash_dedupe_disabled_with_zero_window(journal):
    _signal(journal, h="h", window_s=0)
    _, dup, _ = _signal(journal, h="h", window_s=0)
    assert not dup


def test_duplicate_can_never_get_an_intent(journal):
    sid, _, _ = _signal(journal, explicit_id="x")
    dup_id, dup, _ = _signal(journal, explicit_id="x")
    assert dup
    with pytest.raises(ValueError, match="duplicate"):
        _intent(journal, dup_id)
    with pytest.raises(ValueError):
        journal.set_signal_status(dup_id, "done")
    assert journal.intents_for_signal(dup_id) == []


def test_an_orders_intent_is_one_statement_and_still_refuses_what_it_must(tmp_path):
    """On the order's path each statement lets other threads run: one order's intent is a single
    INSERT whose WHERE is the signal's check (unknown, duplicate and repeated clOrdIds still refused)."""
    j = Journal(str(tmp_path / "j.sqlite3"))
    try:
        _intent(j, _signal(j, h="hash-0")[0])  # (the first write also registers this process as an owner)
        sid, _, _ = _signal(j)
        conn = j._db._backend._conn if hasattr(j._db, "_backend") else j._db._conn
        statements = []
        conn.set_trace_callback(statements.append)
        cl = _intent(j, sid)
        conn.set_trace_callback(None)
        assert len(statements) == 1 and statements[0].startswith("INSERT INTO order_intents"), statements
        assert [i["cl_ord_id"] for i in j.intents_for_signal(sid)] == [cl]
        with pytest.raises(DuplicateIntentError):
            _intent(j, sid)
        with pytest.raises(UnknownRecordError):
            _intent(j, "no-such-signal")
        dup_id, dup, _ = _signal(j, h="hash-2", explicit_id="e")
        dup_id, dup, _ = _signal(j, h="hash-3", explicit_id="e")
        assert dup
        with pytest.raises(ValueError, match="duplicate"):
            _intent(j, dup_id)
        assert j.intents_for_signal(dup_id) == []
    finally:
        j.close()


def test_fifty_threads_same_explicit_id_exactly_one_wins(journal):
    barrier = threading.Barrier(50)
    results = []
    results_lock = threading.Lock()  # serialises appends from the 50 threads

    def worker(i):
        barrier.wait()
        r = journal.record_signal("rec", {"i": i}, "same-id", f"h{i}", 60.0)
        with results_lock:
            results.append(r)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 50
    winners = [r for r in results if not r[1]]
    assert len(winners) == 1
    assert {r[2] for r in results if r[1]} == {winners[0][0]}


def _race_worker(path, barrier, queue):
    j = Journal(path)
    try:
        barrier.wait(30)
        queue.put(j.record_signal("rec", {"pid": os.getpid()}, "proc-id", str(os.getpid()), 60.0))
    finally:
        j.close()


def test_processes_racing_on_one_explicit_id_exactly_one_wins(target):
    Journal(target).close()
    ctx = multiprocessing.get_context("spawn")
    n = 6
    barrier = ctx.Barrier(n)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(target, barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in range(n)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    winners = [r for r in results if not r[1]]
    assert len(winners) == 1
    assert all(r[2] == winners[0][0] for r in results if r[1])
    with Journal(target) as j:
        assert j.counts()["signals_by_status"] == {"received": 1, "duplicate": n - 1}


# -- intents -------------------------------------------------------------------------------------

VALID = {
    ("received", "sending"), ("received", "rejected"), ("received", "skipped"),
    ("sending", "acked"), ("sending", "rejected"), ("sending", "unknown"),
    ("sending", "skipped"),  # answered "nothing to do" (a liquidation of a flat position)
    ("unknown", "reconciled"), ("unknown", "acked"), ("unknown", "not_placed"),
    ("not_placed", "reconciled"),
}
PATHS = {  # how to reach each state from 'received'
    "received": [], "sending": ["sending"], "acked": ["sending", "acked"],
    "rejected": ["rejected"], "unknown": ["sending", "unknown"],
    "reconciled": ["sending", "unknown", "reconciled"], "skipped": ["skipped"],
    "not_placed": ["sending", "unknown", "not_placed"],
}


@pytest.mark.parametrize("src", INTENT_STATES)
@pytest.mark.parametrize("dst", INTENT_STATES)
def test_state_transition_table(journal, src, dst):
    sid, _, _ = _signal(journal, explicit_id=f"{src}-{dst}")
    cl = _intent(journal, sid)
    for step in PATHS[src]:
        journal.set_intent_state(cl, step)
    assert journal.get_intent(cl)["state"] == src
    if (src, dst) in VALID:
        journal.set_intent_state(cl, dst)
        assert journal.get_intent(cl)["state"] == dst
    else:
        with pytest.raises(InvalidTransitionError):
            journal.set_intent_state(cl, dst)
        assert journal.get_intent(cl)["state"] == src


def test_final_states_have_no_way_out():
    assert FINAL_STATES == {"acked", "rejected", "reconciled", "skipped"}
    assert not [pair for pair in VALID if pair[0] in FINAL_STATES]


def test_unknown_state_and_unknown_intent(journal):
    sid, _, _ = _signal(journal)
    cl = _intent(journal, sid)
    with pytest.raises(ValueError):
        journal.set_intent_state(cl, "filled")
    with pytest.raises(UnknownRecordError):
        journal.set_intent_state("ps-nope-1-0", "sending")
    with pytest.raises(UnknownRecordError):
        journal.create_intent("nope", 1, "A", 0, "placeorder", {}, "ps-nope-1-0")


def test_fields_kept_and_reconciled_flag(journal):
    sid, _, _ = _signal(journal)
    cl = _intent(journal, sid)
    journal.set_intent_state(cl, "sending", transport="websocket")
    journal.set_intent_state(cl, "unknown", error="socket closed after write", latency_ms=5000)
    journal.set_intent_state(cl, "reconciled", broker_order_id=77)
    i = journal.get_intent(cl)
    assert (i["state"], i["broker_order_id"], i["transport"], i["error"], i["reconciled"]) == (
        "reconciled", 77, "websocket", "socket closed after write", True)
    assert i["latency_ms"] == 5000 and i["updated_at"] >= i["created_at"]


def test_cl_ord_id_format_determinism_and_uniqueness(journal):
    sid, _, _ = _signal(journal)
    pattern = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
    ids = {make_cl_ord_id(sid, acct, step) for acct in (1, 2, 2**31 - 1, 10**15) for step in range(5)}
    assert len(ids) == 20
    assert all(pattern.match(c) for c in ids)
    assert make_cl_ord_id(sid, 7, 1) == make_cl_ord_id(sid, 7, 1)
    odd = make_cl_ord_id("weird id/with:chars and a very long tail " * 3, 9, 0)
    assert pattern.match(odd) and odd == make_cl_ord_id("weird id/with:chars and a very long tail " * 3, 9, 0)
    with pytest.raises(ValueError):
        make_cl_ord_id(sid, -1, 0)
    cl = _intent(journal, sid, 1, 0)
    with pytest.raises(DuplicateIntentError):
        _intent(journal, sid, 1, 0)
    with pytest.raises(ValueError):
        journal.create_intent(sid, 1, "A", 1, "placeorder", {}, "bad id with spaces")
    assert [i["cl_ord_id"] for i in journal.intents_for_signal(sid)] == [cl]


def test_pending_intents_after_sigkill(target):
    """A process journals an intent as 'sending' and is SIGKILLed: a restart finds it pending."""
    script = textwrap.dedent(f"""
        import os, signal
        from phantom_scraper.journal.journal import Journal, make_cl_ord_id
        j = Journal({target!r})
        sid, _, _ = j.record_signal("rec", {{"action": "buy"}}, "crash-1", "h", 60.0)
        for acct, state in ((1, "sending"), (2, "acked"), (3, "unknown")):
            cl = make_cl_ord_id(sid, acct, 0)
            j.create_intent(sid, acct, "A%d" % acct, 0, "placeorder", {{"accountId": acct}}, cl)
            j.set_intent_state(cl, "sending")
            if state != "sending":
                j.set_intent_state(cl, state)
        print(sid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    sid = proc.stdout.strip()

    with Journal(target) as j:
        pending = j.pending_intents(orphaned_only=True)  # the killed process's lease is gone with it
        assert [(p["account_id"], p["state"]) for p in pending] == [(1, "sending"), (3, "unknown")]
        assert all(p["signal_id"] == sid for p in pending)
        # The restarted process still knows the explicit id.
        assert j.record_signal("rec", {"action": "buy"}, "crash-1", "h", 60.0)[1] is True
        # Reconcile: sending -> unknown -> reconciled.
        cl = pending[0]["cl_ord_id"]
        j.set_intent_state(cl, "unknown")
        j.set_intent_state(cl, "reconciled", broker_order_id=1)
        # An intent that may have executed never becomes 'rejected': nothing found -> not_placed.
        with pytest.raises(InvalidTransitionError):
            j.set_intent_state(pending[1]["cl_ord_id"], "rejected", error="not found at broker")
        j.set_intent_state(pending[1]["cl_ord_id"], "not_placed", error="not found at broker")
        assert j.pending_intents() == []
        assert j.counts()["pending_intents"] == 0


# -- secrets, listing ----------------------------------------------------------------------------

def test_secrets_never_stored(target, journal):
    payload = {"action": "buy", "secret": "S3CRET-A", "Token": "S3CRET-B",
               "nested": {"password": "S3CRET-C", "webhook_passphrase": "S3CRET-D", "qty": 1},
               "list": [{"access_token": "S3CRET-E", "keep": True}]}
    sid, _, _ = journal.record_signal("rec", payload, None, "h", 60.0)
    journal.create_intent(sid, 1, "A", 0, "placeorder", {"accountId": 1, "password": "S3CRET-F"},
                          make_cl_ord_id(sid, 1, 0))
    stored = journal.get_signal(sid)
    assert stored["payload"] == {"action": "buy", "nested": {"qty": 1}, "list": [{"keep": True}]}
    assert stored["intents"][0]["request"] == {"accountId": 1}
    assert payload["secret"] == "S3CRET-A"  # the caller's dict is not modified
    journal.close()
    stored_text = _stored_text(target)
    assert b"S3CRET" not in stored_text and b"nested" in stored_text


def test_recent_signals_and_counts(journal):
    ids = []
    for n in range(3):
        sid, _, _ = _signal(journal, explicit_id=f"id{n}", now=T0 + n)
        ids.append(sid)
        _intent(journal, sid, 1, 0)
        _intent(journal, sid, 2, 0)
    _signal(journal, explicit_id="id0", now=T0 + 10)  # a duplicate, newest
    recent = journal.recent_signals(limit=3)
    assert [s["status"] for s in recent] == ["duplicate", "received", "received"]
    assert [s["id"] for s in recent[1:]] == [ids[2], ids[1]]
    assert recent[0]["intents"] == []
    assert [i["account_id"] for i in recent[1]["intents"]] == [1, 2]
    json.dumps(recent)  # serialisable for GET /api/signals
    c = journal.counts()
    assert c["signals"] == 4 and c["intents_by_state"] == {"received": 6}
    assert c["pending_intents"] == 0


def test_full_synchronous_is_an_option(tmp_path):
    with Journal(str(tmp_path / "j.db"), synchronous="FULL") as j:
        assert j._read("PRAGMA synchronous")[0][0] == 2
    with pytest.raises(ValueError):
        Journal(str(tmp_path / "k.db"), synchronous="OFF")


def test_intent_can_start_as_sending_in_one_commit(journal):
    sid, _, _ = _signal(journal, explicit_id="start-sending")
    cl = make_cl_ord_id(sid, 1001, 0)
    journal.create_intent(sid, 1001, "DEMO0001", 0, "placeorder", {"orderQty": 1}, cl, state="sending")
    assert journal.get_intent(cl)["state"] == "sending"
    assert [i["cl_ord_id"] for i in journal.pending_intents()] == [cl]
    with pytest.raises(ValueError):
        journal.create_intent(sid, 1001, "DEMO0001", 1, "placeorder", {}, make_cl_ord_id(sid, 1001, 1),
                              state="acked")


def test_background_checkpointer_keeps_the_wal_small_and_stops_on_close(db_path):
    j = Journal(db_path, checkpoint_interval_s=0.05)
    assert any(t.name == "journal-checkpoint" for t in threading.enumerate())
    for n in range(300):
        _signal(j, explicit_id=f"cp-{n}", h=f"h{n}")
    wal = db_path + "-wal"
    deadline = __import__("time").monotonic() + 5
    # After a checkpoint the WAL is reused from its start; every row must be in the main file.
    while __import__("time").monotonic() < deadline:
        conn = sqlite3.connect(db_path)
        try:
            busy, log_frames, ckpt = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
        if log_frames == ckpt:
            break
    j.close()
    assert not any(t.name == "journal-checkpoint" and t.is_alive() for t in threading.enumerate())
    reopened = Journal(db_path)
    try:
        assert reopened.counts()["signals"] == 300
    finally:
        reopened.close()


def test_bulk_intents_and_states_are_one_transaction_each_with_the_same_rules(journal):
    sid, _, _ = _signal(journal, explicit_id="bulk")
    rows = [(1000 + n, f"ACC{n}", 0, "placeorder", {"orderQty": 1}, make_cl_ord_id(sid, 1000 + n, 0)) for n in range(3)]
    ids = journal.create_intents(sid, rows, state="sending")
    assert len(set(ids)) == 3
    assert {i["state"] for i in journal.intents_for_signal(sid)} == {"sending"}
    with pytest.raises(DuplicateIntentError):  # all or nothing
        journal.create_intents(sid, [(2000, "NEW", 0, "placeorder", {}, make_cl_ord_id(sid, 2000, 0)), rows[0]])
    assert journal.get_intent(make_cl_ord_id(sid, 2000, 0)) is None
    cls = [r[5] for r in rows]
    skipped = journal.set_intent_states([
        (cls[0], "acked", {"broker_order_id": 1, "transport": "websocket"}),
        (cls[1], "unknown", {"error": "no answer"}),
        (cls[2], "reconciled", {}),  # sending -> reconciled is not allowed: skipped, not applied
    ])
    assert skipped == [cls[2]]
    assert journal.get_intent(cls[0])["state"] == "acked" and journal.get_intent(cls[0])["broker_order_id"] == 1
    assert journal.get_intent(cls[1])["state"] == "unknown"
    assert journal.get_intent(cls[2])["state"] == "sending"


def test_finished_signals_write_their_order_states_and_statuses_in_one_transaction(journal, caplog):
    """``finish_signals``: several signals' final intent states and statuses in one commit, with
    the same rules as the single writes; what is not allowed is skipped and logged, the rest lands."""
    first, _, _ = _signal(journal, explicit_id="fin-1")
    second, _, _ = _signal(journal, explicit_id="fin-2")
    dup, is_dup, _ = _signal(journal, explicit_id="fin-1")
    assert is_dup
    cl1, cl2 = make_cl_ord_id(first, 7, 0), make_cl_ord_id(second, 7, 0)
    journal.create_intents(first, [(7, "A", 0, "placeorder", {}, cl1)], state="sending")
    journal.create_intents(second, [(7, "A", 0, "placeorder", {}, cl2)], state="sending")
    journal.finish_signals([
        (first, "acked", '[{"status": "acked"}]', [(cl1, "acked", {"broker_order_id": 11, "latency_ms": 1.5})]),
        (second, "failed", None, [(cl2, "reconciled", {})]),  # sending -> reconciled: not allowed, skipped
        (dup, "acked", None, []),  # a duplicate's status is fixed: skipped
        ("no-such-signal", "acked", None, []),
    ])
    assert journal.get_intent(cl1)["state"] == "acked" and journal.get_intent(cl1)["broker_order_id"] == 11
    assert journal.get_signal(first)["status"] == "acked" and "acked" in journal.get_signal(first)["summary"]
    assert journal.get_intent(cl2)["state"] == "sending"
    assert journal.get_signal(second)["status"] == "failed"
    assert journal.get_signal(dup)["status"] == "duplicate"
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert cl2 in logged and dup in logged and "no-such-signal" in logged
    with pytest.raises(ValueError):
        journal.finish_signals([(first, "duplicate", None, [])])
