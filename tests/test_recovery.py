"""Crash recovery: a process SIGKILLed mid-order, restarted on the same journal, reconciles by
clOrdId and places no second order.

The child process runs the real service (``TradingService.handle_signal``) against a simulator
started here.  The simulator executes the order and never answers it (``no_answer_next_orders``),
so the child is stuck with the intent ``sending`` when it is killed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from phantom_scraper.journal.journal import Journal
from phantom_scraper.tradovate_sim import UserSpec
from tests.helpers import SIM_CFG, WAIT_S, service_settings, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent("""
    import json, logging, sys
    from phantom_scraper.config import Credentials, Settings
    import recorder_service
    from phantom_scraper.app.service import TradingService

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    cfg = json.loads(sys.argv[1])
    settings = Settings(credentials=Credentials(username="demo", password="demo"), **cfg)
    svc = TradingService(settings, pool=recorder_service.WebSocketPool())
    svc.start()
    print("READY", svc.state, flush=True)
    result = svc.handle_signal(svc.recorder_for_token(cfg["webhook_secret"]), sys.argv[2].encode())
    print("ANSWERED", json.dumps(result.body), flush=True)  # never reached: killed before
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_order_then_restart_reconciles_and_places_no_second_order(make_multi_sim, services, tmp_path):
    sim = make_multi_sim([UserSpec()], rest_no_answer_hold_s=60.0, **SIM_CFG)
    settings = service_settings(sim, tmp_path, order_ack_timeout_s=60.0, accounts_filter=("DEMO0001",))
    child_cfg = dict(tradovate_env="sim", rest_url=sim.rest_url, ws_url=sim.ws_url,
                     database_path=settings.database_path, webhook_secret="hook-secret",
                     accounts_filter=["DEMO0001"], order_ack_timeout_s=60.0, rest_timeout_s=60.0,
                     webhook_budget_s=60.0, heartbeat_interval_s=0.2, keepalive_interval_s=30.0)
    sim.faults.no_answer_next_orders = 1  # the order executes; its answer never comes
    payload = json.dumps({"action": "buy", "symbol": "NQ", "qty": 1, "id": "tv-crash-1"})
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(child_cfg), payload], cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    observer = Journal(settings.database_path)  # another process's view of the same file
    try:
        order = wait_for(lambda: sim.orders(), timeout_s=WAIT_S * 2, what="the order at the broker")[0]
        [intent] = wait_for(observer.pending_intents, what="the intent in flight")
        assert intent["state"] == "sending" and intent["cl_ord_id"] == order["clOrdId"]
        assert child.poll() is None, child.communicate()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        out, err = child.communicate(timeout=WAIT_S)
    assert child.returncode == -signal.SIGKILL and "ANSWERED" not in out, err[-2000:]
    observer.close()

    restarted = services(settings)  # start() reconciles before it accepts any signal
    intent = restarted.journal.get_intent(order["clOrdId"])
    assert intent["state"] == "reconciled" and intent["reconciled"]
    assert intent["broker_order_id"] == order["orderId"]
    assert restarted.journal.pending_intents() == []
    assert [o["orderId"] for o in sim.orders() if o["clOrdId"] == order["clOrdId"]] == [order["orderId"]]
    assert len(sim.orders()) == 1
    # The same signal again (TradingView re-sends) is a duplicate: still one order.
    again = restarted.handle_signal(restarted.recorder_for_token("hook-secret"), payload.encode())
    assert again.body["duplicate"] is True and len(sim.orders()) == 1
