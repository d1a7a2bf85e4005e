"""BrokerState: the login's positions/orders/fills as reported by the socket's sync stream."""
from __future__ import annotations

import threading

import requests

import recorder_service as rs
from phantom_scraper.tradovate.broker_state import BrokerState
from phantom_scraper.config import Credentials, Settings
from phantom_scraper.tradovate_integration import TradovateIntegration
from phantom_scraper.tradovate_sim import UserSpec

FAST = Settings(heartbeat_interval_s=0.2, ws_connect_timeout_s=5.0, order_ack_timeout_s=3.0,
                reconcile_window_s=1.0, reconcile_poll_interval_s=0.05, rest_timeout_s=5.0,
                reconnect_backoff_initial_s=0.05, reconnect_backoff_max_s=0.5, keepalive_interval_s=0.2)
WAIT_S = 20.0


class FakeSocket:
    def __init__(self, snapshot):
        self.snapshot = snapshot
        self.listeners, self.close_listeners = [], []
        self.on_request = None
        self.bodies = []

    def add_listener(self, fn):
        self.listeners.append(fn)

    def add_close_listener(self, fn):
        self.close_listeners.append(fn)

    def request(self, endpoint, body=None, timeout=5.0):
        assert endpoint == "user/syncrequest"
        self.bodies.append(body)
        if self.on_request:
            self.on_request()
        return self.snapshot

    def push(self, etype, event_type, entity):
        for fn in self.listeners:
            fn({"e": "props", "d": {"entityType": etype, "eventType": event_type, "entity": entity}})

    def close(self):
        for fn in self.close_listeners:
            fn(self)


def test_the_syncrequest_body_follows_the_partner_docs():
    """``accounts`` with ``entityTypes``, ``splitResponses`` always sent (false), and never ``users``
    together with ``entityTypes``; without accounts only ``users`` (the retail examples' form)."""
    from phantom_scraper.tradovate.broker_state import SYNC_ENTITY_TYPES
    sock = FakeSocket({"users": [{"id": 1}]})
    BrokerState("t").attach(sock, account_ids=[11, 10], user_id=1)
    BrokerState("t").attach(sock, user_id=1)
    with_accounts, without = sock.bodies
    assert with_accounts == {"accounts": [10, 11], "entityTypes": list(SYNC_ENTITY_TYPES), "splitResponses": False}
    assert without == {"users": [1], "splitResponses": False}


def pos(pid, acct, contract, net):
    return {"id": pid, "accountId": acct, "contractId": contract, "netPos": net}


def test_snapshot_then_events_update_positions_orders_and_balances():
    state = BrokerState("t")
    sock = FakeSocket({"users": [{"id": 1}], "positions": [pos(1, 10, 7, 2)],
                       "orders": [{"id": 5, "accountId": 10, "contractId": 7, "ordStatus": "Working"}],
                       "orderVersions": [{"id": 6, "orderId": 5, "orderQty": 2, "orderType": "Limit", "price": 10.0}],
                       "cashBalances": [{"id": 3, "accountId": 10, "amount": 50000.0}]})
    seen = []
    state.add_listener(lambda et, ev, e: seen.append((et, ev)))
    assert not state.fresh
    assert state.attach(sock, account_ids=[10])
    assert state.fresh and state.net_pos(10, 7) == 2 and state.net_pos(10, 8) == 0
    legs = state.working_orders(10, 7)
    assert [(o["id"], o["orderQty"], o["price"]) for o in legs] == [(5, 2, 10.0)]
    assert state.cash_balance(10)["amount"] == 50000.0 and state.cash_balance(11) is None
    sock.push("position", "Updated", pos(1, 10, 7, -1))
    sock.push("order", "Updated", [{"id": 5, "accountId": 10, "contractId": 7, "ordStatus": "Filled"}])
    assert state.net_pos(10, 7) == -1 and state.working_orders(10, 7) == []
    assert [p["netPos"] for p in state.positions(10)] == [-1] and state.positions(11) == []
    sock.push("order", "Deleted", {"id": 5})
    assert state.order_status(5) is None
    assert ("sync", "Loaded") in seen and ("position", "Updated") in seen


