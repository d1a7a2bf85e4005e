"""What Tradovate documents, against the simulator: the device id on live, a 429's hour of quiet,
an order strategy answered ``ExecutionFailed`` (docs/TRADOVATE.md, "Requests and their sources")."""
from __future__ import annotations

import pytest

from phantom_scraper import events
from phantom_scraper.config import ConfigError, Credentials, Settings
from phantom_scraper.errors import RateLimitedError, TooManyRequestsError
from phantom_scraper.tradovate.outcome import Outcome, classify_answer
from phantom_scraper.tradovate_integration import TradovateIntegration
from phantom_scraper.tradovate_sim import Simulator
from tests.helpers import FAST, SIM_TEST_CONFIG, wait_for

CREDS = Credentials("demo", "demo")


@pytest.fixture
def make_sim():
    sims = []

    def _make(**cfg):
        sim = Simulator(SIM_TEST_CONFIG.replace(**cfg)).start()
        sims.append(sim)
        return sim

    yield _make
    for sim in sims:
        sim.stop()


@pytest.fixture
def make_ti():
    made = []

    def _make(sim, settings=FAST, creds=CREDS, is_demo=True):
        ti = TradovateIntegration(creds, sim.rest_url, sim.ws_url, is_demo=is_demo, settings=settings)
        made.append(ti)
        return ti

    yield _make
    for ti in made:
        ti.close()


def order_body(ti):
    account = ti.list_accounts()[0]
    symbol = ti.suggest_contracts("ES", 1)[0]["name"]
    return {"accountSpec": account["name"], "accountId": account["id"], "action": "Buy", "symbol": symbol,
            "orderQty": 1, "orderType": "Market", "isAutomated": True}


# -- device id -------------------------------------------------------------------------------------
def test_live_refuses_to_start_without_a_device_id_and_says_how_to_choose_one():
    env = {"TRADOVATE_ENV": "live", "TRADOVATE_USERNAME": "u", "TRADOVATE_PASSWORD": "p", "WEBHOOK_SECRET": "s"}
    settings = Settings.from_env(env)
    assert "TRADOVATE_DEVICE_ID" in settings.missing_for_broker()
    assert "uuid" in settings.device_id_problem()
    from ultra_simple_server import load_settings
    with pytest.raises(ConfigError, match="TRADOVATE_DEVICE_ID"):
        load_settings(env)
    assert Settings.from_env(dict(env, TRADOVATE_DEVICE_ID="my-box-1")).missing_for_broker() == ()
    assert "TRADOVATE_DEVICE_ID" not in Settings.from_env(dict(env, TRADOVATE_ENV="demo")).missing_for_broker()


def test_a_live_login_without_a_device_id_is_refused_before_any_call(make_sim):
    sim = make_sim(live=True)
    with pytest.raises(ConfigError, match="device"):
        TradovateIntegration(CREDS, sim.rest_url, sim.ws_url, is_demo=False, settings=FAST)


def test_the_live_simulator_answers_orders_without_an_approved_device_401(make_sim, make_ti):
    """Tradovate's FAQ: live checks the device id on placeOrder; misuse is a 401 'Access is denied'."""
    sim = make_sim(live=True, approved_device_ids=("box-1",))
    good = make_ti(sim, creds=Credentials("demo", "demo", device_id="box-1"), is_demo=False)
    assert good.place_order_smart(order_body(good), ws=None).status == "acked"
    stranger = make_ti(sim, creds=Credentials("demo", "demo", device_id="box-2"), is_demo=False)
    res = stranger.place_order_smart(order_body(stranger), ws=None)
    assert res.status == "not_sent" and "refused" in (res.error or "")
    assert len([o for o in sim.orders() if o.get("orderId") is not None]) == 1


# -- 429 -------------------------------------------------------------------------------------------
def test_a_429_makes_the_login_quiet_for_the_period_while_orders_still_go(sim, make_ti):
    seen = []
    unsubscribe = events.subscribe(lambda e: seen.append(e) if e.kind == "rate_limited" else None)
    try:
        ti = make_ti(sim, settings=FAST.replace(rate_limit_quiet_s=600.0))
        body = order_body(ti)
        sim.faults.http_429_next = 1
        with pytest.raises(TooManyRequestsError):
            ti.list_commands()
        assert ti.quiet.quiet and len(seen) == 1
        # background reads wait out the period without reaching the broker (it would answer them now)
        with pytest.raises(RateLimitedError, match="quiet"):
            ti.list_commands()
        with pytest.raises(RateLimitedError, match="quiet"):
            ti.list_order_strategies()
        # orders still go; one the broker refuses with 429 says why
        assert ti.place_order_smart(body, ws=None).status == "acked"
        sim.faults.http_429_next = 1
        refused = ti.place_order_smart(body, ws=None)
        assert refused.status == "not_sent" and refused.rate_limited and "429" in refused.error
        assert "hour" in refused.error
        assert len(seen) == 1  # one notification per quiet period
    finally:
        unsubscribe()


def test_a_429_on_the_socket_also_quiets_the_login_and_the_quiet_ends(sim, make_ti):
    ti = make_ti(sim, settings=FAST.replace(rate_limit_quiet_s=0.5))
    body = order_body(ti)
    ws = ti.open_websocket()
    try:
        sim.faults.http_429_next = 1
        res = ti.place_order_smart(body, ws=ws)
        assert res.status == "not_sent" and res.rate_limited and res.transport == "websocket"
        assert ti.quiet.quiet
    finally:
        ws.close()
    wait_for(lambda: not ti.quiet.quiet, what="the quiet period to end")
    assert ti.list_commands() is not None


