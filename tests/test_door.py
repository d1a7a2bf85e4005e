"""Issue 19: slow or hostile clients never starve the webhook (the Procfile's gunicorn command).

One address (127.0.0.1) opens 200 connections that trickle their headers and 200 that trickle
their bodies, reopening each one the server closes; meanwhile webhooks come from another address
(127.0.0.2; all of 127.0.0.0/8 is loopback).  Deadlines are scaled down through the settings.
Before the front door (gthread, 32 threads) the webhook got no answer at all.
"""
from __future__ import annotations

import http.client
import os
import selectors
import socket
import threading
import time
from collections import Counter

from tests.door_support import (ATTACKER, BODY_TIMEOUT_S, HEADER_TIMEOUT_S, HONEST, Gunicorn,  # noqa: F401
                                many_fds, raw_exchange, webhook)
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET
from tests.helpers import wait_for

TRICKLE_INTERVAL_S = 0.1
ATTACK_S = 3.0
SLOW_HEADERS = SLOW_BODIES = 200
WEBHOOKS = 6


class Trickler:
    """Slow connections from ATTACKER: each sends one more header line (or body byte) every
    TRICKLE_INTERVAL_S and never finishes; one the server closes is reopened until ``stop_reopening``."""

    def __init__(self, port, path):
        self.port, self.path = port, path
        self.sel = selectors.DefaultSelector()
        self.lifetimes = {"headers": [], "body": []}  # seconds from connect to the server's close
        self.answers = Counter()  # status line the server sent before closing
        self.opened = 0
        self.pool_threads_seen = []  # the worker's request threads, sampled during the attack
        self.reopen = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trickler", daemon=True)

    def start(self):
        for _ in range(SLOW_HEADERS):
            self._open("headers")
        for _ in range(SLOW_BODIES):
            self._open("body")
        self._thread.start()

    def open_count(self) -> int:
        return len(self.sel.get_map())

    def _open(self, kind):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=(ATTACKER, 0))
        sock.setblocking(False)
        first = f"POST {self.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        if kind == "body":
            first += "Content-Length: 1000\r\n\r\n{"
        sock.send(first.encode())
        self.sel.register(sock, selectors.EVENT_READ, {"kind": kind, "t0": time.monotonic(), "got": b""})
        self.opened += 1

    def _closed(self, key):
        info = key.data
        self.sel.unregister(key.fileobj)
        key.fileobj.close()
        self.lifetimes[info["kind"]].append(time.monotonic() - info["t0"])
        self.answers[info["got"].split(b"\r\n", 1)[0].decode() or "(closed without an answer)"] += 1
        if self.reopen and not info["got"].startswith(b"HTTP/1.1 403"):  # refused: that slot gives up
            self._open(info["kind"])

    @staticmethod
    def _drain(key):
        """Read what the server sent before closing (its 408/403 line), if the kernel still has it:
        a send to a closed connection fails before the select loop has read the answer (often,
        when the machine is loaded)."""
        while True:
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                return
            if not data:
                return
            key.data["got"] += data

    def _run(self):
        next_tick = time.monotonic()
        while not self._stop.is_set() and self.sel.get_map():
            for key, _ in self.sel.select(max(0.0, next_tick - time.monotonic())):
                try:
                    data = key.fileobj.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    key.data["got"] += data
                else:
                    self._closed(key)
            if time.monotonic() >= next_tick:
                next_tick += TRICKLE_INTERVAL_S
                for key in list(self.sel.get_map().values()):
                    try:
                        key.fileobj.send(b"X-Slow: 1\r\n" if key.data["kind"] == "headers" else b" ")
                    except BlockingIOError:
                        pass
                    except OSError:  # the server closed it: its answer may still be unread here
                        self._drain(key)
                        self._closed(key)

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def attack_while_webhooks(server, sim, *, expect_attacker_webhooks_refused=False):
    # orders of the webhooks sent here only (the warm-up's are left out)
    before = len(sim.orders())
    """Runs the attack and the honest webhooks; returns (latencies_s, trickler)."""
    trickler = Trickler(server.port, f"/webhook/{SECRET}")
    latencies, refused = [], []
    try:
        trickler.start()
        # every slow connection was opened (with the allow-list on, the trickler's thread may already
        # have seen the first 403s and closed those: count what was opened, not what is still open)
        assert trickler.opened >= SLOW_HEADERS + SLOW_BODIES
        started = time.monotonic()
        for i in range(WEBHOOKS):
            t0 = time.monotonic()
            status, body = server.request("POST", f"/webhook/{SECRET}", webhook(i), source=HONEST)
            latencies.append(time.monotonic() - t0)
            trickler.pool_threads_seen.append(server.pool_threads())  # while 400 slow connections are open
            assert status == 200, body
            assert body["status"] == "acked" and len(body["accounts"]) == 2, body
            if expect_attacker_webhooks_refused:
                status, body = server.request("POST", f"/webhook/{SECRET}", webhook(1000 + i), source=ATTACKER)
                assert status == 403 and body["error"]["code"] == "forbidden_source", body
                refused.append(status)
            time.sleep(max(0.0, ATTACK_S / WEBHOOKS - (time.monotonic() - t0)))
        assert time.monotonic() - started >= ATTACK_S * 0.9  # the attack was on the whole time
        trickler.reopen = False
        wait_for(lambda: trickler.open_count() == 0, timeout_s=BODY_TIMEOUT_S + HEADER_TIMEOUT_S + 10)
    finally:
        trickler.stop()
    # every order placed once: two accounts per webhook, no clOrdId twice
    orders = sim.orders()[before:]
    assert len(orders) == 2 * WEBHOOKS, orders
    assert max(Counter(o["clOrdId"] for o in orders).values()) == 1
    print(f"\nwebhook latency under attack (s): {[round(x, 3) for x in latencies]}; max {max(latencies):.3f}; "
          f"slow connections opened {trickler.opened}; server answers {dict(trickler.answers)}; "
          f"longest slow connection: headers {max(trickler.lifetimes['headers']):.2f} s, "
          f"body {max(trickler.lifetimes['body']):.2f} s")
    return latencies, trickler


