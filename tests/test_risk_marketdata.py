"""The risk guard's market-data feed against the simulator's md socket: subscribes only what it is
asked for, follows the price control, comes back after a dropped socket and after a token renewal."""
from __future__ import annotations

import logging
import threading
import time

from phantom_scraper.config import Credentials
from phantom_scraper.tradovate.marketdata import QuoteFeed
from phantom_scraper.tradovate_integration import TradovateIntegration
from tests.helpers import FAST, token_of


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_feed_subscribes_follows_prices_and_recovers(sim):
    quotes, lock = [], threading.Lock()

    def on_quote(contract_id, price, at):
        with lock:
            quotes.append((contract_id, price, at))

    tokens = [token_of(sim)]
    settings = FAST.replace(heartbeat_interval_s=0.2, reconnect_backoff_initial_s=0.05)
    feed = QuoteFeed(sim.md_url, lambda: tokens[-1], on_quote, settings=settings)
    nq = sim.get_price("NQZ6")["contractId"]
    feed.start()
    try:
        assert feed.status()["connected"] is False  # nothing wanted: no socket
        feed.want({nq})
        wait_for(lambda: feed.status()["subscribed"] == [nq])
        sim.set_price("NQZ6", 21001.0)
        wait_for(lambda: (nq, 21001.0) in [(c, p) for c, p, _ in quotes])
        sim.set_price("ESZ6", 6001.0)  # not subscribed: never delivered
        sim.close_all_sockets()  # a dropped socket: reconnect and subscribe again
        wait_for(lambda: feed.status()["connected"] and feed.status()["subscribed"] == [nq])
        sim.set_price("NQZ6", 21002.0)
        wait_for(lambda: (nq, 21002.0) in [(c, p) for c, p, _ in quotes])
        tokens.append(token_of(sim))
        before = feed.requests_sent
        feed.token_renewed()  # reconnects with the new token, subscribes again
        wait_for(lambda: feed.requests_sent > before and feed.status()["connected"])
        sim.set_price("NQZ6", 21003.0)
        wait_for(lambda: (nq, 21003.0) in [(c, p) for c, p, _ in quotes])
        feed.want(set())
        wait_for(lambda: feed.status()["subscribed"] == [])
        assert all(c == nq for c, _, _ in quotes)
    finally:
        feed.stop()


def _quotes():
    got, lock = [], threading.Lock()

    def on_quote(contract_id, price, at):
        with lock:
            got.append((contract_id, price))
    return got, on_quote


def _no_token_logged(caplog, *tokens):
    text = "\n".join(r.getMessage() for r in caplog.records)
    for token in tokens:
        assert token and token not in text


def test_a_refused_token_is_renewed_by_the_login_once_and_the_feed_comes_back(sim, caplog):
    """The broker expires every token: the md socket is dropped and its token refused.  The feed
    asks the login for a fresh token (one re-login, not a loop of authorizes with the old one) and
    reconnects once; the tokens never reach the log."""
    caplog.set_level(logging.DEBUG, logger="phantom_scraper")
    settings = FAST.replace(heartbeat_interval_s=0.2, reconnect_backoff_initial_s=0.05)
    ti = TradovateIntegration(Credentials(username="demo", password="demo"), sim.rest_url, sim.ws_url,
                              is_demo=True, settings=settings)
    ti.authenticate()
    renewals = []

    def renew(stale):
        renewals.append(stale)
        return ti.reauthenticate(stale)

    quotes, on_quote = _quotes()
    feed = QuoteFeed(sim.md_url, ti.ensure_token, on_quote, settings=settings, renew=renew)
    ti.add_token_listener(feed.token_renewed)
    nq = sim.get_price("NQZ6")["contractId"]
    feed.start()
    try:
        feed.want({nq})
        wait_for(lambda: feed.status()["subscribed"] == [nq])
        old = ti.access_token
        sim.expire_all_tokens()  # the login does not know: its token is not due for an hour
        wait_for(lambda: ti.access_token != old and feed.status()["connected"]
                 and feed.status()["subscribed"] == [nq], timeout_s=20.0)
        sim.set_price("NQZ6", 21004.0)
        wait_for(lambda: (nq, 21004.0) in quotes)
        assert renewals == [old]  # one fresh token, asked for once
        connects = [r for r in caplog.records if r.getMessage().startswith("Market-data socket connected")]
        assert len(connects) == 2  # the first socket and the one after the expiry: no second reconnect
        assert not [r for r in caplog.records
                    if r.name.endswith("marketdata") and r.levelno >= logging.WARNING], "no failed attempt"
        _no_token_logged(caplog, old, ti.access_token)
    finally:
        feed.stop()
        ti.close()


def test_a_refused_authorize_waits_out_its_back_off_and_a_renewed_token_ends_it(sim, caplog):
    """Authorize refused and no usable token: the feed's one thread waits its back-off (a changed
    wanted set does not cut it short; before, the failed socket's own close woke the loop at once
    and it spun), and a renewed token ends the wait."""
    caplog.set_level(logging.DEBUG, logger="phantom_scraper")
    settings = FAST.replace(heartbeat_interval_s=0.2, reconnect_backoff_initial_s=15.0,
                            reconnect_backoff_max_s=60.0)
    tokens, renewals = ["not-a-token-0123456789"], []

    def renew(stale):
        renewals.append(stale)
        return "still-not-a-token-9876543210"

    quotes, on_quote = _quotes()
    feed = QuoteFeed(sim.md_url, lambda: tokens[-1], on_quote, settings=settings, renew=renew)
    nq, es = sim.get_price("NQZ6")["contractId"], sim.get_price("ESZ6")["contractId"]
    feed.start()
    try:
        feed.want({nq})
        wait_for(lambda: renewals and feed.status()["last_error"])
        for i in range(10):  # the wanted set changes during the back-off (at least 15 s)
            feed.want({nq, es} if i % 2 == 0 else {nq})
            time.sleep(0.1)
        assert len(renewals) == 1 and not feed.status()["connected"]
        assert [t.name for t in threading.enumerate()].count("risk-md") == 1
        good = token_of(sim)
        tokens.append(good)
        feed.token_renewed(good)  # the login got a new token: try now, not after the back-off
        wait_for(lambda: feed.status()["connected"] and feed.status()["subscribed"] == [nq], timeout_s=10.0)
        assert len(renewals) == 1
        assert "not-a-token" not in (feed.status()["last_error"] or "")
        _no_token_logged(caplog, tokens[0], "still-not-a-token-9876543210", good)
    finally:
        feed.stop()
