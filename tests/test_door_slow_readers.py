"""Issue 25, findings 2 and 9, against the Procfile's gunicorn with real sockets.

2. Clients that pipeline requests and never read their answers: before, once ~30 KB of answers
   queued, threads blocked in ``sendall`` until the socket timeout and webhooks from other
   addresses waited seconds (some got no answer before TradingView's 3 s cut-off).  Now the answers
   wait in the poller, a client that does not take its answer is closed at the write deadline, a
   connection pipelining too far is closed, and one address gets at most a share of the threads.
9. ``//webhook/<secret>`` is a webhook to the door (``urlsplit`` read it as a host name): refused by
   the allow-list before a thread, not by Flask after a thread read the body.
"""
from __future__ import annotations

import socket
import time
from collections import Counter

from tests.door_support import HONEST, TRADINGVIEW_CUTOFF_S, Gunicorn, many_fds, raw_exchange, webhook  # noqa: F401
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET

ATTACKERS = ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"]
CONNECTIONS_PER_ATTACKER = 32
PIPELINED = 50  # a few KB of requests, >100 KB of answers: far more than the sockets' buffers hold
WEBHOOKS = 6
ATTACK_S = 3.0
WRITE_TIMEOUT_S = 1.0
# The server's socket send buffer (the kernel doubles it): with Linux's autotuning a loopback
# socket queues megabytes before a write blocks; the host blocked after ~30 KB.
SEND_BUFFER = 8192


def _non_reader(port, source) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # a small receive window, never read
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def test_clients_that_never_read_do_not_stall_webhooks(sim, tmp_path, many_fds):
    # HTTP_BODY_TIMEOUT_S is what bounded a thread's blocked write before; long here on purpose
    server = Gunicorn(sim, tmp_path, send_buffer=SEND_BUFFER, HTTP_BODY_TIMEOUT_S="6",
                      HTTP_WRITE_TIMEOUT_S=str(WRITE_TIMEOUT_S), HTTP_MAX_CONNECTIONS_PER_SOURCE="32")
    attackers, latencies, answers = [], [], []
    # the status JSON: open to loopback in sim mode, a few KB per answer (the client asked
    # for 404s from a host whose buffers filled after ~30 KB; here they fill after a few answers)
    pipeline = b"GET /api/websocket-status HTTP/1.1\r\nHost: x\r\n\r\n" * PIPELINED
    try:
        status, _ = server.request("POST", f"/webhook/{SECRET}", webhook(-1), source=HONEST)  # warm-up
        assert status == 200
        before = len(sim.orders())
        for source in ATTACKERS:
            for _ in range(CONNECTIONS_PER_ATTACKER):
                sock = _non_reader(server.port, source)
                attackers.append(sock)
                sock.sendall(pipeline)  # the server reads it all; its answers are never read
        started = time.monotonic()
        for i in range(WEBHOOKS):
            t0 = time.monotonic()
            try:
                status, body = server.request("POST", f"/webhook/{SECRET}", webhook(i), source=HONEST,
                                              timeout=TRADINGVIEW_CUTOFF_S)
            except OSError as exc:  # no answer before TradingView gives up
                status, body = None, repr(exc)
            latencies.append(round(time.monotonic() - t0, 3))
            answers.append((status, body.get("status") if status == 200 else body))
            time.sleep(max(0.0, ATTACK_S / WEBHOOKS - (time.monotonic() - t0)))
        attack_s = time.monotonic() - started
    except BaseException:
        for s in attackers:
            s.close()
        server.stop()
        raise
    try:
        print(f"\nwebhook latency with {len(attackers)} non-reading connections opened from "
              f"{len(ATTACKERS)} addresses (s): {latencies}; answers {answers}")
        assert all(status == 200 and state == "acked" for status, state in answers), (answers, latencies)
        assert attack_s >= ATTACK_S * 0.9
        # every webhook placed once (two accounts each), none twice
        orders = sim.orders()[before:]
        assert len(orders) == 2 * WEBHOOKS and max(Counter(o["clOrdId"] for o in orders).values()) == 1

        # the server closes a connection whose client does not take its answer (write deadline)
        probe = _non_reader(server.port, HONEST)
        probe.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)
        probe.settimeout(1.0)
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 30:
            time.sleep(WRITE_TIMEOUT_S * 2)
            try:
                while True:  # read what is there, then see whether the server has gone away
                    chunk = probe.recv(65536)
                    if not chunk:
                        closed = True
                        break
            except socket.timeout:
                continue
            except ConnectionResetError:
                closed = True
            if closed:
                break
        probe.close()
        assert closed, "a client that never reads was not closed"
        # the worker still answers
        assert server.request("GET", "/health", source=HONEST)[0] == 200
    finally:
        for s in attackers:
            s.close()
        server.stop()
    assert server.proc.returncode == 0, server.err.text()[-3000:]


def test_pipelining_past_the_cap_closes_the_connection(sim, tmp_path):
    server = Gunicorn(sim, tmp_path, HTTP_MAX_PIPELINED="8")
    try:
        got = raw_exchange(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 40, source=HONEST, timeout=20)
        answered = got.count(b"HTTP/1.1 ")
        assert 1 <= answered <= 9, answered  # the first, then at most 8 sent ahead of their answers
        # a client that waits for each answer is not limited
        got = raw_exchange(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 3
                           + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", source=HONEST)
        assert got.count(b"HTTP/1.1 200 ") == 4
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.err.text()[-3000:]


def test_double_slash_webhook_is_refused_by_the_allow_list_before_a_thread(sim, tmp_path):
    server = Gunicorn(sim, tmp_path, WEBHOOK_IP_ALLOWLIST=HONEST)
    body = b'{"action":"buy","ticker":"MNQ1!","quantity":1}'
    try:
        for path in (f"//webhook/{SECRET}", f"/./webhook/{SECRET}", f"/x/../webhook/{SECRET}", f"/%2Fwebhook/{SECRET}"):
            got = raw_exchange(server.port, (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                                             "Content-Type: application/json\r\n\r\n").encode() + body,
                               source="127.0.0.7")
            assert got.startswith(b"HTTP/1.1 403 ") and b"forbidden_source" in got, (path, got[:200])
    finally:
        server.stop()
    # refused in the door: no thread served them (only requests served by a thread are access-logged)
    assert not [line for line in server.out.text().splitlines() if '"POST /' in line and "webhook" in line]
    assert sim.orders() == []
