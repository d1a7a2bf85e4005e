"""Issue 25, finding 11: a webhook that arrives while the service starts is not lost.

The broker answers the login with a penalty ticket (the start waits it out); a webhook arriving
meanwhile was answered ``503 not_ready`` and nothing was journaled.  Now it is journaled, answered
``202`` with its id, and executed once the logins are ready -- unless it is older than the
freshness window by then (journaled ``expired``, nothing placed).
"""
from __future__ import annotations

import json

from tests.helpers import post, wait_for

PENALTY_S = 3.0  # longer than the route's own wait for readiness (1 s)


def _starting(make_server_app, sim, **overrides):
    sim.faults.penalty_time_s = PENALTY_S
    sim.faults.penalty_next = 1  # the first login attempt gets a penalty ticket
    app = make_server_app(boot=False, **overrides)
    runtime = app.extensions["runtime"]
    runtime.boot(wait=False)
    service = runtime.service
    wait_for(lambda: service.journal is not None and service.recorders, timeout_s=30, what="journal open")
    assert service.state == "starting", service.state
    return app, service


def test_a_webhook_during_start_up_is_journaled_and_executed_once_ready(make_server_app, sim):
    app, service = _starting(make_server_app, sim)
    client = app.test_client()
    r = post(client, json.dumps({"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": "early-1"}))
    body = r.get_json()
    assert r.status_code == 202, body
    assert body["success"] is True and body["status"] == "queued" and body["signal_id"]
    assert service.state == "starting" and sim.orders() == []  # answered before the logins were ready
    assert service.journal.get_signal(body["signal_id"])["status"] == "queued"
    # the same id again: a duplicate -- in doubt while still queued, or (on a loaded machine the
    # start may finish during the route's own wait for readiness) the first's state then: still
    # queued (the queue not drained yet) or acked
    again = post(client, json.dumps({"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": "early-1"})).get_json()
    assert again["duplicate"] is True and again["signal_id"] == body["signal_id"], again
    assert again["success"] is None or (again["success"] is True and again["status"] in ("queued", "acked")), again
    wait_for(lambda: service.state == "ready", timeout_s=60, what="ready")
    wait_for(lambda: len(sim.orders()) == 2, timeout_s=30, what="the queued signal placed on both accounts")
    service.settle_writes(5.0)
    wait_for(lambda: service.journal.get_signal(body["signal_id"])["status"] == "acked", timeout_s=30)
    assert len({o["clOrdId"] for o in sim.orders()}) == 2


def test_a_queued_webhook_older_than_the_window_is_not_executed(make_server_app, sim):
    app, service = _starting(make_server_app, sim, pending_signal_max_age_s=0.5)
    r = post(app.test_client(), json.dumps({"action": "buy", "ticker": "MNQ1!", "quantity": 1}))
    assert r.status_code == 202
    signal_id = r.get_json()["signal_id"]
    wait_for(lambda: service.state == "ready", timeout_s=60, what="ready")
    wait_for(lambda: service.journal.get_signal(signal_id)["status"] == "expired", timeout_s=30)
    assert sim.orders() == []
