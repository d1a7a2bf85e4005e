"""The simulator's day is not walked by the garbage collector (tradovate_sim/daybook.py).

Its full collections stop every thread, so a day of orders kept as tracked objects would stall
every order in flight longer and longer; and what it keeps compact still reads back, and goes out
on the wire, exactly as before.
"""
from __future__ import annotations

import gc

from phantom_scraper.tradovate_sim.config import SimConfig, UserSpec
from phantom_scraper.tradovate_sim.daybook import RETIRE_BATCH
from phantom_scraper.tradovate_sim.exchange import Exchange

TRADE_DATE_KEYS = {"year", "month", "day"}


def _exchange():
    ex = Exchange(SimConfig(users=(UserSpec.with_accounts("day", "pw", 2, prefix="DAY"),)))
    user = next(iter(ex._users))
    acct = ex._user_accounts[user][0]
    events = []
    ex.add_listener(events.extend)
    return ex, user, acct, ex.catalog.front("ES"), events


def _bracket(ex, user, acct, contract, i):
    price = ex.price(contract.id)
    side, other = ("Buy", "Sell") if i % 2 else ("Sell", "Buy")
    sign = 1 if side == "Buy" else -1
    return ex.place_oso(user, {"accountId": acct, "action": side, "symbol": contract.name, "orderQty": 1,
                               "orderType": "Market", "isAutomated": True,
                               "bracket1": {"action": other, "orderType": "Limit", "price": price + sign * 10},
                               "bracket2": {"action": other, "orderType": "Stop", "stopPrice": price - sign * 10}},
                        "ws")


def _day(ex, user, acct, contract, n):
    """n bracketed entries, each filled, then one leg filled by the price (the other cancelled)."""
    ids = []
    for i in range(n):
        result = _bracket(ex, user, acct, contract, i)
        assert "orderId" in result and "oso1Id" in result, result
        ids.append(result)
        price = ex.price(contract.id)
        ex.set_price(contract.id, price + (15 if i % 2 else -15))  # the target fills, its stop is cancelled
        ex.set_price(contract.id, price)
    return ids


def _tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_a_days_orders_reports_and_fills_add_no_objects_for_the_collector_to_walk():
    ex, user, acct, contract, events = _exchange()
    _day(ex, user, acct, contract, 50)  # warm: caches, the position, the first batch
    events.clear()
    before = _tracked()
    n = 4 * RETIRE_BATCH  # 1,024 entries, 3,072 orders
    _day(ex, user, acct, contract, n)
    events.clear()
    grown = _tracked() - before
    finished = sum(1 for o in ex._entities["order"].values() if o["ordStatus"] in ("Filled", "Canceled"))
    assert finished >= 3 * n
    # at most the two newest batches of finished orders are still whole (3 objects each): bounded,
    # not one set per order of the day
    assert grown <= 2 * RETIRE_BATCH * 3 + 200, (grown, n)


def test_a_folded_order_reads_back_as_it_was():
    ex, user, acct, contract, _ = _exchange()
    first = _day(ex, user, acct, contract, 1)[0]
    entry = ex._info[first["orderId"]]
    remembered = (entry.order_id, entry.account_id, entry.contract_id, entry.action, entry.qty, entry.order_type,
                  list(entry.children))
    legs = [(ex._info[first[k]].order_type, ex._info[first[k]].price, ex._info[first[k]].stop_price,
             ex._info[first[k]].oco_id) for k in ("oso1Id", "oso2Id")]
    _day(ex, user, acct, contract, RETIRE_BATCH)  # enough finished orders behind it to fold it
    assert first["orderId"] in ex._info._done
    again = ex._info[first["orderId"]]
    assert (again.order_id, again.account_id, again.contract_id, again.action, again.qty, again.order_type,
            again.children) == remembered
    assert remembered[-1] == [first["oso1Id"], first["oso2Id"]]
    assert [(ex._info[first[k]].order_type, ex._info[first[k]].price, ex._info[first[k]].stop_price,
             ex._info[first[k]].oco_id) for k in ("oso1Id", "oso2Id")] == legs
    assert legs[0][3] == first["oso2Id"] and legs[1][3] == first["oso1Id"]
    assert len(ex._info) == len(ex._entities["order"])
    assert sorted(ex._info) == sorted(ex._entities["order"])


def test_a_finished_order_still_answers_too_late_to_cancel_and_modify():
    ex, user, acct, contract, _ = _exchange()
    first = _day(ex, user, acct, contract, 1)[0]
    _day(ex, user, acct, contract, RETIRE_BATCH)
    assert first["orderId"] in ex._info._done
    assert ex.cancel_order(user, {"orderId": first["orderId"]})["failureReason"] == "TooLate"
    answer = ex.modify_order(user, {"orderId": first["oso1Id"], "orderQty": 1, "orderType": "Limit", "price": 1.0})
    assert answer["failureReason"] == "TooLate"


def test_reports_and_fills_carry_tradovates_trade_date_object_everywhere():
    ex, user, acct, contract, events = _exchange()
    _day(ex, user, acct, contract, 3)
    sent = [e for e in events if e[1] in ("executionReport", "fill")]
    assert {e[1] for e in sent} == {"executionReport", "fill"}
    for _owner, _etype, _kind, entity in sent:
        assert isinstance(entity["tradeDate"], dict) and set(entity["tradeDate"]) == TRADE_DATE_KEYS
    for etype in ("executionReport", "fill"):
        rows = ex.list_entities(user, etype)
        assert rows and all(set(r["tradeDate"]) == TRADE_DATE_KEYS for r in rows)
    snap = ex.sync_snapshot(user, {acct}, {"executionReport", "fill"})
    for plural in ("executionReports", "fills"):
        assert snap[plural] and all(set(r["tradeDate"]) == TRADE_DATE_KEYS for r in snap[plural])
    # the copies are the wire's: changing one leaves the day's book as it was
    rows[0]["tradeDate"]["year"] = 1900
    assert ex.list_entities(user, "fill")[0]["tradeDate"]["year"] != 1900


_OWN_PROCESS = r"""
import gc, json, sys
sys.path.insert(0, sys.argv[1])
from tests.test_sim_daybook import _day, _exchange
from phantom_scraper.tradovate_sim.daybook import freeze_process
ex, user, acct, contract, events = _exchange()
ex.add_listener(lambda batch: events.clear())
freeze_process()  # as python -m phantom_scraper.tradovate_sim does once started
_day(ex, user, acct, contract, 600)
gc.collect()
walked = [(type(o).__name__, len(o)) for o in gc.get_objects() if isinstance(o, (dict, list, set, tuple))]
print(json.dumps({"orders": len(ex._entities["order"]), "largest": max(n for _, n in walked),
                  "tracked": len(gc.get_objects())}))
"""


def test_in_its_own_process_the_days_stores_are_never_walked_however_large():
    """A collection visits every entry of every container it walks, tracked or not: the day's
    stores and price history must all be out of its reach (frozen, or arrays)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", _OWN_PROCESS, str(root)], cwd=str(root), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["orders"] >= 1800
    assert doc["largest"] < 600, doc  # no walked container holds an entry per order (or per price)
