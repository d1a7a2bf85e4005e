"""parse_signal: table-driven rows for aliases, body encodings, broken TradingView JSON and every
error code, plus a Hypothesis property that nothing but SignalError ever escapes."""
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phantom_scraper.signals import Bracket, SignalError, needs_position, parse_signal

BASE = {"ticker": "NQ1!"}


def body(**fields):
    return json.dumps({**BASE, **fields}).encode()


# -- accepted bodies -------------------------------------------------------------------------

OK_ROWS = [
    # (id, raw body, expected attributes)
    ("buy", body(action="buy", quantity=3), dict(action="buy", quantity=3, order_type="Market")),
    ("long alias", body(action="long"), dict(action="buy", quantity=None)),
    ("sell", body(action="sell", qty=2), dict(action="sell", quantity=2)),
    ("short alias", body(action="SHORT", contracts=1), dict(action="sell", quantity=1)),
    ("qty string", body(action="buy", qty="3"), dict(quantity=3)),
    ("qty float whole", body(action="buy", contracts=3.0), dict(quantity=3)),
    ("qty string padded", body(action="buy", quantity=" 4 "), dict(quantity=4)),
    ("symbol alias", json.dumps({"symbol": "NQZ6", "action": "buy"}).encode(), dict(symbol="NQZ6")),
    ("symbol trimmed", json.dumps({"ticker": "  CME_MINI:NQ1! ", "action": "buy"}).encode(),
     dict(symbol="CME_MINI:NQ1!")),
    ("key spelling", b'{"Ticker":"NQ1!","ACTION":"buy","order_type":"limit","limit_price":5}',
     dict(order_type="Limit", limit_price=5.0)),
    ("close", body(action="close"), dict(action="close")),
    ("exit", body(action="exit"), dict(action="close")),
    ("flatten", body(action="flatten"), dict(action="close")),
    ("flat", body(action="flat"), dict(action="close")),
    ("closelong", body(action="closelong"), dict(action="close_long")),
    ("exit_long", body(action="exit_long"), dict(action="close_long")),
    ("close_long qty", body(action="close_long", qty=1), dict(action="close_long", quantity=1)),
    ("close qty 0 = all", body(action="close", qty=0), dict(action="close", quantity=None)),
    ("closeshort", body(action="closeshort"), dict(action="close_short")),
    ("exit_short", body(action="exit-short"), dict(action="close_short")),
    ("reverse", body(action="reverse"), dict(action="reverse", sentiment=None)),
    ("reverse to long", body(action="reverse", sentiment="bullish"), dict(action="reverse", sentiment="long")),
    ("cancel", body(action="cancel", qty=5), dict(action="cancel", quantity=None)),
    ("add long", body(action="add", sentiment="long"), dict(action="buy", sentiment="long")),
    ("add bearish", body(action="add", sentiment="bearish"), dict(action="sell", sentiment="short")),
    # orders
    ("market ignores price", body(action="buy", price=21450.25),
     dict(order_type="Market", limit_price=None, price=21450.25)),
    ("explicit market drops limitPrice", body(action="buy", orderType="market", limitPrice=5),
     dict(order_type="Market", limit_price=None)),
    ("limit with limitPrice", body(action="buy", orderType="limit", limitPrice=21400, price=21450),
     dict(order_type="Limit", limit_price=21400.0, price=21450.0)),
    ("limit falls back to price", body(action="buy", orderType="LMT", price="21400.5"),
     dict(order_type="Limit", limit_price=21400.5)),
    ("inferred limit", body(action="buy", limitPrice=21400), dict(order_type="Limit")),
    ("inferred stop", body(action="buy", stopPrice=21500), dict(order_type="Stop", stop_price=21500.0)),
    ("inferred stoplimit", body(action="buy", stopPrice=21500, limitPrice=21501), dict(order_type="StopLimit")),
    ("stop", body(action="sell", orderType="stop", stopPrice=21000), dict(order_type="Stop")),
    ("stop_limit", body(action="sell", orderType="stop_limit", stopPrice=21000, limitPrice=20999),
     dict(order_type="StopLimit", limit_price=20999.0, stop_price=21000.0)),
    ("tradovate spelling", body(action="buy", orderType="StopLimit", stopPrice=2, price=1),
     dict(order_type="StopLimit", limit_price=1.0)),
    ("tif", body(action="buy", orderType="limit", limitPrice=1, timeInForce="gtc"), dict(time_in_force="GTC")),
    # brackets
    ("tp object limitPrice", body(action="buy", takeProfit={"limitPrice": 21500}),
     dict(take_profit=Bracket("price", 21500.0))),
    ("sl object stopPrice + type", body(action="buy", stopLoss={"type": "stop", "stopPrice": 21400}),
     dict(stop_loss=Bracket("price", 21400.0))),
    ("tp amount = points", body(action="buy", price=1, takeProfit={"amount": 10}),
     dict(take_profit=Bracket("points", 10.0))),
    ("tp ticks object", body(action="buy", price=1, takeProfit={"ticks": 8}), dict(take_profit=Bracket("ticks", 8.0))),
    ("flat ticks", body(action="buy", price=1, take_profit_ticks=8, stop_loss_ticks="4"),
     dict(take_profit=Bracket("ticks", 8.0), stop_loss=Bracket("ticks", 4.0))),
    ("flat points", body(action="sell", price=1, tp_points=12.5, sl_points=6),
     dict(take_profit=Bracket("points", 12.5), stop_loss=Bracket("points", 6.0))),
    ("tp/sl numbers are prices", body(action="buy", tp=21500, sl=21400),
     dict(take_profit=Bracket("price", 21500.0), stop_loss=Bracket("price", 21400.0))),
    ("limit is the reference", body(action="buy", orderType="limit", limitPrice=5, takeProfit={"ticks": 4}),
     dict(take_profit=Bracket("ticks", 4.0))),
    # sentiment semantics
    ("buy + long keeps sentiment", body(action="buy", sentiment="long"), dict(action="buy", sentiment="long")),
    ("sell + flat exits long", body(action="sell", sentiment="flat", qty=2),
     dict(action="close_long", quantity=None, sentiment=None)),
    ("buy + flat exits short", body(action="buy", position="flat"), dict(action="close_short")),
    ("sell + long reduces long", body(action="sell", market_position="long", qty=1),
     dict(action="close_long", quantity=1)),
    ("close ignores sentiment", body(action="close", sentiment="long"), dict(action="close", sentiment=None)),
    ("exit ignores junk strategy fields", body(action="exit", position="", position_size="", price="", orderType="x"),
     dict(action="close", price=None)),
    ("cancel ignores junk qty", body(action="cancel", qty=""), dict(action="cancel")),
    # strategy-position mode
    ("target long", body(action="buy", position="long", position_size=2),
     dict(action="target", target_position=2, sentiment="long")),
    ("target short", body(order="sell", position="short", position_size="3"), dict(action="target", target_position=-3)),
    ("order is only a fallback", body(action="exit", order="sell"), dict(action="close")),
    ("order as action", body(order="sell", qty=1), dict(action="sell")),
    ("target no action", body(market_position="short", market_position_size=1), dict(action="target", target_position=-1)),
    ("target flat", body(action="sell", position="flat", position_size=0), dict(action="target", target_position=0)),
    ("target flat ignores size", body(position="flat", position_size=2), dict(target_position=0)),
    ("target signed size", body(position="short", position_size=-2), dict(target_position=-2)),
    ("explicit close wins", body(action="exit", position="flat", position_size=0), dict(action="close", target_position=None)),
    # metadata
    ("id string", body(action="buy", id="abc-1"), dict(signal_id="abc-1")),
    ("id int", body(action="buy", id=17), dict(signal_id="17")),
    ("no id", body(action="buy"), dict(signal_id=None)),
    ("time", body(action="buy", time="2026-02-18T14:30:01Z"), dict(time="2026-02-18T14:30:01Z")),
    ("test bool", body(action="buy", test=True), dict(test=True)),
    ("test string", body(action="buy", test="true"), dict(test=True)),
    ("test false string", body(action="buy", test="False"), dict(test=False)),
    ("null is absent", body(action="buy", quantity=None, price=None), dict(quantity=None, price=None)),
    ("unknown ignored", body(action="buy", comment={"deep": [1, {"x": None}]}, foo="bar"), dict(action="buy")),
    # encodings
    ("trailing newline", body(action="buy") + b"\n", dict(action="buy")),
    ("crlf + spaces", b"  \r\n" + body(action="buy") + b" \r\n\t", dict(action="buy")),
    ("bom bytes", b"\xef\xbb\xbf" + body(action="buy"), dict(action="buy")),
    ("bom str", "\ufeff" + body(action="buy").decode(), dict(action="buy")),
    ("str body", body(action="sell").decode(), dict(action="sell")),
    ("bytearray", bytearray(body(action="sell")), dict(action="sell")),
    ("double encoded", json.dumps(body(action="sell").decode()).encode(), dict(action="sell")),
    ("non-ascii ok", json.dumps({**BASE, "action": "buy", "comment": "über €"}).encode(), dict(action="buy")),
    ("duplicate aliases agree", body(action="buy", qty=2, quantity="2"), dict(quantity=2)),
]


