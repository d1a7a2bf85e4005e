"""SymbolResolver against a small fake client: continuous, prefixed, root, dated forms, unknown
symbols, the per-root cache and its refresh with an injected clock."""
import threading

import pytest

from phantom_scraper.errors import BrokerError
from phantom_scraper.signals import Contract, SignalError, SymbolResolver, parse_symbol

CONTRACTS = {
    "NQZ6": {"id": 101, "name": "NQZ6", "contractMaturityId": 9001},
    "NQH7": {"id": 102, "name": "NQH7", "contractMaturityId": 9002},
    "MNQZ6": {"id": 201, "name": "MNQZ6", "contractMaturityId": 9101},
    "ESZ6": {"id": 301, "name": "ESZ6", "providerTickSize": 0.25, "valuePerPoint": 50},
    "ESGZ6": {"id": 302, "name": "ESGZ6"},  # another product whose name starts with ES
    "M2KZ6": {"id": 401, "name": "M2KZ6"},
    "CLF7": {"id": 501, "name": "CLF7"},
    "ZZZZ6": {"id": 601, "name": "ZZZZ6"},  # a root with no known tick size
    "XYZZ6": {"id": 701, "name": "XYZZ6", "tickSize": 0.5},
}


class FakeClient:
    def __init__(self):
        self.calls = []
        self.suggestions = {
            "NQ": ["NQZ6", "NQH7"],
            "MNQ": ["MNQZ6"],
            "ES": ["ESGZ6", "ESZ6"],  # the other product first: must be skipped
            "M2K": ["M2KZ6"],
            "CL": ["CLF7"],
            "ZZZ": ["ZZZZ6"],
            "XYZ": ["XYZZ6"],
        }
        self.fail = False

    def find_contract(self, name):
        self.calls.append(("find", name))
        if self.fail:
            raise BrokerError("boom", status=500)
        return CONTRACTS.get(name)

    def suggest_contracts(self, root, limit):
        self.calls.append(("suggest", root, limit))
        if self.fail:
            raise BrokerError("boom", status=500)
        return [CONTRACTS[n] for n in self.suggestions.get(root, [])][:limit]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def client():
    return FakeClient()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def resolver(client, clock):
    return SymbolResolver(client, clock=clock, refresh_s=3600)


@pytest.mark.parametrize("symbol,name,contract_id,tick", [
    ("NQ1!", "NQZ6", 101, 0.25),
    ("CME_MINI:NQ1!", "NQZ6", 101, 0.25),
    (" cme_mini:nq1! ", "NQZ6", 101, 0.25),
    ("MNQ1!", "MNQZ6", 201, 0.25),
    ("NQ", "NQZ6", 101, 0.25),
    ("@NQ", "NQZ6", 101, 0.25),
    ("NQZ6", "NQZ6", 101, 0.25),
    ("NQZ2026", "NQZ6", 101, 0.25),
    ("nqz26", "NQZ6", 101, 0.25),
    ("NQH7", "NQH7", 102, 0.25),
    ("CME_MINI:NQH2027", "NQH7", 102, 0.25),
    ("ES1!", "ESZ6", 301, 0.25),
    ("M2K1!", "M2KZ6", 401, 0.1),
    ("M2KZ6", "M2KZ6", 401, 0.1),
    ("NYMEX:CL1!", "CLF7", 501, 0.01),
    ("XYZ1!", "XYZZ6", 701, 0.5),  # tick size from the contract dict
])
def test_resolve(resolver, symbol, name, contract_id, tick):
    c = resolver.resolve(symbol)
    assert (c.name, c.id, c.tick_size) == (name, contract_id, tick)
    assert isinstance(c, Contract)


def test_point_value_from_dict_or_table(resolver):
    assert resolver.resolve("ES1!").point_value == 50.0
    assert resolver.resolve("NQ1!").point_value == 20.0
    assert resolver.resolve("XYZ1!").point_value is None


@pytest.mark.parametrize("symbol,code", [
    ("GC1!", "unknown_symbol"),  # suggest returns nothing
    ("NQM6", "unknown_symbol"),  # find_contract returns None
    ("NQZ1999", "unknown_symbol"),
    ("", "unknown_symbol"),
    ("!!!", "unknown_symbol"),
    ("NQ2!", "unsupported"),
    ("ZZZ1!", "unsupported"),  # no tick size anywhere
])
def test_resolve_errors(resolver, symbol, code):
    with pytest.raises(SignalError) as info:
        resolver.resolve(symbol)
    assert info.value.code == code and info.value.field == "symbol"
    if symbol.strip():
        assert symbol in info.value.message or symbol[:3] in info.value.message


