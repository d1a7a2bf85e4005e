"""A Hypothesis state machine over the order path: send signals, drop every socket, black-hole the
next answer, make the next order go unanswered or close its socket, wait for the reconnect, re-send
a webhook (duplicate), restart the service on the same journal.

After every step: at most one broker order per (signal, account) in the simulator's book.
At teardown: every signal sent has exactly one order per account, or none with a recorded reason.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import recorder_service
from phantom_scraper.tradovate_sim import Simulator
from tests.helpers import SIM_TEST_CONFIG, server_settings
from tests.helpers import (
    FINAL_SIGNAL_STATES,
    assert_at_most_one,
    check_invariant,
    post_webhook,
    settle,
)

FINAL_INTENT_STATES = {"acked", "rejected", "reconciled", "skipped", "unknown"}


class OrderPathMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.sim = Simulator(SIM_TEST_CONFIG).start()
        self.tmp = tempfile.mkdtemp(prefix="rel-sm-")
        self.app = None
        self.sent = {}  # explicit id -> (signal_id, payload)
        self.counter = 0
        self.restarts = 0
        self._boot()
        self.accounts = [self.sim.account_id("DEMO0001"), self.sim.account_id("DEMO0002")]

    # -- helpers ---------------------------------------------------------------------------------
    def _boot(self):
        from ultra_simple_server import create_app

        cfg = server_settings(self.sim, Path(self.tmp), database_path=os.path.join(self.tmp, "journal.sqlite3"),
                              keepalive_interval_s=0.3, order_ack_timeout_s=0.4, reconcile_window_s=0.3,
                              reconcile_poll_interval_s=0.05, rest_timeout_s=0.8, webhook_budget_s=1.0)
        self.app = create_app(cfg, boot_on_first_request=False)
        runtime = self.app.extensions["runtime"]
        runtime.boot(wait=True)
        assert runtime.service.state == "ready", runtime.service.start_error
        self.client = self.app.test_client()

    @property
    def journal(self):
        return self.app.extensions["runtime"].service.journal

    # -- rules -----------------------------------------------------------------------------------
    @rule(action=st.sampled_from(["buy", "sell"]), qty=st.integers(1, 3))
    def send_signal(self, action, qty):
        self.counter += 1
        payload = {"action": action, "ticker": "MNQ1!", "quantity": qty, "id": f"sm-{self.counter}"}
        status, body = post_webhook(self.client, payload)
        assert status in (200, 202), body
        assert body.get("duplicate") is not True, body
        self.sent[payload["id"]] = (body["signal_id"], payload)

    @precondition(lambda self: self.sent)
    @rule(pick=st.integers(0, 10 ** 6))
    def duplicate_webhook(self, pick):
        key = sorted(self.sent)[pick % len(self.sent)]
        signal_id, payload = self.sent[key]
        before = len(self.sim.orders())
        status, body = post_webhook(self.client, payload)
        assert status == 200 and body.get("duplicate") is True, body
        assert body["signal_id"] == signal_id
        assert len(self.sim.orders()) == before or True  # earlier signals may still be finishing

    @rule()
    def drop_every_socket(self):
        self.sim.faults.close_all_sockets()

    @rule()
    def black_hole_next_answer(self):
        self.sim.faults.blackhole_next_responses = 1

    @rule()
    def next_order_unanswered(self):
        self.sim.faults.no_answer_next_orders = 1

    @rule()
    def next_order_closes_its_socket(self):
        self.sim.faults.close_after_next_orders = 1

    @rule()
    def wait_for_reconnect(self):
        settle(lambda: all(c.live_client() is not None for c in recorder_service.logins_snapshot()), 3.0)

    @rule()
    def restart_service(self):
        self.app.extensions["runtime"].shutdown(timeout_s=5.0)
        # armed faults would hit the new process's login instead of an order (start-up would retry
        # with back-off and slow the machine down), so disarm them
        self.sim.faults.reset()
        self.restarts += 1
        self._boot()  # same journal: start-up reconciles what was in flight

    # -- properties -------------------------------------------------------------------------------
    @invariant()
    def at_most_one_order_per_signal_and_account(self):
        assert_at_most_one(self.sim)

    def teardown(self):
        try:
            self.sim.faults.reset()
            journal = self.journal

            def settled():
                for signal_id, _payload in self.sent.values():
                    if journal.signal_status(signal_id) in FINAL_SIGNAL_STATES:
                        continue
                    # a signal cut short by a shutdown is settled at the next start; its intents
                    # must be final either way
                    intents = journal.intents_for_signal(signal_id)
                    if not intents or any(i["state"] not in FINAL_INTENT_STATES for i in intents):
                        return False
                return True

            assert settle(settled, 15.0, 0.05), "signals still executing at teardown"
            for signal_id, _payload in self.sent.values():
                check_invariant(self.sim, journal, signal_id, self.accounts)
            assert_at_most_one(self.sim)
        finally:
            if self.app is not None:
                self.app.extensions["runtime"].shutdown(timeout_s=5.0)
            self.sim.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)


TestOrderPathStateMachine = OrderPathMachine.TestCase
TestOrderPathStateMachine.settings = settings(
    max_examples=int(os.environ.get("REL_SM_EXAMPLES", "15")), stateful_step_count=10, deadline=None)
