"""Trade history: ``GET /api/history`` against the simulator, and the P&L arithmetic."""
from __future__ import annotations

import csv
import io

import pytest

from phantom_scraper.ops.history import Fill, build, equity_svg, realized_by_day, to_csv
from tests.helpers import ADMIN_HEADERS, post, wait_for, ws_ready

MNQ_POINT_VALUE = 2.0


def acked(client, body):
    r = post(client, body)
    assert r.status_code == 200, r.get_data(as_text=True)
    data = r.get_json()
    assert all(a["status"] == "acked" for a in data["accounts"]), data
    return data


def test_history_csv_totals_equal_the_simulators_books(make_server_app, sim):
    app = make_server_app()
    ws_ready(app)
    client = app.test_client()
    sim.set_price("MNQZ6", 21000.0)
    first = acked(client, '{"action":"buy","ticker":"MNQ1!","quantity":2,"price":20999.5}')
    sim.set_price("MNQZ6", 21010.0)
    acked(client, '{"action":"sell","ticker":"MNQ1!","quantity":1,"id":"h2"}')  # +10 points on one contract
    sim.set_price("MNQZ6", 20995.0)
    acked(client, '{"action":"close","ticker":"MNQ1!","id":"h3"}')  # -5 points on the other
    sim.set_price("MNQZ6", 20990.0)
    acked(client, '{"action":"sell","ticker":"MNQ1!","quantity":1,"id":"h4"}')  # a short ...
    sim.set_price("MNQZ6", 20980.0)
    acked(client, '{"action":"close","ticker":"MNQ1!","id":"h5"}')  # ... covered 10 points lower: +10

    # The simulator's own books: every position flat, realized = sold value - bought value.
    ti = app.extensions["runtime"].service.logins["default"].integration
    positions = ti.list_positions()
    assert positions and all(p["netPos"] == 0 for p in positions)
    expected = {}
    names = {a["id"]: a["name"] for a in ti.list_accounts()}
    for p in positions:
        name = names[p["accountId"]]
        expected[name] = expected.get(name, 0.0) + (p["soldValue"] - p["boughtValue"]) * MNQ_POINT_VALUE

    # ... and its cash balance: Tradovate's realized P&L of the trading day
    cash = {names[i]: ti.cash_balance_snapshot(i)["realizedPnL"]
            for i in names}

    r = client.get("/api/history?format=csv", headers=ADMIN_HEADERS)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    totals = {}
    for row in rows:
        totals[row["account"]] = totals.get(row["account"], 0.0) + float(row["realized_pnl"])
    assert set(totals) == {"DEMO0001", "DEMO0002"}
    assert totals == pytest.approx(expected)
    assert totals == pytest.approx(cash)
    assert totals["DEMO0001"] == pytest.approx((10 - 5 + 10) * MNQ_POINT_VALUE)
    assert sum(int(row["trades"]) for row in rows if row["account"] == "DEMO0001") == 3
    assert sum(int(row["wins"]) for row in rows if row["account"] == "DEMO0001") == 2
    assert sum(int(row["losses"]) for row in rows if row["account"] == "DEMO0001") == 1

    # JSON: per signal what was asked, what each account did, fills, slippage and latency
    data = client.get("/api/history?account=DEMO0002", headers=ADMIN_HEADERS).get_json()
    assert set(data["totals"]) == {"DEMO0002"}
    sig = next(s for s in data["signals"] if s["signal_id"] == first["signal_id"])
    assert sig["signal_price"] == 20999.5 and sig["quantity"] == 2
    (acct,) = sig["accounts"]
    assert acct["account"] == "DEMO0002" and acct["state"] == "acked" and acct["transport"] == "websocket"
    assert acct["fills"] == [{"qty": 2, "price": 21000.0, "timestamp": acct["fills"][0]["timestamp"]}]
    assert acct["slippage_points"] == pytest.approx(0.5)  # bought half a point above the alert's price
    assert acct["received_to_ack_ms"] is not None and acct["send_to_ack_ms"] is not None
    assert acct["ack_to_fill_ms"] is not None

    per_signal = list(csv.DictReader(io.StringIO(
        client.get("/api/history?format=csv&view=signals", headers=ADMIN_HEADERS).get_data(as_text=True))))
    assert len(per_signal) == 10  # 5 signals x 2 accounts

    # the range filter and bad input
    assert client.get("/api/history?from=2001-01-01&to=2001-01-02", headers=ADMIN_HEADERS).get_json()["signals"] == []
    r = client.get("/api/history?from=yesterday", headers=ADMIN_HEADERS)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_parameter"
    assert client.get("/api/history?format=xml", headers=ADMIN_HEADERS).status_code == 400


