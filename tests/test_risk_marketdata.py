"""The risk guard's market-data feed against the simulator's md socket: subscribes only what it is
asked for, follows the price control, comes back after a dropped socket and after a token renewal."""
from __future__ import annotations

import threading
import time

from phantom_scraper.tradovate.marketdata import QuoteFeed
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