def baseline(server):
    """Threads and fds of the worker once it is idle, after a warm-up webhook and a few requests at
    once: gunicorn's thread pool starts threads on demand and keeps them, so a pool thread started
    later by back-to-back requests would be no leak; with a few idle ones, sequential requests
    never need another."""
    status, _ = server.request("POST", f"/webhook/{SECRET}", webhook(-1), source=HONEST)
    assert status == 200
    at_once = [threading.Thread(target=server.request, args=("GET", "/health"), kwargs={"source": HONEST})
               for _ in range(4)]
    for t in at_once:
        t.start()
    for t in at_once:
        t.join(10)
    time.sleep(0.3)
    return server.thread_names(), server.fds()


# Gunicorn's pool starts request threads on demand and keeps them: a request arriving just before
# an idle pool thread is counted idle again starts one more, which is no leak. A slow connection
# holding a thread would add one per connection (up to --threads 32; 400 are open all the time).
POOL_THREAD_SLACK = 2
# The app's own executors (signal_N, order_N) also start threads on demand and keep them, bounded by
# executors.EXECUTOR_SIZES, never per connection; every other thread kind must be back to baseline.
APP_EXECUTORS = ("signal_", "order_")


def _others(names: Counter) -> Counter:
    return Counter({n: c for n, c in names.items()
                    if not n.startswith(APP_EXECUTORS) and not n.startswith("ThreadPoolExec")})


def back_to_baseline(server, names0, fds0, trickler):
    pool0 = sum(c for n, c in names0.items() if n.startswith("ThreadPoolExec"))
    peak = max(trickler.pool_threads_seen)
    print(f"worker threads: baseline {dict(names0)}; pool threads during the attack up to {peak}, after "
          f"{dict(server.thread_names())}; descriptors (journal files aside): baseline {fds0}, after {server.fds()}")
    # while 400 slow connections were open, none of them held a request thread
    assert peak <= pool0 + POOL_THREAD_SLACK, (pool0, trickler.pool_threads_seen)
    last = {}

    def settled():
        names, fds = server.thread_names(), server.fds()
        last.update(names=names, fds=fds)
        pool = sum(c for n, c in names.items() if n.startswith("ThreadPoolExec"))
        # Counter <= Counter: no thread kind has more threads than at baseline
        return pool <= pool0 + POOL_THREAD_SLACK and _others(names) <= _others(names0) and fds <= fds0
    try:
        wait_for(settled, timeout_s=20, interval_s=0.1, what="worker threads and descriptors back to baseline")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: threads lingering {dict(_others(last['names']) - _others(names0))}, "
                             f"all now {dict(last['names'])}, baseline {dict(names0)}; "
                             f"descriptors {last['fds']} (baseline {fds0})") from None


