"""The console's data: the alert log (every webhook request, refused ones included) and
``GET /api/accounts`` (positions priced from market-data quotes, working orders by role, locks)."""
from __future__ import annotations

import json

from phantom_scraper.web.accounts_api import order_role
from phantom_scraper.web.alert_log import AlertLog
from tests.helpers import ADMIN_HEADERS, BUY, post, wait_for, ws_ready
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET


def _signals(client, query=""):
    r = client.get("/api/signals" + query, headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_every_webhook_request_is_in_the_alert_log_refused_ones_included(make_server_app):
    app = make_server_app()
    ws_ready(app)
    client = app.test_client()
    assert post(client, BUY).status_code == 200
    assert post(client, '{"action":"buy","ticker":"ZZZ1!","quantity":1}').status_code == 400  # unknown symbol
    assert post(client, "not json at all").status_code == 400
    assert post(client, BUY, token="wrong-secret-123").status_code == 401
    # the secret in the body is redacted; a refused body-secret request is logged too
    assert post(client, json.dumps({"secret": "nope-not-it-42", "action": "buy", "ticker": "MNQ1!", "quantity": 1}),
                token=None).status_code == 401
    assert post(client, json.dumps({"secret": SECRET, "action": "sell", "ticker": "MNQ1!", "quantity": 1,
                                    "comment": "x" * 10_000}), token=None).status_code == 200

    body = _signals(client)
    alerts = body["alerts"]
    assert len(alerts) == 6
    newest, unknown = alerts[0], alerts[4]
    accepted = [a for a in alerts if a["outcome"] == "accepted"]
    assert len(accepted) == 2 and all(a["signal_id"] for a in accepted)
    assert {a["signal_id"] for a in accepted} <= {s["id"] for s in body["signals"]}
    assert unknown["http_status"] == 400 and unknown["error_code"] == "unknown_symbol"
    assert unknown["error_field"] in ("ticker", "symbol") and "ZZZ1!" in unknown["body"]
    assert newest["body_truncated"] and newest["body_bytes"] > 10_000 and len(newest["body"].encode()) <= 4096
    text = json.dumps(body)
    assert SECRET not in text and "nope-not-it-42" not in text and "wrong-secret-123" not in text
    assert all(a["route"] in ("/webhook/***", "/webhook") for a in alerts)
    assert all(a["source"] == "127.0.0.1" and a["at"] > 0 for a in alerts)
    wrong = [a for a in alerts if a["http_status"] == 401]
    assert len(wrong) == 2 and all(a["error_code"] == "unauthorized" for a in wrong)
    assert next(a for a in wrong if a["route"] == "/webhook/***")["note"] == "body not read"

    refused = _signals(client, "?status=refused")["alerts"]
    assert len(refused) == 4 and all(a["outcome"] == "refused" and a["http_status"] >= 400 for a in refused)


def test_the_alert_log_is_bounded_by_count_and_age():
    now = [1000.0]
    log = AlertLog(max_entries=3, max_age_s=60, body_limit=8, clock=lambda: now[0])
    for i in range(5):
        log.record(source="1.2.3.4", route="/webhook", method="POST", status=400, body=b"0123456789abc",
                   answer=b'{"success":false,"error":{"code":"invalid_json","field":null}}')
    rows = log.entries(10)
    assert [r["id"] for r in rows] == [5, 4, 3]
    assert rows[0]["body"] == "01234567" and rows[0]["body_truncated"] and rows[0]["error_code"] == "invalid_json"
    now[0] += 61
    assert log.entries(10) == []
    log.stop()


def test_order_roles():
    net = {"MNQZ6": 1}
    assert order_role({"contract": "MNQZ6", "action": "Sell", "type": "Limit", "leg_of": 5}, net) == "take_profit"
    assert order_role({"contract": "MNQZ6", "action": "Sell", "type": "Stop", "leg_of": 5}, net) == "stop"
    assert order_role({"contract": "MNQZ6", "action": "Sell", "type": "Stop"}, net) == "stop"
    assert order_role({"contract": "MNQZ6", "action": "Buy", "type": "Limit"}, net) == "entry"
    assert order_role({"contract": "MESZ6", "action": "Sell", "type": "Limit"}, net) == "entry"


def test_api_accounts_prices_open_positions_from_quotes(make_server_app, sim):
    """No P&L limit is set: the position is still priced from the market-data socket."""
    app = make_server_app(md_url=sim.md_url, status_cache_s=0.0)
    ws_ready(app)
    client = app.test_client()
    assert client.get("/api/accounts").status_code == 401
    sim.set_price("MNQZ6", 21000.0)
    r = post(client, '{"action":"buy","ticker":"MNQ1!","quantity":2,"price":21000,'
                     '"takeProfit":{"ticks":200},"stopLoss":{"ticks":200}}')
    assert r.status_code == 200, r.get_data(as_text=True)
    sim.set_price("MNQZ6", 21012.25)

    def demo1():
        body = client.get("/api/accounts", headers=ADMIN_HEADERS).get_json()
        acct = next(a for a in body["accounts"] if a["name"] == "DEMO0001")
        pos = acct["positions"]
        if pos and pos[0]["last_price"] == 21012.25 and acct["open_pnl"] is not None and len(acct["working_orders"]) == 2:
            return acct
        return None

    acct = wait_for(demo1, what="DEMO0001 priced at the new quote with its two bracket legs")
    pos = acct["positions"][0]
    assert pos["contract"] == "MNQZ6" and pos["qty"] == 2 and pos["value_per_point"] == 2.0
    expected = (21012.25 - float(pos["avg_price"])) * 2.0 * 2
    assert abs(pos["open_pnl"] - expected) <= 0.01 and abs(acct["open_pnl"] - expected) <= 0.01
    assert sorted(o["role"] for o in acct["working_orders"]) == ["stop", "take_profit"]
    assert all(o["contract"] == "MNQZ6" and o["side"] == "Sell" for o in acct["working_orders"])
    assert acct["locks"] == [] and acct["realized_pnl"] is not None
    status = client.get("/api/websocket-status", headers=ADMIN_HEADERS).get_json()
    assert status["risk"]["market_data"]["connected"] is True
