"""Helpers shared by the test modules (a test module never imports another one).

Sections: settings and polling; the server (ultra_simple_server) against the simulator; the pool
and the pipeline (recorder_service, TradingService); raw sockets (simulator WebSocket, a freezable
TCP proxy, child processes); the reliability invariant.  Fixtures that use these live in
tests/conftest.py.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import recorder_service as rs
from phantom_scraper.config import Credentials, Settings
from phantom_scraper.signals import AccountTarget, SymbolResolver, parse_signal
from phantom_scraper.tradovate_integration import TradovateIntegration
from phantom_scraper.tradovate_sim import SimConfig

# -- settings and polling ------------------------------------------------------------------------

FAST = Settings(
    heartbeat_interval_s=0.2,
    ws_connect_timeout_s=5.0,
    ws_idle_probe_after_s=2.0,
    ws_probe_timeout_s=2.0,
    order_ack_timeout_s=3.0,
    reconcile_window_s=1.0,
    reconcile_poll_interval_s=0.05,
    rest_timeout_s=5.0,
    penalty_max_wait_s=2.0,
    reconnect_backoff_initial_s=0.05,
    reconnect_backoff_max_s=0.5,
    keepalive_interval_s=0.2,
    rate_limit_quiet_s=0.5,  # Tradovate's hour after a 429, scaled down (the simulator's 429s are one-shot)
)
SIM_CFG = dict(ws_idle_timeout_s=5.0)  # generous: a loaded CI box must not drop idle sockets
WAIT_S = 20.0  # generous upper bound for any event in these tests (never reached when passing)


def wait_for(predicate, timeout_s: float = WAIT_S, what: str = "condition", interval_s: float = 0.01):
    """Poll ``predicate`` until it returns something true and return that (for state with no
    event to wait on); AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def settle(predicate, timeout_s: float, interval_s: float = 0.02) -> bool:
    """:func:`wait_for` that answers False instead of raising."""
    try:
        return bool(wait_for(predicate, timeout_s, interval_s=interval_s))
    except AssertionError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the server against the simulator ------------------------------------------------------------

SIM_TEST_CONFIG = SimConfig(
    host="127.0.0.1", port=0, ws_port=0,
    ws_idle_timeout_s=0.8, authorize_timeout_s=0.5, server_heartbeat_interval_s=0.25,
    rest_no_answer_hold_s=2.0,
)


SERVER_WEBHOOK_SECRET = "whsec-Test-0123456789abcdef"
SERVER_ADMIN_TOKEN = "admin-Test-fedcba9876543210"


def server_settings(sim, tmp_path, **overrides):
    """Settings for a server app on the ``sim`` fixture, time constants scaled for tests."""
    values = dict(
        tradovate_env="sim", rest_url=sim.rest_url, ws_url=sim.ws_url,
        webhook_secret=SERVER_WEBHOOK_SECRET, admin_token=SERVER_ADMIN_TOKEN,
        database_path=str(tmp_path / "journal.sqlite3"),
        heartbeat_interval_s=0.2,  # the test simulator drops a socket idle for 0.8 s
        keepalive_interval_s=0.5, ws_connect_timeout_s=3.0, order_ack_timeout_s=3.0,
        reconcile_window_s=1.0, reconcile_poll_interval_s=0.05, rest_timeout_s=3.0,
        reconnect_backoff_initial_s=0.05, reconnect_backoff_max_s=0.5,
        rate_limit_quiet_s=0.5,  # Tradovate's hour after a 429, scaled down (the simulator's 429s are one-shot)
        trading_date=os.environ.get("TRADOVATE_SIM_TODAY"),  # the roll calendar = the simulator's
    )
    values.update(overrides)
    return Settings(**values)


BUY = '{"action":"buy","ticker":"MNQ1!","quantity":1}'
ADMIN_HEADERS = {"Authorization": f"Bearer {SERVER_ADMIN_TOKEN}"}


def ws_ready(app):
    """Wait until every pooled connection has an open socket (warm-up runs in the background)."""
    def ok():
        conns = app.test_client().get("/api/websocket-status", headers=ADMIN_HEADERS).get_json()["connection_pool"]["connections"]
        return conns and all(c["ws_connected"] for c in conns.values())
    wait_for(ok)


