"""Issue 25, finding 12: a quantity is ASCII digits, no exponent.  ``"1e1"`` placed 10 contracts
and fullwidth or Arabic-Indic digits read as numbers; they are refused as ``invalid_quantity``
naming the field, and nothing is placed."""
from __future__ import annotations

import json

import pytest

from phantom_scraper.signals import SignalError, parse_signal
from tests.helpers import post


def body(**fields):
    return json.dumps({"ticker": "NQ1!", **fields}).encode()


ODD = ["1e1", "1E1", "2e0", "\uff13", "\u0663", "\u0661\u0660", "\u09e8", "1\u0660"]


@pytest.mark.parametrize("text", ODD)
@pytest.mark.parametrize("key", ["quantity", "qty", "contracts"])
def test_odd_numerals_in_a_quantity_are_refused_naming_the_field(text, key):
    with pytest.raises(SignalError) as info:
        parse_signal(body(action="buy", **{key: text}))
    assert (info.value.code, info.value.field) == ("invalid_quantity", key)
    assert key in info.value.message


@pytest.mark.parametrize("text", ["\u0663", "1e1"])
def test_odd_numerals_in_a_position_size_or_target_size_are_refused(text):
    with pytest.raises(SignalError) as info:
        parse_signal(body(sentiment="long", position_size=text))
    assert (info.value.code, info.value.field) == ("invalid_quantity", "position_size")
    with pytest.raises(SignalError) as info:
        parse_signal(body(action="buy", price=100, takeProfit=[{"ticks": 4, "quantity": text}, {"ticks": 8}]))
    assert info.value.code == "invalid_quantity"


def test_odd_numerals_in_a_pickmytrade_quantity_are_refused():
    message = {"symbol": "NQ1!", "date": "2026-11-25T14:30:00Z", "data": "buy", "quantity": "1e1",
               "risk_percentage": 0, "price": "100", "tp": 0, "sl": 0, "trail": 0, "update_tp": False,
               "update_sl": False, "token": "abc"}
    with pytest.raises(SignalError) as info:
        parse_signal(json.dumps(message).encode())
    assert (info.value.code, info.value.field) == ("invalid_quantity", "quantity")


def test_fullwidth_digits_are_not_a_price_either():
    with pytest.raises(SignalError) as info:
        parse_signal(body(action="buy", orderType="limit", limitPrice="\uff11\uff10\uff10"))
    assert info.value.field == "limitPrice"


@pytest.mark.parametrize("text,qty", [("3", 3), (" 4 ", 4), ("+2", 2), ("3.0", 3), ("3.", 3)])
def test_plain_quantities_still_read(text, qty):
    assert parse_signal(body(action="buy", quantity=text)).quantity == qty


def test_a_webhook_with_an_exponent_places_nothing(make_server_app, sim):
    client = make_server_app().test_client()
    r = post(client, json.dumps({"action": "buy", "ticker": "MNQ1!", "quantity": "1e1"}))
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid_quantity"
    assert r.get_json()["error"]["field"] == "quantity"
    assert sim.orders() == []