def fill(n, action, qty, price, day="2026-11-25", account="A", contract="MNQZ6"):
    return Fill(1, account, contract, 100 + n, action, qty, price, 1_000_000.0 + n, day, n)


def test_fifo_pnl_across_partial_closes_flips_and_days():
    fills = [fill(1, "Buy", 2, 100.0), fill(2, "Buy", 1, 103.0), fill(3, "Sell", 2, 104.0),  # +4 +4 (FIFO)
             fill(4, "Sell", 3, 101.0),  # closes the 103 lot (-2), opens a short of 2 at 101
             fill(5, "Buy", 2, 99.0, day="2026-11-26")]  # +2 +2 the next day
    days = realized_by_day(fills, {"MNQZ6": 2.0})
    assert [(d.trade_date, d.realized_pnl, d.trades, d.wins, d.losses) for d in days] == [
        ("2026-11-25", (4 + 4 - 2) * 2.0, 2, 1, 1), ("2026-11-26", 4 * 2.0, 1, 1, 0)]
    assert days[0].equity[-1][1] == 12.0


def test_csv_and_svg_render():
    h = build([], [fill(1, "Buy", 1, 100.0), fill(2, "Sell", 1, 90.0)], {"MNQZ6": 2.0})
    rows = list(csv.DictReader(io.StringIO(to_csv(h))))
    assert rows == [{"trade_date": "2026-11-25", "account": "A", "realized_pnl": "-20.0", "trades": "1", "wins": "0",
                     "losses": "1", "fills": "2"}]
    svg = equity_svg(h["days"][0]["equity"])
    assert svg.startswith("<svg") and "http://" in svg and "<polyline" in svg and "#b00" in svg
    assert "src=" not in svg and "href" not in svg  # nothing fetched
    assert equity_svg([]) == ""


def test_history_to_a_date_ends_with_that_day_at_the_boundaries(monkeypatch):
    """``to=D`` shows day D and not D+1 (issue 31 #9); ``from=D&to=D`` is day D alone; a signal
    received at 23:59:59 on D is in, one at 00:00:00 on D+1 is out."""
    import datetime as dt
    from types import SimpleNamespace

    from phantom_scraper.ops import history_source

    fills = [fill(1, "Buy", 1, 100.0, day="2026-11-24"), fill(2, "Sell", 1, 101.0, day="2026-11-24"),
             fill(3, "Buy", 1, 100.0, day="2026-11-25"), fill(4, "Sell", 1, 102.0, day="2026-11-25"),
             fill(5, "Buy", 1, 100.0, day="2026-11-26"), fill(6, "Sell", 1, 103.0, day="2026-11-26")]
    monkeypatch.setattr(history_source, "broker_fills", lambda service, *_window: (fills, {"MNQZ6": 2.0}, []))
    midnight = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc).timestamp()
    asked = []

    class Journal:
        def signals_between(self, start, end, limit):
            asked.append((start, end))
            received = (midnight - 1.0, midnight)  # 23:59:59 on the 25th, 00:00:00 on the 26th
            return [{"signal_id": str(i), "received_at": t, "payload": {}, "intents": []}
                    for i, t in enumerate(received) if (start is None or t >= start) and (end is None or t < end)]

    service = SimpleNamespace(journal=Journal())

    def days(frm, to):
        data = history_source.gather(service, history_source.parse_time(frm),
                                     history_source.parse_time(to, end_of_day=True))
        return [d["trade_date"] for d in data["days"]], len(data["signals"])

    assert days(None, "2026-11-25") == (["2026-11-24", "2026-11-25"], 1)
    assert asked[-1][1] == midnight  # the 26th's midnight is the (excluded) end
    assert days("2026-11-25", "2026-11-25") == (["2026-11-25"], 1)
    assert days("2026-11-26", "2026-11-26") == (["2026-11-26"], 1)
    assert days("2026-11-24", "2026-11-24") == (["2026-11-24"], 0)
    assert days(None, "2026-11-25T12:00:00Z") == (["2026-11-24", "2026-11-25"], 0)
