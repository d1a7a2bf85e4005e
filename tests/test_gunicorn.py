"""The Procfile's own command: gunicorn on 127.0.0.1 against the simulator, a real webhook,
the status JSON and the signal list, a redacted access log, and a clean SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import requests

from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET
from tests.helpers import BUY, REPO, LineReader, free_port, procfile_command, wait_for


def test_procfile_gunicorn_places_an_order_and_stops_cleanly(sim, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADOVATE_", "WEBHOOK_", "ADMIN_"))}
    env.update(
        TRADOVATE_ENV="sim", TRADOVATE_REST_URL=sim.rest_url, TRADOVATE_WS_URL=sim.ws_url,
        WEBHOOK_SECRET=SECRET, ADMIN_TOKEN=ADMIN, DATABASE_PATH=str(tmp_path / "journal.sqlite3"),
        WS_HEARTBEAT_INTERVAL_S="0.2", KEEPALIVE_INTERVAL_S="0.5", GRACEFUL_TIMEOUT_S="5", WEBHOOK_BUDGET_S="1.0",
        WEB_CONCURRENCY="4",  # a platform's default must not multiply the pool
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(procfile_command(port), cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = LineReader(proc.stdout), LineReader(proc.stderr)
    try:
        def ready():
            assert proc.poll() is None, f"gunicorn exited:\n{err.text()}"
            try:
                return requests.get(base + "/health", timeout=1).status_code == 200
            except (requests.ConnectionError, requests.Timeout):  # the listener is bound before the
                return False  # worker has booted: under load a first request can wait past 1 s
        wait_for(ready, timeout_s=20, interval_s=0.05)
        # sim: the webhook URL with its secret and the admin login, once, where a platform user reads
        wait_for(lambda: "admin login" in out.text(), timeout_s=20, what="the start-up banner")
        assert f"webhook URL : http://127.0.0.1:{port}/webhook/<your WEBHOOK_SECRET>" in out.text()  # set: not repeated
        assert "admin login : any user name; password: your ADMIN_TOKEN" in out.text()
        assert out.text().count("phantom-scraper is running (PAPER TRADING") == 1

        def ws_open():
            try:
                conns = requests.get(base + "/api/websocket-status", timeout=2).json()["connection_pool"]["connections"]
            except requests.Timeout:  # a loaded machine: ask again
                return False
            return conns and all(c["ws_connected"] for c in conns.values())
        wait_for(ws_open, timeout_s=20)

        r = requests.post(f"{base}/webhook/{SECRET}", data=BUY, headers={"Content-Type": "text/plain"}, timeout=5)
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["status"] == "acked"
        assert {a["transport"] for a in data["accounts"]} == {"websocket"}
        assert len(sim.orders()) == 2 and {o["transport"] for o in sim.orders()} == {"websocket"}

        status = requests.get(base + "/api/websocket-status", timeout=5).json()
        assert status["success"] is True and status["websocket_orders_enabled"] is True
        conns = status["connection_pool"]["connections"]
        assert set(conns) == {"10001", "10002"}
        assert all(c["orders_via_websocket"] >= 1 and c["ws_connected"] for c in conns.values())
        assert status["keepalive_daemon"]["running"] is True

        def final_signals():  # (the final status is journaled just after the answer: phantom_scraper/execution/final_writes.py)
            rows = requests.get(base + "/api/signals", headers={"Authorization": f"Bearer {ADMIN}"},
                                timeout=5).json()["signals"]
            return rows if rows and rows[0]["status"] != "received" else None

        signals = wait_for(final_signals, what="the signal's final status")
        assert signals[0]["id"] == data["signal_id"] and signals[0]["status"] == "acked"
        assert {i["transport"] for i in signals[0]["intents"]} == {"websocket"}
        assert requests.get(base + "/api/signals", timeout=5).status_code == 401

        # one worker, whatever WEB_CONCURRENCY says
        workers = [ln for ln in err.text().splitlines() if "Booting worker" in ln]
        assert len(workers) == 1, err.text()

        # a signal still executing when SIGTERM arrives is finished (and recorded) before exit
        sim.faults.response_latency_ms = 400  # a few round trips: past the 1 s budget, answered 202
        r = requests.post(f"{base}/webhook/{SECRET}", data='{"action":"sell","ticker":"MES1!","quantity":1}',
                          timeout=5)
        assert r.status_code == 202, r.text
        in_flight = r.json()["signal_id"]

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
        elapsed = time.monotonic() - started
        assert rc == 0, err.text()
        assert elapsed < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        out.join(5)
        err.join(5)
    logs = out.text() + err.text()
    # intake stopped, sockets closed
    try:
        requests.get(base + "/health", timeout=1)
        raise AssertionError("still answering after SIGTERM")
    except requests.ConnectionError:
        pass
    wait_for(lambda: sim.ws_session_count() == 0, timeout_s=10)
    assert "Stopped" in logs
    from phantom_scraper.journal.journal import Journal

    journal = Journal(str(tmp_path / "journal.sqlite3"))
    try:
        finished = journal.get_signal(in_flight)
        assert finished["status"] == "acked", finished
        assert {i["state"] for i in finished["intents"]} == {"acked"}
    finally:
        journal.close()
    assert len([o for o in sim.orders() if o["symbol"].startswith("MES")]) == 2
    # the access log is there and redacted
    assert f"POST /webhook/*** HTTP/1.1\" 200" in logs, logs
    tokens = list(sim.exchange._tokens)  # every token the broker issued
    assert tokens
    for secret in [SECRET, ADMIN, *tokens]:
        assert secret not in logs
