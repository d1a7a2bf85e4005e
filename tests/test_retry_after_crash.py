"""Issue 25, finding 3: a retry after a crash of a signal that was never placed.

After ``kill -9`` mid-burst, signals journaled ``interrupted`` ("nothing sent") or whose orders
settled ``not_placed`` were answered ``200 {"success": true, "duplicate": true}`` when their ids
arrived again: never placed, and the sender told they were.  Now a signal whose orders were all
provably not sent executes when its id arrives again; one still in doubt answers ``unknown`` with
``success: null``.
"""
from __future__ import annotations

import json
import threading

import pytest

from phantom_scraper.journal.journal import Journal, provably_not_sent
from tests.helpers import post


@pytest.mark.parametrize("status,intents,expected", [
    ("interrupted", [], True),
    ("unknown", [("not_placed", None), ("not_placed", None)], True),
    ("failed", [("rejected", "not sent: connection refused"), ("not_placed", None)], True),
    ("failed", [("received", None)], True),
    ("received", [], False),  # still running
    ("received", [("not_placed", None)], False),
    ("unknown", [("unknown", None)], False),
    ("unknown", [("not_placed", None), ("sending", None)], False),
    ("acked", [("acked", None)], False),
    ("partial", [("acked", None), ("rejected", "not sent: x")], False),
    ("rejected", [("rejected", "Insufficient margin")], False),  # the broker said no: not a retry
    ("skipped", [], False),
    ("error", [], False),
])
def test_provably_not_sent(status, intents, expected):
    assert provably_not_sent(status, intents) is expected


def _first_delivery(journal, state, key="sig-1", status="interrupted"):
    sid, _dup, _ = journal.record_signal("tv", {"action": "buy", "id": key}, key, None, 0)
    if state is not None:
        journal.create_intent(sid, 1, "A", 0, "placeorder", {}, f"ps-{sid}-1-0", state="sending")
        journal.set_intent_state(f"ps-{sid}-1-0", "unknown")
        if state == "not_placed":
            journal.set_intent_state(f"ps-{sid}-1-0", "not_placed")
    journal.set_signal_status(sid, status)
    return sid


def test_a_retry_of_a_signal_that_placed_nothing_is_a_new_signal_once(tmp_path):
    journal = Journal(str(tmp_path / "j.sqlite3"))
    try:
        first = _first_delivery(journal, "not_placed", status="unknown")
        results = []
        barrier = threading.Barrier(8)

        def retry():
            barrier.wait(10)
            results.append(journal.record_signal("tv", {"action": "buy", "id": "sig-1"}, "sig-1", None, 0,
                                                 retry_not_sent=True))
        threads = [threading.Thread(target=retry) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        fresh = [r for r in results if not r[1]]
        assert len(results) == 8 and len(fresh) == 1  # eight retries at once: one executes
        new_id = fresh[0][0]
        assert new_id != first and {r[2] for r in results if r[1]} == {new_id}
        # the first delivery keeps its record (and its orders' history)
        assert journal.get_signal(first)["intents"][0]["state"] == "not_placed"
        # without the retry rule (the default), an id is a duplicate as before
        assert journal.record_signal("tv", {"id": "sig-1"}, "sig-1", None, 0)[1] is True
    finally:
        journal.close()


def test_a_signal_in_doubt_is_not_retried(tmp_path):
    journal = Journal(str(tmp_path / "j.sqlite3"))
    try:
        first = _first_delivery(journal, "unknown", status="unknown")
        _sid, duplicate, existing = journal.record_signal("tv", {"id": "sig-1"}, "sig-1", None, 0, retry_not_sent=True)
        assert duplicate and existing == first
    finally:
        journal.close()


# -- through the webhook ----------------------------------------------------------------------------

def _alert(key):
    return json.dumps({"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": key})


def test_an_interrupted_signal_executes_when_its_id_arrives_again(make_server_app, sim):
    app = make_server_app()
    journal = app.extensions["runtime"].service.journal
    # what a restart leaves of a signal received just before kill -9: journaled, nothing sent
    journal.record_signal("default", {"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": "crash-1"},
                          "crash-1", None, 0)
    first = journal.recent_signals(1)[0]["id"]
    journal.set_signal_status(first, "interrupted")
    client = app.test_client()
    r = post(client, _alert("crash-1"))
    body = r.get_json()
    assert r.status_code == 200 and body.get("duplicate") is not True and body["success"] is True, body
    assert body["signal_id"] != first and body["status"] == "acked"
    assert len(sim.orders()) == 2  # both accounts, once
    r = post(client, _alert("crash-1"))  # and now it is a duplicate of the one that was placed
    assert r.get_json()["duplicate"] is True and r.get_json()["success"] is True
    assert len(sim.orders()) == 2


def test_a_retry_of_a_signal_in_doubt_answers_unknown(make_server_app, sim):
    app = make_server_app()
    journal = app.extensions["runtime"].service.journal
    sid, _dup, _ = journal.record_signal("default", {"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": "crash-2"},
                                         "crash-2", None, 0)
    journal.create_intent(sid, 10001, "DEMO0001", 0, "placeorder", {}, f"ps-{sid}-10001-0", state="sending")
    journal.set_intent_state(f"ps-{sid}-10001-0", "unknown", error="in flight at restart")
    journal.set_signal_status(sid, "unknown")
    r = post(app.test_client(), _alert("crash-2"))
    body = r.get_json()
    assert r.status_code == 200 and body["success"] is None and body["status"] == "unknown", body
    assert body["signal_id"] == sid
    assert sim.orders() == []
