"""The account ends where the strategy is (issue 12): the five sequences that used to leave an
account in the wrong position, reproduced against the simulator."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from phantom_scraper.app.results import summary_status
from phantom_scraper.execution.exit_legs import plan_leg_changes
from phantom_scraper.signals import plan_orders
from phantom_scraper.tradovate_sim import UserSpec
from tests.positions_support import FAST, Desk, target

BRACKETS = {"price": 21000, "tp_ticks": 40, "sl_ticks": 40}  # NQ starts at 21000: tp 21010, sl 20990


@pytest.fixture
def desk(make_multi_sim, clean_pool, tmp_path):
    made = []

    def make(accounts=2, multipliers=(1, 1, 1), **options):
        sim = make_multi_sim([UserSpec.with_accounts("demo", "demo", accounts, prefix="DEMO")],
                             ws_idle_timeout_s=5.0)
        d = Desk(sim, tmp_path, multipliers=multipliers[:accounts], **options)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def test_two_alerts_on_one_bar_run_in_arrival_order(desk):
    """'long 1' then 'long 2' on one bar, the broker answering in 20-60 ms: each alert must see the
    other's fill, so every account ends long 2 (it ended long 3)."""
    d = desk()
    d.sim.faults.update({"order_delay_ms": 20.0, "order_delay_jitter_ms": 20.0,
                         "response_latency_ms": 10.0, "response_latency_jitter_ms": 10.0})
    for _ in range(2):
        d.send(target("long", 1), wait=False)
        d.send(target("long", 2), wait=False)
        d.send(target("flat", 0), wait=False)
        d.send(target("short", 1), wait=False)
        d.send(target("short", 2), wait=False)
        d.quiet()
        assert {t.id: d.position(t.id) for t, _ in d.targets} == {t.id: -2 for t, _ in d.targets}
        d.send(target("flat", 0))
        d.quiet()


def test_reversal_quantity_is_close_plus_open(desk):
    """TradingView sends long 1 -> short 1 as sell 2 with sentiment short: the account ends short 1
    (it ended short 2); with the switch off, 2 is the entry size."""
    d = desk()
    d.send({"ticker": "NQ1!", "action": "buy", "quantity": 1, "sentiment": "long"})
    d.send({"ticker": "NQ1!", "action": "sell", "quantity": 2, "sentiment": "short"})
    d.quiet()
    assert [d.position(t.id) for t, _ in d.targets] == [-1, -1]

    off = desk(accounts=1, subtract_exit_qty=False)
    off.send({"ticker": "NQ1!", "action": "buy", "quantity": 1, "sentiment": "long"})
    off.send({"ticker": "NQ1!", "action": "sell", "quantity": 2, "sentiment": "short"})
    off.quiet()
    assert off.position(off.targets[0][0].id) == -2


def test_a_reversal_entry_follows_its_liquidation_on_the_position_event(desk, monkeypatch):
    """With the socket-fed state fresh, the entry waits for the event that flattens the account,
    not for a poll: it used to sleep ``RECONCILE_POLL_INTERVAL_S / 5`` (100 ms by default) between
    the liquidation's fill and the entry.  The broker's events trail its answers by 50 ms here, so
    the liquidation is answered before the account shows flat; a poll would sleep 20 s."""
    d = desk(settings=dataclasses.replace(FAST, reconcile_poll_interval_s=100.0, reconcile_window_s=15.0))
    d.send({"ticker": "NQ1!", "action": "buy", "quantity": 1, "sentiment": "long"})
    d.quiet()
    d.sim.faults.update({"props_delay_ms": 50.0})
    from phantom_scraper.execution import account

    class NoPoll:  # the account module's ``time``, without sleeping (other modules keep theirs)
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            raise AssertionError(f"wait_flat polled (sleep {seconds} s) with a fresh socket-fed state")
    monkeypatch.setattr(account, "time", NoPoll())
    sid = d.send({"ticker": "NQ1!", "action": "sell", "quantity": 2, "sentiment": "short"})
    d.quiet()
    assert [o.status for o in d.outcomes[sid]] == ["acked", "acked"]
    assert [d.position(t.id) for t, _ in d.targets] == [-1, -1]