def post(client, body, token=SERVER_WEBHOOK_SECRET, content_type="application/json", **kw):
    path = f"/webhook/{token}" if token is not None else "/webhook"
    return client.post(path, data=body, content_type=content_type, **kw)


# -- the pool and the pipeline -------------------------------------------------------------------

class ConnectProbe:
    """Counts ``open_websocket`` calls and the most that were ever in progress at once.

    ``gate(ti)`` makes that login's connects block until the returned Event is set.
    """

    def __init__(self):
        self._lock = threading.Lock()  # serialises the counters below
        self.count = 0
        self.in_progress = 0
        self.max_in_progress = 0
        self.entered = threading.Event()
        self._gates = {}

    def wrap(self, ti):
        original = ti.open_websocket

        def open_websocket(*args, **kwargs):
            with self._lock:
                self.count += 1
                self.in_progress += 1
                self.max_in_progress = max(self.max_in_progress, self.in_progress)
            try:
                gate = self._gates.get(id(ti))
                if gate is not None:
                    self.entered.set()
                    assert gate.wait(WAIT_S), "gate never released"
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.in_progress -= 1

        ti.open_websocket = open_websocket
        return ti

    def gate(self, ti) -> threading.Event:
        event = threading.Event()
        self._gates[id(ti)] = event
        return event

    def reset(self):
        with self._lock:
            self.count = 0
            self.max_in_progress = self.in_progress


class Logins:
    """Creates logged-in integrations registered with the pool; closes them afterwards."""

    def __init__(self, sim, probe: ConnectProbe, settings: Settings = FAST):
        self.sim, self.probe, self.settings = sim, probe, settings
        self.made = []

    def add(self, user: str = "demo", password: str = "demo", settings: Settings = None):
        settings = settings or self.settings
        ti = TradovateIntegration(Credentials(username=user, password=password), self.sim.rest_url,
                                  self.sim.ws_url, is_demo=True, settings=settings)
        self.made.append(ti)
        self.probe.wrap(ti)
        ti.authenticate()
        accounts = ti.list_accounts()
        conn = rs.register_login(ti, [a["id"] for a in accounts], is_demo=True, login_key=f"{user}@sim",
                                 settings=settings)
        return ti, conn, accounts

    def close(self):
        for ti in self.made:
            ti.close()


def run_signal(journal, ti, targets, payload: dict, settings: Settings = FAST, recorder: str = "test",
               contract=None):
    """Record ``payload`` as a signal in ``journal`` and run it on ``targets``; (signal_id, outcomes)."""
    signal = parse_signal(json.dumps(payload).encode())
    contract = contract or SymbolResolver(ti).resolve(signal.symbol)
    signal_id, duplicate, _ = journal.record_signal(recorder, signal.payload, signal.signal_id,
                                                    json.dumps(payload, sort_keys=True), 0)
    assert not duplicate
    outcomes = rs.execute_trade_simple(signal, contract, targets, journal=journal, signal_id=signal_id,
                                       settings=settings)
    return signal_id, outcomes


def targets_of(conn, accounts):
    return [(AccountTarget(id=int(a["id"]), name=a["name"]), conn) for a in accounts]


def service_settings(sim, tmp_path, **changes):
    return FAST.replace(tradovate_env="sim", rest_url=sim.rest_url, ws_url=sim.ws_url,
                        credentials=Credentials(username="demo", password="demo"),
                        database_path=str(tmp_path / "journal.sqlite3"), webhook_secret="hook-secret",
                        webhook_budget_s=WAIT_S, keepalive_interval_s=30.0, **changes)


# -- raw sockets and child processes -------------------------------------------------------------

def token_of(sim):
    return requests.post(f"{sim.rest_url}/auth/accesstokenrequest",
                         json={"name": "demo", "password": "demo"}, timeout=5).json()["accessToken"]


def frames(ws, timeout=1.0):
    """Decode one server frame: ('o'|'h', None) or ('a', [messages])."""
    raw = ws.recv(timeout=timeout)
    return (raw[0], json.loads(raw[1:]) if raw[0] == "a" else None)