def test_suggest_filters_other_products(client, resolver):
    client.suggestions["ES"] = ["ESGZ6"]
    with pytest.raises(SignalError) as info:
        resolver.resolve("ES1!")
    assert info.value.code == "unknown_symbol"


def test_roll_contract_fallback(client, resolver):
    client.suggestions["NQ"] = []
    client.roll_contract = lambda name: {"errorText": None, "contract": CONTRACTS["NQH7"]}
    assert resolver.resolve("NQ1!").name == "NQH7"


def test_roll_contract_failure_is_unknown(client, resolver):
    def roll(name):
        raise BrokerError("bad request", status=400)
    client.suggestions["NQ"] = []
    client.roll_contract = roll
    with pytest.raises(SignalError) as info:
        resolver.resolve("NQ1!")
    assert info.value.code == "unknown_symbol"


def test_cache_and_refresh(client, clock, resolver):
    assert resolver.resolve("NQ1!").name == "NQZ6"
    assert resolver.resolve("CME_MINI:NQ1!").name == "NQZ6"
    assert resolver.resolve("NQ").name == "NQZ6"
    assert [c for c in client.calls if c[0] == "suggest"] == [("suggest", "NQ", 10)]
    client.suggestions["NQ"] = ["NQH7"]  # the roll
    clock.now += 3599
    assert resolver.resolve("NQ1!").name == "NQZ6"
    clock.now += 2
    assert resolver.resolve("NQ1!").name == "NQH7"
    assert len([c for c in client.calls if c[0] == "suggest"]) == 2


def test_dated_cached(client, clock, resolver):
    resolver.resolve("NQZ6")
    resolver.resolve("NQZ2026")
    assert client.calls == [("find", "NQZ6")]
    clock.now += 4000
    resolver.resolve("NQZ6")
    assert client.calls == [("find", "NQZ6"), ("find", "NQZ6")]


def test_unknown_not_cached(client, resolver):
    for _ in range(2):
        with pytest.raises(SignalError):
            resolver.resolve("NQM6")
    assert client.calls == [("find", "NQM6"), ("find", "NQM6")]


def test_stale_served_when_refresh_fails(client, clock, resolver):
    assert resolver.resolve("NQ1!").name == "NQZ6"
    clock.now += 10000
    client.fail = True
    assert resolver.resolve("NQ1!").name == "NQZ6"


def test_broker_error_without_cache_propagates(client, resolver):
    client.fail = True
    with pytest.raises(BrokerError):
        resolver.resolve("NQ1!")


def test_clear(client, resolver):
    resolver.resolve("NQ1!")
    resolver.clear()
    resolver.resolve("NQ1!")
    assert len(client.calls) == 2


def test_no_io_under_lock(client, resolver):
    """The client is called without the cache lock held (another thread can read meanwhile)."""
    seen = []

    def find(name):
        got = resolver._lock.acquire(blocking=False)
        seen.append(got)
        if got:
            resolver._lock.release()
        return CONTRACTS.get(name)

    client.find_contract = find
    resolver.resolve("NQZ6")
    assert seen == [True]


def test_threads_share_the_cache(client, resolver):
    results = []
    threads = [threading.Thread(target=lambda: results.append(resolver.resolve("NQ1!").name)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["NQZ6"] * 8
    assert resolver.resolve("NQ1!").name == "NQZ6"


@pytest.mark.parametrize("symbol,expected", [
    ("NQ1!", ("NQ", "")),
    ("CME_MINI:MNQ1!", ("MNQ", "")),
    ("mes", ("MES", "")),
    ("MESZ6", ("MES", "MESZ6")),
    ("MNQH2026", ("MNQ", "MNQH6")),
    ("ZNZ6", ("ZN", "ZNZ6")),
    ("6EZ6", ("6E", "6EZ6")),
    ("M2K1!", ("M2K", "")),
])
def test_parse_symbol(symbol, expected):
    assert parse_symbol(symbol) == expected