def test_bracket_legs_follow_the_position_and_never_flip_it(desk):
    """target 1 -> 2 -> 1 with brackets left four working legs on a position of 1; the take profit
    then made the account short 1.  Now the legs cover exactly the position and the target hit
    leaves it flat."""
    d = desk()
    d.send(target("long", 1, BRACKETS))
    d.send(target("long", 2, BRACKETS))
    d.quiet()
    assert [d.legs(t.id) for t, _ in d.targets] == [{"take_profit": 2, "stop": 2}] * 2
    d.send(target("long", 1, BRACKETS))
    d.quiet()
    assert [d.position(t.id) for t, _ in d.targets] == [1, 1]
    assert [d.legs(t.id) for t, _ in d.targets] == [{"take_profit": 1, "stop": 1}] * 2
    d.sim.set_price("NQZ6", 21010)  # the take profit trades
    d.quiet()
    assert [d.position(t.id) for t, _ in d.targets] == [0, 0]
    assert [d.legs(t.id) for t, _ in d.targets] == [{"take_profit": 0, "stop": 0}] * 2


def test_close_with_quantity_cuts_the_legs_first(desk):
    d = desk(accounts=1)
    d.send({"ticker": "NQ1!", "action": "buy", "quantity": 3, **BRACKETS})
    d.quiet()
    d.send({"ticker": "NQ1!", "action": "close", "quantity": 2})
    d.quiet()
    acct = d.targets[0][0].id
    assert d.position(acct) == 1 and d.legs(acct) == {"take_profit": 1, "stop": 1}
    d.sim.set_price("NQZ6", 20990)  # the stop trades
    d.quiet()
    assert d.position(acct) == 0 and d.legs(acct) == {"take_profit": 0, "stop": 0}


def test_reversal_goes_on_when_the_position_closed_just_before_the_flatten(desk):
    """A bracket stop fills on the reversal bar between the position read and the liquidation:
    'Position is already flat' is the flatten's goal reached, and the entry is still sent."""
    d = desk()
    d.send({"ticker": "NQ1!", "action": "buy", "quantity": 1, "sentiment": "long", **BRACKETS})
    d.quiet()
    planned = threading.Barrier(len(d.targets), timeout=20,  # every account has read "long 1"...
                                action=lambda: d.sim.set_price("NQZ6", 20990))  # ...then the stops fill

    def planner_then_stop_fills(signal, contract, account, net_pos, has_working=False):
        steps = plan_orders(signal, contract, account, net_pos, has_working)
        planned.wait()
        return steps

    sid = d.send({"ticker": "NQ1!", "action": "sell", "quantity": 2, "sentiment": "short"},
                 planner=planner_then_stop_fills)
    d.quiet()
    assert [d.position(t.id) for t, _ in d.targets] == [-1, -1]
    assert [o.status for o in d.outcomes[sid]] == ["acked", "acked"]


def test_a_close_that_loses_the_race_with_a_bracket_fill_reached_its_goal(desk):
    """Account 1 is long 1 with a bracket, account 2 long 1 without.  A ``close`` reads "long 1" on
    both, then account 1's stop fills before its liquidation: the broker answers "Position is
    already flat".  That close reached its goal: account 1 is ``skipped`` (its intent too, not
    ``rejected``), account 2 ``acked``, and the signal ``acked`` -- not ``partial``."""
    d = desk()
    both = d.targets
    d.targets = both[:1]
    d.send({"ticker": "NQ1!", "action": "buy", "quantity": 1, **BRACKETS})
    d.targets = both[1:]
    d.send({"ticker": "NQ1!", "action": "buy", "quantity": 1})
    d.targets = both
    d.quiet()
    planned = threading.Barrier(len(d.targets), timeout=20,  # both accounts have read "long 1"...
                                action=lambda: d.sim.set_price("NQZ6", 20990))  # ...then account 1's stop fills

    def planner_then_stop_fills(signal, contract, account, net_pos, has_working=False):
        steps = plan_orders(signal, contract, account, net_pos, has_working)
        planned.wait()
        return steps

    sid = d.send({"ticker": "NQ1!", "action": "close"}, planner=planner_then_stop_fills)
    d.quiet()
    assert [d.position(t.id) for t, _ in d.targets] == [0, 0]
    by_account = {o.account_id: o for o in d.outcomes[sid]}
    first, second = (by_account[t.id] for t, _ in d.targets)
    assert (first.status, first.error) == ("skipped", "position already flat")
    assert second.status == "acked"
    assert summary_status(d.outcomes[sid]) == "acked"
    intents = {i["account_id"]: i for i in d.journal.intents_for_signal(sid)}
    assert intents[d.targets[0][0].id]["state"] == "skipped"
    assert "already flat" in intents[d.targets[0][0].id]["error"]
    assert intents[d.targets[1][0].id]["state"] == "acked"


