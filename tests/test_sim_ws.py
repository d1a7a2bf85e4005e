"""The simulator's WebSocket surface, driven with a raw ``websockets`` sync client."""
from __future__ import annotations

import json
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from phantom_scraper.tradovate_sim import RETAIL_SYNC_ENTITY_TYPES, SimConfig, Simulator
from tests.helpers import assert_closed_within, frames, next_message, open_ws, order, request, token_of


# ---- framing and authorize --------------------------------------------------------------------
def test_open_frame_then_authorize_raw_token(sim):
    ws = open_ws(sim)
    ws.close()


def test_authorize_quoted_token_and_md_token(sim):
    login = requests.post(f"{sim.rest_url}/auth/accesstokenrequest", json={"name": "demo", "password": "demo"}).json()
    for token in (json.dumps(login["accessToken"]) + "\n", login["mdAccessToken"]):
        ws = open_ws(sim, authorize=False)
        ws.send(f"authorize\n7\n\n{token}")
        assert next_message(ws) == {"s": 200, "i": 7}
        ws.close()


def test_authorize_bad_token_401_then_closed_when_late(sim):
    ws = open_ws(sim, authorize=False)
    ws.send("authorize\n1\n\nnot-a-token")
    assert next_message(ws) == {"s": 401, "i": 1, "d": "Invalid access token"}
    elapsed = assert_closed_within(ws, sim.config.authorize_timeout_s)
    assert elapsed < sim.config.authorize_timeout_s + 0.5


def test_not_authorized_in_time_is_closed(sim):
    ws = open_ws(sim, authorize=False)
    ws.send("[]")
    assert_closed_within(ws, sim.config.authorize_timeout_s)


def test_requests_before_authorize_are_refused(sim):
    ws = open_ws(sim, authorize=False)
    msg = request(ws, "account/list", 3)
    assert msg["s"] == 401 and isinstance(msg["d"], str)
    ws.close()


def test_expired_token_cannot_authorize(sim):
    token = token_of(sim)
    sim.expire_all_tokens()
    ws = open_ws(sim, authorize=False)
    ws.send(f"authorize\n0\n\n{token}")
    assert next_message(ws)["s"] == 401
    ws.close()


def test_other_paths_rejected(sim):
    with pytest.raises(InvalidStatus) as exc:
        connect(sim.ws_url.replace("/v1/websocket", "/"), open_timeout=2)
    assert exc.value.response.status_code == 404


# ---- heartbeats and idle timeout ------------------------------------------------------------------
def test_heartbeats_keep_socket_alive_past_idle_timeout(sim):
    ws = open_ws(sim)
    idle = sim.config.ws_idle_timeout_s
    start = time.monotonic()
    seen_h = 0
    while time.monotonic() - start < idle * 2.5:
        ws.send("[]")
        try:
            kind, _ = frames(ws, timeout=idle / 4)
            seen_h += kind == "h"
        except TimeoutError:
            pass
    assert seen_h >= 2  # server 'h' while idle
    assert request(ws, "account/list", 9)["s"] == 200
    ws.close()


def test_no_client_frames_closes_socket_even_with_pings(sim):
    ws = open_ws(sim)
    ws.ping()  # WebSocket-level pings do not count
    elapsed = assert_closed_within(ws, sim.config.ws_idle_timeout_s)
    assert sim.config.ws_idle_timeout_s - 0.3 < elapsed < sim.config.ws_idle_timeout_s + 0.6


def test_h_not_sent_while_streaming(sim):
    ws = open_ws(sim)
    start = time.monotonic()
    kinds = []
    while time.monotonic() - start < 0.6:  # one request every 0.1 s < heartbeat interval (0.25 s)
        ws.send(f"account/list\n{len(kinds) + 1}\n\n")
        kinds.append(frames(ws)[0])
        time.sleep(0.1)
    assert set(kinds) == {"a"}
    ws.close()


def test_close_mode_sends_close_frame_when_configured():
    with Simulator(SimConfig(ws_idle_timeout_s=0.3, drop_mode="close")) as sim:
        ws = open_ws(sim)
        with pytest.raises(ConnectionClosed) as exc:
            while True:
                ws.recv(timeout=2)
        assert exc.value.rcvd is not None and exc.value.rcvd.code == 1000