def open_ws(sim, token=None, authorize=True):
    # A sync client blocks its reader on an unread frame, so a close would wait the full
    # close_timeout for the handshake: keep it short.
    ws = connect(sim.ws_url, open_timeout=5, close_timeout=0.2)
    assert ws.recv(timeout=2) == "o"
    if authorize:
        ws.send(f"authorize\n0\n\n{token or token_of(sim)}")
        assert next_message(ws) == {"s": 200, "i": 0}
    return ws


def next_message(ws, pred=lambda m: True, timeout=2.0):
    """The next message (response or event) matching ``pred``; 'h' frames are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        kind, body = frames(ws, timeout=max(0.01, deadline - time.monotonic()))
        for message in body or []:
            if pred(message):
                return message


def request(ws, endpoint, i, query="", body=""):
    ws.send(f"{endpoint}\n{i}\n{query}\n{body if isinstance(body, str) else json.dumps(body)}")
    return next_message(ws, lambda m: m.get("i") == i and "e" not in m)


def assert_closed_within(ws, seconds):
    start = time.monotonic()
    with pytest.raises(ConnectionClosed):
        while time.monotonic() - start < seconds + 1.0:
            ws.recv(timeout=seconds + 1.0)
    return time.monotonic() - start


def order(acct="DEMO0001", **extra):
    body = {"accountSpec": acct, "action": "Buy", "symbol": "NQZ6", "orderQty": 1,
            "orderType": "Market", "isAutomated": True}
    body.update(extra)
    return body


class FreezableProxy:
    """TCP proxy on 127.0.0.1; ``freeze()`` silently drops every byte in both directions."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.frozen = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-proxy", daemon=True)

    def start(self):
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", 0), self.loop
        ).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def freeze(self):
        self.frozen = True

    async def _pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if not self.frozen:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _client(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    def stop(self):
        if not self.thread.is_alive():
            return

        async def _stop():
            self.server.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def socket_threads():
    return [t for t in threading.enumerate() if t.name.startswith("tradovate-ws-")]


def assert_no_socket_threads(timeout_s: float = 3.0) -> None:
    """Every socket's thread has ended (a thread ends with its socket), waiting up to ``timeout_s``."""
    assert settle(lambda: not socket_threads(), timeout_s), socket_threads()


REPO = Path(__file__).resolve().parent.parent


def procfile_command(port: int) -> list:
    lines = [ln for ln in (REPO / "Procfile").read_text().splitlines() if ln.startswith("web:")]
    assert len(lines) == 1, "the Procfile needs exactly one web: line"
    command = lines[0][len("web:"):].strip()
    args = shlex.split(command.replace("$PORT", str(port)).replace("${PORT}", str(port)))
    # what the deploy needs, said explicitly on the command line
    assert args[0] == "gunicorn"
    assert "--preload" not in args
    assert args[args.index("--workers") + 1] == "1"
    assert args[args.index("--worker-class") + 1] == "phantom_scraper.door.worker.DoorWorker"  # gthread + door
    assert "--threads" not in args  # threads: GUNICORN_THREADS, read by gunicorn.conf.py (default 32)
    assert args[args.index("--config") + 1] == "gunicorn.conf.py"
    assert args[args.index("--bind") + 1] == f"0.0.0.0:{port}"
    args[args.index("--bind") + 1] = f"127.0.0.1:{port}"  # tests bind loopback only
    args[0] = str(Path(sys.executable).parent / "gunicorn")
    return args


class LineReader:
    """Collects a pipe's lines in a thread (so the child never blocks on a full pipe)."""

    def __init__(self, stream):
        self.lines = []
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream):
        for line in iter(stream.readline, ""):
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def join(self, timeout):
        self._thread.join(timeout)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 20.0