@pytest.mark.parametrize("raw,expected", [r[1:] for r in OK_ROWS], ids=[r[0] for r in OK_ROWS])
def test_parse_ok(raw, expected):
    sig = parse_signal(raw)
    for name, value in expected.items():
        assert getattr(sig, name) == value, name


# -- rejected bodies -------------------------------------------------------------------------

ERR_ROWS = [
    # (id, raw, code, field)
    ("empty bytes", b"", "invalid_json", None),
    ("whitespace", b" \n\t ", "invalid_json", None),
    ("not utf8", b'{"action":"buy\xff"}', "invalid_json", None),
    ("plain text", b"buy NQ1! 3", "invalid_json", None),
    ("array", b'[{"action":"buy"}]', "invalid_json", None),
    ("number", b"42", "invalid_json", None),
    ("json string", b'"buy"', "invalid_json", None),
    ("null", b"null", "invalid_json", None),
    ("truncated", b'{"action":"buy","ticker":"NQ1!"', "invalid_json", None),
    ("deep nesting", b"[" * 100000 + b"]" * 100000, "invalid_json", None),
    ("huge int", b'{"qty":' + b"9" * 5000 + b"}", "invalid_json", None),
    ("not bytes", 12345, "invalid_json", None),
    # TradingView empty placeholders
    ("empty contracts", b'{"action":"buy","ticker":"NQ1!","contracts": ,"price":1}', "empty_field", "contracts"),
    ("empty qty at end", b'{"action":"buy","ticker":"NQ1!","qty": }', "empty_field", "qty"),
    ("empty at end newline", b'{"action":"buy","ticker":"NQ1!","qty":\n}\n', "empty_field", "qty"),
    ("empty string qty", body(action="buy", contracts=""), "empty_field", "contracts"),
    ("empty ticker", json.dumps({"ticker": "", "action": "buy"}).encode(), "empty_field", "ticker"),
    ("blank action", body(action="  "), "empty_field", "action"),
    ("empty sentiment", body(action="buy", sentiment=""), "empty_field", "sentiment"),
    ("NaN price", b'{"action":"buy","ticker":"NQ1!","price":NaN}', "invalid_field", "price"),
    ("Infinity qty", b'{"action":"buy","ticker":"NQ1!","qty":-Infinity}', "invalid_field", "qty"),
    ("1e400 price", b'{"action":"buy","ticker":"NQ1!","price":1e400}', "invalid_field", "price"),
    # missing
    ("no action", body(), "missing_field", "action"),
    ("no ticker", b'{"action":"buy"}', "missing_field", "ticker"),
    ("limit without price", body(action="buy", orderType="limit"), "missing_field", "limitPrice"),
    ("stop without stopPrice", body(action="buy", orderType="stop", price=5), "missing_field", "stopPrice"),
    ("stoplimit without stop", body(action="buy", orderType="stop_limit", limitPrice=5), "missing_field", "stopPrice"),
    ("ticks on market w/o price", body(action="buy", takeProfit={"ticks": 8}), "missing_field", "price"),
    ("size without sentiment", body(action="buy", position_size=2), "missing_field", "position"),
    ("add without sentiment", body(action="add"), "missing_field", "sentiment"),
    # invalid
    ("unknown action", body(action="yolo"), "invalid_field", "action"),
    ("action number", body(action=1), "invalid_field", "action"),
    ("qty 2.5", body(action="buy", qty=2.5), "invalid_field", "qty"),
    ("qty 0", body(action="buy", qty=0), "invalid_field", "qty"),
    ("qty negative", body(action="sell", contracts=-1), "invalid_field", "contracts"),
    ("qty bool", body(action="buy", qty=True), "invalid_field", "qty"),
    ("qty words", body(action="buy", qty="three"), "invalid_quantity", "qty"),
    ("qty nan string", body(action="buy", qty="nan"), "invalid_quantity", "qty"),
    ("qty huge", body(action="buy", qty=10 ** 12), "invalid_field", "qty"),
    ("qty object", body(action="buy", qty={"a": 1}), "invalid_field", "qty"),
    ("reverse qty 0", body(action="reverse", qty=0), "invalid_field", "qty"),
    ("price negative", body(action="buy", orderType="limit", limitPrice=-5), "invalid_field", "limitPrice"),
    ("price list", body(action="buy", price=[1]), "invalid_field", "price"),
    ("ticker number", json.dumps({"ticker": 5, "action": "buy"}).encode(), "invalid_field", "ticker"),
    ("ticker junk", json.dumps({"ticker": "NQ1!<script>", "action": "buy"}).encode(), "invalid_field", "ticker"),
    ("bad order type", body(action="buy", orderType="iceberg"), "invalid_field", "orderType"),
    ("bad sentiment", body(action="buy", sentiment="sideways"), "invalid_field", "sentiment"),
    ("bad test", body(action="buy", test="maybe"), "invalid_field", "test"),
    ("id object", body(action="buy", id={"x": 1}), "invalid_field", "id"),
    ("id too long", body(action="buy", id="x" * 500), "invalid_field", "id"),
    ("conflicting aliases", body(action="buy", qty=2, quantity=3), "invalid_field", "qty"),
    ("conflicting spellings", body(action="buy", limitPrice=2, limit_price=3), "invalid_field", "limit_price"),
    ("conflicting huge ints", b'{"ticker":"NQ1!","action":"close","qty":1%s,"quantity":2%s}' % (b"0" * 400, b"0" * 400),
     "invalid_field", "qty"),
    ("huge int alone", b'{"ticker":"NQ1!","action":"close","qty":1%s}' % (b"0" * 400), "invalid_field", "qty"),
    ("two take profits", body(action="buy", price=1, takeProfit={"ticks": 4}, tp_ticks=5), "invalid_field", "tp_ticks"),
    ("tp object empty", body(action="buy", takeProfit={}), "invalid_field", "takeProfit"),
    ("tp object two kinds", body(action="buy", price=1, takeProfit={"ticks": 4, "points": 1}), "invalid_field", "takeProfit"),
    ("ticks fractional", body(action="buy", price=1, stop_loss_ticks=2.5), "invalid_field", "stop_loss_ticks"),
    ("ticks zero", body(action="buy", price=1, stopLoss={"ticks": 0}), "invalid_field", "stopLoss.ticks"),
    ("reverse flat", body(action="reverse", sentiment="flat"), "invalid_field", "sentiment"),
    ("signed size disagrees", body(position="long", position_size=-2), "invalid_field", "position_size"),
    ("secret not text", body(action="buy", secret=123), "invalid_field", "secret"),
    ("bad tif", body(action="buy", tif="forever"), "invalid_field", "tif"),
    # unsupported
    ("trailing stop", body(action="buy", orderType="trailing_stop"), "unsupported", "orderType"),
    ("TrailingStop", body(action="buy", orderType="TrailingStop"), "unsupported", "orderType"),
    ("percent tp without a reference", body(action="buy", takeProfit={"percent": 1}), "missing_field", "price"),
    ("stop-limit sl without its limit", body(action="buy", stopLoss={"type": "stop_limit", "stopPrice": 1}),
     "missing_field", "stopLoss.limitPrice"),
    ("stop-limit sl in a strategy", body(action="buy", takeProfit=[{"ticks": 4}, {"ticks": 8}],
                                         stopLoss={"type": "stop_limit", "stopPrice": 1, "limitPrice": 1}),
     "unsupported", "stopLoss.type"),
    ("gtd", body(action="buy", timeInForce="GTD"), "unsupported", "timeInForce"),
]


