"""Status and admin routes behind the admin token (phantom_scraper/web/admin_auth.py).

In demo/live every status route needs the token (HTTP Basic with the token as the password,
Bearer, or X-Admin-Token); /health stays public and holds no account data; wrong credentials are
rate-limited per source address; sim mode keeps the status page open to 127.0.0.1 only.
"""
from __future__ import annotations

import base64

import pytest

from phantom_scraper.web.admin_auth import FailureLimiter, given_token
from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN

STATUS_ROUTES = ["/", "/api/websocket-status", "/api/signals", "/api/history", "/metrics"]


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def demo_app(make_server_app):
    """A demo-mode app (not booted: these routes answer without a broker login)."""
    return make_server_app(boot=False, tradovate_env="demo")


@pytest.mark.parametrize("path", STATUS_ROUTES)
def test_status_routes_need_the_admin_token_in_demo(demo_app, path):
    c = demo_app.test_client()
    r = c.get(path)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic ")  # the browser prompts
    for headers in (basic("anyone", ADMIN), basic("", ADMIN), {"Authorization": f"Bearer {ADMIN}"},
                    {"X-Admin-Token": ADMIN}):
        assert c.get(path, headers=headers).status_code == 200, headers
    for headers in (basic(ADMIN, "nope"), basic("x", ADMIN + "x"), {"Authorization": f"Basic {ADMIN}"},
                    {"Authorization": "Bearer nope"}, {"X-Admin-Token": ADMIN[:-1]}):
        assert c.get(path, headers=headers).status_code == 401, headers


def test_health_is_public_and_has_no_account_data(demo_app):
    r = demo_app.test_client().get("/health")
    assert r.status_code in (200, 503)
    text = r.get_data(as_text=True)
    assert "DEMO000" not in text and "1000" not in text and "connections" not in text


def test_wrong_credentials_are_rate_limited_per_address(make_server_app):
    app = make_server_app(boot=False, tradovate_env="demo", admin_max_failures=3, admin_failure_window_s=300)
    c = app.test_client()
    attacker = {"REMOTE_ADDR": "198.51.100.7"}
    for _ in range(3):
        assert c.get("/api/signals", headers=basic("x", "guess"), environ_base=attacker).status_code == 401
    r = c.get("/api/signals", headers=basic("x", ADMIN), environ_base=attacker)
    assert r.status_code == 429 and r.get_json()["error"]["code"] == "too_many_attempts"
    assert int(r.headers["Retry-After"]) > 0
    # another address is not affected, and a missing credential (a browser's first try) is no failure
    other = {"REMOTE_ADDR": "198.51.100.8"}
    for _ in range(5):
        assert c.get("/", environ_base=other).status_code == 401
    assert c.get("/", headers=basic("x", ADMIN), environ_base=other).status_code == 200


def test_sim_mode_status_is_open_on_loopback_only(make_server_app):
    app = make_server_app(boot=False)  # tradovate_env="sim"
    c = app.test_client()
    assert c.get("/api/websocket-status").status_code == 200
    assert c.get("/").status_code == 200
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert c.get("/", environ_base=remote).status_code == 401
    assert c.get("/api/websocket-status", environ_base=remote).status_code == 401
    assert c.get("/", headers=basic("me", ADMIN), environ_base=remote).status_code == 200
    # admin routes always want the token, on loopback too
    assert c.get("/api/signals").status_code == 401
    closed = make_server_app(boot=False, status_open_in_sim=False).test_client()
    assert closed.get("/").status_code == 401


def test_limiter_window_expires():
    now = [0.0]
    limiter = FailureLimiter(2, 10.0, clock=lambda: now[0])
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.blocked_for_s("a") == pytest.approx(10.0)
    assert limiter.blocked_for_s("b") == 0
    now[0] = 10.0
    assert limiter.blocked_for_s("a") == 0


def test_given_token_forms():
    assert given_token({"Authorization": "Bearer abc"}) == "abc"
    assert given_token({"X-Admin-Token": "abc"}) == "abc"
    assert given_token(basic("u", "p:q")) == "p:q"
    assert given_token({"Authorization": "Basic !!!"}) is None
    assert given_token({}) is None
