"""The risk rules read an order strategy's entry size from its params and never clip its legs."""
import json

from phantom_scraper.risk import rules
from phantom_scraper.signals import AccountTarget, Contract, parse_signal, plan_orders

NQ = Contract(id=101, name="NQZ6", root="NQ", tick_size=0.25, point_value=20.0)
ACCT = AccountTarget(id=7, name="DEMO0001")


def strategy_plan(qty):
    signal = parse_signal(json.dumps({"ticker": "NQ1!", "action": "buy", "quantity": qty,
                                      "takeProfit": [{"points": 5}, {"points": 10}], "stopLoss": {"points": 4}}))
    return plan_orders(signal, NQ, ACCT, 0)


def test_strategy_entry_size_is_read_from_its_params():
    [step] = strategy_plan(2)
    assert rules.step_delta(step) == 2


def test_strategy_entry_over_the_maximum_is_refused_whole_not_clipped():
    kept, notes = rules.apply_entry_rules(strategy_plan(3), 0, max_position=2)
    assert kept == [] and notes and notes[0].code == rules.MAX_POSITION
    kept, notes = rules.apply_entry_rules(strategy_plan(2), 0, max_position=2)
    assert [s.kind for s in kept] == ["startorderstrategy"] and notes == []


def test_a_locked_account_refuses_strategy_entries():
    kept, notes = rules.apply_entry_rules(strategy_plan(1), 0, refuse=rules.Refusal(rules.LOCKED, "locked"))
    assert kept == [] and notes[0].code == rules.LOCKED


def test_exit_helpers_pass_a_lock():
    signal = parse_signal(json.dumps({"ticker": "NQ1!", "action": "close"}))
    steps = plan_orders(signal, NQ, ACCT, 2, open_strategies=True)
    kept, _ = rules.apply_entry_rules(steps, 2, refuse=rules.Refusal(rules.LOCKED, "locked"))
    assert [s.kind for s in kept] == ["interrupt_strategies", "liquidateposition"]


def test_a_locked_account_never_gets_part_of_a_strategy():
    kept, _ = rules.apply_entry_rules(strategy_plan(3), -1, refuse=rules.Refusal(rules.LOCKED, "locked"))
    assert kept == []
