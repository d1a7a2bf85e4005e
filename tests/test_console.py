"""The console's data: the alert log (every webhook request, refused ones included) and
``GET /api/accounts`` (positions priced from market-data quotes, working orders by role, locks)."""
from __future__ import annotations

import json

from phantom_scraper.web.accounts_api import order_role
from phantom_scraper.web.alert_log import AlertLog
from tests.helpers import ADMIN_HEADERS, BUY, bytes_kept, post, wait_for, ws_ready
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


def test_the_alert_log_keeps_each_entry_compact():
    """10,000 entries are kept by default: each one a tuple with one shared string for the values
    that repeat, not a dict of sixteen keys (tracemalloc, a 233-byte alert: 991 -> 572 bytes an entry)."""
    log = AlertLog(max_entries=2000)

    def fill():
        for i in range(2000):
            body = json.dumps({"ticker": "MNQ1!", "action": "buy" if i % 2 else "sell", "quantity": 1,
                               "price": 21000.25 + i, "stop_loss": {"type": "ticks", "value": 40},
                               "take_profit": [{"ticks": 80}], "comment": f"Long Entry {i}",
                               "time": "2026-12-07T14:30:00Z", "pad": "x" * 40}).encode()
            log.record(source="203.0.113.9", route="/webhook/abc", method="POST", status=200, body=body,
                       answer=json.dumps({"success": True, "signal_id": f"sig-{i:08d}-abcdef",
                                          "status": "accepted"}).encode())
        assert len(log) == 2000

    try:
        per_entry = bytes_kept(fill, __file__) / 2000
    finally:
        log.stop()
    rows = log.entries(2)
    assert [r["id"] for r in rows] == [2000, 1999] and rows[0]["outcome"] == "accepted"
    assert rows[0]["signal_id"] == "sig-00001999-abcdef" and rows[0]["status"] == "accepted"
    assert json.loads(rows[0]["body"])["comment"] == "Long Entry 1999"
    assert rows[0]["source"] is rows[1]["source"] and rows[0]["status"] is rows[1]["status"]
    assert per_entry < 750, f"{per_entry:.0f} bytes an entry"  # (CPython 3.11: about 570; 990 as dicts)


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


def _token(client) -> str:
    import re

    page = client.get("/", headers=ADMIN_HEADERS).get_data(as_text=True)
    return re.search(r"name='csrf_token' value='([^']+)'", page).group(1)


