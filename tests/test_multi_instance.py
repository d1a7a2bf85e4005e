"""Two server processes on one PostgreSQL journal (needs TEST_DATABASE_URL; skipped otherwise).

Each login is owned by exactly one process (an advisory-lock lease): webhooks sent to either
process at random are executed exactly once, all by the owner (the standby hands them over through
the journal and LISTEN/NOTIFY).  ``kill -9`` of the owner: the standby takes the login over within
a bounded time, reconciles, and executes what follows; nothing is placed twice.
"""
from __future__ import annotations

import collections
import random
import signal
import time

import pytest

from tests.pg_support import database_url, private_schema
from tests.helpers import ServerProcess, book_orders, intent_key, read_journal, settle

LEASE_POLL_S = 0.2
TAKEOVER_BOUND_S = 10.0  # lease poll + authenticate + socket + reconcile, on a loaded machine


@pytest.fixture
def pg_url():
    with private_schema(database_url()) as url:
        yield url


def _role(srv):
    _status, body = srv.get("/api/websocket-status")
    return (body.get("coordinator") or {}).get("role")


def _start_pair(sim, pg_url, servers):
    env = dict(LEASE_POLL_INTERVAL_S=str(LEASE_POLL_S), WEBHOOK_BUDGET_S="1.5", TRADOVATE_ACCOUNTS="DEMO0001,DEMO0002")
    a = ServerProcess(sim, pg_url, **env).start()
    servers.append(a)
    assert _role(a) == "owner"
    b = ServerProcess(sim, pg_url, **env).start()
    servers.append(b)
    assert _role(b) == "standby"
    return a, b


def _send(srv, n, tag):
    payload = {"action": "buy" if n % 2 == 0 else "sell", "ticker": "NQ1!", "quantity": 1, "id": f"{tag}-{n}"}
    status, body = srv.webhook(payload, timeout=10)
    assert status in (200, 202), (status, body)
    assert not body.get("duplicate"), body
    return body["signal_id"]


def _check_exactly_once(sim, pg_url, signal_ids, accounts):
    """Every signal: exactly one broker order per account, and a final status in the journal."""
    per = collections.Counter(intent_key(o) for o in book_orders(sim))
    doubled = {k: v for k, v in per.items() if v > 1}
    assert not doubled, f"DUPLICATE orders: {doubled}"
    for sid in signal_ids:
        for account in accounts:
            assert per[(sid, account)] == 1, f"signal {sid} account {account}: {per[(sid, account)]} orders"
    signals, _intents = read_journal(pg_url)
    status = {s["id"]: s["status"] for s in signals}
    assert {status[sid] for sid in signal_ids} == {"acked"}, collections.Counter(status[s] for s in signal_ids)


def test_two_instances_random_webhooks_each_executed_once_by_the_owner(sim, pg_url, servers):
    a, b = _start_pair(sim, pg_url, servers)
    assert settle(lambda: sim.ws_session_count() == 1, 10), "the owner never opened its one socket"
    rng = random.Random(7)
    sent = collections.Counter()
    ids = []
    for n in range(40):
        srv = rng.choice((a, b))
        sent["owner" if srv is a else "standby"] += 1
        ids.append(_send(srv, n, "rand"))
    assert sent["standby"] > 5 and sent["owner"] > 5
    accounts = [sim.account_id("DEMO0001"), sim.account_id("DEMO0002")]
    assert settle(lambda: len(book_orders(sim)) >= len(ids) * 2, 20)
    _check_exactly_once(sim, pg_url, ids, accounts)
    assert sim.ws_session_count() == 1  # only the owner holds a socket for the login
    assert "handed to the login owner" in b.log() and "taken over from a standby" in a.log()


def test_kill_the_owner_the_standby_takes_over_without_duplicates(sim, pg_url, servers):
    a, b = _start_pair(sim, pg_url, servers)
    accounts = [sim.account_id("DEMO0001"), sim.account_id("DEMO0002")]
    ids = [_send(a if n % 2 else b, n, "before") for n in range(10)]
    assert settle(lambda: len(book_orders(sim)) >= 20, 20)

    a.proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    a.proc.wait(10)
    # Sent while nobody owns the login: journaled by the standby, executed after the takeover.
    during = [_send(b, n, "during") for n in range(3)]
    assert settle(lambda: _role(b) == "owner", TAKEOVER_BOUND_S), "the standby never took over\n" + b.log()
    takeover_s = time.monotonic() - killed_at
    print(f"\ntakeover after kill -9 of the owner: {takeover_s:.2f} s (lease poll {LEASE_POLL_S} s)")
    after = [_send(b, n, "after") for n in range(10)]
    all_ids = ids + during + after
    assert settle(lambda: len(book_orders(sim)) >= len(all_ids) * 2, 20)
    time.sleep(0.5)  # give a wrong resend every chance to show up
    _check_exactly_once(sim, pg_url, all_ids, accounts)
    assert settle(lambda: sim.ws_session_count() == 1, 5)


def test_kill_the_owner_mid_order_the_new_owner_reconciles_by_cl_ord_id(sim, pg_url, servers):
    env = dict(LEASE_POLL_INTERVAL_S=str(LEASE_POLL_S), WEBHOOK_BUDGET_S="0.5", ORDER_ACK_TIMEOUT_S="30")
    a = ServerProcess(sim, pg_url, **env).start()  # one account (DEMO0001)
    servers.append(a)
    b = ServerProcess(sim, pg_url, **env).start()
    servers.append(b)
    assert (_role(a), _role(b)) == ("owner", "standby")
    assert settle(lambda: sim.ws_session_count() == 1, 10)
    sim.faults.no_answer_next_orders = 1  # the order executes; its answer never comes
    status, body = b.webhook({"action": "buy", "ticker": "NQ1!", "quantity": 2, "id": "in-flight"})
    assert status == 202, body  # handed to the owner, still executing after the budget
    signal_id = body["signal_id"]
    assert settle(lambda: len(book_orders(sim)) == 1, 5), "the order never reached the broker"
    order = book_orders(sim)[0]
    _signals, intents = read_journal(pg_url)
    [intent] = [i for i in intents if i["signal_id"] == signal_id]
    assert intent["state"] == "sending" and intent["cl_ord_id"] == order["clOrdId"]

    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    sim.faults.reset()
    assert settle(lambda: _role(b) == "owner", TAKEOVER_BOUND_S), "the standby never took over\n" + b.log()

    def settled():
        _s, rows = read_journal(pg_url)
        return next(i for i in rows if i["signal_id"] == signal_id)["state"] == "reconciled"
    assert settle(settled, 10), read_journal(pg_url)[1]
    _s, rows = read_journal(pg_url)
    assert next(i for i in rows if i["signal_id"] == signal_id)["broker_order_id"] == order["orderId"]
    time.sleep(0.5)  # give a wrong resend every chance to show up
    assert len(book_orders(sim)) == 1, "the in-flight order was placed twice"
    status, body = b.webhook({"action": "sell", "ticker": "NQ1!", "quantity": 2, "id": "after"})
    assert status == 200 and body["status"] == "acked", body
    assert len(book_orders(sim)) == 2