def test_a_liquidation_refused_for_another_reason_stays_a_rejection(desk):
    """Only "already flat" is a reached goal: a liquidation the broker refuses for anything else
    (here an account it does not know: "Access is denied") is reported and journaled as rejected."""
    d = desk(accounts=1)
    d.send({"ticker": "NQ1!", "action": "buy", "quantity": 1})
    d.quiet()

    def planner_foreign_account(signal, contract, account, net_pos, has_working=False):
        steps = plan_orders(signal, contract, account, net_pos, has_working)
        return [dataclasses.replace(s, body=dict(s.body, accountId=987654)) if s.kind == "liquidateposition" else s
                for s in steps]

    sid = d.send({"ticker": "NQ1!", "action": "close"}, planner=planner_foreign_account)
    d.quiet()
    [outcome] = d.outcomes[sid]
    assert outcome.status == "rejected" and "Access is denied" in outcome.error
    assert summary_status(d.outcomes[sid]) == "failed"
    [intent] = d.journal.intents_for_signal(sid)
    assert intent["state"] == "rejected"
    assert d.position(d.targets[0][0].id) == 1


# -- pure: the leg plan never leaves more than the position ---------------------------------------

def _leg(oid, action, otype, qty, **extra):
    return {"id": oid, "action": action, "orderType": otype, "orderQty": qty, "ordStatus": "Working",
            "parentId": 1, **extra}


def test_leg_plan_cuts_newest_first_and_cancels_wrong_side_and_flat():
    legs = [_leg(10, "Sell", "Limit", 1), _leg(11, "Sell", "Stop", 1), _leg(20, "Sell", "Limit", 2),
            _leg(21, "Sell", "Stop", 2)]
    changes = plan_leg_changes(2, legs)
    assert [("cancel", c["cancel"]["id"]) if "cancel" in c else ("modify", c["modify"]["id"], c["qty"])
            for c in changes] == [("modify", 20, 1), ("modify", 21, 1)]
    assert {c["cancel"]["id"] for c in plan_leg_changes(0, legs)} == {10, 11, 20, 21}
    assert {c["cancel"]["id"] for c in plan_leg_changes(-1, legs)} == {10, 11, 20, 21}  # would add to a short
    assert plan_leg_changes(3, legs) == []  # covering less than the position is left alone
    suspended = [dict(_leg(30, "Sell", "Limit", 5), ordStatus="Suspended")]
    assert plan_leg_changes(1, suspended) == []  # not working yet: its entry has not filled


def test_a_lane_whose_fills_the_socket_state_never_shows_plans_from_the_broker_instead(desk):
    """The socket-fed state misses the position event of a lane's own fill (a lost or late frame):
    the next signal of that lane must not plan from the state's 'flat' -- it ended long 3 on
    'target 1, target 2'.  After the settle wait runs out, the position is read from the broker."""
    d = desk(accounts=1, settings=dataclasses.replace(FAST, order_ack_timeout_s=0.5))
    state = d.conn.broker_state
    real_on_message = state.on_message

    def without_position_events(gen, msg):
        if isinstance(msg, dict) and (msg.get("d") or {}).get("entityType") == "position":
            return  # this login's socket never shows a position change
        real_on_message(gen, msg)

    state.on_message = without_position_events
    d.send(target("long", 1))
    d.send(target("long", 2))
    d.quiet()
    assert state.fresh and state.net_pos(d.targets[0][0].id, d.contract_id()) == 0  # the state is behind
    assert d.position(d.targets[0][0].id) == 2