def test_slow_clients_do_not_starve_the_webhook(sim, tmp_path, many_fds):
    server = Gunicorn(sim, tmp_path)
    try:
        names0, fds0 = baseline(server)
        _latencies, trickler = attack_while_webhooks(server, sim)
        # every slow connection was closed by the server at its deadline (408), none reached a thread
        assert trickler.opened > SLOW_HEADERS + SLOW_BODIES  # closed ones were reopened
        assert set(trickler.answers) == {"HTTP/1.1 408 Request Timeout"}, trickler.answers
        assert max(trickler.lifetimes["headers"]) < HEADER_TIMEOUT_S + 2
        assert max(trickler.lifetimes["body"]) < BODY_TIMEOUT_S + 2
        back_to_baseline(server, names0, fds0, trickler)
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.err.text()


def test_allow_list_refuses_before_a_thread(sim, tmp_path, many_fds):
    server = Gunicorn(sim, tmp_path, WEBHOOK_IP_ALLOWLIST=HONEST)
    try:
        names0, fds0 = baseline(server)
        _latencies, trickler = attack_while_webhooks(server, sim, expect_attacker_webhooks_refused=True)
        # trickled bodies are refused as soon as their head is in; trickled heads at their deadline
        assert trickler.answers["HTTP/1.1 403 Forbidden"] >= SLOW_BODIES
        assert set(trickler.answers) == {"HTTP/1.1 403 Forbidden", "HTTP/1.1 408 Request Timeout"}
        assert max(trickler.lifetimes["body"]) < HEADER_TIMEOUT_S + 2
        back_to_baseline(server, names0, fds0, trickler)
        # the status page stays open to everyone: the allow-list guards the webhook only
        status, _ = server.request("GET", "/health", source=ATTACKER)
        assert status == 200
    finally:
        server.stop()
    # no refused webhook reached a worker thread: only requests served by a thread are access-logged
    logs = server.logs()
    assert '"POST /webhook/*** HTTP/1.1" 403' not in logs
    assert logs.count('"POST /webhook/*** HTTP/1.1" 200') == WEBHOOKS + 1
    assert server.proc.returncode == 0


# -- HTTP through the door: what gthread did must still work ------------------------------------

PROXY, TV, OTHER = "127.0.0.1", "127.0.0.9", "127.0.0.3"
TEST_SIGNAL = b'{"action":"buy","ticker":"MNQ1!","quantity":1,"test":true}'


