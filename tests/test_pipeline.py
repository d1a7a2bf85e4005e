"""Signal pipeline: execute_trade_simple + journal rows after every path, and duplicates.

Every test checks the simulator's book of record (``sim.orders()``) and the journal's intent rows.
"""
from __future__ import annotations

import json
import threading

import pytest

import recorder_service as rs
from phantom_scraper.execution.settlement import reconcile_pending
from phantom_scraper.errors import BrokerError
from phantom_scraper.journal.journal import Journal
from phantom_scraper.signals import AccountTarget, SymbolResolver
from phantom_scraper.tradovate_sim import UserSpec
from phantom_scraper.tradovate.ws import TradovateWebSocket
from tests.helpers import FAST, SIM_CFG, WAIT_S, run_signal, service_settings, targets_of, wait_for


@pytest.fixture
def journal(tmp_path):
    j = Journal(str(tmp_path / "journal.sqlite3"))
    yield j
    j.close()


def book_for(sim, cl_ord_id):
    return [o for o in sim.orders() if o["clOrdId"] == cl_ord_id]


@pytest.mark.parametrize("payload", [
    {"action": "buy", "symbol": "NQ", "qty": 2},  # no position read: the frames go out in one batch
    {"action": "buy", "symbol": "NQ", "qty": 2, "sentiment": "long"},  # a position read first: one job per account
], ids=["batched", "per-account"])
def test_every_account_runs_in_parallel_and_reports_its_outcome(make_multi_sim, logins_for, journal, monkeypatch,
                                                                payload):
    sim = make_multi_sim([UserSpec.with_accounts("fan", "pw", 4, prefix="FAN")], **SIM_CFG)
    ti, conn, accounts = logins_for(sim).add("fan", "pw")
    rs.get_pooled_connection_sync(int(accounts[0]["id"]), True)
    batches = []
    request_many = TradovateWebSocket.request_many

    def spy(self, requests, timeout=5.0):
        batches.append([r[0] for r in requests])
        return request_many(self, requests, timeout)

    monkeypatch.setattr(TradovateWebSocket, "request_many", spy)
    # Parallel, shown without timing.  Batched: every account's frame is handed to the socket in ONE
    # request_many call before any answer is waited for.  Per account: every account must reach the
    # broker call before any may go on.
    all_in = threading.Barrier(len(accounts), timeout=WAIT_S)
    place = ti.place_order_smart

    def place_when_all_arrived(*args, **kwargs):
        all_in.wait()  # a serial loop would break this barrier (BrokenBarrierError -> outcome "error")
        return place(*args, **kwargs)

    ti.place_order_smart = place_when_all_arrived
    signal_id, outcomes = run_signal(journal, ti, targets_of(conn, accounts), payload)
    placements = [b for b in batches if b and b[0].startswith("order/")]
    if "sentiment" in payload:
        assert placements == [["order/placeorder"]] * 4  # one request per account, from four threads
    else:
        assert placements == [["order/placeorder"] * 4]  # one hand-off to the socket for all four
    assert [o.account_name for o in outcomes] == [a["name"] for a in accounts]  # in the order given
    for outcome in outcomes:
        assert (outcome.status, outcome.transport, outcome.error) == ("acked", "websocket", None)
        assert isinstance(outcome.order_id, int) and outcome.latency_ms is not None
        intent = journal.get_intent(outcome.cl_ord_ids[0])
        assert intent["state"] == "acked" and intent["broker_order_id"] == outcome.order_id
        assert intent["transport"] == "websocket" and intent["latency_ms"] is not None
        [order] = book_for(sim, outcome.cl_ord_ids[0])
        assert order["orderId"] == outcome.order_id and order["orderQty"] == 2
    assert len(sim.orders()) == 4
    assert conn.status()["orders_via_websocket"] == 4


def test_no_socket_means_rest_at_once_while_the_connect_runs_behind(make_multi_sim, logins_for, probe, journal):
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim).add()
    gate = probe.gate(ti)
    try:
        _, [outcome] = run_signal(journal, ti, targets_of(conn, accounts[:1]), {"action": "buy", "symbol": "NQ"})
        assert (outcome.status, outcome.transport) == ("acked", "rest")
        assert probe.entered.is_set() and not gate.is_set()  # the order did not wait for the hung connect
        assert conn.connecting
        assert journal.get_intent(outcome.cl_ord_ids[0])["transport"] == "rest"
    finally:
        gate.set()
    wait_for(conn.live_client, what="background connect")
    _, [outcome] = run_signal(journal, ti, targets_of(conn, accounts[:1]), {"action": "sell", "symbol": "NQ"})
    assert outcome.transport == "websocket" and probe.count == 1
    assert [o["transport"] for o in sim.orders()] == ["rest", "websocket"]