def test_the_simulator_answers_429_with_no_body_and_no_retry_after(sim):
    import requests
    sim.faults.http_429_next = 1
    resp = requests.get(sim.rest_url + "/contract/suggest", params={"t": "ES", "l": 1}, timeout=10)
    assert resp.status_code == 429 and resp.content == b"" and "Retry-After" not in resp.headers


# -- ExecutionFailed --------------------------------------------------------------------------------
def test_an_execution_failed_strategy_is_rejected_with_the_brokers_text():
    answer = {"orderStrategy": {"id": 7, "status": "ExecutionFailed", "failureMessage": "Entry rejected: NoQuote"}}
    attempt = classify_answer(answer, "rest")
    assert attempt.outcome is Outcome.REJECTED and attempt.failure_text == "Entry rejected: NoQuote"
    assert classify_answer({"orderStrategy": {"id": 8, "status": "ExecutionFailed"}, "errorText": "no quote"},
                           "rest").failure_text == "no quote"
    assert classify_answer({"orderStrategy": {"id": 7, "status": "ActiveStrategy"}}, "rest").outcome is Outcome.ACKED


# -- product/find tick size --------------------------------------------------------------------------
def test_any_root_the_broker_describes_is_tradable_with_its_product_tick_size(make_sim, make_ti):
    """The Partner schema's Contract has no tick size; ``product/find`` has ``tickSize`` and
    ``valuePerPoint``.  A root outside the built-in table (6E) resolves from the product."""
    from phantom_scraper.signals.symbols import TICK_SIZES, SymbolResolver
    sim = make_sim(contract_provider_tick_size=False)
    ti = make_ti(sim)
    assert "6E" not in TICK_SIZES and "providerTickSize" not in ti.find_contract(ti.suggest_contracts("6E", 1)[0]["name"])
    resolver = SymbolResolver(ti, trading_date=None)
    c = resolver.resolve("6E1!")
    assert c.tick_size == 0.00005 and c.point_value == 125000.0
    assert resolver.resolve("NQ1!").tick_size == 0.25


@pytest.mark.parametrize("accepted", ["md", "access"])
def test_the_md_socket_takes_whichever_token_the_broker_accepts(make_sim, make_ti, accepted):
    """Uncertain 7: the official samples authorize the md socket with ``accessToken`` (JS) or
    ``mdAccessToken`` (trading-strategy).  A broker taking only one still feeds quotes (breakeven
    and the risk guard's open P&L depend on them); the token that worked goes first next time."""
    from phantom_scraper.tradovate.marketdata import QuoteFeed
    sim = make_sim(md_socket_token=accepted)
    ti = make_ti(sim)
    ti.authenticate()
    assert ti.md_access_token and ti.md_access_token != ti.access_token
    quotes = []
    feed = QuoteFeed(sim.md_url, lambda: ti.access_token, lambda c, p, at: quotes.append((c, p)),
                     settings=FAST.replace(reconnect_backoff_initial_s=0.05), md_token=lambda: ti.md_access_token)
    nq = sim.get_price("NQZ6")["contractId"]
    feed.start()
    try:
        feed.want({nq})
        wait_for(lambda: feed.status()["subscribed"] == [nq], what="subscribed")
        sim.set_price("NQZ6", 21001.0)
        wait_for(lambda: (nq, 21001.0) in quotes, what="a quote")
        assert feed.token_kind == {"md": "mdAccessToken", "access": "accessToken"}[accepted]
        sim.close_all_sockets()  # reconnects with the token that worked
        wait_for(lambda: feed.status()["connected"] and feed.status()["subscribed"] == [nq], what="back")
        assert feed.token_kind == {"md": "mdAccessToken", "access": "accessToken"}[accepted]
    finally:
        feed.stop()


@pytest.mark.parametrize("socket_ends_with_its_token", [True, False])
def test_token_renewal_measured_a_socket_authorized_before_it_keeps_its_old_tokens_life(
        make_sim, make_ti, socket_ends_with_its_token):
    """Uncertain 2, measured against the simulator's two readings: a renewal does not close a socket
    authorized with the old token, and it does not extend it either -- where a socket lives for its
    token's lifetime it ends when the old token expires, renewal or not.  Nothing documents a
    re-authorize, so the client replaces its sockets at each renewal (docs/TRADOVATE.md, "Tokens"):
    safe under both readings, at the price of one new socket and sync per token lifetime."""
    from tests.helpers import WAIT_S
    sim = make_sim(token_lifetime_s=2.0, close_ws_on_token_expiry=socket_ends_with_its_token)
    ti = make_ti(sim)
    ti.authenticate()
    first = ti.access_token
    ws = ti.open_websocket()
    try:
        wait_for(lambda: ti.ensure_token() != first, what="a renewal ahead of expiry")
        assert ws.is_open  # the renewal itself closes nothing
        if socket_ends_with_its_token:
            assert ws.wait_closed(WAIT_S)  # ... and extends nothing: it ends with the old token
        else:
            assert not ws.wait_closed(2.5)  # well past the old token's expiry
            assert ws.request("account/list", timeout=WAIT_S)
        fresh = ti.open_websocket()  # what the pool does at a renewal: a socket on the new token
        assert fresh.is_open and fresh.request("account/list", timeout=WAIT_S)
        fresh.close()
    finally:
        ws.close()
