"""The simulator's market-data host: full quotes, the DOM, md/getChart (bars, ticks, live), and the
product catalog (docs/TRADOVATE.md, "Market data and cash balance"; PROTOCOL §3.7)."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import requests

from phantom_scraper.tradovate_sim import SimConfig, Simulator
from tests.sim_md_client import Socket, chart_packets, login, rest_get

CT = ZoneInfo("America/Chicago")
TODAY = dt.date(2026, 11, 24)  # a Tuesday; NQZ6 is the front month
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=CT).timestamp()
QUOTE_ENTRIES = {"Bid", "Offer", "Trade", "TotalTradeVolume", "OpenInterest", "OpeningPrice", "HighPrice",
                 "LowPrice", "SettlementPrice"}


def _start(**cfg) -> Simulator:
    sim = Simulator(SimConfig(today=TODAY, **cfg)).start()
    sim.clock.freeze(NOW)
    return sim


@pytest.fixture
def md():
    sim = _start()
    token = login(sim)["accessToken"]
    sock = Socket(sim.md_url, token)
    try:
        yield sim, sock, token
    finally:
        sock.close()
        sim.stop()


def _chart_body(symbol="NQZ6", kind="MinuteBar", size=30, **time_range):
    return {"symbol": symbol, "timeRange": time_range,
            "chartDescription": {"underlyingType": kind, "elementSize": size, "elementSizeUnit": "UnderlyingUnits",
                                 "withHistogram": False}}


def _bars(packets):
    return [bar for p in packets for bar in p.get("bars", [])]


def _epoch(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()


def _get_chart(sock, req_id, body):
    answer = sock.request("md/getChart", req_id, body)
    assert answer["s"] == 200 and "errorText" not in answer["d"], answer
    assert answer["d"]["historicalId"] == answer["d"]["realtimeId"]
    packets = chart_packets(sock, answer["d"]["realtimeId"])
    assert packets[-1] == {"id": answer["d"]["realtimeId"], "eoh": True}
    return answer["d"]["realtimeId"], packets[:-1]


def test_quote_carries_every_entry_consistent_with_the_session(md):
    sim, sock, _ = md
    assert sock.request("md/subscribeQuote", 1, {"symbol": "NQZ6"}) == {"s": 200, "i": 1, "d": {}}
    quote = sock.wait(lambda m: m.get("e") == "md")["d"]["quotes"][0]
    entries = quote["entries"]
    assert set(entries) == QUOTE_ENTRIES
    price = sim.get_price("NQZ6")["price"]
    assert entries["Trade"]["price"] == price  # the product's market-data reader reads Trade
    assert entries["Bid"]["price"] == price - 0.25 and entries["Offer"]["price"] == price + 0.25
    low, high = entries["LowPrice"]["price"], entries["HighPrice"]["price"]
    assert low <= entries["OpeningPrice"]["price"] <= high and low <= price <= high
    assert entries["TotalTradeVolume"]["size"] > 0 and entries["OpenInterest"]["size"] > 0
    # the session's open/high/low/volume are today's daily bar; settlement is the previous session's close
    _, packets = _get_chart(sock, 2, _chart_body(kind="DailyBar", size=1, asMuchAsElements=2))
    previous, today = _bars(packets)
    assert entries["OpeningPrice"]["price"] == today["open"]
    assert (low, high) == (today["low"], today["high"])
    assert entries["SettlementPrice"]["price"] == previous["close"]
    volume = entries["TotalTradeVolume"]["size"]
    sim.clock.advance(5)
    sim.set_price("NQZ6", high + 10)  # a new session high
    moved = sock.wait(lambda m: m.get("e") == "md" and "quotes" in m["d"])["d"]["quotes"][0]["entries"]
    assert moved["HighPrice"]["price"] == high + 10 == moved["Trade"]["price"]
    assert moved["TotalTradeVolume"]["size"] == volume + 1
    assert moved["LowPrice"]["price"] == low and moved["OpeningPrice"]["price"] == entries["OpeningPrice"]["price"]
    assert moved["SettlementPrice"] == entries["SettlementPrice"]


def test_dom_is_a_book_around_the_price_and_follows_it(md):
    sim, sock, _ = md
    assert sock.request("md/subscribeDOM", 1, {"symbol": "NQZ6"})["s"] == 200
    dom = sock.wait(lambda m: m.get("e") == "md")["d"]["doms"][0]
    contract_id = rest_get(sim, login(sim)["accessToken"], "contract/find", name="NQZ6").json()["id"]
    assert dom["contractId"] == contract_id and dom["timestamp"].endswith("Z")
    price = sim.get_price("NQZ6")["price"]
    bids, offers = [b["price"] for b in dom["bids"]], [o["price"] for o in dom["offers"]]
    assert len(bids) == len(offers) == 10
    assert bids == sorted(bids, reverse=True) and offers == sorted(offers)
    assert bids[0] == price - 0.25 and offers[0] == price + 0.25
    assert all(level["size"] > 0 for level in dom["bids"] + dom["offers"])
    sim.clock.advance(1)
    sim.set_price("NQZ6", price + 5)
    moved = sock.wait(lambda m: m.get("e") == "md" and "doms" in m["d"])["d"]["doms"][0]
    assert moved["bids"][0]["price"] == price + 4.75 and moved["offers"][0]["price"] == price + 5.25
    assert sock.request("md/unsubscribeDOM", 2, {"symbol": "NQZ6"})["s"] == 200
    after = len(sock.seen)
    sim.set_price("NQZ6", price + 6)
    sock.barrier(99)
    assert not [m for m in sock.seen[after:] if m.get("e") == "md"]


def test_minute_bars_history_end_of_history_live_updates_and_cancel(md):
    sim, sock, _ = md
    chart_id, packets = _get_chart(sock, 1, _chart_body(size=30, asMuchAsElements=20))
    bars = _bars(packets)
    assert all(p["id"] == chart_id and p["td"] == 20261124 for p in packets)
    assert len(bars) == 20
    stamps = [_epoch(b["timestamp"]) for b in bars]
    assert stamps == sorted(stamps) and all(s % 1800 == 0 for s in stamps) and stamps[-1] == NOW
    for b in bars:
        assert b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"]
        assert b["upVolume"] >= 0 and b["downVolume"] >= 0 and b["bidVolume"] + b["offerVolume"] > 0
    assert bars[-1]["close"] == sim.get_price("NQZ6")["price"]  # history meets the live price
    sim.clock.advance(60)
    sim.set_price("NQZ6", bars[-1]["high"] + 1)
    live = sock.wait(lambda m: m.get("e") == "chart")["d"]["charts"][0]
    assert live["id"] == chart_id
    assert live["bars"][0]["timestamp"] == bars[-1]["timestamp"]  # the current bar, updated
    assert live["bars"][0]["close"] == live["bars"][0]["high"] == bars[-1]["high"] + 1
    assert sock.request("md/cancelChart", 2, {"subscriptionId": chart_id}) == {"s": 200, "i": 2, "d": {}}
    sim.set_price("NQZ6", bars[-1]["high"] + 2)
    sock.barrier(99)
    assert [m for m in sock.seen if m.get("e") == "chart"][-1]["d"]["charts"][0] == live


def test_time_range_bounds_continuous_symbol_and_element_cap():
    sim = _start(md_max_chart_elements=50, md_chart_packet_elements=16)
    try:
        with Socket(sim.md_url, login(sim)["mdAccessToken"]) as sock:
            newest = "2026-11-23T18:00:00.000Z"
            oldest = "2026-11-23T14:00:00.000Z"
            _, packets = _get_chart(sock, 1, _chart_body("@NQ", size=60, closestTimestamp=newest,
                                                         asFarAsTimestamp=oldest))
            stamps = [b["timestamp"] for b in _bars(packets)]
            assert stamps == [f"2026-11-23T{h}:00:00.000Z" for h in range(14, 19)]  # both ends included
            _, front = _get_chart(sock, 2, _chart_body("NQZ6", size=60, closestTimestamp=newest,
                                                       asFarAsTimestamp=oldest))
            assert _bars(front) == _bars(packets)  # @NQ is the front month's chart
            _, capped = _get_chart(sock, 3, _chart_body(size=1, asFarAsTimestamp="2026-01-01T00:00Z"))
            assert len(_bars(capped)) == 50 and max(len(p["bars"]) for p in capped) == 16
    finally:
        sim.stop()


def test_bars_only_in_globex_sessions_and_daily_bars_per_trade_date(md):
    sim, sock, _ = md
    _, packets = _get_chart(sock, 1, _chart_body(size=60, asMuchAsElements=200))
    for bar in _bars(packets):
        local = dt.datetime.fromtimestamp(_epoch(bar["timestamp"]), CT)
        assert local.weekday() != 5 and local.hour != 16  # no Saturday, no daily 16:00-17:00 break
        assert not (local.weekday() == 6 and local.hour < 17) and not (local.weekday() == 4 and local.hour > 16)
    _, packets = _get_chart(sock, 2, _chart_body(kind="DailyBar", size=1, asMuchAsElements=10))
    days = [dt.date.fromisoformat(b["timestamp"][:10]) for b in _bars(packets)]
    assert len(days) == 10 and days[-1] == TODAY and all(d.weekday() < 5 for d in days)
    assert days == sorted(set(days))


def test_tick_chart_packets_decode_to_the_price_path(md):
    sim, sock, _ = md
    chart_id, packets = _get_chart(sock, 1, _chart_body(kind="Tick", size=1, asMuchAsElements=40))
    ticks = []
    for p in packets:
        assert p["ts"] == 0.25 and p["s"] == "db" and p["id"] == chart_id
        ticks += [(p["bt"] + t["t"], (p["bp"] + t["p"]) * p["ts"], t) for t in p["tks"]]
    assert len(ticks) == 40
    times = [t for t, _, _ in ticks]
    assert times == sorted(times) and times[-1] <= NOW * 1000
    for _, price, tick in ticks:
        assert tick["s"] > 0 and tick["b"] < tick["p"] < tick["a"] and price > 0
    assert len({tick["id"] for _, _, tick in ticks}) == 40
    sim.clock.advance(3)
    sim.set_price("NQZ6", 21003.0)
    live = sock.wait(lambda m: m.get("e") == "chart")["d"]["charts"][0]
    assert live["id"] == chart_id and live["bt"] == (NOW + 3) * 1000
    assert (live["bp"] + live["tks"][0]["p"]) * live["ts"] == 21003.0


def test_history_is_deterministic_for_a_seed():
    def bars(seed):
        sim = _start(md_seed=seed)
        try:
            with Socket(sim.md_url, login(sim)["accessToken"]) as sock:
                return _bars(_get_chart(sock, 1, _chart_body("ESZ6", size=15, asMuchAsElements=30))[1])
        finally:
            sim.stop()

    first = bars(7)
    assert bars(7) == first
    assert bars(8) != first


def test_chart_requests_it_cannot_serve_answer_error_text(md):
    sim, sock, _ = md
    unknown = sock.request("md/getChart", 1, _chart_body("NOPE", asMuchAsElements=5))
    assert unknown["s"] == 200 and "errorText" in unknown["d"]
    for req_id, body in enumerate([
            _chart_body(kind="Histogram", asMuchAsElements=5),
            {**_chart_body(asMuchAsElements=5), "timeRange": {}},
            {**_chart_body(asMuchAsElements=5), "chartDescription": {"underlyingType": "MinuteBar",
                                                                     "elementSize": 5,
                                                                     "elementSizeUnit": "Renko"}}], start=2):
        answer = sock.request("md/getChart", req_id, body)
        assert answer["s"] == 200 and "errorText" in answer["d"] and "realtimeId" not in answer["d"]
    assert sock.request("md/subscribeHistogram", 9, {"symbol": "NQZ6"})["s"] == 404


def test_catalog_covers_common_cme_futures(md):
    sim, _, token = md
    expected = {"ETH": (0.5, 50.0, False), "MET": (0.5, 0.1, True), "BTC": (5.0, 5.0, False),
                "MBT": (5.0, 0.1, True), "CL": (0.01, 1000.0, False), "MCL": (0.01, 100.0, True),
                "GC": (0.1, 100.0, False), "MGC": (0.1, 10.0, True), "ZN": (0.015625, 1000.0, False),
                "ZB": (0.03125, 1000.0, False), "6E": (0.00005, 125000.0, False), "M6E": (0.0001, 12500.0, True),
                "ES": (0.25, 50.0, False), "MES": (0.25, 5.0, True), "NQ": (0.25, 20.0, False),
                "MNQ": (0.25, 2.0, True), "RTY": (0.1, 50.0, False), "YM": (1.0, 5.0, False),
                "NG": (0.001, 10000.0, False), "SI": (0.005, 5000.0, False), "HG": (0.0005, 25000.0, False)}
    for name, (tick, vpp, micro) in expected.items():
        product = rest_get(sim, token, "product/find", name=name).json()
        assert (product["name"], product["tickSize"], product["valuePerPoint"], product["isMicro"]) == \
            (name, tick, vpp, micro), product
    # crypto lists every month and expires on the month's last Friday
    eth = rest_get(sim, token, "contract/suggest", t="ETH", l=3).json()
    assert [c["name"] for c in eth] == ["ETHX6", "ETHZ6", "ETHF7"]
    maturities = rest_get(sim, token, "contractMaturity/deps",
                          masterid=rest_get(sim, token, "product/find", name="ETH").json()["id"]).json()
    front = [m for m in maturities if m["isFront"]]
    assert len(front) == 1 and front[0]["expirationDate"].startswith("2026-11-27")
    # quarterly equity index and the roll
    assert [c["name"] for c in rest_get(sim, token, "contract/suggest", t="MES", l=2).json()] == ["MESZ6", "MESH7"]
    rolled = requests.post(f"{sim.rest_url}/contract/rollcontract", timeout=10,
                           json={"name": "BTCZ6", "forward": True, "ifExpired": False},
                           headers={"Authorization": f"Bearer {token}"}).json()
    assert rolled["contract"]["name"] == "BTCF7"
    catalog = sim.exchange.catalog
    assert len(catalog.by_name) == len(catalog.contracts)  # no two contracts share a name
    assert {"ZC", "ZS", "ZW", "6J", "6B", "PL", "QM", "NKD"} <= set(catalog.products)