@pytest.mark.parametrize("raw,code,field", [r[1:] for r in ERR_ROWS], ids=[r[0] for r in ERR_ROWS])
def test_parse_error(raw, code, field):
    with pytest.raises(SignalError) as info:
        parse_signal(raw)
    err = info.value
    assert (err.code, err.field) == (code, field)
    assert err.message and str(err) == err.message
    if field:
        assert field.split(".")[0] in err.message or field in err.message
    assert err.to_dict() == {"code": code, "field": field, "message": err.message}


# -- the secret ------------------------------------------------------------------------------

SECRET = "s3cr3t-Token-42"


def test_secret_returned_separately_and_never_shown():
    sig = parse_signal(body(action="buy", secret=SECRET, meta={"passphrase": SECRET, "keep": 1}))
    assert sig.secret == SECRET
    assert SECRET not in repr(sig)
    assert "secret" not in sig.payload and SECRET not in json.dumps(sig.payload)
    assert sig.payload["meta"] == {"keep": 1}
    assert sig.payload["ticker"] == "NQ1!"


def test_passphrase_alias():
    assert parse_signal(body(action="buy", passphrase=SECRET)).secret == SECRET


@pytest.mark.parametrize("fields", [
    dict(action=SECRET),
    dict(action="buy", qty=SECRET),
    dict(action="buy", orderType=SECRET),
    dict(action="buy", sentiment="x" + SECRET),
    dict(action="buy", test=SECRET),
    dict(action="buy", ticker=SECRET + "!!<>"),
])
def test_secret_never_in_error_messages(fields):
    with pytest.raises(SignalError) as info:
        parse_signal(json.dumps({**BASE, "secret": SECRET, **fields}).encode())
    assert SECRET not in info.value.message
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.to_dict())


