"""Helpers shared by the reliability tests (tests/test_reliability_*.py); no tests of its own.

The invariant every reliability test checks against the simulator's book of record
(``sim.orders()``): for every (signal, account) there is **exactly one** broker order, or **none**
with a recorded, reported reason (the intent's final state and error in the journal, visible in
``/api/signals``).  An order is tied to its (signal, account) by the ``clOrdId`` (or, for a
liquidation, ``customTag50``) ``ps-<signal_id>-<account_id>-<step>`` the journal generated.
"""
from __future__ import annotations

import collections
import json
import os
import re
import socket
import sqlite3
import threading
import time
from typing import Dict, Iterable, List, Optional, Tuple

from tests.conftest import SERVER_ADMIN_TOKEN, SERVER_WEBHOOK_SECRET

_INTENT_ID = re.compile(r"^ps-([0-9A-Za-z_]+)-(\d+)-(\d+)$")
FINAL_SIGNAL_STATES = {"acked", "partial", "failed", "unknown", "skipped", "validated", "rejected", "error",
                       "duplicate"}
NO_ORDER_STATES = {"rejected", "unknown", "skipped"}  # intent states that may leave no order behind


def admin_headers() -> dict:
    return {"Authorization": f"Bearer {SERVER_ADMIN_TOKEN}"}


def post_webhook(client, payload, secret: str = SERVER_WEBHOOK_SECRET) -> Tuple[int, dict]:
    """POST a signal with the Flask test client; returns (status, JSON body)."""
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    resp = client.post(f"/webhook/{secret}", data=body, content_type="application/json")
    try:
        data = json.loads(resp.get_data(as_text=True))
    except ValueError:
        data = {"_raw": resp.get_data(as_text=True)}
    return resp.status_code, data


def book_orders(sim) -> List[dict]:
    """Orders that exist at the broker (validation refusals, recorded with orderId None, excluded)."""
    return [o for o in sim.orders() if o.get("orderId") is not None]


def intent_key(order: dict) -> Optional[Tuple[str, int]]:
    """(signal_id, account_id) from an order's clOrdId / customTag50, or None."""
    for key in ("clOrdId", "customTag50"):
        m = _INTENT_ID.match(str(order.get(key) or ""))
        if m:
            return m.group(1), int(m.group(2))
    return None


def orders_per_signal_account(sim) -> Dict[Tuple[str, int], List[dict]]:
    per = collections.defaultdict(list)
    for order in book_orders(sim):
        key = intent_key(order)
        if key is not None:
            per[key].append(order)
    return per


def assert_at_most_one(sim) -> None:
    """No (signal, account) has two broker orders (single-step plans: step 0 only)."""
    per_step = collections.Counter()
    for order in book_orders(sim):
        cl = order.get("clOrdId") or order.get("customTag50")
        if cl and _INTENT_ID.match(str(cl)):
            per_step[cl] += 1
    doubled = {k: v for k, v in per_step.items() if v > 1}
    assert not doubled, f"DUPLICATE broker orders: {doubled}"


def wait_signal_final(journal, signal_id: str, timeout_s: float = 10.0) -> str:
    """Wait (bounded) until the service recorded the signal's outcome; returns the status."""
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        status = journal.signal_status(signal_id)
        if status in FINAL_SIGNAL_STATES:
            return status
        time.sleep(0.02)
    raise AssertionError(f"signal {signal_id} not finished after {timeout_s}s (status {status!r})")


def check_invariant(sim, journal, signal_id: str, account_ids: Iterable[int]) -> Dict[int, str]:
    """Exactly one order per account, or none with a recorded reason.  -> {account: 'order'|reason}."""
    signal = journal.get_signal(signal_id)
    assert signal is not None, f"signal {signal_id} is not in the journal"
    per = orders_per_signal_account(sim)
    intents = {i["account_id"]: i for i in signal["intents"]}
    result = {}
    for account in account_ids:
        orders = per.get((signal_id, account), [])
        assert len(orders) <= 1, f"DUPLICATE: signal {signal_id} account {account}: {orders}"
        intent = intents.get(account)
        if orders:
            assert intent is not None, f"order without an intent: {orders}"
            if intent["state"] in ("acked", "reconciled", "unknown"):
                if intent["broker_order_id"] is not None:
                    assert intent["broker_order_id"] == orders[0]["orderId"], (intent, orders)
            else:
                raise AssertionError(f"order {orders[0]['orderId']} exists but the journal says {intent}")
            result[account] = "order"
        else:
            summary = signal.get("summary") or ""
            if intent is not None:
                assert intent["state"] in NO_ORDER_STATES, \
                    f"signal {signal_id} account {account}: no order, intent {intent['state']}"
                assert intent["state"] == "skipped" or intent["error"], f"no reason recorded: {intent}"
                result[account] = f"{intent['state']}: {intent['error']}"
            else:  # refused before an intent existed (plan error, journal down): in the summary
                assert summary, f"signal {signal_id} account {account}: no order and no reason"
                result[account] = summary
    return result


def accounts_of(sim, *names: str) -> List[int]:
    return [sim.account_id(n) for n in names]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_journal(path: str) -> Tuple[List[dict], List[dict]]:
    """Signals and intents straight from the database (read-only; another process may own the
    journal): an SQLite path, or a Postgres URL."""
    if path.startswith(("postgres://", "postgresql://")):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(path, autocommit=True, row_factory=dict_row, connect_timeout=10) as pg:
            signals = [{k: v for k, v in r.items() if k != "rowid"} for r in pg.execute("SELECT * FROM signals")]
            intents = pg.execute("SELECT * FROM order_intents").fetchall()
        return signals, intents
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        signals = [dict(r) for r in conn.execute("SELECT * FROM signals")]
        intents = [dict(r) for r in conn.execute("SELECT * FROM order_intents")]
    finally:
        conn.close()
    return signals, intents


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(predicate, timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout_s``; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return bool(value)
        time.sleep(interval_s)


def thread_names() -> List[str]:
    return sorted(t.name for t in threading.enumerate())
