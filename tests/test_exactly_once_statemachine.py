"""A Hypothesis state machine over fault sequences: no second ``order/place*`` for one intent.

Rules send signals and arm every fault switch of the simulator (no answer, close after the
order, black-holed answer, 429, 500, penalty ticket, a broker executing late, refused socket
connects, every socket dropped, tokens expired, a shutdown notice, slow answers) and restart the
service on the same journal.

Invariant, after every step, on what actually reached the broker (a spy on the simulator's
dispatcher): for every intent id, once a request was not provably refused (429, 401, a penalty
ticket), no further order request carries that id -- whatever the transport.  At teardown: at
most one broker order per intent, and every intent settled or visibly unknown.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import recorder_service
from phantom_scraper.tradovate_sim import Simulator
from tests.helpers import SIM_TEST_CONFIG, assert_at_most_one, post_webhook, server_settings, settle

PLACE = ("order/placeorder", "order/placeoso", "order/liquidateposition")
SETTLED = {"acked", "rejected", "reconciled", "skipped", "unknown", "not_placed"}


def _refused(reply) -> bool:
    """The broker provably did not execute this request."""
    if reply.status in (401, 429):
        return True
    return isinstance(reply.body, dict) and bool(reply.body.get("p-ticket"))


class PlaceSpy:
    def __init__(self, sim):
        self.calls = collections.defaultdict(list)  # intent id -> [(transport, refused)]
        self._lock = threading.Lock()  # serialises appends from the simulator's threads
        self._dispatch = sim.api.dispatch
        sim.api.dispatch = self

    def __call__(self, req):
        name = req.endpoint.strip().lstrip("/").lower()
        name = name[3:] if name.startswith("v1/") else name
        reply = self._dispatch(req)
        if name in PLACE:
            try:
                body = json.loads(req.body or "{}")
            except ValueError:
                body = {}
            intent = body.get("clOrdId") or body.get("customTag50")
            with self._lock:
                self.calls[intent].append((req.transport, _refused(reply)))
        return reply

    def violations(self):
        with self._lock:
            calls = {k: list(v) for k, v in self.calls.items()}
        bad = {}
        for intent, seq in calls.items():
            first_possible = next((i for i, (_t, refused) in enumerate(seq) if not refused), None)
            if first_possible is not None and first_possible < len(seq) - 1:
                bad[intent] = seq
        return bad


class NoSecondOrderMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.sim = Simulator(SIM_TEST_CONFIG).start()
        self.spy = PlaceSpy(self.sim)
        self.tmp = tempfile.mkdtemp(prefix="eo-sm-")
        self.app = None
        self.sent = []
        self.counter = 0
        self._boot()

    def _boot(self):
        from ultra_simple_server import create_app

        cfg = server_settings(self.sim, Path(self.tmp), database_path=os.path.join(self.tmp, "journal.sqlite3"),
                              keepalive_interval_s=0.3, order_ack_timeout_s=0.3, reconcile_window_s=0.2,
                              reconcile_poll_interval_s=0.05, rest_timeout_s=0.8, webhook_budget_s=1.0,
                              penalty_max_wait_s=0.5, unknown_settle_period_s=2.0)
        self.app = create_app(cfg, boot_on_first_request=False)
        runtime = self.app.extensions["runtime"]
        runtime.boot(wait=True)
        assert settle(lambda: runtime.service.state == "ready", 10.0), runtime.service.start_error
        self.client = self.app.test_client()

    @property
    def journal(self):
        return self.app.extensions["runtime"].service.journal

    # -- rules -----------------------------------------------------------------------------------
    @rule(action=st.sampled_from(["buy", "sell"]), qty=st.integers(1, 2))
    def send_signal(self, action, qty):
        self.counter += 1
        status, body = post_webhook(self.client, {"action": action, "ticker": "MNQ1!", "quantity": qty,
                                                  "id": f"eo-{self.counter}"})
        assert status in (200, 202), body
        self.sent.append(body["signal_id"])

    @rule(switch=st.sampled_from(["no_answer_next_orders", "close_after_next_orders", "blackhole_next_responses",
                                  "http_429_next", "http_500_next", "penalty_next", "hold_next_orders"]))
    def arm_fault(self, switch):
        self.sim.faults.penalty_time_s = 0.1
        self.sim.faults.hold_orders_ms = 700
        setattr(self.sim.faults, switch, 1)

    @rule(on=st.booleans())
    def refuse_socket_connects(self, on):
        self.sim.faults.refuse_ws_connects = on

    @rule(latency_ms=st.sampled_from([0.0, 150.0, 400.0]))
    def slow_answers(self, latency_ms):
        self.sim.faults.response_latency_ms = latency_ms

    @rule()
    def drop_every_socket(self):
        self.sim.faults.close_all_sockets()

    @rule()
    def expire_every_token(self):
        self.sim.faults.expire_all_tokens()

    @rule()
    def shutdown_notice(self):
        self.sim.faults.send_shutdown("Maintenance")

    @rule()
    def wait_for_reconnect(self):
        settle(lambda: all(c.live_client() is not None for c in recorder_service.logins_snapshot()), 2.0)

    @precondition(lambda self: self.sent)
    @rule()
    def restart_service(self):
        self.app.extensions["runtime"].shutdown(timeout_s=0.5)
        self.sim.faults.reset()  # armed faults would hit the new process's login, not an order
        self._boot()

    # -- properties ------------------------------------------------------------------------------
    @invariant()
    def never_a_second_order_request_for_one_intent(self):
        assert not self.spy.violations(), f"second order/place* after a possible execution: {self.spy.violations()}"

    def teardown(self):
        try:
            self.sim.faults.reset()
            journal = self.journal

            def settled():
                return all(i["state"] in SETTLED for sid in self.sent for i in journal.intents_for_signal(sid))

            assert settle(settled, 15.0, 0.05), "intents still in flight at teardown"
            assert not self.spy.violations(), self.spy.violations()
            assert_at_most_one(self.sim)
        finally:
            if self.app is not None:
                self.app.extensions["runtime"].shutdown(timeout_s=2.0)
            self.sim.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)


TestNoSecondOrder = NoSecondOrderMachine.TestCase
TestNoSecondOrder.settings = settings(
    max_examples=int(os.environ.get("EO_SM_EXAMPLES", "15")), stateful_step_count=10, deadline=None)