def test_secret_not_echoed_from_broken_json():
    with pytest.raises(SignalError) as info:
        parse_signal(('{"secret":"%s","action":"buy","ticker":"NQ1!","qty": ,}' % SECRET).encode())
    assert info.value.field == "qty" and SECRET not in info.value.message


def test_payload_is_a_copy():
    data = {**BASE, "action": "buy", "nested": {"a": [1, 2]}}
    sig = parse_signal(json.dumps(data))
    assert sig.payload == data
    sig2 = parse_signal(json.dumps(data))
    assert sig == sig2  # payload and secret are not compared


def test_needs_position_table():
    rows = {
        body(action="buy"): False,
        body(action="sell", qty=2): False,
        body(action="buy", price=1, tp_ticks=4): False,
        body(action="cancel"): False,
        body(action="buy", sentiment="long"): True,
        body(action="close"): True,
        body(action="exit_long"): True,
        body(action="closeshort"): True,
        body(action="reverse"): True,
        body(position="long", position_size=1): True,
    }
    for raw, expected in rows.items():
        assert needs_position(parse_signal(raw)) is expected, raw


# -- never crash -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
KNOWN_KEYS = ["action", "order", "ticker", "symbol", "quantity", "qty", "contracts", "orderType",
              "limitPrice", "price", "stopPrice", "takeProfit", "stopLoss", "tp", "sl", "tp_ticks",
              "stop_loss_points", "sentiment", "position", "market_position", "position_size", "time",
              "id", "test", "secret", "timeInForce"]
