"""Signal-to-order latency: pooled WebSocket against REST, fan-out, throughput (issues 7 and 17).

    .venv/bin/python -m bench.latency [--quick] [--n 200] [--rtts 0,50] [--throughput-s 20]
                                      [--clients 16] [--only ROWS] [--out bench/results/latest.json]
    .venv/bin/python -m bench.latency --baseline REF [--baseline-sandwich] [the same options]
        before/after in one run: REF's tree (git archive) runs its own bench.latency in a subprocess,
        this tree's runs too (after, before[, after again]); one combined table with this run's
        floors, both documents and the comparison in the JSON (bench/compare.py)
    .venv/bin/python -m bench.latency --door-compare [--n 400] [--rtts 0] [--rounds 10]
        only row (1g), the Procfile's worker (front door) against plain gthread, side by side

``--only 1,1g,2,3,4,6-1,6-5,6-13,6-50,7`` (any subset; ``6`` = every fan-out row; ``floor`` = the
floors alone) reruns a subset; the floors of the chosen RTTs always run, they are the reference.

What runs where (all on 127.0.0.1):

* The Tradovate simulator runs in its own process (``python -m phantom_scraper.tradovate_sim``),
  as the broker is remote in production: it does not share this process's GIL.  The injected
  round-trip time is its ``response_latency_ms`` (added before every answer); connection set-up
  (TCP + TLS) is its ``connect_latency_ms`` = 2 x RTT, charged on rows 3 and 4 only.
* Rows 1-6: the product's own Flask app (``ultra_simple_server.create_app``) with its real
  ``TradingService``, journal (SQLite in a temp dir), pool and keep-alive daemon, served by a
  real werkzeug threaded HTTP server in this process; the client POSTs
  ``/webhook/<token>`` over a keep-alive HTTP connection and times POST -> HTTP response (the
  response is written after every account's broker ack).  Logging is on at INFO to a file, as in
  production.  Rows 3 and 4 differ from rows 2 and 1 only by a monkeypatch in THIS process
  (a new TCP connection per REST order; a new socket + authorize per WebSocket order).
* Row 5 uses timing hooks installed in this process only (WSGI entry/exit, the order frame's
  ``send`` on the socket, the order answer's resolution), plus the simulator's own record of
  when it executed each order (``time`` in its book) against the client's send time.
* Rows 0: the floor, raw clients straight to the simulator: a WebSocket placeorder (1 account,
  and 13 / 50 accounts' frames back to back), a keep-alive REST POST, and "raw WS + user sync"
  (1 / 13 / 50 accounts): the same raw socket after a ``user/syncrequest`` for the login's 50
  accounts, as the product's pool sends, so the simulator generates and pushes every order's
  ``props`` events on it (read and discarded by the one reader) - what the product must do on its
  socket at the least.
* Row 7: gunicorn started with the Procfile's command (bound to 127.0.0.1), simulator at RTT 0,
  several client threads; afterwards the simulator's book is checked: every 2xx-acknowledged
  signal has exactly one order per account, no clOrdId twice.

Targets (issue 7's and issue 17's, labelled) are printed, never asserted.  Figures on a shared
machine are noisy: compare halves of one --baseline run, not runs of different times.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import logging
import os
import platform
import queue
import shlex
import signal as signal_mod
import socket
import subprocess
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
SYMBOL = "MNQ1!"
FANOUT_SIZES = (1, 5, 13, 50)
SIM_ACCOUNTS = 50
RUN = uuid.uuid4().hex[:8]
# --only: the rows a developer can choose (the floors of the chosen RTTs always run: they are the reference)
ROW_KEYS = ("1", "1g", "2", "3", "4") + tuple(f"6-{size}" for size in FANOUT_SIZES) + ("7",)
ROW_ORDER = {k: i for i, k in enumerate(("0-ws", "0-ws-13", "0-ws-50", "0-sync-1", "0-sync-13", "0-sync-50",
                                         "0-rest") + ROW_KEYS)}


def parse_only(text: Optional[str]) -> Tuple[str, ...]:
    """``--only 1,1g,6-13,6-50,7`` (``6`` = every fan-out row, ``5`` = row 1 whose breakdown it is,
    ``floor`` = the floors alone) -> the chosen row keys; empty/None -> every row."""
    if not text:
        return ROW_KEYS
    chosen = set()
    for token in (t.strip() for t in text.split(",")):
        if not token or token in ("floor", "0"):
            continue
        if token == "6":
            chosen.update(k for k in ROW_KEYS if k.startswith("6-"))
        elif token == "5":
            chosen.add("1")
        elif token in ROW_KEYS:
            chosen.add(token)
        else:
            raise ValueError(f"--only: unknown row {token!r} (rows: floor, {', '.join(ROW_KEYS)}, 5, 6)")
    return tuple(k for k in ROW_KEYS if k in chosen)


# ---------------------------------------------------------------------------------------------
# statistics

def _pct(sorted_vals: List[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def summarize(values_ms: List[float]) -> Dict[str, Any]:
    vals = sorted(values_ms)
    if not vals:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "min": None, "mean": None}
    return {"n": len(vals), "p50": round(_pct(vals, 50), 3), "p90": round(_pct(vals, 90), 3),
            "p99": round(_pct(vals, 99), 3), "max": round(vals[-1], 3), "min": round(vals[0], 3),
            "mean": round(sum(vals) / len(vals), 3)}


# ---------------------------------------------------------------------------------------------
# the simulator, in its own process

class SimProcess:
    def __init__(self, workdir: Path, accounts: int = SIM_ACCOUNTS):
        self.log_path = workdir / "simulator.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "phantom_scraper.tradovate_sim", "--host", "127.0.0.1", "--port", "0",
             "--ws-port", "0", "--accounts", str(accounts), "--log-level", "WARNING"],
            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=self._log, text=True)
        lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        self.rest_url = self.ws_url = None
        deadline = time.monotonic() + 30
        while (self.rest_url is None or self.ws_url is None) and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic())).strip()
            except queue.Empty:
                break
            if line.startswith("REST "):
                self.rest_url = line[5:]
            elif line.startswith("WS "):
                self.ws_url = line[3:]
        if self.rest_url is None or self.ws_url is None:
            self.stop()
            raise RuntimeError(f"simulator did not start; see {self.log_path}")
        hostport = self.rest_url.split("//", 1)[1].split("/", 1)[0]
        self.port = int(hostport.rsplit(":", 1)[1])

    def control(self, method: str, path: str, body: Optional[dict] = None, timeout: float = 60) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, "/control" + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"control {path}: HTTP {resp.status} {raw[:200]!r}")
            return json.loads(raw)
        finally:
            conn.close()

    def set_faults(self, **values) -> None:
        self.control("POST", "/faults", values)

    def reset(self, **faults) -> None:
        """Book, positions and faults cleared (users, tokens and open sockets kept)."""
        self.control("POST", "/reset", {})
        if faults:
            self.set_faults(**faults)

    def orders(self) -> List[dict]:
        return self.control("GET", "/orders")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal_mod.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


# ---------------------------------------------------------------------------------------------
# timing hooks, installed in this process only

class Probe:
    """Per webhook: perf_counter at WSGI entry/exit, order frames written, order answers resolved."""

    def __init__(self):
        self.current: Optional[dict] = None
        self.done: List[dict] = []

    def wsgi(self, app):
        def wrapped(environ, start_response):
            if not environ.get("PATH_INFO", "").startswith("/webhook"):
                return app(environ, start_response)
            rec = {"t_in": time.perf_counter(), "frames": [], "acks": []}
            self.current = rec
            try:
                return app(environ, start_response)
            finally:
                rec["t_out"] = time.perf_counter()
                self.done.append(rec)
        return wrapped

    def frame(self) -> None:
        rec = self.current
        if rec is not None:
            rec["frames"].append(time.perf_counter())

    def ack(self) -> None:
        rec = self.current
        if rec is not None:
            rec["acks"].append(time.perf_counter())


PROBE = Probe()
MODE = {"rest_new_connection": False, "ws_new_connection": False}
_PATCHED = False


def install_hooks() -> None:
    """Monkeypatches in the benchmark process only (the product files are not touched)."""
    global _PATCHED
    if _PATCHED:
        return
    _PATCHED = True
    from websockets.legacy.protocol import WebSocketCommonProtocol

    from phantom_scraper.tradovate import rest as tradovate_rest
    from phantom_scraper.tradovate_integration import TradovateIntegration
    from phantom_scraper.tradovate.ws import TradovateWebSocket

    # Every frame reaches the socket through write_frame_sync (websockets' own send() calls it too;
    # ws_client's request_many() calls it directly to write a batch in one pass of the loop).
    orig_write = WebSocketCommonProtocol.write_frame_sync

    def write_frame_sync(self, fin, opcode, data):
        if data[:6] == b"order/":
            PROBE.frame()
        return orig_write(self, fin, opcode, data)

    WebSocketCommonProtocol.write_frame_sync = write_frame_sync

    orig_resolve = TradovateWebSocket._resolve

    def resolve(self, msg):
        try:
            pending = self._pending.get(int(msg.get("i")))
        except (TypeError, ValueError):
            pending = None
        if pending is not None and pending.endpoint.startswith("order/"):
            PROBE.ack()
        return orig_resolve(self, msg)

    TradovateWebSocket._resolve = resolve

    orig_rest_send = tradovate_rest.RestClient.send

    def rest_send(self, method, path, **kwargs):
        if not tradovate_rest.is_order_endpoint(path):
            return orig_rest_send(self, method, path, **kwargs)
        if MODE["rest_new_connection"]:
            # Row 3: forget the keep-alive pool, so this order opens a new TCP connection
            # (the simulator charges connect_latency_ms for it).
            self.session.get_adapter(self.base_url + "/").close()
        PROBE.frame()
        try:
            return orig_rest_send(self, method, path, **kwargs)
        finally:
            PROBE.ack()

    tradovate_rest.RestClient.send = rest_send

    orig_smart = TradovateIntegration.place_order_smart

    def smart(self, body, ws=None, endpoint="order/placeorder", cl_ord_id=None, **kwargs):
        if not (MODE["ws_new_connection"] and ws is not None):
            return orig_smart(self, body, ws, endpoint, cl_ord_id, **kwargs)
        # Row 4: no pool.  Connect + authorize a new socket for this order, close it afterwards
        # (the close is not on the order's path).
        fresh = self.open_websocket(name="bench-no-pool")
        try:
            return orig_smart(self, body, fresh, endpoint, cl_ord_id, **kwargs)
        finally:
            threading.Thread(target=fresh.close, daemon=True, name="bench-close").start()

    if hasattr(TradovateIntegration, "smart_order"):  # every placement builds its order here (issue 17)
        orig_smart_order = TradovateIntegration.smart_order

        def smart_order(self, body, ws=None, endpoint="order/placeorder", cl_ord_id=None, **kwargs):
            if not (MODE["ws_new_connection"] and ws is not None):
                return orig_smart_order(self, body, ws, endpoint, cl_ord_id, **kwargs)
            fresh = self.open_websocket(name="bench-no-pool")  # row 4: connect + authorize for this order
            order = orig_smart_order(self, body, fresh, endpoint, cl_ord_id, **kwargs)
            run = order.run

            def run_then_close(*args, **kw):
                try:
                    return run(*args, **kw)
                finally:
                    threading.Thread(target=fresh.close, daemon=True, name="bench-close").start()

            order.run = run_then_close
            return order

        TradovateIntegration.smart_order = smart_order
    else:
        TradovateIntegration.place_order_smart = smart

    # Row 4 needs every order to go through place_order_smart (patched above): the single-account
    # path that sends from the request's own thread (issue 17) is turned off for that row only.
    from phantom_scraper.app.service import TradingService

    orig_run_here = getattr(TradingService, "_run_here", None)
    if orig_run_here is not None:
        def run_here(self, *args, **kwargs):
            return None if MODE["ws_new_connection"] else orig_run_here(self, *args, **kwargs)

        TradingService._run_here = run_here


# ---------------------------------------------------------------------------------------------
# the product's server, in this process

def _token(size: int) -> str:
    return f"bench-{RUN}-fan{size}"


def write_recorders(workdir: Path, sim: SimProcess) -> Path:
    """One login (the simulator's 50-account user) and one recorder per fan-out size."""
    accounts = [f"DEMO{i:04d}" for i in range(1, SIM_ACCOUNTS + 1)]
    doc = {
        "logins": {"main": {"env": "sim", "username": "demo", "password_env": "BENCH_SIM_PASSWORD",
                            "rest_url": sim.rest_url, "ws_url": sim.ws_url}},
        "recorders": [
            {"name": f"fan{size}", "webhook_token_env": f"BENCH_TOKEN_FAN{size}",
             "accounts": [{"login": "main", "account": a} for a in accounts[:size]]}
            for size in FANOUT_SIZES
        ],
    }
    os.environ["BENCH_SIM_PASSWORD"] = "demo"
    for size in FANOUT_SIZES:
        os.environ[f"BENCH_TOKEN_FAN{size}"] = _token(size)
    path = workdir / "recorders.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


class InProcessServer:
    def __init__(self, workdir: Path, sim: SimProcess, recorders: Path, *, websocket: bool, name: str,
                 settings: Optional[dict] = None):
        import recorder_service
        import ultra_simple_server
        from phantom_scraper.config import Settings
        from werkzeug.serving import make_server

        settings = Settings(tradovate_env="sim", rest_url=sim.rest_url, ws_url=sim.ws_url,
                            recorders_file=str(recorders), database_path=str(workdir / f"{name}.sqlite3"),
                            webhook_secret=_token(1), admin_token=_token(1), use_websocket_orders=websocket,
                            **(settings or {}))
        self.app = ultra_simple_server.create_app(settings, boot_on_first_request=False)
        self.runtime = self.app.extensions["runtime"]
        self.app.wsgi_app = PROBE.wsgi(self.app.wsgi_app)
        self.runtime.boot(wait=True)
        if self.runtime.service.state != "ready":
            raise RuntimeError(f"server did not start: {self.runtime.service.start_error}")
        if websocket:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                conns = recorder_service.logins_snapshot()
                if conns and all(c.live_client() is not None for c in conns):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("the pool did not connect within 20 s")
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"bench-{name}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.runtime.shutdown(timeout_s=10)


class Client:
    """One keep-alive HTTP/1.1 connection (headers and body leave in one write)."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.port = port
        self.timeout = timeout
        self.conn: Optional[http.client.HTTPConnection] = None

    def post(self, path: str, body: bytes) -> Tuple[int, dict]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
                continue
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {"raw": raw[:200].decode("utf-8", "replace")}
            return resp.status, doc
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def signal_body(tag: str, i: int) -> bytes:
    return json.dumps({"action": "buy" if i % 2 == 0 else "sell", "ticker": SYMBOL, "quantity": 1,
                       "id": f"{RUN}-{tag}-{i}"}).encode()


def latency_row(key: str, title: str, server: InProcessServer, sim: SimProcess, *, rtt: float, n: int,
                accounts: int, transport: str, warmup: int, connect_latency_ms: float = 0.0,
                path: Optional[str] = None) -> dict:
    """``n`` sequential signals; POST -> response, plus the in-process and simulator breakdowns."""
    sim.reset(response_latency_ms=rtt, connect_latency_ms=connect_latency_ms)
    client = Client(server.port)
    path = path or f"/webhook/{_token(accounts)}"
    lat, pre, post, span, in_server, errors = [], [], [], [], [], []
    sent: List[Tuple[str, float, float]] = []  # (signal_id, send wall time, latency ms)
    transports: Dict[str, int] = {}
    tag = f"{key}-{rtt:g}"
    try:
        for i in range(warmup + n):
            body = signal_body(tag, i)
            PROBE.current = None
            count_before = len(PROBE.done)
            wall = time.time()
            t0 = time.perf_counter()
            status, doc = client.post(path, body)
            t1 = time.perf_counter()
            if i < warmup:
                continue
            outcomes = doc.get("accounts") or []
            ok = (status == 200 and doc.get("status") == "acked" and len(outcomes) == accounts)
            for o in outcomes:
                transports[o.get("transport") or "none"] = transports.get(o.get("transport") or "none", 0) + 1
            if not ok:
                errors.append({"status": status, "body": json.dumps(doc)[:300]})
                continue
            ms = (t1 - t0) * 1000.0
            lat.append(ms)
            sent.append((doc["signal_id"], wall, ms))
            rec = PROBE.done[-1] if len(PROBE.done) > count_before else None
            if rec and rec["frames"] and rec["acks"] and "t_out" in rec:
                pre.append((rec["frames"][0] - rec["t_in"]) * 1000.0)  # webhook received -> 1st frame
                post.append((rec["t_out"] - rec["acks"][-1]) * 1000.0)  # last ack -> response built
                span.append((rec["frames"][-1] - rec["frames"][0]) * 1000.0)  # 1st -> last frame
                in_server.append((rec["t_out"] - rec["t_in"]) * 1000.0)
    finally:
        client.close()
        sim.set_faults(connect_latency_ms=0.0)
    # the simulator's book: when it executed each order (its clock = our wall clock, one machine)
    book = sim.orders()
    by_signal: Dict[str, List[float]] = {}
    for order in book:
        cl = order.get("clOrdId") or ""
        if cl.startswith("ps-"):
            by_signal.setdefault(cl[3:].rsplit("-", 2)[0], []).append(float(order["time"]))
    first_exec, last_exec, missing = [], [], 0
    for sid, wall, _ms in sent:
        times = by_signal.get(sid)
        if not times or len(times) != accounts:
            missing += 1
            continue
        first_exec.append((min(times) - wall) * 1000.0)
        last_exec.append((max(times) - wall) * 1000.0)
    row = {
        "key": key, "title": title, "rtt_ms": rtt, "accounts": accounts, "expected_transport": transport,
        "connect_latency_ms": connect_latency_ms,
        "latency_ms": summarize(lat),
        "overhead_minus_rtt_ms": summarize([x - rtt for x in lat]),
        "webhook_received_to_first_frame_ms": summarize(pre),
        "last_ack_to_response_built_ms": summarize(post),
        "first_to_last_frame_ms": summarize(span),
        "in_server_ms": summarize(in_server),
        "client_send_to_sim_first_exec_ms": summarize(first_exec),
        "client_send_to_sim_last_exec_ms": summarize(last_exec),
        "book_mismatches": missing,
        "transports": transports,
        "errors": len(errors),
        "error_samples": errors[:3],
        "samples_ms": [round(x, 3) for x in lat],
    }
    wrong = {t: c for t, c in transports.items() if t != transport}
    if wrong:
        row["transport_mismatch"] = wrong
    s = row["latency_ms"]
    print(f"  {title:<52} RTT {rtt:>4g}  n={s['n']:<4} p50 {s['p50']!s:>8}  p99 {s['p99']!s:>8}  "
          f"errors {len(errors)}{'  TRANSPORT ' + str(wrong) if wrong else ''}", flush=True)
    return row


# ---------------------------------------------------------------------------------------------
# row 0: the floor -- the simulator alone, no product

def _sim_rest(sim: SimProcess, method: str, path: str, body: Optional[dict] = None, token: Optional[str] = None):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, "/v1/" + path, body=json.dumps(body).encode() if body is not None else None,
                     headers=headers)
        resp = conn.getresponse()
        return json.loads(resp.read())
    finally:
        conn.close()


def _ws_answer(ws, waiting: set, events: Optional[List[int]] = None) -> None:
    """Read frames until every request id in ``waiting`` is answered; anything else (props events,
    heartbeats) is read, parsed and discarded (events counted into ``events[0]``)."""
    while waiting:
        frame = ws.recv(timeout=10)
        if frame.startswith("a"):
            items = json.loads(frame[1:])
            waiting -= {m.get("i") for m in items}
            if events is not None:
                events[0] += sum(1 for m in items if m.get("e") == "props")


# The product's broker state subscribes its socket to these (phantom_scraper.tradovate.broker_state.SYNC_ENTITY_TYPES);
# copied here so that the floor does not depend on the product's code.
SYNC_ENTITY_TYPES = ("user", "account", "position", "order", "orderVersion", "fill", "orderStrategy",
                     "orderStrategyLink", "cashBalance")


def _ws_floor(sim: SimProcess, token: str, body, accounts: List[dict], *, n: int, warmup: int,
              sync_accounts: Optional[List[dict]] = None
              ) -> Tuple[List[float], Dict[int, List[float]], Dict[int, int]]:
    """One authorized raw socket: n x (1 placeorder -> its answer), then n x (13 / 50 frames back to
    back -> the last answer).  With ``sync_accounts`` the socket first sends ``user/syncrequest`` for
    them, as the product's pool does, so the simulator pushes every order's ``props`` events on it too
    (read and discarded here, in the same single reader).  Returns the latencies and, per size,
    how many props events were read."""
    from websockets.sync.client import connect

    one: List[float] = []
    fan_lat: Dict[int, List[float]] = {}
    props: Dict[int, int] = {}
    events = [0]
    with connect(sim.ws_url, compression=None, open_timeout=10, close_timeout=1,
                 max_size=64 * 1024 * 1024) as ws:
        assert ws.recv(timeout=10).startswith("o")
        ws.send(f"authorize\n0\n\n{token}")
        _ws_answer(ws, {0})
        rid = 1
        if sync_accounts is not None:
            sync = {"accounts": sorted(a["id"] for a in sync_accounts), "entityTypes": list(SYNC_ENTITY_TYPES)}
            ws.send(f"user/syncrequest\n{rid}\n\n{json.dumps(sync, separators=(',', ':'))}")
            _ws_answer(ws, {rid})
            rid += 1
        for i in range(warmup + n):
            t0 = time.perf_counter()
            ws.send(f"order/placeorder\n{rid}\n\n{body('ws', i)}")
            _ws_answer(ws, {rid}, events)
            rid += 1
            if i >= warmup:
                one.append((time.perf_counter() - t0) * 1000.0)
        props[1], events[0] = events[0], 0
        # Fan-out floor (issue 17): one frame per account written back to back, until the last answer.
        for size in (13, 50):
            accts = accounts[:size]
            if len(accts) < size:
                continue
            fan_lat[size] = []
            for i in range(warmup + n):
                first = rid
                t0 = time.perf_counter()
                for k, acct in enumerate(accts):
                    ws.send(f"order/placeorder\n{rid}\n\n{body(f'fan{size}-{k}', i, acct)}")
                    rid += 1
                _ws_answer(ws, set(range(first, rid)), events)
                if i >= warmup:
                    fan_lat[size].append((time.perf_counter() - t0) * 1000.0)
            props[size], events[0] = events[0], 0
    return one, fan_lat, props


def floor_rows(sim: SimProcess, *, rtt: float, n: int, warmup: int) -> List[dict]:
    """Minimal clients straight to the simulator: one placeorder per round trip, nothing else.

    What the network + broker cost when the product costs nothing: the same simulator, the same
    injected RTT, a raw WebSocket frame (authorized once) and a raw keep-alive HTTP POST.  The
    "raw WS + user sync" rows (issue 17) are the same raw socket after a ``user/syncrequest`` for the
    login's accounts, as the product's pool sends: the simulator then generates and pushes every
    order's ``props`` events on it, which the raw client reads and discards - the floor of what
    the product must do on its socket.
    """
    sim.reset(response_latency_ms=0.0)
    token = _sim_rest(sim, "POST", "auth/accesstokenrequest",
                      {"name": "demo", "password": "demo", "appId": "bench", "appVersion": "1", "cid": "0",
                       "sec": ""})["accessToken"]
    all_accounts = sorted(_sim_rest(sim, "GET", "account/list", token=token), key=lambda a: a["name"])
    account = next(a for a in all_accounts if a["name"] == "DEMO0001")
    demo = [a for a in all_accounts if a["name"].startswith("DEMO")]
    contract = _sim_rest(sim, "GET", "contract/suggest?t=MNQ&l=1", token=token)[0]["name"]
    sim.set_faults(response_latency_ms=rtt)

    def make_body(prefix: str):
        def body(tag: str, i: int, acct=None) -> str:
            acct = acct or account
            return json.dumps({"accountSpec": acct["name"], "accountId": acct["id"],
                               "action": "Buy" if i % 2 == 0 else "Sell", "symbol": contract, "orderQty": 1,
                               "orderType": "Market", "isAutomated": True,
                               "clOrdId": f"{prefix}-{RUN}-{tag}-{rtt:g}-{i}"}, separators=(",", ":"))
        return body

    rows = []
    ws_lat, fan_lat, _ = _ws_floor(sim, token, make_body("floor"), demo, n=n, warmup=warmup)
    # the same, on a socket subscribed to the login's accounts (the product's recorders hold all 50)
    sync_lat, sync_fan, sync_props = _ws_floor(sim, token, make_body("floorsync"), demo, n=n, warmup=warmup,
                                   sync_accounts=demo[:SIM_ACCOUNTS])
    body = make_body("floor")
    rest_lat: List[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    try:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            conn.request("POST", "/v1/order/placeorder", body=body("rest", i).encode(),
                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            if i >= warmup:
                rest_lat.append((time.perf_counter() - t0) * 1000.0)
    finally:
        conn.close()
    floors = [("0-ws", "(0) floor: raw WS placeorder -> answer, simulator only", ws_lat, 1),
              ("0-rest", "(0) floor: raw keep-alive REST placeorder, simulator only", rest_lat, 1)]
    floors += [(f"0-ws-{size}", f"(0) floor: raw WS, {size} accounts' frames -> last answer", lat, size)
               for size, lat in fan_lat.items()]
    floors.append(("0-sync-1", "(0) floor: raw WS + user sync, 1 account -> answer", sync_lat, 1))
    floors += [(f"0-sync-{size}", f"(0) floor: raw WS + user sync, {size} accounts -> last answer", lat, size)
               for size, lat in sync_fan.items()]
    for key, title, lat, accounts in floors:
        row = {"key": key, "title": title, "rtt_ms": rtt, "accounts": accounts, "latency_ms": summarize(lat),
               "errors": 0, "samples_ms": [round(x, 3) for x in lat]}
        if key.startswith("0-sync"):
            row["sync"] = "user/syncrequest for the login's 50 accounts after authorize; props read and discarded"
            row["props_events_read"] = sync_props.get(accounts)  # warm-up included; proves they came
        s = row["latency_ms"]
        print(f"  {title:<52} RTT {rtt:>4g}  n={s['n']:<4} p50 {s['p50']!s:>8}  p99 {s['p99']!s:>8}", flush=True)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# row 7: gunicorn, the Procfile's command

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile_command(port: int) -> List[str]:
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    cmd = line.split(":", 1)[1].strip().replace("$PORT", str(port)).replace("0.0.0.0", "127.0.0.1")
    args = shlex.split(cmd)
    local = Path(sys.executable).parent / args[0]
    if local.exists():
        args[0] = str(local)
    return args


def _get_json(port: int, path: str) -> Tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, None
    finally:
        conn.close()


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _children(pid: int) -> List[int]:
    try:
        return [int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def gunicorn_rows(workdir: Path, sim: SimProcess, *, seconds: float, clients: int, rtts: List[float], n: int,
                  warmup: int, latency_rows: List[dict], py_spy: Optional[str] = None,
                  rows: Tuple[str, ...] = ("1g", "7")) -> Optional[dict]:
    """Row 1 again through gunicorn (sequential, each RTT) into ``latency_rows``; then row 7.

    ``rows`` chooses (``--only``); returns row 7's result, or None when row 7 was not chosen."""
    sim.reset(response_latency_ms=0.0, connect_latency_ms=0.0)
    port = _free_port()
    token = f"bench-{RUN}-gunicorn"
    env = dict(os.environ, PORT=str(port), TRADOVATE_ENV="sim", TRADOVATE_REST_URL=sim.rest_url,
               TRADOVATE_WS_URL=sim.ws_url, TRADOVATE_USERNAME="demo", TRADOVATE_PASSWORD="demo",
               TRADOVATE_ACCOUNTS="DEMO0001", WEBHOOK_SECRET=token, ADMIN_TOKEN=token,
               DATABASE_PATH=str(workdir / "gunicorn.sqlite3"))
    for var in ("RECORDERS_FILE", "USE_WEBSOCKET_ORDERS"):
        env.pop(var, None)
    cmd = procfile_command(port)
    log = open(workdir / "gunicorn.log", "w")
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    result: Dict[str, Any] = {"key": "7", "title": "(7) sustained throughput, gunicorn (Procfile), RTT 0",
                              "command": " ".join(shlex.quote(a) for a in cmd), "seconds": seconds,
                              "client_threads": clients}
    try:
        deadline = time.monotonic() + 40
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _body = _get_json(port, "/health")
                if status == 200:
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.1)
        if not ready:
            raise RuntimeError(f"gunicorn did not become ready (see {workdir / 'gunicorn.log'})")
        path = f"/webhook/{token}"
        # warm up until an order goes over the pooled socket (the pool connects in the background)
        warm = Client(port)
        on_socket = 0
        for i in range(400):
            _status, doc = warm.post(path, signal_body("tp-warm", i))
            if [o.get("transport") for o in doc.get("accounts") or []] == ["websocket"]:
                on_socket += 1
                if on_socket >= 10:
                    break
            else:
                time.sleep(0.05)
        warm.close()
        if on_socket < 10:
            raise RuntimeError("gunicorn's orders never went over the pooled WebSocket")

        class _Port:
            pass
        target = _Port()
        target.port = port
        for rtt in rtts if "1g" in rows else ():
            latency_rows.append(latency_row("1g", "(1g) = (1) served by gunicorn (Procfile command)", target, sim,
                                            rtt=rtt, n=n, accounts=1, transport="websocket", warmup=warmup,
                                            path=path))
        if "7" not in rows:
            return None
        sim.reset(response_latency_ms=0.0)
        workers = _children(proc.pid)
        cpu_before = {"gunicorn_worker": sum(_cpu_s(w) for w in workers), "simulator": _cpu_s(sim.proc.pid),
                      "bench_clients": sum(os.times()[:2])}
        spy = None
        if py_spy and workers:  # sample the worker during row 7 (py-spy must be installed; not a dependency)
            exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            spy = subprocess.Popen([exe, "record", "--pid", str(workers[0]), "--duration", str(int(seconds)),
                                    "--rate", "250", "--nonblocking", "--gil", "--format", "raw", "--output", py_spy],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached before the load starts
        results: List[List[tuple]] = [[] for _ in range(clients)]
        failures = [0] * clients
        start_evt = threading.Event()
        t_start = [0.0]
        stop_at = [0.0]

        def worker(idx: int) -> None:
            c = Client(port)
            start_evt.wait()
            i = 0
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                try:
                    status, doc = c.post(path, signal_body(f"tp{idx}", i))
                except OSError:
                    failures[idx] += 1
                    c.close()
                    continue
                t1 = time.perf_counter()
                results[idx].append((status, doc.get("signal_id"), doc.get("status"), (t1 - t0) * 1000.0,
                                     [o.get("transport") for o in doc.get("accounts") or []]))
                i += 1
            c.close()

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
        for t in threads:
            t.start()
        t_start[0] = time.perf_counter()
        stop_at[0] = t_start[0] + seconds
        start_evt.set()
        for t in threads:
            t.join(seconds + 60)
        elapsed = time.perf_counter() - t_start[0]
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
            result["py_spy_raw"] = py_spy
        cpu_after = {"gunicorn_worker": sum(_cpu_s(w) for w in workers), "simulator": _cpu_s(sim.proc.pid),
                     "bench_clients": sum(os.times()[:2])}
        flat = [r for rs in results for r in rs]
        acked_2xx = [r for r in flat if 200 <= r[0] < 300 and r[1]]
        # let 202s (execution continuing) land, then read the book of record
        last, stable_since = -1, time.monotonic()
        settle_deadline = time.monotonic() + 20
        book: List[dict] = []
        while time.monotonic() < settle_deadline:
            book = sim.orders()
            if len(book) != last:
                last, stable_since = len(book), time.monotonic()
            elif time.monotonic() - stable_since > 1.0:
                break
            time.sleep(0.25)
        cl_counts: Dict[str, int] = {}
        per_signal: Dict[str, int] = {}
        for order in book:
            cl = order.get("clOrdId") or ""
            cl_counts[cl] = cl_counts.get(cl, 0) + 1
            if cl.startswith("ps-"):
                sid = cl[3:].rsplit("-", 2)[0]
                per_signal[sid] = per_signal.get(sid, 0) + 1
        acked_ids = [r[1] for r in acked_2xx]
        lost = [sid for sid in acked_ids if per_signal.get(sid, 0) == 0]
        dup_cl = {cl: c for cl, c in cl_counts.items() if c > 1}
        dup_signal = {sid: c for sid, c in per_signal.items() if c > 1}
        extra = set(per_signal) - set(acked_ids)
        statuses: Dict[str, int] = {}
        for r in flat:
            k = f"{r[0]} {r[2]}"
            statuses[k] = statuses.get(k, 0) + 1
        transports: Dict[str, int] = {}
        for r in flat:
            for t in r[4]:
                transports[t or "none"] = transports.get(t or "none", 0) + 1
        result.update({
            "elapsed_s": round(elapsed, 3),
            "requests": len(flat),
            "acknowledged_2xx": len(acked_2xx),
            "signals_per_s": round(len(acked_2xx) / elapsed, 1) if elapsed else None,
            "latency_ms": summarize([r[3] for r in flat]),
            "responses": statuses,
            "transports": transports,
            "client_errors": sum(failures),
            "book_orders": len(book),
            "lost": len(lost),
            "duplicated_clordid": len(dup_cl),
            "duplicated_signal_orders": len(dup_signal),
            "orders_without_acknowledged_signal": len(extra),
            "lost_samples": lost[:5],
            "cpu_s": {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_before},
            "cpu_ms_per_signal": {k: (round((cpu_after[k] - cpu_before[k]) * 1000 / len(acked_2xx), 3)
                                      if acked_2xx else None) for k in cpu_before},
        })
    finally:
        if proc.poll() is None:
            proc.send_signal(signal_mod.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
    print(f"  {result['title']:<52} {result.get('signals_per_s')} signals/s, lost {result.get('lost')}, "
          f"duplicated {result.get('duplicated_clordid')}/{result.get('duplicated_signal_orders')}", flush=True)
    return result


# ---------------------------------------------------------------------------------------------
# --door-compare: the Procfile's worker (gthread + front door) against plain gthread (issue 19)

def _gunicorn_env(workdir: Path, sim: SimProcess, port: int, token: str, name: str) -> Dict[str, str]:
    env = dict(os.environ, PORT=str(port), TRADOVATE_ENV="sim", TRADOVATE_REST_URL=sim.rest_url,
               TRADOVATE_WS_URL=sim.ws_url, TRADOVATE_USERNAME="demo", TRADOVATE_PASSWORD="demo",
               TRADOVATE_ACCOUNTS="DEMO0001", WEBHOOK_SECRET=token, ADMIN_TOKEN=token,
               DATABASE_PATH=str(workdir / f"{name}.sqlite3"))
    for var in ("RECORDERS_FILE", "USE_WEBSOCKET_ORDERS"):
        env.pop(var, None)
    return env


def _wait_warm(proc: subprocess.Popen, port: int, path: str, log_path: Path) -> None:
    """Ready, and orders going over the pooled WebSocket."""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if _get_json(port, "/health")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError(f"gunicorn did not become ready (see {log_path})")
    warm, on_socket = Client(port), 0
    try:
        for i in range(400):
            _status, doc = warm.post(path, signal_body(f"door-warm-{port}", i))
            if [o.get("transport") for o in doc.get("accounts") or []] == ["websocket"]:
                on_socket += 1
                if on_socket >= 10:
                    return
            else:
                time.sleep(0.05)
    finally:
        warm.close()
    raise RuntimeError("gunicorn's orders never went over the pooled WebSocket")


def door_compare(workdir: Path, sim: SimProcess, *, rtts: List[float], n: int, warmup: int,
                 rounds: int = 10) -> List[dict]:
    """Row 1g through two gunicorns at once - the Procfile's command (front door) and the same
    command with ``--worker-class gthread`` (before issue 19) - sampled in alternating blocks of
    n/rounds signals so that machine load drifts over both alike."""
    variants: Dict[str, List[str]] = {}
    procs: Dict[str, Tuple[subprocess.Popen, int, str, Any]] = {}
    for name in ("door", "gthread"):
        port = _free_port()
        cmd = procfile_command(port)
        if name == "gthread":
            cmd[cmd.index("--worker-class") + 1] = "gthread"
        variants[name] = cmd
        token = f"bench-{RUN}-{name}"
        log_path = workdir / f"gunicorn-{name}.log"
        log = open(log_path, "w")
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=_gunicorn_env(workdir, sim, port, token, name),
                                stdout=log, stderr=subprocess.STDOUT)
        procs[name] = (proc, port, token, log)
    rows: List[dict] = []
    try:
        sim.reset(response_latency_ms=0.0, connect_latency_ms=0.0)
        for name, (proc, port, token, _log) in procs.items():
            _wait_warm(proc, port, f"/webhook/{token}", workdir / f"gunicorn-{name}.log")
        for rtt in rtts:
            sim.reset(response_latency_ms=rtt)
            samples: Dict[str, List[float]] = {name: [] for name in procs}
            errors: Dict[str, int] = {name: 0 for name in procs}
            clients = {name: Client(port) for name, (_p, port, _t, _l) in procs.items()}
            try:
                for name, client in clients.items():  # warm-up on each keep-alive connection
                    for i in range(warmup):
                        client.post(f"/webhook/{procs[name][2]}", signal_body(f"dw-{name}-{rtt:g}", i))
                per_block = max(1, n // rounds)
                for block in range(rounds):
                    order = list(procs) if block % 2 == 0 else list(reversed(list(procs)))
                    for name in order:
                        path = f"/webhook/{procs[name][2]}"
                        for i in range(per_block):
                            body = signal_body(f"d-{name}-{rtt:g}", block * per_block + i)
                            t0 = time.perf_counter()
                            status, doc = clients[name].post(path, body)
                            ms = (time.perf_counter() - t0) * 1000.0
                            outcomes = doc.get("accounts") or []
                            if status == 200 and doc.get("status") == "acked" and \
                                    [o.get("transport") for o in outcomes] == ["websocket"]:
                                samples[name].append(ms)
                            else:
                                errors[name] += 1
            finally:
                for client in clients.values():
                    client.close()
            for name in procs:
                rows.append({"key": f"1g-{name}", "rtt_ms": rtt, "errors": errors[name],
                             "title": f"(1g) gunicorn, {'front door (Procfile)' if name == 'door' else 'plain gthread (before)'}",
                             "command": " ".join(shlex.quote(a) for a in variants[name]),
                             "latency_ms": summarize(samples[name])})
            d, g = rows[-2]["latency_ms"], rows[-1]["latency_ms"]
            if d["n"] and g["n"]:
                print(f"  RTT {rtt:g}: door p50 {d['p50']:.3f} ms, gthread p50 {g['p50']:.3f} ms, "
                      f"difference {d['p50'] - g['p50']:+.3f} ms (p90 {d['p90'] - g['p90']:+.3f}, "
                      f"p99 {d['p99'] - g['p99']:+.3f}); errors {errors}", flush=True)
    finally:
        for name, (proc, _port, _token, log) in procs.items():
            if proc.poll() is None:
                proc.send_signal(signal_mod.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            log.close()
    return rows


# ---------------------------------------------------------------------------------------------
# the table

def _fmt(v, width=8) -> str:
    if v is None:
        return "-".rjust(width)
    return f"{v:{width}.2f}"


def _yes(ok: Optional[bool]) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def _check(issue: str, what: str, value, target: str, met: bool) -> dict:
    return {"issue": issue, "what": what, "value": value, "target": target, "met": met}


def evaluate(doc: dict) -> List[dict]:
    """Every target beside its figure, labelled with the issue that set it (7, then 17).

    Works on any run's JSON, also one written by an older bench.latency (a row it lacks is skipped)."""
    return issue7_targets(doc) + issue17_targets(doc)


def _rows_by_key(doc: dict) -> List[Tuple[Tuple[str, float], dict]]:
    rows = {(r["key"], r["rtt_ms"]): r for r in doc.get("rows") or []}
    return sorted(rows.items(), key=lambda kv: (kv[0][1], ROW_ORDER.get(kv[0][0], 99), kv[0][0]))


def _n(summary: Optional[dict]) -> bool:
    return bool(summary and summary.get("n"))


def issue7_targets(doc: dict) -> List[dict]:
    checks = []
    for (key, rtt), r in _rows_by_key(doc):
        s = r["latency_ms"]
        if key == "1g" and s["n"]:
            checks.append(_check("7", f"(1g) gunicorn p50 at RTT {rtt:g}", s["p50"], f"<= {rtt + 2:g}",
                                 s["p50"] <= rtt + 2))
            checks.append(_check("7", f"(1g) gunicorn p99 at RTT {rtt:g}", s["p99"], f"<= {rtt + 10:g}",
                                 s["p99"] <= rtt + 10))
        if key == "1" and s["n"]:
            checks.append(_check("7", f"(1) p50 at RTT {rtt:g}", s["p50"], f"<= {rtt + 2:g}", s["p50"] <= rtt + 2))
            checks.append(_check("7", f"(1) p99 at RTT {rtt:g}", s["p99"], f"<= {rtt + 10:g}",
                                 s["p99"] <= rtt + 10))
            o = r.get("overhead_minus_rtt_ms")
            if _n(o):
                checks.append(_check("7", f"(5) (1) minus RTT, p50, RTT {rtt:g}", o["p50"], "<= 1", o["p50"] <= 1.0))
            w = r.get("webhook_received_to_first_frame_ms")
            if _n(w):
                checks.append(_check("7", f"(5) webhook received -> order frame written, p50, RTT {rtt:g}",
                                     w["p50"], "<= 1", w["p50"] <= 1.0))
        if key.startswith("6-") and s["n"]:
            size = r["accounts"]
            limit = {13: 1.2 * rtt + 5, 50: 1.5 * rtt + 10}.get(size)
            if limit is not None:
                checks.append(_check("7", f"(6) {size} accounts all acked, p50, RTT {rtt:g}", s["p50"],
                                     f"<= {limit:g}", s["p50"] <= limit))
    ratios_all = doc.get("ratios") or {}
    for rtt, ratios in ratios_all.items():
        if float(rtt) == 50.0 or float(rtt) == max(float(k) for k in ratios_all):
            if ratios.get("(3)/(1)") is not None:
                checks.append(_check("7", f"(3)/(1) p50 ratio at RTT {rtt}", ratios["(3)/(1)"], ">= 2.5",
                                     ratios["(3)/(1)"] >= 2.5))
            if ratios.get("(4)/(1)") is not None:
                checks.append(_check("7", f"(4)/(1) p50 ratio at RTT {rtt}", ratios["(4)/(1)"], ">= 3",
                                     ratios["(4)/(1)"] >= 3.0))
    tp = doc.get("throughput")
    if tp and tp.get("signals_per_s") is not None:
        checks.append(_check("7", "(7) sustained signals/s (gunicorn, RTT 0)", tp["signals_per_s"], ">= 300",
                             tp["signals_per_s"] >= 300))
        checks.append(_check("7", "(7) lost orders", tp["lost"], "== 0", tp["lost"] == 0))
        dup = tp["duplicated_clordid"] + tp["duplicated_signal_orders"]
        checks.append(_check("7", "(7) duplicated orders", dup, "== 0", dup == 0))
    return checks


def issue17_targets(doc: dict) -> List[dict]:
    """Issue 17's table ("Hot path"), for whichever of its rows this run has."""
    checks = []
    for (key, rtt), r in _rows_by_key(doc):
        if not _n(r.get("latency_ms")):
            continue
        if key == "1":
            w = r.get("webhook_received_to_first_frame_ms")
            if _n(w):
                checks.append(_check("17", f"webhook received -> order frame written, 1 account, p50, RTT {rtt:g}",
                                     w["p50"], "<= 0.5", w["p50"] <= 0.5))
        if key in ("1", "1g"):
            o = r.get("overhead_minus_rtt_ms")
            if _n(o):
                what = "webhook -> ack minus RTT, 1 account" if key == "1" else "(1g) gunicorn: webhook -> ack minus RTT"
                checks.append(_check("17", f"{what}, p50, RTT {rtt:g}", o["p50"], "<= 1.5", o["p50"] <= 1.5))
                checks.append(_check("17", f"{what}, p99, RTT {rtt:g}", o["p99"], "<= 4", o["p99"] <= 4.0))
        s = r["latency_ms"]
        if key == "6-13" and rtt == 0:
            checks.append(_check("17", "fan-out 13 accounts, last ack, p50, RTT 0", s["p50"], "<= 4", s["p50"] <= 4.0))
        if key == "6-50" and rtt == 0:
            checks.append(_check("17", "fan-out 50 accounts, last ack, p50, RTT 0", s["p50"], "<= 10",
                                 s["p50"] <= 10.0))
        if key == "6-50":
            o = r.get("first_to_last_frame_ms")
            if _n(o):
                checks.append(_check("17", f"spread first -> last account's frame, 50 accounts, p50, RTT {rtt:g}",
                                     o["p50"], "<= 2", o["p50"] <= 2.0))
    tp = doc.get("throughput")
    if tp and tp.get("signals_per_s") is not None:
        dup = tp["duplicated_clordid"] + tp["duplicated_signal_orders"]
        checks.append(_check("17", "(7) gunicorn throughput, 1 account, 0 lost / 0 duplicated",
                             f"{tp['signals_per_s']}/s, lost {tp['lost']}, duplicated {dup}",
                             ">= 500/s, 0, 0", tp["signals_per_s"] >= 500 and tp["lost"] == 0 and dup == 0))
    return checks


def render(doc: dict) -> str:
    out = []
    m = doc["machine"]
    out.append(f"Signal-to-order latency benchmark  {doc['date']}  ({m['nproc']} cores, {m['cpu']}, "
               f"Python {m['python']})  N={doc['config']['n']} per row")
    out.append("ms; client POST /webhook/<token> -> HTTP response (= every account's broker ack); "
               "RTT = simulator response_latency_ms; connect charge = 2 x RTT on rows 3, 4")
    header = f"{'row':<58}{'RTT':>5}{'n':>5}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}  target"
    out.append(header)
    out.append("-" * len(header))
    for r in doc["rows"]:
        s = r["latency_ms"]
        rtt = r["rtt_ms"]
        target = ""
        if r["key"] in ("1", "1g"):
            target = f"p50 <= {rtt + 2:g}, p99 <= {rtt + 10:g}  ({_yes(s['p50'] is not None and s['p50'] <= rtt + 2)}/" \
                     f"{_yes(s['p99'] is not None and s['p99'] <= rtt + 10)})"
        elif r["key"] == "6-13":
            lim = 1.2 * rtt + 5
            target = f"p50 <= {lim:g}  ({_yes(s['p50'] is not None and s['p50'] <= lim)})"
        elif r["key"] == "6-50":
            lim = 1.5 * rtt + 10
            target = f"p50 <= {lim:g}  ({_yes(s['p50'] is not None and s['p50'] <= lim)})"
        if r.get("errors"):
            target += f"  [{r['errors']} errors]"
        if r.get("transport_mismatch"):
            target += f"  [transport {r['transport_mismatch']}]"
        out.append(f"{r['title']:<58}{rtt:>5g}{s['n']:>5}{_fmt(s['p50'])}{_fmt(s['p90'])}{_fmt(s['p99'])}"
                   f"{_fmt(s['max'])}  {target}")
        if r["key"].startswith("6-") and r["key"] != "6-1" and r.get("first_to_last_frame_ms"):
            o = r["first_to_last_frame_ms"]  # issue 17: spread between the first and last account's frame
            tgt = "p50 <= 2  (" + _yes(o["p50"] is not None and o["p50"] <= 2.0) + ")" if r["key"] == "6-50" else ""
            out.append(f"{'  (6) first -> last account frame written':<58}{rtt:>5g}{o['n']:>5}{_fmt(o['p50'])}"
                       f"{_fmt(o['p90'])}{_fmt(o['p99'])}{_fmt(o['max'])}  {tgt}")
        if r["key"] == "1":
            for label, field in (("  (5) (1) minus RTT", "overhead_minus_rtt_ms"),
                                 ("  (5) webhook received -> order frame written", "webhook_received_to_first_frame_ms"),
                                 ("  (5) order ack -> response built", "last_ack_to_response_built_ms"),
                                 ("  (5) client send -> simulator executed (book time)", "client_send_to_sim_first_exec_ms")):
                o = r[field]
                tgt = "p50 <= 1  (" + _yes(o["p50"] is not None and o["p50"] <= 1.0) + ")" \
                    if field in ("overhead_minus_rtt_ms", "webhook_received_to_first_frame_ms") else ""
                out.append(f"{label:<58}{rtt:>5g}{o['n']:>5}{_fmt(o['p50'])}{_fmt(o['p90'])}{_fmt(o['p99'])}"
                           f"{_fmt(o['max'])}  {tgt}")
    out.append("")
    out.append("ratios of p50 (p99 in brackets) against (1) at the same RTT:")
    for rtt, ratios in doc["ratios"].items():
        parts = []
        for name in ("(2)/(1)", "(3)/(1)", "(4)/(1)"):
            v = ratios.get(name)
            v99 = ratios.get(name + " p99")
            if v is None and v99 is None:  # a row not run (--only)
                continue
            tgt = {"(3)/(1)": " (target >= 2.5)", "(4)/(1)": " (target >= 3)"}.get(name, "")
            parts.append(f"{name} {v if v is not None else '-'}x [{v99 if v99 is not None else '-'}x]{tgt}")
        out.append(f"  RTT {rtt:>4}: " + (";  ".join(parts) if parts else "(rows 2-4 not run)"))
        if ratios.get("(1) minus floor p50") is not None:
            out.append(f"            (1) minus floor (0-ws): p50 {ratios['(1) minus floor p50']} ms, "
                       f"p99 {ratios['(1) minus floor p99']} ms;  (1g) minus floor p50 "
                       f"{ratios.get('(1g) minus floor p50', '-')} ms  (the product's own cost)")
    tp = doc.get("throughput")
    if tp:
        out.append("")
        if "signals_per_s" in tp:
            lat = tp["latency_ms"]
            out.append(f"(7) gunicorn (Procfile command), RTT 0, {tp['client_threads']} client threads, "
                       f"{tp['elapsed_s']} s: {tp['signals_per_s']} signals/s (target >= 300: "
                       f"{_yes(tp['signals_per_s'] >= 300)}); {tp['acknowledged_2xx']} acknowledged of "
                       f"{tp['requests']} requests; lost {tp['lost']}, duplicated clOrdId {tp['duplicated_clordid']}, "
                       f"signals with >1 order {tp['duplicated_signal_orders']} (target 0: "
                       f"{_yes(tp['lost'] == 0 and tp['duplicated_clordid'] == 0 and tp['duplicated_signal_orders'] == 0)})")
            out.append(f"    responses {tp['responses']}; transports {tp['transports']}; per-request latency "
                       f"p50 {lat['p50']} p99 {lat['p99']} max {lat['max']} ms")
            out.append(f"    CPU per signal (ms): {tp.get('cpu_ms_per_signal')}")
        else:
            out.append(f"(7) failed: {tp.get('error')}")
    out.append("")
    out.append("targets (issue 7's, then issue 17's):")
    for c in doc["targets"]:
        out.append(f"  {_yes(c['met']):<7} [issue {c.get('issue', '7')}] {c['what']}: {c['value']} "
                   f"(target {c['target']})")
    return "\n".join(out)


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    git = {}
    try:
        git["head"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(ROOT), capture_output=True,
                                     text=True, timeout=10).stdout.strip()
        git["uncommitted_files"] = len([l for l in subprocess.run(
            ["git", "status", "--short"], cwd=str(ROOT), capture_output=True, text=True, timeout=10).stdout.splitlines() if l])
    except (OSError, subprocess.SubprocessError):
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_at_start": load, "git": git}


def maybe_plot(doc: dict, out_path: Path) -> Optional[str]:
    try:
        import matplotlib  # noqa: F401  (only if already installed; not a dependency)
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    fig, ax = plt.subplots(figsize=(11, 6))
    for r in doc["rows"]:
        vals = sorted(r.get("samples_ms") or [])
        if vals:
            ax.plot(vals, [100.0 * (i + 1) / len(vals) for i in range(len(vals))],
                    label=f"{r['title']} RTT {r['rtt_ms']:g}")
    ax.set_xscale("log")
    ax.set_xlabel("ms (log)")
    ax.set_ylabel("percentile")
    ax.legend(fontsize=6)
    png = out_path.with_suffix(".png")
    fig.savefig(png, dpi=110)
    return str(png)


# ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="N=30, throughput 2 s")
    ap.add_argument("--n", type=int, default=None, help="orders per row (default 200; --quick 30)")
    ap.add_argument("--rtts", default="0,50", help="comma list of injected RTTs in ms (default 0,50)")
    ap.add_argument("--throughput-s", type=float, default=None, help="row 7 duration (default 20; --quick 2)")
    ap.add_argument("--clients", type=int, default=16, help="row 7 client threads")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--py-spy", default=None, metavar="FILE",
                    help="row 7: sample the gunicorn worker with py-spy, non-blocking (collapsed stacks to FILE; "
                         "summarise with python -m bench.pyspy_summary FILE)")
    ap.add_argument("--door-compare", action="store_true",
                    help="only row (1g), front door vs plain gthread side by side (issue 19)")
    ap.add_argument("--rounds", type=int, default=10, help="--door-compare: alternating blocks per RTT")
    ap.add_argument("--only", default=None, metavar="ROWS",
                    help="comma list of rows to run, e.g. 1,1g,6-13,6-50,7 or floor (6 = every fan-out row); "
                         "the floors of the chosen RTTs always run")
    ap.add_argument("--baseline", default=None, metavar="REF",
                    help="also run git ref REF's own bench.latency (its tree from git archive, in a subprocess) "
                         "with the same arguments, and print before/after side by side with this run's floor")
    ap.add_argument("--baseline-sandwich", action="store_true",
                    help="--baseline: after, before, then after again (drift on a shared machine shows)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = ap.parse_args(argv)
    try:
        rows = parse_only(args.only)
    except ValueError as exc:
        ap.error(str(exc))
    if args.baseline_sandwich and not args.baseline:
        ap.error("--baseline-sandwich needs --baseline REF")
    if args.baseline:
        if args.door_compare:
            ap.error("--baseline does not combine with --door-compare")
        from bench import compare
        return compare.run(args)
    n = args.n if args.n is not None else (30 if args.quick else 200)
    seconds = args.throughput_s if args.throughput_s is not None else (2.0 if args.quick else 20.0)
    rtts = [float(x) for x in args.rtts.split(",") if x.strip()]
    warmup = 3 if n < 20 else 10
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    logging.basicConfig(filename=str(workdir / "server.log"), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from phantom_scraper import redact
    redact.install()
    install_hooks()

    started = time.time()
    doc: Dict[str, Any] = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                           "machine": machine_info(),
                           "config": {"n": n, "warmup": warmup, "rtts_ms": rtts, "throughput_s": seconds,
                                      "client_threads": args.clients, "quick": args.quick, "symbol": SYMBOL,
                                      "only": list(rows) if args.only else None,
                                      "workdir": str(workdir),
                                      "server_rows_1_6": "ultra_simple_server.create_app() on werkzeug "
                                                         "make_server(threaded=True), in the benchmark process",
                                      "simulator": "python -m phantom_scraper.tradovate_sim, own process"},
                           "rows": []}
    print(f"bench.latency: N={n} per row, RTTs {rtts} ms, "
          f"{('rows ' + ','.join(rows) + ' + floors' if rows else 'floors only') if args.only else 'every row'}, "
          f"workdir {workdir}", flush=True)
    sim = SimProcess(workdir)
    if args.door_compare:
        try:
            doc["rows"] = door_compare(workdir, sim, rtts=rtts, n=n, warmup=warmup, rounds=args.rounds)
        finally:
            sim.stop()
        doc["duration_s"] = round(time.time() - started, 1)
        doc["machine"]["loadavg_at_end"] = os.getloadavg()
        lines = [f"{'row':<48} {'RTT':>5} {'n':>5} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}"]
        for r in doc["rows"]:
            s_ = r["latency_ms"]
            lines.append(f"{r['title']:<48} {r['rtt_ms']:>5g} {s_['n']:>5} {_fmt(s_['p50'])} {_fmt(s_['p90'])} "
                         f"{_fmt(s_['p99'])} {_fmt(s_['max'])}")
        doc["table"] = "\n".join(lines)
        out_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        print()
        print(doc["table"])
        print(f"\nJSON: {out_path}; took {doc['duration_s']} s; logs in {workdir}")
        return 0
    try:
        recorders = write_recorders(workdir, sim)
        # -- the floor: simulator only
        for rtt in rtts:
            doc["rows"].extend(floor_rows(sim, rtt=rtt, n=n, warmup=warmup))
        # -- WebSocket server: rows 1, 4, 6
        if any(k == "1" or k == "4" or k.startswith("6-") for k in rows):
            server = InProcessServer(workdir, sim, recorders, websocket=True, name="ws")
            try:
                for rtt in rtts:
                    if "1" in rows:
                        doc["rows"].append(latency_row("1", "(1) webhook -> ack, pooled WebSocket", server, sim,
                                                       rtt=rtt, n=n, accounts=1, transport="websocket",
                                                       warmup=warmup))
                    if "4" in rows:
                        MODE["ws_new_connection"] = True
                        try:
                            doc["rows"].append(latency_row("4", "(4) WebSocket, new connection + authorize per order",
                                                           server, sim, rtt=rtt, n=n, accounts=1,
                                                           transport="websocket", warmup=warmup,
                                                           connect_latency_ms=2 * rtt))
                        finally:
                            MODE["ws_new_connection"] = False
                    for size in FANOUT_SIZES:
                        if f"6-{size}" in rows:
                            doc["rows"].append(latency_row(f"6-{size}",
                                                           f"(6) fan-out: 1 signal -> {size} accounts, pooled WS",
                                                           server, sim, rtt=rtt, n=n, accounts=size,
                                                           transport="websocket", warmup=warmup))
            finally:
                server.stop()
        # -- REST server (use_websocket_orders=False): rows 2, 3
        if "2" in rows or "3" in rows:
            server = InProcessServer(workdir, sim, recorders, websocket=False, name="rest")
            try:
                for rtt in rtts:
                    if "2" in rows:
                        doc["rows"].append(latency_row("2", "(2) webhook -> ack, REST, persistent Session", server,
                                                       sim, rtt=rtt, n=n, accounts=1, transport="rest",
                                                       warmup=warmup))
                    if "3" in rows:
                        MODE["rest_new_connection"] = True
                        try:
                            doc["rows"].append(latency_row("3", "(3) REST, new connection per order", server, sim,
                                                           rtt=rtt, n=n, accounts=1, transport="rest",
                                                           warmup=warmup, connect_latency_ms=2 * rtt))
                        finally:
                            MODE["rest_new_connection"] = False
            finally:
                server.stop()
        # -- gunicorn: row 1 again (1g), then row 7
        gunicorn_keys = tuple(k for k in ("1g", "7") if k in rows)
        if gunicorn_keys and not args.skip_throughput:
            try:
                tp = gunicorn_rows(workdir, sim, seconds=seconds, clients=args.clients, rtts=rtts,
                                   py_spy=args.py_spy, n=n, warmup=warmup, latency_rows=doc["rows"],
                                   rows=gunicorn_keys)
                if tp is not None:
                    doc["throughput"] = tp
            except Exception as exc:  # reported in the table and the JSON, not hidden
                doc["throughput"] = {"key": "7", "error": f"{type(exc).__name__}: {exc}"}
                print(f"  (1g/7) failed: {exc}", flush=True)
        doc["rows"].sort(key=lambda r: (r["rtt_ms"], ROW_ORDER.get(r["key"], 99)))
        # -- ratios
        doc["ratios"] = {}
        for rtt in rtts:
            by = {r["key"]: r["latency_ms"] for r in doc["rows"] if r["rtt_ms"] == rtt}
            base = by.get("1")
            ratios = {}
            for k in ("2", "3", "4"):
                if base and base["n"] and by.get(k) and by[k]["n"]:
                    ratios[f"({k})/(1)"] = round(by[k]["p50"] / base["p50"], 2)
                    ratios[f"({k})/(1) p99"] = round(by[k]["p99"] / base["p99"], 2)
            floor = by.get("0-ws")
            if base and base["n"] and floor and floor["n"]:
                ratios["(1) minus floor p50"] = round(base["p50"] - floor["p50"], 3)
                ratios["(1) minus floor p99"] = round(base["p99"] - floor["p99"], 3)
            g = by.get("1g")
            if g and g["n"] and floor and floor["n"]:
                ratios["(1g) minus floor p50"] = round(g["p50"] - floor["p50"], 3)
            doc["ratios"][f"{rtt:g}"] = ratios
    finally:
        sim.stop()
    doc["machine"]["loadavg_at_end"] = os.getloadavg()
    doc["duration_s"] = round(time.time() - started, 1)
    doc["targets"] = evaluate(doc)
    png = maybe_plot(doc, out_path)
    if png:
        doc["plot"] = png
    table = render(doc)
    doc["table"] = table
    out_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print()
    print(table)
    print(f"\nJSON: {out_path}" + (f"; plot: {png}" if png else "; plot: skipped (matplotlib not installed)")
          + f"; took {doc['duration_s']} s; logs in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
