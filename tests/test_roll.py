"""The front month rolls while the process runs (issue 12, sequence 5).

The simulator's calendar is pinned to 2026-11-25: NQZ6 expires on Friday 2026-12-18, so by the
CME equity-index convention NQ rolls to NQH7 on Thursday 2026-12-10.  CL rolls at its own expiry.
"""
from __future__ import annotations

import datetime as dt
import json

from phantom_scraper.signals import SymbolResolver
from phantom_scraper.signals.symbols import roll_date
from tests.helpers import SERVER_ADMIN_TOKEN, post_webhook, wait_signal_final
from phantom_scraper.config import Credentials
from phantom_scraper.tradovate_integration import TradovateIntegration
from tests.helpers import FAST


def test_roll_date_convention():
    assert roll_date("NQ", dt.date(2026, 12, 18)) == dt.date(2026, 12, 10)  # a Thursday
    assert dt.date(2026, 12, 10).weekday() == 3
    assert roll_date("CL", dt.date(2026, 12, 18)) == dt.date(2026, 12, 18)
    assert roll_date("NQ", dt.date(2026, 12, 18), days_before=2) == dt.date(2026, 12, 16)


def test_front_by_maturity_date_and_cached_until_the_roll(sim):
    ti = TradovateIntegration(Credentials(username="demo", password="demo"), sim.rest_url, sim.ws_url,
                              is_demo=True, settings=FAST)
    resolver = SymbolResolver(ti, trading_date="2026-12-09")
    assert resolver.resolve("NQ1!").name == "NQZ6"
    assert resolver.fronts()["NQ"] == {"front": "NQZ6", "contract_id": resolver.resolve("NQ1!").id,
                                       "next_roll": "2026-12-10"}
    resolver.trading_date = "2026-12-10"  # the process keeps running over the roll date
    assert resolver.resolve("NQ1!").name == "NQH7"
    assert resolver.fronts()["NQ"]["next_roll"] == "2027-03-11"
    assert resolver.resolve("CL1!").name == "CLF7"  # CL: its own expiry, not the equity convention
    ti.close()


def _status(client):
    r = client.get("/api/websocket-status", headers={"Authorization": f"Bearer {SERVER_ADMIN_TOKEN}"})
    return json.loads(r.get_data(as_text=True))


def test_signals_follow_the_roll_and_an_invalid_contract_is_resolved_again(sim, make_server_app):
    app = make_server_app()
    client = app.test_client()
    journal = app.extensions["runtime"].service.journal
    status, body = post_webhook(client, {"ticker": "NQ1!", "action": "buy", "quantity": 1, "id": "before-roll"})
    assert status == 200 and body["status"] == "acked", body
    assert {k[1] for k in sim.positions()} == {"NQZ6"}

    # The roll date passes while the process runs: the next alert trades the new front.
    app.extensions["runtime"].service.resolver.trading_date = "2026-12-10"
    status, body = post_webhook(client, {"ticker": "NQ1!", "action": "buy", "quantity": 1, "id": "after-roll"})
    assert status == 200 and body["status"] == "acked", body
    assert sim.positions()[(sim.account_id("DEMO0001"), "NQH7")] == 1
    assert _status(client)["front_months"]["NQ"]["front"] == "NQH7"

    # The broker stops taking the month we resolved (InvalidContract, not executed): resolve once
    # more, skipping it, and place that order on the next month.
    sim.delist("NQH7")
    status, body = post_webhook(client, {"ticker": "NQ1!", "action": "buy", "quantity": 1, "id": "refused"})
    assert status == 200 and body["status"] == "acked", body
    wait_signal_final(journal, body["signal_id"])
    for name in ("DEMO0001", "DEMO0002"):
        assert sim.positions()[(sim.account_id(name), "NQM7")] == 1
    refused = [o for o in sim.orders() if o["symbol"] == "NQH7" and o.get("failureReason")]
    assert len(refused) == 2  # one refused attempt per account, then one order each on NQM7
    assert _status(client)["front_months"]["NQ"]["front"] == "NQM7"