# ---- request mapping ------------------------------------------------------------------------------------
def test_request_mapping_matches_rest(sim):
    token = token_of(sim)
    ws = open_ws(sim, token)
    rest = requests.get(f"{sim.rest_url}/account/list", headers={"Authorization": f"Bearer {token}"}).json()
    assert request(ws, "account/list", 1) == {"s": 200, "i": 1, "d": rest}
    assert request(ws, "contract/find", 2, "name=NQZ6")["d"]["name"] == "NQZ6"
    suggested = request(ws, "contract/suggest", 3, "t=ES&l=2")["d"]
    assert [c["name"] for c in suggested] == [c.name for c in sim.exchange.catalog.suggest("ES", 2)]
    rolled = request(ws, "contract/rollcontract", 4, "", {"name": "YM", "forward": True, "ifExpired": True})
    assert rolled["d"]["contract"]["name"].startswith("YM")
    missing = request(ws, "quote/subscribe", 5)
    assert missing["s"] == 404 and isinstance(missing["d"], str)
    assert request(ws, "Account/List", 6, "undefined", "undefined")["s"] == 200
    assert request(ws, "contract/find", 7, "name=ZZZ9")["s"] == 404
    ws.close()


def test_orders_over_websocket_recorded_with_transport(sim):
    ws = open_ws(sim)
    answer = request(ws, "order/placeOrder", 1, "", order(clOrdId="ws-1"))
    assert answer["s"] == 200 and "orderId" in answer["d"]
    commands = request(ws, "command/list", 2)["d"]
    assert [c["orderId"] for c in commands if c.get("clOrdId") == "ws-1"] == [answer["d"]["orderId"]]
    entry = sim.orders()[0]
    assert (entry["transport"], entry["clOrdId"], entry["ordStatus"]) == ("websocket", "ws-1", "Filled")
    failure = request(ws, "order/placeorder", 3, "", order(symbol="NQ1!"))
    assert failure["s"] == 200 and failure["d"]["failureReason"] == "InvalidContract"
    ws.close()


def test_concurrent_orders_answered_concurrently(sim):
    sim.faults.response_latency_ms = 50
    ws = open_ws(sim)
    start = time.monotonic()
    for i in range(1, 51):
        ws.send(f"order/placeorder\n{i}\n\n{json.dumps(order(clOrdId=f'c{i}'))}")
    ids = set()
    while len(ids) < 50:
        for m in frames(ws, timeout=2)[1] or []:
            ids.add(m["i"])
    assert time.monotonic() - start < 0.5  # not 50 x 50 ms
    assert len(sim.orders()) == 50
    ws.close()


# ---- syncrequest and events ------------------------------------------------------------------------------
def test_syncrequest_snapshot_then_props_events(sim):
    ws = open_ws(sim)
    request(ws, "order/placeorder", 1, "", order())  # before the snapshot
    snap = request(ws, "user/syncrequest", 2, "", {"users": [1], "splitResponses": True,
                                                     "entityTypes": ["order", "position", "fill", "command",
                                                                     "executionReport", "account"]})
    d = snap["d"]
    assert d["users"][0]["id"] == 1 and len(d["orders"]) == 1 and len(d["positions"]) == 1
    assert len(d["accounts"]) == 2 and "cashBalances" not in d
    ws.send(f"order/placeorder\n3\n\n{json.dumps(order(action='Sell', clOrdId='x'))}")
    seen = {}
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not {"fill", "position"} <= set(seen):
        for m in frames(ws)[1] or []:
            if m.get("e") == "props":
                seen.setdefault(m["d"]["entityType"], []).append(m["d"])
    assert {"order", "command", "executionReport", "fill", "position"} <= set(seen)
    assert "orderVersion" not in seen and "commandReport" not in seen  # not subscribed
    created = seen["order"][0]
    assert created["eventType"] == "Created" and created["entity"]["ordStatus"] == "PendingNew"
    assert seen["order"][-1]["entity"]["ordStatus"] == "Filled"
    assert seen["position"][-1]["entity"]["netPos"] == 0
    assert seen["command"][0]["entity"]["clOrdId"] == "x"
    ws.close()


def test_events_from_rest_orders_and_several_messages_per_frame(sim):
    token = token_of(sim)
    ws = open_ws(sim, token)
    request(ws, "user/syncrequest", 1, "", {"accounts": [10002], "entityTypes": list(RETAIL_SYNC_ENTITY_TYPES)})
    requests.post(f"{sim.rest_url}/order/placeorder", headers={"Authorization": f"Bearer {token}"},
                  json=order("DEMO0001"))  # other account: not delivered
    requests.post(f"{sim.rest_url}/order/placeorder", headers={"Authorization": f"Bearer {token}"},
                  json=order("DEMO0002"))
    kind, messages = frames(ws, timeout=2)
    while kind != "a":
        kind, messages = frames(ws, timeout=2)
    assert len(messages) > 1 and all(m["e"] == "props" for m in messages)
    assert {m["d"]["entity"].get("accountId", 10002) for m in messages} == {10002}
    ws.close()


