"""recorder_service: the connection pool and the keep-alive daemon, against the real simulator.

Connect counts and connect concurrency are measured by wrapping each login's
``TradovateIntegration.open_websocket`` (``ConnectProbe``); hangs are made with ``threading.Event``
gates, never with sleeps.  Time constants are scaled down (``FAST``).
"""
from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import recorder_service as rs
from phantom_scraper.errors import TradovateError
from phantom_scraper.signals import SymbolResolver
from phantom_scraper.tradovate_sim import UserSpec
from tests.helpers import FAST, SIM_CFG, WAIT_S, run_signal, targets_of, wait_for


def socket_threads_of(name_part: str):
    return [t for t in threading.enumerate() if name_part in t.name and t.is_alive()]


# ---------------------------------------------------------------------------------------------
# The pool

def test_importing_recorder_service_starts_nothing():
    import subprocess
    import sys

    code = ("import threading, recorder_service as rs; "
            "print(sorted(t.name for t in threading.enumerate()), len(rs._WS_POOL), rs.keepalive_daemon())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "['MainThread'] 0 None"


def test_hundred_threads_one_key_one_connect_one_socket_per_login(make_multi_sim, logins_for, probe):
    sim = make_multi_sim([UserSpec()], **SIM_CFG)  # demo: DEMO0001 + DEMO0002, one login
    ti, conn, accounts = logins_for(sim).add()
    sub_a, sub_b = (int(a["id"]) for a in accounts)
    assert rs.connection_for(sub_a) is rs.connection_for(sub_b) is conn
    sim.faults.connect_latency_ms = 100  # every caller arrives while the one connect is running
    start = threading.Barrier(100, timeout=WAIT_S)
    results, errors = [], []
    results_lock = threading.Lock()  # serialises appends from the 100 threads

    def ask(i):
        try:
            start.wait()
            sub = sub_a if i % 2 else sub_b
            if i % 4 < 2:
                client = rs.get_pooled_connection_sync(sub, True)
            else:
                client = asyncio.run(rs.get_pooled_connection(sub, True, ti.access_token))
            with results_lock:
                results.append(client)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            with results_lock:
                errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert errors == []
    assert len(results) == 100
    assert probe.count == 1
    assert len({id(c) for c in results}) == 1 and results[0].is_open
    assert sim.ws_session_count() == 1  # two sub-accounts, one login, one socket
    assert rs.pool_status()["sockets"] == 1 and rs.pool_status()["size"] == 2


def test_hung_connect_on_one_login_never_delays_another_login(make_multi_sim, logins_for, probe, tmp_path):
    from phantom_scraper.journal.journal import Journal

    sim = make_multi_sim([UserSpec("alice", "pa", ("ALICE01",)), UserSpec("bob", "pb", ("BOB01", "BOB02"))],
                         **SIM_CFG)
    logins = logins_for(sim)
    ti_a, conn_a, accounts_a = logins.add("alice", "pa")
    ti_b, conn_b, accounts_b = logins.add("bob", "pb")
    gate_a = probe.gate(ti_a)
    journal = Journal(str(tmp_path / "journal.sqlite3"))
    got_a = []
    gate_b = None
    waiter = threading.Thread(target=lambda: got_a.append(rs.get_pooled_connection_sync(int(accounts_a[0]["id"]), True)))
    waiter.start()
    try:
        assert probe.entered.wait(WAIT_S)  # alice's connect is now hung inside open_websocket
        # The pool lock is free and the pool answers while alice's connect hangs.
        assert rs._WS_POOL_LOCK.acquire(timeout=WAIT_S)
        rs._WS_POOL_LOCK.release()
        assert rs.pool_status()["connections"][str(accounts_a[0]["id"])]["connecting"] is True
        # Bob with no socket yet: his orders leave at once over REST (his connect runs behind; it is
        # held at a gate until they are acked, or on a loaded machine it could finish between his
        # two accounts' orders and the second would rightly take the socket).
        gate_b = probe.gate(ti_b)
        _, outcomes = run_signal(journal, ti_b, targets_of(conn_b, accounts_b), {"action": "buy", "symbol": "NQ"})
        assert [o.status for o in outcomes] == ["acked", "acked"]
        assert {o.transport for o in outcomes} == {"rest"}
        # Bob's socket connects while alice's still hangs, and his orders then use it.
        gate_b.set()
        client_b = rs.get_pooled_connection_sync(int(accounts_b[0]["id"]), True)
        assert client_b.is_open
        _, outcomes = run_signal(journal, ti_b, targets_of(conn_b, accounts_b), {"action": "sell", "symbol": "NQ"})
        assert [(o.status, o.transport) for o in outcomes] == [("acked", "websocket")] * 2
        assert waiter.is_alive() and not gate_a.is_set()  # alice was hung all along
    finally:
        gate_a.set()
        if gate_b is not None:
            gate_b.set()
        waiter.join(WAIT_S)
        journal.close()
    assert got_a and got_a[0].is_open
    assert len(sim.orders()) == 4 and all(o["accountSpec"].startswith("BOB") for o in sim.orders())


def test_failed_connect_backs_off_and_callers_do_not_hammer(make_multi_sim, logins_for, probe):
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    slow_backoff = FAST.replace(reconnect_backoff_initial_s=1.0, reconnect_backoff_max_s=2.0)
    ti, conn, accounts = logins_for(sim, slow_backoff).add()
    sub = int(accounts[0]["id"])
    sim.faults.refuse_ws_connects = True
    with pytest.raises(TradovateError):
        rs.get_pooled_connection_sync(sub, True)
    assert conn.backoff_remaining_s() > 0 and conn.status()["last_error"]
    with pytest.raises(rs.PoolError, match="backing off"):
        rs.get_pooled_connection_sync(sub, True)
    assert probe.count == 1  # the second caller did not connect
    sim.faults.refuse_ws_connects = False
    wait_for(lambda: conn.backoff_remaining_s() == 0, what="back-off to pass")
    assert rs.get_pooled_connection_sync(sub, True).is_open
    assert probe.count == 2


def test_backoff_is_exponential_capped_and_jittered():
    half = [rs.backoff_delay_s(n, 1.0, 60.0, rng=lambda: 0.5) for n in range(1, 9)]
    assert half == [1, 2, 4, 8, 16, 32, 60, 60]
    assert rs.backoff_delay_s(3, 1.0, 60.0, rng=lambda: 0.0) == 2.0  # jitter: x0.5 ...
    assert rs.backoff_delay_s(3, 1.0, 60.0, rng=lambda: 0.99) == pytest.approx(5.96)  # ... to x1.5
    assert rs.backoff_delay_s(10, 1.0, 60.0, rng=lambda: 0.99) == 60.0  # never above the cap


# ---------------------------------------------------------------------------------------------
# Token renewal

def test_token_renewal_replaces_socket_without_failing_order_in_flight(make_multi_sim, logins_for, probe, tmp_path):
    from phantom_scraper.journal.journal import Journal

    settings = FAST.replace(order_ack_timeout_s=15.0)
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim, settings).add()
    old = rs.get_pooled_connection_sync(int(accounts[0]["id"]), True)
    old_token = ti.access_token
    journal = Journal(str(tmp_path / "journal.sqlite3"))
    contract = SymbolResolver(ti).resolve("NQ")
    sim.faults.response_latency_ms = 3000  # this order's answer is held back 3 s by the broker
    result = {}
    order = threading.Thread(target=lambda: result.update(zip(("sid", "out"), run_signal(
        journal, ti, targets_of(conn, accounts[:1]), {"action": "buy", "symbol": "NQ"}, settings,
        contract=contract))))
    order.start()
    try:
        wait_for(lambda: sim.orders() and old.stats()["pending_requests"] == 1, what="order in flight")
        sim.faults.response_latency_ms = 0  # the renewal and the new socket are fast
        ti.authenticate()  # a new token: the listener authorizes a new socket and swaps it in
        new = wait_for(lambda: conn.live_client() is not old and conn.live_client(), what="socket swap")
        assert order.is_alive(), "precondition: the swap happened while the order was in flight"
        assert old.is_open  # not closed under the pending order
        order.join(WAIT_S)
    finally:
        sim.faults.response_latency_ms = 0
        order.join(WAIT_S)
    [outcome] = result["out"]
    assert (outcome.status, outcome.transport, outcome.reconciled) == ("acked", "websocket", False)
    assert old.wait_closed(WAIT_S) and not new.wait_closed(0)
    assert ti.access_token != old_token and not conn.token_is_stale()
    assert probe.count == 2 and len(sim.orders()) == 1
    assert journal.get_intent(outcome.cl_ord_ids[0])["state"] == "acked"
    journal.close()