def test_positions_and_balances_are_read_per_account_through_every_kind_of_change():
    """The per-account index (positions, cash balances) follows creates, updates, deletes and a
    new snapshot, and never mixes accounts."""
    state = BrokerState("t")
    sock = FakeSocket({"users": [{"id": 1}], "positions": [pos(1, 10, 7, 2), pos(2, 11, 7, -3)],
                       "cashBalances": [{"id": 3, "accountId": 10, "amount": 1.0},
                                        {"id": 4, "accountId": 11, "amount": 2.0}]})
    assert state.attach(sock, account_ids=[10, 11])
    assert (state.net_pos(10, 7), state.net_pos(11, 7), state.net_pos(12, 7)) == (2, -3, 0)
    sock.push("position", "Created", pos(5, 10, 8, 4))  # a second contract on account 10
    sock.push("cashBalance", "Created", {"id": 9, "accountId": 10, "amount": 5.0})  # newer balance row
    assert sorted(p["contractId"] for p in state.positions(10)) == [7, 8] and len(state.positions()) == 3
    assert state.cash_balance(10)["amount"] == 5.0 and state.cash_balance(11)["amount"] == 2.0
    sock.push("position", "Deleted", {"id": 1})
    assert state.net_pos(10, 7) == 0 and [p["id"] for p in state.positions(10)] == [5]
    again = FakeSocket({"users": [{"id": 1}], "positions": [pos(2, 11, 7, 1)], "cashBalances": []})
    assert state.attach(again, account_ids=[10, 11])  # a new socket's snapshot replaces it all
    assert state.positions(10) == [] and state.net_pos(11, 7) == 1 and state.cash_balance(10) is None


def test_events_during_the_snapshot_are_applied_after_it():
    state = BrokerState("t")
    sock = FakeSocket({"users": [{"id": 1}], "positions": [pos(1, 10, 7, 1)]})
    sock.on_request = lambda: sock.push("position", "Updated", pos(1, 10, 7, 3))  # arrives before the answer
    state.attach(sock, account_ids=[10])
    assert state.net_pos(10, 7) == 3


def test_close_makes_it_stale_and_an_old_socket_is_ignored():
    state = BrokerState("t")
    first = FakeSocket({"users": [{"id": 1}], "positions": [pos(1, 10, 7, 1)]})
    state.attach(first)
    first.close()
    assert not state.fresh
    second = FakeSocket({"users": [{"id": 1}], "positions": [pos(1, 10, 7, 4)]})
    state.attach(second)
    first.push("position", "Updated", pos(1, 10, 7, 9))  # the replaced socket: ignored
    first.close()  # its late close does not make the new feed stale
    assert state.fresh and state.net_pos(10, 7) == 4


def test_wait_for_wakes_on_an_event():
    state = BrokerState("t")
    sock = FakeSocket({"users": [{"id": 1}]})
    state.attach(sock)
    timer = threading.Timer(0.05, lambda: sock.push("position", "Created", pos(1, 10, 7, 2)))
    timer.start()
    try:
        assert state.wait_for(lambda s: s.net_pos(10, 7) == 2, timeout_s=WAIT_S)
    finally:
        timer.join()
    assert not state.wait_for(lambda s: s.net_pos(10, 7) == 5, timeout_s=0.05)


def test_pooled_connection_feeds_broker_state_from_the_simulator(make_multi_sim, clean_pool):
    """Against the simulator: the pool's socket syncs, fills arrive as props events, and after a
    dropped socket the state is stale until the new socket's snapshot."""
    sim = make_multi_sim([UserSpec()], ws_idle_timeout_s=5.0)
    ti = TradovateIntegration(Credentials(username="demo", password="demo"), sim.rest_url, sim.ws_url,
                              is_demo=True, settings=FAST)
    try:
        ti.authenticate()
        accounts = ti.list_accounts()
        conn = rs.register_login(ti, [a["id"] for a in accounts], is_demo=True, login_key="demo@sim",
                                 settings=FAST)
        conn.connect_blocking(WAIT_S)
        state = conn.broker_state
        assert state.wait_fresh(WAIT_S)
        acct = accounts[0]
        r = requests.post(f"{sim.rest_url}/order/placeorder", timeout=5,
                          headers={"Authorization": f"Bearer {ti.access_token}"},
                          json={"accountId": acct["id"], "action": "Buy", "symbol": "NQZ6", "orderQty": 2,
                                "orderType": "Market", "isAutomated": True})
        contract_id = ti.find_contract("NQZ6")["id"]
        assert "orderId" in r.json()
        assert state.wait_for(lambda s: s.net_pos(acct["id"], contract_id) == 2, WAIT_S)
        assert conn.status()["broker_state"]["fresh"] is True
        old = conn.live_client()
        sim.close_all_sockets()
        old.wait_closed(WAIT_S)
        assert not state.fresh  # the socket it was synced on is gone
        conn.connect_blocking(WAIT_S)
        assert state.wait_fresh(WAIT_S)
        assert state.fresh and state.net_pos(acct["id"], contract_id) == 2
    finally:
        rs.reset_pool()
        ti.close()