WORDS = st.sampled_from(["buy", "sell", "long", "short", "close", "exit_long", "closeshort", "reverse",
                         "cancel", "add", "flat", "bullish", "limit", "stop", "stop_limit", "market",
                         "NQ1!", "CME_MINI:NQ1!", "NQZ6", "", " ", "3", "2.5", "-1", "true", "nan"])
known_payloads = st.dictionaries(
    st.sampled_from(KNOWN_KEYS),
    WORDS | json_values | st.dictionaries(st.sampled_from(["limitPrice", "stopPrice", "ticks", "points",
                                                           "amount", "percent", "type"]),
                                          WORDS | st.floats() | st.integers(), max_size=3),
    max_size=10,
)


class _SafetyNetSpy(logging.Handler):
    def emit(self, record):
        raise AssertionError(f"parse_signal hit its safety net: {record.getMessage()}")


_parse_log = logging.getLogger("phantom_scraper.signals.parse")


def _check(raw):
    spy = _SafetyNetSpy(level=logging.ERROR)
    _parse_log.addHandler(spy)
    try:
        sig = parse_signal(raw)
    except SignalError as exc:
        assert isinstance(exc.code, str) and isinstance(exc.message, str)
        return
    finally:
        _parse_log.removeHandler(spy)
    assert sig.action in ("buy", "sell", "close", "close_long", "close_short", "reverse", "cancel", "target")
    assert sig.quantity is None or sig.quantity > 0
    json.dumps(sig.payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes(raw):
    _check(raw)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_text(raw):
    _check(raw)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_json_values(value):
    _check(json.dumps(value))


@settings(max_examples=500, deadline=None)
@given(known_payloads, st.sampled_from(["", "\n", "\r\n  "]), st.booleans())
def test_fuzz_known_fields(payload, trailer, as_bytes):
    text = json.dumps(payload, allow_nan=True) + trailer
    _check(text.encode() if as_bytes else text)


# -- the documented examples parse -----------------------------------------------------------

PLACEHOLDERS = {
    "{{ticker}}": "NQ1!", "{{close}}": "21450.25", "{{low}}": "21440", "{{timenow}}": "2026-02-18T14:30:01Z",
    "{{strategy.order.action}}": "buy", "{{strategy.order.contracts}}": "2", "{{strategy.order.id}}": "L1",
    "{{strategy.market_position}}": "long", "{{strategy.market_position_size}}": "2",
}


def _doc_examples():
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "PAYLOAD.md").read_text()
    return re.findall(r"```json\n(.*?)\n```", text, re.S)


@pytest.mark.parametrize("example", _doc_examples())
def test_payload_doc_examples_parse(example):
    for placeholder, value in PLACEHOLDERS.items():
        example = example.replace(placeholder, value)
    parse_signal(example.encode())
