"""Leaks: hundreds of forced reconnect cycles; threads, asyncio tasks and open file descriptors
return to their baseline (small slack for the interpreter's own churn).

* 500 cycles of a TradovateWebSocket client: open, authorize, use, then closed by the client (even
  cycles) or dropped by the server (odd cycles: ``sim.faults.close_all_sockets()``).
* 500 cycles of the pool + keep-alive daemon: every socket dropped, the daemon reconnects.
"""
from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

import recorder_service
from phantom_scraper.config import Credentials, Settings
from phantom_scraper.tradovate_integration import TradovateIntegration
from phantom_scraper.tradovate.ws import ConnState
from tests.helpers import fd_count, settle

CLIENT_CYCLES = 500
POOL_CYCLES = 500
THREAD_SLACK = 2
FD_SLACK = 6
FAST = Settings(heartbeat_interval_s=0.1, ws_connect_timeout_s=2.0, ws_idle_probe_after_s=0.5,
                ws_probe_timeout_s=0.5, order_ack_timeout_s=1.0, rest_timeout_s=2.0)


def _loop_task_count(ws) -> tuple:
    """(our tasks, all tasks) on the client's own loop, read on that loop (all_tasks is not
    thread-safe).  Ours are reader, heartbeat and watchdog; websockets adds its transfer-data and
    close-connection tasks."""
    async def count():
        tasks = [t for t in asyncio.all_tasks() if not t.done() and t is not asyncio.current_task()]
        return len([t for t in tasks if t.get_name().startswith(ws.name + "-")]), len(tasks)
    return asyncio.run_coroutine_threadsafe(count(), ws._loop).result(2)


def _baseline():
    gc.collect()
    return threading.active_count(), fd_count()


def _back_to(baseline, timeout_s=5.0):
    threads0, fds0 = baseline

    def ok():
        gc.collect()
        return threading.active_count() <= threads0 + THREAD_SLACK and fd_count() <= fds0 + FD_SLACK
    settle(ok, timeout_s, 0.05)
    return threading.active_count(), fd_count()


@pytest.mark.timeout(120)
def test_500_client_reconnect_cycles_leak_nothing(sim):
    ti = TradovateIntegration(Credentials("demo", "demo"), sim.rest_url, sim.ws_url, settings=FAST)
    try:
        ti.authenticate()
        for _ in range(3):  # warm-up: imports, the REST session's connection, logging handlers
            ti.open_websocket().close()
        baseline = _baseline()
        peak_threads = peak_fds = 0
        task_counts = set()
        started = time.perf_counter()
        for i in range(CLIENT_CYCLES):
            ws = ti.open_websocket(name=f"leak-{i}")
            assert ws.request("account/list", timeout=2.0), "socket not usable"
            if i % 50 == 0:
                task_counts.add(_loop_task_count(ws))  # reader, heartbeat, watchdog
            peak_threads = max(peak_threads, threading.active_count())
            peak_fds = max(peak_fds, fd_count())
            if i % 2:
                sim.faults.close_all_sockets()  # dropped by the server (no close frame)
                assert ws.wait_closed(3.0), f"cycle {i}: client never noticed the drop"
            else:
                ws.close()
            assert ws.state is ConnState.CLOSED
            assert ws._loop.is_closed() and not ws._thread.is_alive(), f"cycle {i}: loop/thread left behind"
        elapsed = time.perf_counter() - started
        end_threads, end_fds = _back_to(baseline)
        print(f"\nLEAKS (client): {CLIENT_CYCLES} reconnect cycles in {elapsed:.1f} s "
              f"({CLIENT_CYCLES / elapsed:.0f}/s); threads baseline {baseline[0]} -> end {end_threads} "
              f"(peak {peak_threads}); fds baseline {baseline[1]} -> end {end_fds} (peak {peak_fds}); "
              f"asyncio tasks per live client {sorted(task_counts)}; 0 on every closed loop")
        assert task_counts == {(3, 5)}, task_counts  # the same on every sampled cycle
        assert end_threads <= baseline[0] + THREAD_SLACK
        assert end_fds <= baseline[1] + FD_SLACK
    finally:
        ti.close()


@pytest.mark.timeout(120)
def test_pool_and_daemon_reconnect_cycles_leak_nothing(sim, make_server_app):
    app = make_server_app(keepalive_interval_s=0.5, reconnect_backoff_initial_s=0.01,
                          reconnect_backoff_max_s=0.1, ws_connect_timeout_s=2.0)
    conns = recorder_service.logins_snapshot()
    assert len(conns) == 1
    conn = conns[0]
    assert settle(lambda: conn.live_client() is not None, 5)
    for _ in range(3):  # warm-up cycles
        old = conn.live_client()
        sim.faults.close_all_sockets()
        assert settle(lambda: (c := conn.live_client()) is not None and c is not old, 5)
    time.sleep(0.2)
    baseline = _baseline()
    reconnects0 = conn.reconnect_count
    peak_threads = peak_fds = 0
    task_counts = set()
    started = time.perf_counter()
    for i in range(POOL_CYCLES):
        old = conn.live_client()
        sim.faults.close_all_sockets()
        assert settle(lambda: (c := conn.live_client()) is not None and c is not old, 5), \
            f"cycle {i}: the daemon did not reconnect ({conn.last_error})"
        peak_threads = max(peak_threads, threading.active_count())
        peak_fds = max(peak_fds, fd_count())
        if i % 50 == 0:
            client = conn.live_client()
            if client is not None:
                try:
                    task_counts.add(_loop_task_count(client))
                except Exception:  # dropped between the two lines: count it next time
                    pass
    elapsed = time.perf_counter() - started
    end_threads, end_fds = _back_to(baseline)
    reconnects = conn.reconnect_count - reconnects0
    print(f"\nLEAKS (pool+daemon): {POOL_CYCLES} forced drops, {reconnects} reconnects in {elapsed:.1f} s "
          f"({elapsed / POOL_CYCLES * 1000:.0f} ms per cycle); threads baseline {baseline[0]} -> end {end_threads} "
          f"(peak {peak_threads}); fds baseline {baseline[1]} -> end {end_fds} (peak {peak_fds}); "
          f"asyncio tasks per live client {sorted(task_counts)}")
    assert reconnects >= POOL_CYCLES
    assert task_counts <= {(3, 5)}, task_counts
    assert end_threads <= baseline[0] + THREAD_SLACK
    assert end_fds <= baseline[1] + FD_SLACK
    # the pool still trades after all that
    from tests.helpers import post_webhook
    status, body = post_webhook(app.test_client(), {"action": "buy", "ticker": "NQ1!", "quantity": 1, "id": "after"})
    assert status == 200 and body["status"] == "acked", body