# ---------------------------------------------------------------------------------------------
# The keep-alive daemon

def test_daemon_start_is_idempotent_named_logged_once_and_stop_joins(clean_pool, caplog):
    caplog.set_level(logging.INFO, logger="recorder_service")
    assert not socket_threads_of(rs.KeepAliveDaemon.THREAD_NAME)
    daemons = []
    threads = [threading.Thread(target=lambda: daemons.append(rs.start_websocket_keepalive_daemon(0.05)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert len(daemons) == 8 and len({id(d) for d in daemons}) == 1
    assert len(socket_threads_of(rs.KeepAliveDaemon.THREAD_NAME)) == 1
    daemon = daemons[0]
    assert daemon.alive and rs.keepalive_daemon() is daemon
    assert rs.start_websocket_keepalive_daemon() is daemon
    wait_for(lambda: daemon.cycles >= 2, what="two cycles")
    assert caplog.text.count("WebSocket keep-alive daemon started") == 1
    rs.stop_websocket_keepalive_daemon()
    assert not daemon.alive and rs.keepalive_daemon() is None
    assert not socket_threads_of(rs.KeepAliveDaemon.THREAD_NAME)
    rs.stop_websocket_keepalive_daemon()  # idempotent


def test_daemon_survives_an_exception_in_a_cycle(clean_pool, monkeypatch, caplog):
    calls = []
    second_cycle = threading.Event()

    def flaky_snapshot():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom in cycle one")
        second_cycle.set()
        return []

    monkeypatch.setattr(rs, "logins_snapshot", flaky_snapshot)
    daemon = rs.start_websocket_keepalive_daemon(0.05)
    assert second_cycle.wait(WAIT_S)
    assert daemon.alive
    assert "WebSocket keep-alive cycle failed" in caplog.text and "boom in cycle one" in caplog.text
    daemon.stop()
    assert not daemon.alive


def test_daemon_repairs_a_dropped_socket_and_logs_it(make_multi_sim, logins_for, caplog):
    caplog.set_level(logging.INFO, logger="recorder_service")
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim).add()
    old = rs.get_pooled_connection_sync(int(accounts[0]["id"]), True)
    repaired = threading.Event()
    conn.on_reconnected = lambda c: repaired.set()
    rs.start_websocket_keepalive_daemon(30.0)  # a long interval: the close itself wakes the daemon
    sim.close_all_sockets()
    assert repaired.wait(WAIT_S)
    assert "WebSocket reconnected" in caplog.text
    new = conn.live_client()
    assert new is not None and new is not old and conn.reconnect_count == 1


def test_daemon_check_is_a_request_and_repairs_a_silent_socket(make_multi_sim, logins_for, caplog):
    """A socket that still gets server heartbeats but answers no request is replaced."""
    caplog.set_level(logging.INFO, logger="recorder_service")
    sim = make_multi_sim([UserSpec()], **SIM_CFG)
    ti, conn, accounts = logins_for(sim).add()
    old = rs.get_pooled_connection_sync(int(accounts[0]["id"]), True)
    repaired = threading.Event()
    conn.on_reconnected = lambda c: repaired.set()
    sim.faults.blackhole_next_responses = 1  # the health check's answer is lost
    rs.KeepAliveDaemon(interval_s=30.0, check_timeout_s=0.3).run_cycle()
    assert repaired.wait(WAIT_S)
    assert "Health check failed" in caplog.text and "WebSocket reconnected" in caplog.text
    assert not old.is_open and conn.live_client() is not old


def test_one_broken_login_does_not_stop_the_daemon_tending_the_others(make_multi_sim, logins_for, caplog):
    sim = make_multi_sim([UserSpec()], **SIM_CFG)

    class BrokenIntegration:
        access_token = "x"

        def add_token_listener(self, fn):
            pass

        def ensure_token(self):
            raise RuntimeError("broken login")

    rs.register_login(BrokenIntegration(), [999], is_demo=True, login_key="broken")
    ti, conn, accounts = logins_for(sim).add()
    rs.get_pooled_connection_sync(int(accounts[0]["id"]), True)
    repaired = threading.Event()
    conn.on_reconnected = lambda c: repaired.set()
    sim.close_all_sockets()
    wait_for(lambda: conn.live_client() is None, what="socket to drop")
    rs.KeepAliveDaemon(interval_s=30.0).run_cycle()
    assert repaired.wait(WAIT_S)
    assert "keep-alive failed for broken" in caplog.text


def test_a_pool_reset_ends_a_staggered_warm_up_at_once(make_multi_sim, logins_for):
    """The warm-up's stagger waits on the connections' closed event: a reset (shutdown) ends it,
    rather than the start-up thread sleeping out a stagger nobody can interrupt."""
    users = [UserSpec(f"warm{i}", "pw", (f"WARM{i}",)) for i in range(3)]
    sim = make_multi_sim(users, **SIM_CFG)
    logins = logins_for(sim)
    for u in users:
        logins.add(u.name, "pw")
    warming = threading.Thread(target=rs.warm_up, kwargs={"stagger_s": 3600.0}, name="test-warm-up", daemon=True)
    warming.start()
    wait_for(lambda: sim.ws_session_count() >= 1, what="the first login's connect")
    rs.reset_pool()
    warming.join(WAIT_S)
    assert not warming.is_alive()


def test_mass_drop_of_20_sockets_reconnects_two_at_a_time_staggered(make_multi_sim, logins_for, probe, caplog):
    caplog.set_level(logging.INFO, logger="recorder_service")
    users = [UserSpec(f"user{i:02d}", "pw", (f"ACC{i:02d}",)) for i in range(20)]
    sim = make_multi_sim(users, **SIM_CFG)
    logins = logins_for(sim)
    conns = [logins.add(u.name, "pw")[1] for u in users]
    rs.warm_up(stagger_s=0)
    for conn in conns:
        wait_for(conn.live_client, what=f"{conn.login_key} connected")
    assert sim.ws_session_count() == 20 and probe.max_in_progress <= 2
    probe.reset()
    all_back = threading.Event()
    back = []
    back_lock = threading.Lock()  # serialises appends from the connect threads

    def on_back(conn):
        with back_lock:
            back.append(conn.login_key)
            if len(back) == 20:
                all_back.set()

    for conn in conns:
        conn.on_reconnected = on_back
    sim.faults.connect_latency_ms = 40  # each connect takes a while: an unbounded storm would overlap
    rs.start_websocket_keepalive_daemon(0.2)
    sim.close_all_sockets()
    assert all_back.wait(WAIT_S * 2), f"only {len(back)} of 20 reconnected"
    assert sorted(back) == sorted(c.login_key for c in conns)
    assert probe.count == 20
    assert probe.max_in_progress <= 2
    assert caplog.text.count("WebSocket reconnected") >= 20
    staggers = [c.last_stagger_s for c in conns]
    assert all(0 <= s <= conns[0].reconnect_jitter_s for s in staggers) and len(set(staggers)) > 1
    assert sim.ws_session_count() == 20
