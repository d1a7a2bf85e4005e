"""Issue 31, the configuration findings: recorders-file logins inherit all three URLs (REST, socket,
market data) from the service's settings, and a risk override naming an account no login has stops
the start (as an unknown account in a recorder link does)."""
from __future__ import annotations

import json

from phantom_scraper.app import recorders
from phantom_scraper.config import REAL_MD_URL, Settings
from tests.helpers import SERVER_WEBHOOK_SECRET


def _doc(logins, risk=None):
    doc = {"logins": logins,
           "recorders": [{"name": "nq", "webhook_token_env": "R31_TOKEN",
                          "accounts": [{"login": next(iter(logins)), "account": "DEMO0001"}]}]}
    if risk is not None:
        doc["risk"] = risk
    return doc


def _load(tmp_path, doc, **settings):
    path = tmp_path / "recorders.json"
    path.write_text(json.dumps(doc))
    s = Settings(recorders_file=str(path), **settings)
    return recorders.load(s, env={"R31_TOKEN": "t", "R31_PASS": "p"})[0]


def test_a_login_of_the_services_environment_inherits_the_socket_and_market_data_urls(tmp_path):
    """#3: a login inheriting TRADOVATE_REST_URL derived its socket URL from the REST host (HTTP
    404 on a broker or simulator whose socket is elsewhere) and had no market-data URL."""
    logins = _load(tmp_path, _doc({"main": {"env": "sim", "username": "demo", "password_env": "R31_PASS"}}),
                   tradovate_env="sim", rest_url="http://127.0.0.1:1/v1", ws_url="ws://127.0.0.1:2/v1/websocket",
                   md_url="ws://127.0.0.1:3/v1/websocket")
    main = logins["main"]
    assert (main.rest_url, main.ws_url, main.md_url) == (
        "http://127.0.0.1:1/v1", "ws://127.0.0.1:2/v1/websocket", "ws://127.0.0.1:3/v1/websocket")
    assert recorders.describe_urls(main) == ("REST http://127.0.0.1:1/v1, socket ws://127.0.0.1:2/v1/websocket, "
                                             "market data ws://127.0.0.1:3/v1/websocket")


def test_a_login_with_its_own_rest_url_or_another_environment_gets_matching_urls(tmp_path):
    logins = _load(tmp_path, _doc({
        "own": {"env": "sim", "username": "demo", "password_env": "R31_PASS", "rest_url": "http://10.0.0.9:5/v1/"},
        "live": {"env": "live", "username": "x", "password_env": "R31_PASS"},
        "all3": {"env": "sim", "username": "y", "password_env": "R31_PASS", "rest_url": "http://h:1/v1",
                 "ws_url": "ws://h:2/v1/websocket", "md_url": "ws://h:3/v1/websocket"}}),
        tradovate_env="sim", rest_url="http://127.0.0.1:1/v1", ws_url="ws://127.0.0.1:2/v1/websocket",
        md_url="ws://127.0.0.1:3/v1/websocket")
    assert (logins["own"].rest_url, logins["own"].ws_url) == ("http://10.0.0.9:5/v1", "ws://10.0.0.9:5/v1/websocket")
    assert (logins["live"].rest_url, logins["live"].ws_url, logins["live"].md_url) == (
        "https://live.tradovateapi.com/v1", "wss://live.tradovateapi.com/v1/websocket", REAL_MD_URL)
    assert (logins["all3"].ws_url, logins["all3"].md_url) == ("ws://h:2/v1/websocket", "ws://h:3/v1/websocket")


def test_a_risk_override_for_an_account_no_login_has_stops_the_start(make_server_app, sim, tmp_path, monkeypatch):
    """#7: ``demo0001`` for ``DEMO0001`` was ignored in silence (the account ran on the defaults)."""
    monkeypatch.setenv("R31_TOKEN", SERVER_WEBHOOK_SECRET)
    monkeypatch.setenv("R31_PASS", "demo")
    path = tmp_path / "recorders.json"
    path.write_text(json.dumps(_doc({"main": {"env": "sim", "username": "demo", "password_env": "R31_PASS"}},
                                    risk={"accounts": {"demo0001": {"daily_loss_limit": 500}}})))
    app = make_server_app(boot=False, recorders_file=str(path), md_url=sim.md_url)
    runtime = app.extensions["runtime"]
    runtime.boot(wait=True)
    assert runtime.service.state == "failed"
    assert "'demo0001' (did you mean 'DEMO0001'?)" in runtime.service.start_error