def test_broker_rejection_is_journaled_rejected(make_multi_sim, logins_for, journal):
    sim = make_multi_sim([UserSpec(max_order_qty=1)], risk_reject_async=False, **SIM_CFG)
    ti, conn, accounts = logins_for(sim).add()
    rs.get_pooled_connection_sync(int(accounts[0]["id"]), True)
    _, [outcome] = run_signal(journal, ti, targets_of(conn, accounts[:1]), {"action": "buy", "symbol": "NQ", "qty": 3})
    assert outcome.status == "rejected" and "MaxOrderQtyLimitReached" in outcome.error
    intent = journal.get_intent(outcome.cl_ord_ids[0])
    assert intent["state"] == "rejected" and intent["broker_order_id"] is None
    [order] = sim.orders()
    assert order["orderId"] is None and order["ordStatus"] == "Rejected"


def test_plan_rejection_sends_nothing_and_journals_no_intent(make_multi_sim, logins_for, journal):
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim).add()
    target = (AccountTarget(id=int(accounts[0]["id"]), name=accounts[0]["name"], max_qty=1,
                                 max_qty_mode="reject"), conn)
    signal_id, [outcome] = run_signal(journal, ti, [target], {"action": "buy", "symbol": "NQ", "qty": 5})
    assert outcome.status == "rejected" and outcome.error.startswith("exceeds_max_qty")
    assert journal.intents_for_signal(signal_id) == [] and sim.orders() == []


def test_test_mode_places_nothing(make_multi_sim, logins_for, journal):
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim).add()
    signal_id, outcomes = run_signal(journal, ti, targets_of(conn, accounts), {"action": "buy", "symbol": "NQ", "test": True})
    assert [o.status for o in outcomes] == ["validated", "validated"] and all(o.planned for o in outcomes)
    assert journal.intents_for_signal(signal_id) == [] and sim.orders() == []


def test_not_sent_is_journaled_rejected_and_nothing_exists(make_multi_sim, logins_for, journal):
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim).add()
    rs.get_pooled_connection_sync(int(accounts[0]["id"]), True)
    contract = SymbolResolver(ti).resolve("NQ")
    sim.faults.http_429_next = 1  # the broker refuses to execute: not sent, and no REST fallback
    _, [outcome] = run_signal(journal, ti, targets_of(conn, accounts[:1]), {"action": "buy", "symbol": "NQ"},
                              contract=contract)
    assert outcome.status == "not_sent" and "429" in outcome.error
    intent = journal.get_intent(outcome.cl_ord_ids[0])
    assert intent["state"] == "rejected" and intent["error"].startswith("not sent")
    assert sim.orders() == []


def test_unanswered_order_is_reconciled_inside_the_order_call(make_multi_sim, logins_for, journal):
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim, FAST.replace(order_ack_timeout_s=0.5)).add()
    rs.get_pooled_connection_sync(int(accounts[0]["id"]), True)
    sim.faults.no_answer_next_orders = 1  # executed, never answered
    _, [outcome] = run_signal(journal, ti, targets_of(conn, accounts[:1]), {"action": "buy", "symbol": "NQ"},
                              FAST.replace(order_ack_timeout_s=0.5))
    [order] = book_for(sim, outcome.cl_ord_ids[0])
    assert (outcome.status, outcome.reconciled, outcome.order_id) == ("acked", True, order["orderId"])
    intent = journal.get_intent(outcome.cl_ord_ids[0])
    # journaled 'unknown' before the search, then 'reconciled' when found
    assert intent["state"] == "reconciled" and intent["reconciled"] and intent["broker_order_id"] == order["orderId"]
    assert len(sim.orders()) == 1  # found, not resent


def test_unknown_outcome_is_journaled_unknown_then_reconciled_without_resend(make_multi_sim, logins_for, journal):
    settings = FAST.replace(order_ack_timeout_s=0.5, reconcile_window_s=0.3)
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim, settings).add()
    rs.get_pooled_connection_sync(int(accounts[0]["id"]), True)
    sim.faults.no_answer_next_orders = 1
    list_commands = ti.list_commands

    def book_unreadable(*args, **kwargs):
        raise BrokerError("command/list: HTTP 503", status=503)

    ti.list_commands = book_unreadable  # the search cannot read the book: outcome stays unknown
    _, [outcome] = run_signal(journal, ti, targets_of(conn, accounts[:1]), {"action": "buy", "symbol": "NQ"}, settings)
    cl_ord_id = outcome.cl_ord_ids[0]
    assert outcome.status == "unknown"
    assert journal.get_intent(cl_ord_id)["state"] == "unknown"
    assert [p["cl_ord_id"] for p in journal.pending_intents()] == [cl_ord_id]
    # Book still unreadable: reconciliation leaves it pending rather than guessing.
    assert reconcile_pending(journal, lambda account_id: ti) == [
        {"cl_ord_id": cl_ord_id, "order_id": None, "state": "unknown"}]
    ti.list_commands = list_commands
    [order] = book_for(sim, cl_ord_id)
    settled = reconcile_pending(journal, lambda account_id: ti)
    assert settled == [{"cl_ord_id": cl_ord_id, "order_id": order["orderId"], "state": "reconciled"}]
    intent = journal.get_intent(cl_ord_id)
    assert intent["state"] == "reconciled" and intent["broker_order_id"] == order["orderId"] and intent["reconciled"]
    assert journal.pending_intents() == [] and len(sim.orders()) == 1