def test_syncrequest_without_entity_types_is_everything_by_default(sim):
    """Tradovate's official example clients send only {users: [id]} and destructure the full
    initial response (example-api-faq user-sync-request), then handle props events."""
    ws = open_ws(sim)
    request(ws, "order/placeorder", 1, "", order())
    snap = request(ws, "user/syncrequest", 2, "", {"users": [1]})["d"]
    for key in ("users", "accounts", "cashBalances", "positions", "orders", "fills", "commands",
                "executionReports", "orderVersions", "contracts", "contractMaturities", "products",
                "contractGroups", "orderStrategies", "fillPairs", "marginSnapshots", "userProperties"):
        assert isinstance(snap.get(key), list), key
    assert len(snap["orders"]) == 1 and len(snap["positions"]) == 1 and len(snap["accounts"]) == 2
    contract_id = snap["positions"][0]["contractId"]
    assert [c["id"] for c in snap["contracts"]] == [contract_id]
    maturity = snap["contractMaturities"][0]
    assert maturity["id"] == snap["contracts"][0]["contractMaturityId"] and maturity["expirationDate"]
    assert snap["products"][0]["id"] == maturity["productId"]
    request(ws, "order/placeorder", 3, "", order(action="Sell"))
    kinds = set()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not {"order", "fill", "position"} <= kinds:
        kinds |= {m["d"]["entityType"] for m in frames(ws)[1] or [] if m.get("e") == "props"}
    assert {"order", "fill", "position"} <= kinds
    ws.close()


def test_syncrequest_strict_reading_when_configured():
    with Simulator(SimConfig(sync_default_entity_types=())) as sim:
        ws = open_ws(sim)
        snap = request(ws, "user/syncrequest", 1, "", {"users": [1]})
        assert set(snap["d"]) == {"users", "contractGroups"}
        request(ws, "order/placeorder", 2, "", order())
        with pytest.raises(TimeoutError):
            next_message(ws, lambda m: m.get("e") == "props", timeout=0.3)
        ws.close()


# ---- deliberate closes ------------------------------------------------------------------------------------
def test_shutdown_event_before_close(sim):
    ws = open_ws(sim)
    assert sim.faults.send_shutdown("Maintenance") == 1
    event = next_message(ws, lambda m: m.get("e") == "shutdown")
    assert event == {"e": "shutdown", "d": {"reasonCode": "Maintenance"}}
    assert_closed_within(ws, 1)


def test_stop_sends_shutdown():
    sim = Simulator(SimConfig()).start()
    ws = open_ws(sim)
    sim.stop()
    assert next_message(ws, lambda m: m.get("e") == "shutdown")["d"]["reasonCode"] == "Maintenance"
    sim.stop()  # idempotent


def test_connection_limit_closes_oldest_and_revokes_its_token():
    with Simulator(SimConfig(max_ws_per_user=2)) as sim:
        old_token, new_token = token_of(sim), token_of(sim)
        oldest = open_ws(sim, old_token)
        second = open_ws(sim, new_token)
        third = open_ws(sim, new_token)
        try:
            event = next_message(oldest, lambda m: m.get("e") == "shutdown")
            assert event["d"]["reasonCode"] == "ConnectionQuotaReached"
            assert_closed_within(oldest, 1)
            r = requests.get(f"{sim.rest_url}/account/list", headers={"Authorization": f"Bearer {old_token}"})
            assert r.status_code == 401
            assert request(third, "account/list", 1)["s"] == 200
        finally:  # an unclosed sync client's reader thread would keep the interpreter alive
            for ws in (oldest, second, third):
                ws.close()


def test_socket_closed_when_its_token_expires():
    with Simulator(SimConfig(token_lifetime_s=0.4, ws_idle_timeout_s=5)) as sim:
        ws = open_ws(sim)
        ws.send("[]")
        assert_closed_within(ws, 1.0)
    with Simulator(SimConfig(token_lifetime_s=0.3, close_ws_on_token_expiry=False)) as sim:
        ws = open_ws(sim)
        time.sleep(0.4)
        assert request(ws, "account/list", 1)["s"] == 200
        ws.close()