class ServerProcess:
    """``python ultra_simple_server.py`` on 127.0.0.1:<ephemeral>, output captured."""

    def __init__(self, sim, db_path, **env):
        self.env = dict(os.environ)
        self.env.pop("DATABASE_URL", None)
        if str(db_path).startswith("postgresql://"):  # the Postgres journal; SQLite's path unused
            env.setdefault("DATABASE_URL", str(db_path))
            db_path = os.path.join(tempfile.gettempdir(), "phantom-unused", "journal.sqlite3")
        self.env.update({
            "TRADOVATE_ENV": "sim", "TRADOVATE_REST_URL": sim.rest_url, "TRADOVATE_WS_URL": sim.ws_url,
            "WEBHOOK_SECRET": SERVER_WEBHOOK_SECRET, "ADMIN_TOKEN": SERVER_ADMIN_TOKEN,
            "DATABASE_PATH": str(db_path), "HOST": "127.0.0.1", "PORT": "0",
            "WS_HEARTBEAT_INTERVAL_S": "0.2", "KEEPALIVE_INTERVAL_S": "30", "TRADOVATE_ACCOUNTS": "DEMO0001",
            "WEBHOOK_BUDGET_S": "0.5", "RECONCILE_WINDOW_S": "0.5", "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update({k: str(v) for k, v in env.items()})
        self.proc = None
        self.base = None
        self.lines = []
        self._url_seen = threading.Event()

    def start(self) -> "ServerProcess":
        self.proc = subprocess.Popen([sys.executable, "ultra_simple_server.py"], cwd=ROOT, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._url_seen.wait(START_TIMEOUT_S):
            self.kill()
            raise AssertionError("server did not start:\n" + "\n".join(self.lines[-40:]))
        return self

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = re.search(r"console +: (http://127\.0\.0\.1:\d+)/", line)  # the start-up banner
            if m:
                self.base = m.group(1)
                self._url_seen.set()

    def post(self, path, payload, timeout=5.0):
        req = urllib.request.Request(self.base + path, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def get(self, path, timeout=5.0):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {SERVER_ADMIN_TOKEN}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())

    def webhook(self, payload, timeout=5.0):
        return self.post(f"/webhook/{SERVER_WEBHOOK_SECRET}", payload, timeout)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return "\n".join(self.lines)


# -- the reliability invariant -------------------------------------------------------------------
# The invariant every reliability test checks against the simulator's book of record
# (``sim.orders()``): for every (signal, account) there is **exactly one** broker order, or **none**
# with a recorded, reported reason (the intent's final state and error in the journal, visible in
# ``/api/signals``).  An order is tied to its (signal, account) by the ``clOrdId`` (or, for a
# liquidation, ``customTag50``) ``ps-<signal_id>-<account_id>-<step>`` the journal generated.

_INTENT_ID = re.compile(r"^ps-([0-9A-Za-z_]+)-(\d+)-(\d+)$")
FINAL_SIGNAL_STATES = {"acked", "partial", "failed", "unknown", "skipped", "validated", "rejected", "error",
                       "duplicate"}
NO_ORDER_STATES = {"rejected", "unknown", "not_placed", "skipped"}  # intent states that may leave no order behind


def admin_headers() -> dict:
    return dict(ADMIN_HEADERS)


def post_webhook(client, payload, secret: str = SERVER_WEBHOOK_SECRET) -> Tuple[int, dict]:
    """POST a signal with the Flask test client; returns (status, JSON body)."""
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    resp = client.post(f"/webhook/{secret}", data=body, content_type="application/json")
    try:
        data = json.loads(resp.get_data(as_text=True))
    except ValueError:
        data = {"_raw": resp.get_data(as_text=True)}
    return resp.status_code, data


def book_orders(sim) -> List[dict]:
    """Orders that exist at the broker (validation refusals, recorded with orderId None, excluded)."""
    return [o for o in sim.orders() if o.get("orderId") is not None]


def intent_key(order: dict) -> Optional[Tuple[str, int]]:
    """(signal_id, account_id) from an order's clOrdId / customTag50, or None."""
    for key in ("clOrdId", "customTag50"):
        m = _INTENT_ID.match(str(order.get(key) or ""))
        if m:
            return m.group(1), int(m.group(2))
    return None


def orders_per_signal_account(sim) -> Dict[Tuple[str, int], List[dict]]:
    per = collections.defaultdict(list)
    for order in book_orders(sim):
        key = intent_key(order)
        if key is not None:
            per[key].append(order)
    return per


def assert_at_most_one(sim) -> None:
    """No (signal, account) has two broker orders (single-step plans: step 0 only)."""
    per_step = collections.Counter()
    for order in book_orders(sim):
        cl = order.get("clOrdId") or order.get("customTag50")
        if cl and _INTENT_ID.match(str(cl)):
            per_step[cl] += 1
    doubled = {k: v for k, v in per_step.items() if v > 1}
    assert not doubled, f"DUPLICATE broker orders: {doubled}"


def wait_signal_final(journal, signal_id: str, timeout_s: float = 10.0) -> str:
    """Wait (bounded) until the service recorded the signal's outcome; returns the status."""
    def final():
        status = journal.signal_status(signal_id)
        return status if status in FINAL_SIGNAL_STATES else None
    return wait_for(final, timeout_s, what=f"signal {signal_id} to finish", interval_s=0.02)


def check_invariant(sim, journal, signal_id: str, account_ids: Iterable[int]) -> Dict[int, str]:
    """Exactly one order per account, or none with a recorded reason.  -> {account: 'order'|reason}."""
    signal = journal.get_signal(signal_id)
    assert signal is not None, f"signal {signal_id} is not in the journal"
    # A finished signal's final writes land just after its answer (phantom_scraper/execution/final_writes.py): let them.
    if settle(lambda: (journal.get_signal(signal_id) or {}).get("status") != "received", 5.0):
        signal = journal.get_signal(signal_id)
    per = orders_per_signal_account(sim)
    intents = {i["account_id"]: i for i in signal["intents"]}
    result = {}
    for account in account_ids:
        orders = per.get((signal_id, account), [])
        assert len(orders) <= 1, f"DUPLICATE: signal {signal_id} account {account}: {orders}"
        intent = intents.get(account)
        if not orders and intent is not None and intent.get("kind") == "liquidateposition" \
                and intent.get("broker_order_id") is not None:  # no customTag50 by default: tied by its order id
            orders = [o for o in book_orders(sim) if o.get("orderId") == intent["broker_order_id"]
                      and o.get("endpoint") == "liquidateposition"]
        if orders:
            assert intent is not None, f"order without an intent: {orders}"
            if intent["state"] in ("acked", "reconciled", "unknown"):
                if intent["broker_order_id"] is not None:
                    assert intent["broker_order_id"] == orders[0]["orderId"], (intent, orders)
            else:
                raise AssertionError(f"order {orders[0]['orderId']} exists but the journal says {intent}")
            result[account] = "order"
        else:
            summary = signal.get("summary") or ""
            if intent is not None:
                assert intent["state"] in NO_ORDER_STATES, \
                    f"signal {signal_id} account {account}: no order, intent {intent['state']}"
                assert intent["state"] == "skipped" or intent["error"], f"no reason recorded: {intent}"
                result[account] = f"{intent['state']}: {intent['error']}"
            else:  # refused before an intent existed (plan error, journal down): in the summary
                assert summary, f"signal {signal_id} account {account}: no order and no reason"
                result[account] = summary
    return result


def accounts_of(sim, *names: str) -> List[int]:
    return [sim.account_id(n) for n in names]


def read_journal(path: str) -> Tuple[List[dict], List[dict]]:
    """Signals and intents straight from the database (read-only; another process may own the
    journal): an SQLite path, or a Postgres URL."""
    if path.startswith(("postgres://", "postgresql://")):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(path, autocommit=True, row_factory=dict_row, connect_timeout=10) as pg:
            signals = [{k: v for k, v in r.items() if k != "rowid"} for r in pg.execute("SELECT * FROM signals")]
            intents = pg.execute("SELECT * FROM order_intents").fetchall()
        return signals, intents
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        signals = [dict(r) for r in conn.execute("SELECT * FROM signals")]
        intents = [dict(r) for r in conn.execute("SELECT * FROM order_intents")]
    finally:
        conn.close()
    return signals, intents


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def thread_names() -> List[str]:
    return sorted(t.name for t in threading.enumerate())


def bytes_kept(fn, *files) -> int:
    """Bytes still allocated after ``fn()`` by the product's code, the JSON decoder and ``files``
    (tracemalloc, innermost frame): what other threads of the test process allocate meanwhile (a
    previous test's servers winding down) is not counted."""
    import fnmatch
    import gc
    import tracemalloc

    patterns = ["*/phantom_scraper/*", "*/json/*", *files]
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        gc.collect()
        traces = tracemalloc.take_snapshot().traces
    finally:
        tracemalloc.stop()
    return sum(t.size for t in traces
               if any(fnmatch.fnmatch(t.traceback[0].filename, pattern) for pattern in patterns))
