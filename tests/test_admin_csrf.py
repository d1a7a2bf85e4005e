"""Issue 25, findings 1, 8, 10 (and 9 in the door's framing).

1. Cross-site request forgery: a page elsewhere made the browser (holding the cached HTTP Basic
   login) post a ``text/plain`` form to ``/api/manual-trade`` (an order was placed) and an empty
   form to ``/api/kill-switch`` (every account flattened and locked).  State-changing admin routes
   now take only ``application/json``, refuse a foreign ``Origin`` or ``Sec-Fetch-Site:
   cross-site``, and never read a missing body as "all accounts".
8. Sim mode's "open on loopback" took a request relayed by a local reverse proxy for local.
10. Admin failures were limited per exact address: 25 loopback addresses made 250 guesses.
"""
from __future__ import annotations

import base64
import pytest

from phantom_scraper.door import framing
from phantom_scraper.web.admin_auth import FailureLimiter, network_of
from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN

BASIC = {"Authorization": "Basic " + base64.b64encode(f"me:{ADMIN}".encode()).decode()}
EVIL = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
TRADE = '{"action":"buy","ticker":"MNQ1!","quantity":3,"pad":"="}'


def locked_accounts(app):
    return [a["account_name"] for a in app.extensions["runtime"].service.risk.status()["accounts"] if a["lock"]]


@pytest.fixture
def demo(make_server_app):
    return make_server_app(tradovate_env="sim")  # booted: the routes would really act


def test_a_text_plain_form_cannot_place_a_manual_trade(demo, sim):
    c = demo.test_client()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        r = c.post("/api/manual-trade", data=TRADE, content_type=ctype, headers={**BASIC, **EVIL})
        assert r.status_code in (403, 415), (ctype, r.status_code, r.get_data(as_text=True))
        r = c.post("/api/manual-trade", data=TRADE, content_type=ctype, headers=BASIC)  # no Origin at all
        assert r.status_code == 415 and r.get_json()["error"]["code"] == "unsupported_media_type"
    assert sim.orders() == []


def test_a_cross_site_json_request_is_refused(demo, sim):
    c = demo.test_client()
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        r = c.post("/api/manual-trade", data=TRADE, content_type="application/json", headers={**BASIC, **headers})
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "cross_site_request", headers
        r = c.post("/api/kill-switch", json={"accounts": "all"}, headers={**BASIC, **headers})
        assert r.status_code == 403, headers
        r = c.delete("/api/kill-switch", json={"accounts": "all"}, headers={**BASIC, **headers})
        assert r.status_code == 403, headers
    assert sim.orders() == [] and not locked_accounts(demo)


def test_an_empty_form_does_not_flatten_every_account(demo, sim):
    c = demo.test_client()
    r = c.post("/api/kill-switch", data="", content_type="application/x-www-form-urlencoded", headers=BASIC)
    assert r.status_code == 415
    for body in ("", "{}", "[]", "null"):  # JSON, but no selector: never "all"
        r = c.post("/api/kill-switch", data=body, content_type="application/json", headers=BASIC)
        assert r.status_code == 400, body
    assert c.post("/api/kill-switch", data="{}", content_type="application/json", headers=BASIC).get_json()[
        "error"]["field"] == "accounts"
    assert not locked_accounts(demo)


def test_same_origin_and_scripts_still_work(demo, sim):
    c = demo.test_client()
    same = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}  # the test client's Host
    r = c.post("/api/manual-trade", data='{"action":"buy","ticker":"MNQ1!","test":true}',
               content_type="application/json", headers={**BASIC, **same})
    assert r.status_code == 200, r.get_data(as_text=True)
    r = c.post("/api/manual-trade", data='{"action":"buy","ticker":"MNQ1!","test":true}',
               content_type="application/json; charset=utf-8", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200
    r = c.post("/api/kill-switch", json={"accounts": ["DEMO0001"], "flatten": False}, headers=BASIC)
    assert r.status_code == 200 and r.get_json()["locked"] == ["DEMO0001"]
    r = c.delete("/api/kill-switch", json={"accounts": ["DEMO0001"]}, headers=BASIC)
    assert r.status_code == 200
    assert sim.orders() == []


def test_sim_status_is_not_open_to_a_request_relayed_by_a_local_proxy(make_server_app):
    app = make_server_app(boot=False)  # sim: status open on loopback
    c = app.test_client()
    assert c.get("/api/websocket-status").status_code == 200
    for headers in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "203.0.113.9"}):
        assert c.get("/api/websocket-status", headers=headers).status_code == 401, headers
        assert c.get("/", headers=headers).status_code == 401, headers
    trusted = make_server_app(boot=False, trust_proxy_headers=True).test_client()
    assert trusted.get("/", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401


def test_admin_failures_are_limited_per_network_too(make_server_app):
    app = make_server_app(boot=False, tradovate_env="demo", admin_max_failures=3, admin_failure_window_s=300)
    c = app.test_client()
    wrong = {"Authorization": "Bearer guess"}
    statuses = [c.get("/api/signals", headers=wrong, environ_base={"REMOTE_ADDR": f"198.51.100.{i}"}).status_code
                for i in range(1, 26) for _ in range(2)]
    assert statuses.count(401) <= 6, statuses  # twice one address's budget for the whole /24
    r = c.get("/api/signals", headers={"Authorization": f"Bearer {ADMIN}"}, environ_base={"REMOTE_ADDR": "198.51.100.77"})
    assert r.status_code == 429
    # another network is not affected
    assert c.get("/api/signals", headers={"Authorization": f"Bearer {ADMIN}"},
                 environ_base={"REMOTE_ADDR": "198.51.101.1"}).status_code == 200


def test_ipv6_failures_count_per_64():
    limiter = FailureLimiter(2, 60.0, clock=lambda: 0.0)
    for i in range(1, 5):
        limiter.failed(f"2001:db8:1:2::{i}")
    assert limiter.blocked_for_s("2001:db8:1:2::ffff") > 0
    assert limiter.blocked_for_s("2001:db8:1:3::1") == 0
    assert network_of("192.0.2.77") == "192.0.2.0/24" and network_of("2001:db8:1:2::9") == "2001:db8:1:2::/64"
    assert network_of("not an address") is None


@pytest.mark.parametrize("target", ["//webhook/abc", "/./webhook/abc", "/x/../webhook", "//Webhook//abc",
                                    "/%2Fwebhook/abc", "/webhook/../webhook/abc"])
def test_the_doors_routing_normalises_the_path(target):
    head = framing.parse_head(bytearray(f"POST {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()))
    assert head.is_webhook(), (target, head.path)
    assert not framing.parse_head(bytearray(b"GET //health HTTP/1.1\r\n\r\n")).is_webhook()