def test_running_service_adopts_unknown_intents_once_the_book_shows_them(make_multi_sim, logins_for, journal):
    """settle_unknown (a keep-alive cycle hook) only adopts: never rejects, never resends, and
    leaves intents still 'sending' (in flight in this process) alone."""
    from phantom_scraper.execution.settlement import settle_unknown

    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim).add()
    acct = accounts[0]
    signal_id, _, _ = journal.record_signal("test", {"action": "buy"}, "sig-unknown", "h", 0)
    ids = {}
    for step, state in enumerate(("unknown", "unknown", "sending")):
        cl = f"ps-u-{acct['id']}-{step}"
        journal.create_intent(signal_id, acct["id"], acct["name"], step, "placeorder", {}, cl, state="sending")
        if state == "unknown":
            journal.set_intent_state(cl, "unknown", error="no answer")
        ids[step] = cl
    body = {"accountSpec": acct["name"], "accountId": acct["id"], "action": "Buy", "symbol": ti.suggest_contracts("NQ")[0]["name"],
            "orderQty": 1, "orderType": "Market", "isAutomated": True}
    placed = ti.place_order_rest(dict(body, clOrdId=ids[0]))  # the broker did execute step 0
    ti.place_order_rest(dict(body, clOrdId=ids[2]))  # and the in-flight one, which must stay put
    adopted = settle_unknown(journal, lambda account_id: ti)
    assert adopted == [{"cl_ord_id": ids[0], "order_id": placed["orderId"]}]
    assert journal.get_intent(ids[0])["state"] == "reconciled"
    assert journal.get_intent(ids[1])["state"] == "unknown"  # not found: stays visible, not guessed
    assert journal.get_intent(ids[2])["state"] == "sending"
    assert len(sim.orders()) == 2  # nothing resent
    assert settle_unknown(journal, lambda account_id: ti) == []


def test_reconcile_of_an_intent_never_sent_leaves_it_unknown_then_not_placed_and_does_not_send(
        make_multi_sim, logins_for, journal):
    """The contract since the outcome model: a restart cannot know whether an intent left
    'sending' was executed, so it is never 'rejected': not found -> unknown, and after the settle
    period -> not_placed.  Nothing is sent at any point."""
    from phantom_scraper.execution.settlement import Settler

    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim).add()
    signal_id, _, _ = journal.record_signal("test", {"action": "buy"}, "sig-1", "h", 0)
    previous = Journal(journal.path)  # the process that died before the frame left
    previous.create_intent(signal_id, accounts[0]["id"], accounts[0]["name"], 0, "placeorder", {}, "ps-x-1-0")
    previous.set_intent_state("ps-x-1-0", "sending")
    previous.close()
    assert reconcile_pending(journal, lambda a: ti) == [{"cl_ord_id": "ps-x-1-0", "order_id": None, "state": "unknown"}]
    assert journal.get_intent("ps-x-1-0")["state"] == "unknown" and sim.orders() == []
    assert Settler(journal, lambda a: ti, settle_period_s=3600).run_once() == []  # still inside the period
    changed = Settler(journal, lambda a: ti, settle_period_s=0).run_once()
    assert changed == [{"cl_ord_id": "ps-x-1-0", "state": "not_placed", "order_id": None}]
    assert journal.get_intent("ps-x-1-0")["state"] == "not_placed" and sim.orders() == []


# ---------------------------------------------------------------------------------------------
# Duplicates, through the service

def test_duplicate_signal_places_nothing_also_after_a_restart(make_multi_sim, services, tmp_path):
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    settings = service_settings(sim, tmp_path)
    svc = services(settings)
    recorder = svc.recorder_for_token("hook-secret")
    by_payload = json.dumps({"action": "buy", "symbol": "NQ"}).encode()
    first = svc.handle_signal(recorder, by_payload)
    assert first.http_status == 200 and first.body["status"] == "acked"
    assert len(sim.orders()) == 2  # both accounts of the login
    again = svc.handle_signal(recorder, by_payload)  # same payload within the window
    assert again.body["duplicate"] is True and again.body["signal_id"] == first.body["signal_id"]
    with_id = json.dumps({"action": "sell", "symbol": "NQ", "id": "tv-42"}).encode()
    assert svc.handle_signal(recorder, with_id).body["status"] == "acked"
    assert len(sim.orders()) == 4
    svc.stop()

    restarted = services(settings)  # same journal: the id is remembered
    result = restarted.handle_signal(restarted.recorder_for_token("hook-secret"), with_id)
    assert result.body["duplicate"] is True
    assert len(sim.orders()) == 4
    counts = restarted.journal.counts()
    assert counts["signals_by_status"]["duplicate"] == 2 and counts["intents_by_state"] == {"acked": 4}
