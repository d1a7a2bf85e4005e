"""A busy lane's hand-over is measured where it happens (issue 29, execution/handover.py): from
the previous job's orders final at the broker (their final event applied) to the next job's start,
for jobs queued behind them only."""
from __future__ import annotations

import concurrent.futures
import threading
import time
from types import SimpleNamespace

from phantom_scraper import events
from phantom_scraper.execution.account_lanes import AccountLanes
from phantom_scraper.tradovate.broker_state import BrokerState

ACCT, CONTRACT = 10, 7
SETTINGS = SimpleNamespace(order_ack_timeout_s=5.0)


def _state():
    state = BrokerState("t")
    assert state.load_snapshot(state.begin(object()), {
        "positions": [{"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 0}]})
    return state


def _order(state, oid, status):
    state.apply_event({"entityType": "order", "eventType": "Created" if status == "PendingNew" else "Updated",
                       "entity": {"id": oid, "accountId": ACCT, "contractId": CONTRACT, "ordStatus": status}})


def test_a_queued_job_reports_its_hand_over_and_a_later_one_does_not():
    seen = []
    unsubscribe = events.subscribe(lambda e: seen.append(e.fields["seconds"]) if e.kind == "lane_handover" else None)
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        state = _state()
        conn = SimpleNamespace(broker_state=state)
        contract = SimpleNamespace(id=CONTRACT, root="NQ")
        lanes = AccountLanes(lambda: pool)
        _order(state, 100, "PendingNew")
        started = threading.Event()

        def first():
            return SimpleNamespace(order_ids=[100])

        def second():
            started.set()
            return SimpleNamespace(order_ids=[])

        t1, t2 = lanes.reserve([ACCT], "NQ")[ACCT], lanes.reserve([ACCT], "NQ")[ACCT]
        lanes.submit(t1, conn, ACCT, contract, SETTINGS, first, inline=False).result(5)
        f2 = lanes.submit(t2, conn, ACCT, contract, SETTINGS, second, inline=False)
        assert not started.wait(0.05)  # order 100 not yet accepted: the next job waits for it
        final_at = time.monotonic()
        _order(state, 100, "Canceled")  # its final event: the lane hands over
        f2.result(5)
        assert len(seen) == 1 and 0.0 <= seen[0] <= time.monotonic() - final_at
        status = lanes.status()["handover"]
        assert status["count"] == 1 and status["p50_ms"] == round(seen[0] * 1000, 2)

        # a job reserved after the previous orders were final waited for no one: not a hand-over
        t3 = lanes.reserve([ACCT], "NQ")[ACCT]
        lanes.submit(t3, conn, ACCT, contract, SETTINGS, first, inline=False).result(5)  # places 100 (final)
        t4 = lanes.reserve([ACCT], "NQ")[ACCT]
        lanes.submit(t4, conn, ACCT, contract, SETTINGS, second, inline=False).result(5)
        assert len(seen) == 1 and lanes.status()["handover"]["count"] == 1
    finally:
        unsubscribe()
        pool.shutdown()