def test_console_forms_need_the_session_token_and_this_origin(make_server_app):
    app = make_server_app(status_open_in_sim=False)  # the login asked for on 127.0.0.1 too, as in demo/live
    ws_ready(app)
    client = app.test_client()
    token = _token(client)
    form = {"csrf_token": token, "account": "DEMO0002", "confirm": "yes"}
    same = {**ADMIN_HEADERS, "Origin": "http://localhost"}  # the test client's host

    def locked():
        risk = client.get("/api/websocket-status", headers=ADMIN_HEADERS).get_json()["risk"]
        return {a["account_name"]: bool(a["lock"]) for a in risk["accounts"]}

    assert client.post("/console/kill", data=form).status_code == 401  # the admin login first
    r = client.post("/console/kill", data={**form, "csrf_token": "guess"}, headers=same)
    assert r.status_code == 403 and "CSRF token" in r.get_data(as_text=True)
    r = client.post("/console/kill", data=form, headers={**ADMIN_HEADERS, "Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.get_data(as_text=True)
    r = client.post("/console/kill", data=form, headers={**ADMIN_HEADERS, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = client.post("/console/kill", json=form, headers=same)
    assert r.status_code == 415  # forms only: the JSON API keeps its own route and rules
    other = app.test_client()  # another session: its own token
    other_token = _token(other)
    assert other_token != token
    assert other.post("/console/kill", data=form, headers=same).status_code == 403
    assert locked() == {"DEMO0001": False, "DEMO0002": False}

    r = client.post("/console/kill", data={"csrf_token": token, "account": "DEMO0002"}, headers=same)
    assert r.status_code == 200 and "Are you sure?" in r.get_data(as_text=True)  # destructive: confirm first
    assert locked() == {"DEMO0001": False, "DEMO0002": False}
    r = client.post("/console/kill", data=form, headers=same)
    assert r.status_code == 200 and "locked DEMO0002" in r.get_data(as_text=True), r.get_data(as_text=True)
    assert locked() == {"DEMO0001": False, "DEMO0002": True}
    r = client.post("/console/unlock", data={"csrf_token": token, "account": "DEMO0002"}, headers=same)
    assert r.status_code == 200 and "unlocked DEMO0002" in r.get_data(as_text=True)  # no confirmation
    assert locked() == {"DEMO0001": False, "DEMO0002": False}
    r = client.post("/console/cancel", data={**form, "account": "NOPE"}, headers=same)
    assert r.status_code == 200 and "no account named NOPE" in r.get_data(as_text=True)


def test_console_buttons_need_the_admin_login_where_the_page_is_open(make_server_app):
    """Paper trading on 127.0.0.1: the page is open without a login, its buttons are not."""
    app = make_server_app()  # STATUS_OPEN_IN_SIM: the page open to a local client
    ws_ready(app)
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200
    token = _token(client)
    same = {"Origin": "http://localhost"}
    r = client.post("/console/kill", data={"csrf_token": token, "account": "DEMO0002", "confirm": "yes"}, headers=same)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    r = client.post("/console/kill", data={"csrf_token": token, "account": "DEMO0002", "confirm": "yes"},
                    headers={**same, **ADMIN_HEADERS})
    assert r.status_code == 200 and "locked DEMO0002" in r.get_data(as_text=True)


def test_console_cancels_working_orders_then_flattens_one_contract(make_server_app, sim):
    app = make_server_app(status_cache_s=0.0)
    ws_ready(app)
    client = app.test_client()
    token = _token(client)
    same = {**ADMIN_HEADERS, "Origin": "http://localhost"}
    sim.set_price("MNQZ6", 21000.0)
    r = post(client, '{"action":"buy","ticker":"MNQ1!","quantity":1,"price":21000,'
                     '"takeProfit":{"ticks":200},"stopLoss":{"ticks":200}}')
    assert r.status_code == 200, r.get_data(as_text=True)

    def account(name):
        body = client.get("/api/accounts", headers=ADMIN_HEADERS).get_json()
        return next(a for a in body["accounts"] if a["name"] == name)

    wait_for(lambda: all(len(account(n)["working_orders"]) == 2 and account(n)["positions"]
                         for n in ("DEMO0001", "DEMO0002")), what="both accounts long with their bracket legs")
    r = client.post("/console/cancel", data={"csrf_token": token, "account": "DEMO0001"}, headers=same)
    assert "Are you sure?" in r.get_data(as_text=True)  # confirmation first
    assert len(account("DEMO0001")["working_orders"]) == 2
    r = client.post("/console/cancel", data={"csrf_token": token, "account": "DEMO0001", "confirm": "yes"},
                    headers=same)
    assert r.status_code == 200 and "DEMO0001: 2 working order(s) cancelled" in r.get_data(as_text=True)
    wait_for(lambda: account("DEMO0001")["working_orders"] == [], what="DEMO0001's legs cancelled")
    assert account("DEMO0001")["positions"][0]["qty"] == 1  # the position stays

    contract_id = account("DEMO0001")["positions"][0]["contract_id"]
    form = {"csrf_token": token, "account": "DEMO0001", "contract_id": str(contract_id), "contract": "MNQZ6"}
    r = client.post("/console/flatten", data=form, headers=same)
    assert "Close the MNQZ6 position of DEMO0001" in r.get_data(as_text=True)
    r = client.post("/console/flatten", data={**form, "confirm": "yes"}, headers=same)
    assert r.status_code == 200 and "DEMO0001: closing +1" in r.get_data(as_text=True), r.get_data(as_text=True)
    wait_for(lambda: not account("DEMO0001")["positions"], what="DEMO0001 flat")
    other = account("DEMO0002")
    assert other["positions"][0]["qty"] == 1 and len(other["working_orders"]) == 2  # untouched


def test_history_csv_times_in_utc_and_the_display_zone_contract_state_and_error(make_server_app):
    import csv
    import io

    app = make_server_app()  # DISPLAY_TZ: America/Chicago by default
    ws_ready(app)
    client = app.test_client()
    assert post(client, BUY).status_code == 200
    assert post(client, '{"action":"buy","ticker":"ZZZ1!","quantity":1}').status_code == 400
    text = client.get("/api/history?format=csv&view=signals", headers=ADMIN_HEADERS).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[:8] == ["received_utc", "received_local", "signal_id", "recorder", "status", "action",
                                 "symbol", "contract"]
    placed = [r for r in rows if r["symbol"] == "MNQ1!"]
    assert {r["account"] for r in placed} == {"DEMO0001", "DEMO0002"}
    assert all(r["contract"] == "MNQZ6" and r["state"] == "acked" for r in placed)
    (refused,) = [r for r in rows if r["symbol"] == "ZZZ1!"]
    assert refused["state"] == "rejected" and refused["status"] == "rejected"
    assert refused["error"].startswith("unknown_symbol (") and "ZZZ1!" in refused["error"]
    import datetime as dt

    for r in rows:
        utc = dt.datetime.fromisoformat(r["received_utc"].replace("Z", "+00:00"))
        local = dt.datetime.fromisoformat(r["received_local"])
        assert r["received_utc"].endswith("Z") and local == utc
        assert local.utcoffset() in (dt.timedelta(hours=-6), dt.timedelta(hours=-5))  # CST / CDT
    data = client.get("/api/history", headers=ADMIN_HEADERS).get_json()
    (rejected,) = [s for s in data["signals"] if s["symbol"] == "ZZZ1!"]
    assert rejected["error"].startswith("unknown_symbol") and rejected["status"] == "rejected"


def test_metrics_carry_realized_and_open_pnl_per_account(make_server_app, sim):
    from prometheus_client.parser import text_string_to_metric_families

    app = make_server_app(md_url=sim.md_url)
    ws_ready(app)
    client = app.test_client()
    sim.set_price("MNQZ6", 21000.0)
    assert post(client, '{"action":"buy","ticker":"MNQ1!","quantity":1}').status_code == 200
    sim.set_price("MNQZ6", 21003.0)

    def samples():
        body = client.get("/metrics", headers=ADMIN_HEADERS).get_data(as_text=True)
        found = {(s.name, s.labels.get("account")): s.value for f in text_string_to_metric_families(body)
                 for s in f.samples if s.name in ("phantom_realized_pnl_usd", "phantom_open_pnl_usd")}
        wanted = {("phantom_open_pnl_usd", a) for a in ("DEMO0001", "DEMO0002")}
        wanted |= {("phantom_realized_pnl_usd", a) for a in ("DEMO0001", "DEMO0002")}
        return found if wanted <= set(found) and found[("phantom_open_pnl_usd", "DEMO0001")] == 6.0 else None

    found = wait_for(samples, what="open P&L of +6 USD on DEMO0001 in /metrics")
    assert found[("phantom_open_pnl_usd", "DEMO0002")] == 6.0
    assert found[("phantom_realized_pnl_usd", "DEMO0001")] == 0.0


def test_sim_start_up_banner_shows_a_made_secret_and_the_admin_login(tmp_path):
    """On a hosting platform the log is all a user can read: a secret made for paper trading is
    printed with the webhook URL and the admin login; one the user set is not repeated."""
    from ultra_simple_server import load_settings, startup_banner

    env = {"TRADOVATE_ENV": "sim", "DATABASE_PATH": str(tmp_path / "data" / "journal.sqlite3")}
    made = load_settings(env)
    banner = startup_banner(made, "http://localhost:8000")
    assert f"webhook URL : http://localhost:8000/webhook/{made.webhook_secret}" in banner
    assert "admin login : any user name; password: the secret above" in banner
    assert (tmp_path / "data" / "sim_webhook_secret").read_text().strip() == made.webhook_secret
    mine = load_settings({**env, "WEBHOOK_SECRET": "my-own-secret-123", "ADMIN_TOKEN": "admin-own-456"})
    banner = startup_banner(mine, "http://localhost:8000")
    assert "my-own-secret-123" not in banner and "admin-own-456" not in banner
    assert "webhook URL : http://localhost:8000/webhook/<your WEBHOOK_SECRET>" in banner
    assert "password: your ADMIN_TOKEN" in banner