def test_http_through_the_door(sim, tmp_path):
    # the platform's proxy is 127.0.0.1; TradingView is 127.0.0.9 behind it
    server = Gunicorn(sim, tmp_path, TRUST_PROXY_HEADERS="1", TRUSTED_PROXY_CIDRS="127.0.0.1/32",
                      WEBHOOK_IP_ALLOWLIST=TV, HTTP_MAX_CONNECTIONS_PER_SOURCE="5", MAX_BODY_BYTES="2000")
    hook = f"/webhook/{SECRET}"
    try:
        # keep-alive: two requests on one connection, then the idle connection is closed
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5, source_address=(OTHER, 0))
        for _ in range(2):
            conn.request("GET", "/health")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.getheader("Connection", "").lower() != "close"
            resp.read()
        sock = conn.sock
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server after HTTP_KEEPALIVE_IDLE_S (1 s)
        idle_closed_after = time.monotonic() - started
        conn.close()

        # pipelined: both answered, in order
        got = raw_exchange(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                                        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", source=OTHER)
        assert got.startswith(b"HTTP/1.1 200 ") and got.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 404 " in got

        # chunked webhook through the proxy, from the allowed source
        body = TEST_SIGNAL
        chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:])
        got = raw_exchange(server.port, (f"POST {hook} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {TV}\r\n"
                                         "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode() + chunked,
                           source=PROXY)
        assert got.startswith(b"HTTP/1.1 200 ") and b'"validated"' in got, got

        # Expect: 100-continue: the door says "continue" once, then the thread answers
        with socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=(PROXY, 0)) as s:
            s.sendall((f"POST {hook} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {TV}\r\nExpect: 100-continue\r\n"
                       f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode())
            assert s.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
            s.sendall(body)
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        assert got.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in got, got

        # the allow-list behind the proxy: a forged left-most entry, or a client that is no proxy
        for source, forwarded in ((PROXY, f"{TV}, 203.0.113.9"), (OTHER, TV)):
            got = raw_exchange(server.port, (f"POST {hook} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {forwarded}\r\n"
                                             f"Content-Length: {len(body)}\r\n\r\n").encode() + body, source=source)
            assert got.startswith(b"HTTP/1.1 403 ") and b"forbidden_source" in got, (source, got)

        # a body over MAX_BODY_BYTES is refused on its Content-Length, before it is sent
        got = raw_exchange(server.port, (f"POST {hook} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {TV}\r\n"
                                         "Content-Length: 5000\r\n\r\n").encode(), source=PROXY)
        assert got.startswith(b"HTTP/1.1 413 ") and b"body_too_large" in got

        # per-source cap: a sixth connection from one address is closed unread; others still served
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=(OTHER, 0))
                for _ in range(5)]
        try:
            time.sleep(0.2)  # accepted by the worker
            sixth = raw_exchange(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", source=OTHER)
            assert sixth == b""
            status, _ = server.request("GET", "/health", source=HONEST)
            assert status == 200
        finally:
            for s in held:
                s.close()
        # behind the trusted proxy, connections are not capped per source (one proxy, many clients)
        via_proxy = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=5, source_address=(PROXY, 0))
                     for _ in range(8)]
        try:
            for c in via_proxy:
                c.request("GET", "/health")
            assert [c.getresponse().status for c in via_proxy] == [200] * 8
        finally:
            for c in via_proxy:
                c.close()
        # SIGTERM with connections still being read: they are closed, the worker exits cleanly
        half = [socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=(HONEST, 0))
                for _ in range(5)]
        for s in half:
            s.sendall(f"POST {hook} HTTP/1.1\r\nHost: x\r\n".encode())
        time.sleep(0.2)
        started = time.monotonic()
        server.stop()
        stopped_after = time.monotonic() - started
        assert all(s.recv(100) == b"" for s in half)
        for s in half:
            s.close()
    finally:
        server.stop()
    print(f"\nidle keep-alive connection closed after {idle_closed_after:.2f} s; "
          f"SIGTERM with 5 requests half-read: exited after {stopped_after:.2f} s")
    assert server.proc.returncode == 0, server.err.text()
    assert sim.orders() == []  # only test signals were sent


def test_out_of_descriptors_is_survived(sim, tmp_path):
    """Connections beyond the process's fd limit: the worker neither dies nor spins; it serves
    again once the idle connections are closed at their deadline."""
    server = Gunicorn(sim, tmp_path, fd_limit=48, HTTP_MAX_CONNECTIONS="1000")
    held = []
    try:
        cpu0 = sum(int(x) for x in open(f"/proc/{server.worker}/stat").read().rsplit(")", 1)[1].split()[11:13])
        for _ in range(60):
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=(OTHER, 0)))
        time.sleep(HEADER_TIMEOUT_S / 2)
        wait_for(lambda: "out of file descriptors" in server.err.text(), timeout_s=5)
        # the idle ones are closed at the header deadline; then the webhook is served again
        wait_for(lambda: server.request("GET", "/health", source=HONEST)[0] == 200, timeout_s=10, interval_s=0.2)
        status, body = server.request("POST", f"/webhook/{SECRET}", webhook(0), source=HONEST)
        assert status == 200 and body["status"] == "acked", body
        ticks = sum(int(x) for x in open(f"/proc/{server.worker}/stat").read().rsplit(")", 1)[1].split()[11:13]) - cpu0
        print(f"\nworker CPU while out of descriptors and after: {ticks / os.sysconf('SC_CLK_TCK'):.2f} s")
        assert server.proc.poll() is None
        assert len([ln for ln in server.err.text().splitlines() if "Booting worker" in ln]) == 1  # never restarted
    finally:
        for s in held:
            s.close()
        server.stop()
