"""A compressed trading day, many logins (issue 29): flat latency, bounded memory, fast lanes.

    .venv/bin/python -m bench.soak                       # the default scale (~12 min on 2 cores)
    .venv/bin/python -m bench.soak --logins 10 --accounts 5 --signals 20000 --hours 8 --hour-s 240
                                                         # the issue's full scale (~35 min)
    .venv/bin/python -m bench.soak --quick               # a smoke run (~1 min)
    options: --logins L --accounts A --signals N --hours H --hour-s S --burst N --fanout-n N
             --rtts 0,50 --out bench/results/soak.json --keep (leave the work directory)

What runs (all on 127.0.0.1):

* The Tradovate simulator in its own process (``--sim-child``: ``L`` users ``soak00..``, ``A``
  accounts each), RTT 0 for the day.
* The product under gunicorn, started with the Procfile's command, a ``RECORDERS_FILE`` with one
  login per simulator user and one recorder per login (its ``A`` accounts, MNQ), one recorder over
  every account (``fan``: the fan-out, MES), one over three accounts of the first login (``burst``,
  M2K); SQLite journal in the work directory; housekeeping every tenth of a simulated hour.
* A simulated hour lasts ``--hour-s`` real seconds.  One client thread per recorder sends that
  recorder's share of the hour's signals at random times (waiting for each answer, as one
  strategy's alerts come one after another): entries with brackets (ticks), plain adds,
  scale-outs (``close`` with a quantity), reversals (``sentiment``), closes, strategy-position
  alerts; every signal carries an explicit id.  A price walker moves MNQ and MES every 100 ms so
  bracket legs fill.  At 90 % of each hour the prices stop, every recorder sends a position alert
  with a known target and the simulator's positions are compared with it (exact or not).
* Events: hour 2, the simulator expires every token (renewal); hour 3, it closes every socket (drop);
  at the start of hour ``H // 2 + 1`` gunicorn is stopped (SIGTERM) and started again (restart).
* Per simulated hour: p50/p99 webhook -> answer, the fan-out's answer (last order) and its
  first-to-last spread in the simulator's book, the worker's RSS, open fds, threads, the journal's
  size (file + WAL), the broker state's held orders, GC pauses (>= 1 ms, from the status),
  requests per login per simulated hour and the peak per simulated minute (``/api/websocket-status``
  ``request_budget`` totals sampled every simulated minute) against Tradovate's 80/minute and
  5,000/hour.
* After the day: the burst (``--burst`` signals at once on the burst recorder: orders/s, exact
  position, the lane's turnaround gap = the next order's arrival at the broker minus the previous
  order's execution on the same account, from the simulator's book, split at the moment the next
  order's intent was journaled (the journal's ``created_at``)), and the fan-out to every
  account across all logins at each RTT of ``--rtts`` (answer, last order, first-to-last spread).
* At the end, from the journal file and the simulator's book: lost orders (an acked intent the
  broker never received; a 2xx-answered signal missing from the journal), duplicated orders (a
  clOrdId twice in the book), orders in the book the journal does not know, intents left unknown.

Figures on a shared machine are noisy; the load average is recorded with them.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal as signal_mod
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench.latency import ROOT, Client, _children, _free_port, _get_json, _pct, procfile_command

DAY_SYMBOL, FAN_SYMBOL, BURST_SYMBOL = "MNQ1!", "MES1!", "M2K1!"
RUN = f"{int(time.time()) % 100000:05d}"


# ---------------------------------------------------------------------------------------------
# the simulator with many users, in its own process

def sim_child(argv: List[str]) -> int:
    """``python -m bench.soak --sim-child L A``: the simulator with L users of A accounts."""
    from phantom_scraper.tradovate_sim import Simulator
    from phantom_scraper.tradovate_sim.config import SimConfig, UserSpec
    from phantom_scraper.tradovate_sim.daybook import freeze_process
    logins, accounts = int(argv[0]), int(argv[1])
    users = tuple(UserSpec.with_accounts(f"soak{i:02d}", "pw", accounts, prefix=f"S{i:02d}A") for i in range(logins))
    sim = Simulator(SimConfig(host="127.0.0.1", port=0, ws_port=0, users=users)).start()
    freeze_process()  # as python -m phantom_scraper.tradovate_sim does
    stop = threading.Event()
    for signum in (signal_mod.SIGINT, signal_mod.SIGTERM):
        signal_mod.signal(signum, lambda *_: stop.set())
    print(f"REST {sim.rest_url}\nWS {sim.ws_url}\nMD {sim.md_url}", flush=True)
    while not stop.wait(0.5):
        pass
    sim.stop()
    return 0


class Sim:
    def __init__(self, workdir: Path, logins: int, accounts: int):
        self._log = open(workdir / "simulator.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.soak", "--sim-child", str(logins), str(accounts)],
                                     cwd=str(ROOT), stdout=subprocess.PIPE, stderr=self._log, text=True)
        urls = {}
        deadline = time.monotonic() + 60
        while len(urls) < 3 and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            kind, _, url = line.strip().partition(" ")
            urls[kind] = url
        if len(urls) < 3:
            raise RuntimeError(f"simulator did not start; see {workdir / 'simulator.log'}")
        self.rest_url, self.ws_url, self.md_url = urls["REST"], urls["WS"], urls["MD"]
        self.port = int(self.rest_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    def control(self, method: str, path: str, body: Optional[dict] = None, timeout: float = 60) -> Any:
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, "/control" + path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"control {path}: HTTP {resp.status} {raw[:200]!r}")
            return json.loads(raw)
        finally:
            conn.close()

    def positions(self) -> Dict[tuple, int]:
        return {(r["accountSpec"], r["symbol"]): int(r["netPos"]) for r in self.control("GET", "/positions")}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal_mod.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


# ---------------------------------------------------------------------------------------------
# the product under gunicorn

class Server:
    def __init__(self, workdir: Path, sim: Sim, recorders: Path, token: str, hour_s: float):
        self.workdir, self.sim, self.token = workdir, sim, token
        self.db = workdir / "journal.sqlite3"
        self.env = dict(os.environ, TRADOVATE_ENV="sim", RECORDERS_FILE=str(recorders), DATABASE_PATH=str(self.db),
                        ADMIN_TOKEN=token, WEBHOOK_SECRET=token, TRADOVATE_REST_URL=sim.rest_url,
                        TRADOVATE_WS_URL=sim.ws_url, TRADOVATE_MD_URL=sim.md_url, LOG_LEVEL="INFO",
                        HOUSEKEEPING_INTERVAL_S=str(max(1.0, hour_s / 10)),
                        BROKER_STATE_KEEP_S=str(max(2.0, min(120.0, hour_s / 6))))
        for var in ("TRADOVATE_USERNAME", "TRADOVATE_PASSWORD", "TRADOVATE_ACCOUNTS", "DATABASE_URL"):
            self.env.pop(var, None)
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    def start(self) -> None:
        self.port = _free_port()
        self.env["PORT"] = str(self.port)
        self.starts += 1
        self._log = open(self.workdir / f"gunicorn-{self.starts}.log", "w")
        self.proc = subprocess.Popen(procfile_command(self.port), cwd=str(ROOT), env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                status, body = self.status()
                if status == 200 and body.get("service_state") == "ready" and all(
                        c.get("ws_connected") for c in body.get("connection_pool", {}).get("connections", {}).values()):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not become ready (see {self._log.name})")

    def status(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/api/websocket-status", headers={"Authorization": f"Bearer {self.token}"})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if resp.status == 200 else {}
        finally:
            conn.close()

    def worker(self) -> Optional[int]:
        kids = _children(self.proc.pid) if self.proc else []
        return kids[0] if kids else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal_mod.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def proc_figures(pid: Optional[int]) -> Dict[str, Any]:
    if pid is None:
        return {}
    out: Dict[str, Any] = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                out["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


# ---------------------------------------------------------------------------------------------
# the day's signals

def make_recorders(workdir: Path, sim: Sim, logins: int, accounts: int, token: str) -> Path:
    os.environ["SOAK_PASSWORD"] = "pw"
    names = {i: [f"S{i:02d}A{j:04d}" for j in range(1, accounts + 1)] for i in range(logins)}
    recs = [{"name": f"r{i:02d}", "webhook_token_env": f"SOAK_TOKEN_R{i:02d}",
             "accounts": [{"login": f"l{i:02d}", "account": a} for a in names[i]]} for i in range(logins)]
    recs.append({"name": "fan", "webhook_token_env": "SOAK_TOKEN_FAN",
                 "accounts": [{"login": f"l{i:02d}", "account": a} for i in range(logins) for a in names[i]]})
    recs.append({"name": "burst", "webhook_token_env": "SOAK_TOKEN_BURST",
                 "accounts": [{"login": "l00", "account": a} for a in names[0][:3]]})
    for rec in recs:
        os.environ[rec["webhook_token_env"]] = f"{token}-{rec['name']}"
    doc = {"logins": {f"l{i:02d}": {"env": "sim", "username": f"soak{i:02d}", "password_env": "SOAK_PASSWORD",
                                    "rest_url": sim.rest_url, "ws_url": sim.ws_url} for i in range(logins)},
           "recorders": recs}
    path = workdir / "recorders.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


KINDS = (("bracket", 30), ("add", 15), ("scale_out", 15), ("reversal", 15), ("close", 10), ("position", 15))


def day_signal(rng: random.Random, kind: str, sid: str, price: Optional[float]) -> dict:
    side = rng.choice(("buy", "sell"))
    if kind == "bracket":  # (as TradingView sends it: the bar's close, distances in ticks)
        return {"action": side, "ticker": DAY_SYMBOL, "quantity": rng.randint(1, 2), "id": sid, "price": price,
                "takeProfit": {"ticks": rng.choice((8, 12, 16))}, "stopLoss": {"ticks": rng.choice((8, 12, 16))}}
    if kind == "add":
        return {"action": side, "ticker": DAY_SYMBOL, "quantity": 1, "id": sid}
    if kind == "scale_out":
        return {"action": "close", "ticker": DAY_SYMBOL, "quantity": 1, "id": sid}
    if kind == "reversal":
        return {"action": side, "sentiment": "long" if side == "buy" else "short", "ticker": DAY_SYMBOL,
                "quantity": 2, "id": sid}
    if kind == "close":
        return {"action": "close", "ticker": DAY_SYMBOL, "id": sid}
    size = rng.randint(0, 3)
    return {"action": side, "position": ("long" if side == "buy" else "short") if size else "flat",
            "position_size": size, "ticker": DAY_SYMBOL, "id": sid}


class Recorder:
    """One strategy's alerts: sent one after another on one keep-alive connection."""

    def __init__(self, name: str, token: str, accounts: List[str]):
        self.name, self.token, self.accounts = name, token, accounts
        self.client: Optional[Client] = None
        self.port = None

    def post(self, port: int, body: dict):
        if self.client is None or self.port != port:
            if self.client is not None:
                self.client.close()
            self.client, self.port = Client(port, timeout=60), port
        t0 = time.perf_counter()
        status, doc = self.client.post(f"/webhook/{self.token}", json.dumps(body).encode())
        return status, doc, (time.perf_counter() - t0) * 1000.0, time.time() - (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# the run

class Day:
    def __init__(self, args, workdir: Path):
        self.args, self.workdir = args, workdir
        self.rng = random.Random(args.seed)
        self.token = f"soak-{RUN}"
        self.sim = Sim(workdir, args.logins, args.accounts)
        rec_path = make_recorders(workdir, self.sim, args.logins, args.accounts, self.token)
        doc = json.loads(rec_path.read_text())
        self.recorders = {r["name"]: Recorder(r["name"], os.environ[r["webhook_token_env"]],
                                              [a["account"] for a in r["accounts"]]) for r in doc["recorders"]}
        self.server = Server(workdir, self.sim, rec_path, self.token, args.hour_s)
        self.sent: List[dict] = []  # every signal: recorder, id, status code, ms, hour, answer status
        self.sent_lock = threading.Lock()
        self.hours: List[dict] = []
        self.budget_samples: List[tuple] = []  # (hour, t, {login: total})
        self.events: List[str] = []
        self.contracts: Dict[str, str] = {}

    # -- helpers -------------------------------------------------------------------------------
    def send(self, rec: Recorder, body: dict, hour: Any) -> dict:
        try:
            status, doc, ms, t_sent = rec.post(self.server.port, body)
        except OSError as exc:
            status, doc, ms, t_sent = 0, {"error": str(exc)}, float("nan"), time.time()
        row = {"recorder": rec.name, "id": body.get("id"), "http": status, "ms": ms, "hour": hour, "t": t_sent,
               "status": doc.get("status"), "signal_id": doc.get("signal_id"),
               "orders": sum(len(a.get("order_ids") or []) for a in doc.get("accounts") or []),
               "error": "{code}/{field}".format(**doc["error"]) if isinstance(doc.get("error"), dict)
               and "code" in doc["error"] and "field" in doc["error"] else (doc.get("error") or {}).get("code")
               if isinstance(doc.get("error"), dict) else doc.get("error")}
        if doc.get("contract"):
            self.contracts[body.get("ticker")] = doc["contract"]
        with self.sent_lock:
            self.sent.append(row)
        return row

    def price_walker(self, stop: threading.Event) -> None:
        prices = self.prices
        while not stop.wait(0.1):
            for name, p in prices.items():
                p += self.rng.choice((-1, 1)) * self.rng.choice((0.25, 0.5, 1.0, 2.0))
                prices[name] = p
                try:
                    self.sim.control("POST", "/price", {"symbol": name, "price": p})
                except (OSError, RuntimeError):
                    pass

    def sampler(self, stop: threading.Event, hour_ref: list) -> None:
        period = self.args.hour_s / 60.0
        while not stop.wait(period):
            try:
                code, st = self.server.status()
            except OSError:
                continue
            if code == 200:
                totals = {k: v.get("total", 0) for k, v in (st.get("request_budget") or {}).items()}
                self.budget_samples.append((hour_ref[0], time.monotonic(), totals))

    def wait_positions(self, expected: Dict[tuple, int], timeout_s: float = 60.0) -> Dict[tuple, tuple]:
        deadline = time.monotonic() + timeout_s
        while True:
            have = self.sim.positions()
            wrong = {k: (have.get(k, 0), v) for k, v in expected.items() if have.get(k, 0) != v}
            if not wrong or time.monotonic() > deadline:
                return wrong
            time.sleep(0.25)

    # -- the day -------------------------------------------------------------------------------
    def run(self) -> dict:
        a = self.args
        self.server.start()
        day_recs = [r for n, r in self.recorders.items() if n.startswith("r")]
        for rec in day_recs + [self.recorders["fan"]]:  # warm-up: each lane's first request, the contracts
            self.send(rec, {"action": "close", "ticker": FAN_SYMBOL if rec.name == "fan" else DAY_SYMBOL,
                            "id": f"{RUN}-warm-{rec.name}"}, "warm")
        self.send(self.recorders["burst"], {"action": "close", "ticker": BURST_SYMBOL, "id": f"{RUN}-warm-burst"}, "warm")
        self.prices = {}
        for sym in (DAY_SYMBOL, FAN_SYMBOL):
            name = self.contracts.get(sym)
            if name:
                self.prices[name] = float(self.sim.control("GET", f"/price?symbol={name}")["price"])
        per_hour = max(1, a.signals // a.hours)
        restart_at = a.hours // 2 + 1 if a.hours >= 3 and a.events else None
        hour_ref = [0]
        stop_sampler = threading.Event()
        sampler = threading.Thread(target=self.sampler, args=(stop_sampler, hour_ref), daemon=True)
        sampler.start()
        day_t0 = time.monotonic()
        for hour in range(1, a.hours + 1):
            hour_ref[0] = hour
            if hour == restart_at:
                t = time.monotonic()
                self.server.stop()
                self.server.start()
                self.events.append(f"hour {hour}: restart (SIGTERM, start, ready: {time.monotonic() - t:.1f} s)")
            self.run_hour(hour, per_hour, day_recs)
        stop_sampler.set()
        sampler.join(5)
        result = {"day_s": round(time.monotonic() - day_t0, 1), "hours": self.hours, "events": self.events}
        result["burst"] = self.burst(a.burst) if a.burst else None
        result["fanout"] = [self.fanout(rtt, a.fanout_n) for rtt in a.rtts] if a.fanout_n else []
        result["server_end"] = self.sample_server()
        self.server.stop()
        result["exactly_once"] = self.check_journal()
        result["requests_by_hour"] = self.requests_by_hour()
        return result

    def run_hour(self, hour: int, n: int, recs: List[Recorder]) -> None:
        a = self.args
        t_hour = time.monotonic()
        wall_t0 = time.time()
        trading_s = a.hour_s * 0.85
        stop_prices = threading.Event()
        walker = threading.Thread(target=self.price_walker, args=(stop_prices,), daemon=True)
        walker.start()
        if hour == 2 and a.events:
            threading.Timer(a.hour_s * 0.4, self._event, args=(hour, "expire-tokens", "token renewal")).start()
        if hour == 3 and a.events:
            threading.Timer(a.hour_s * 0.4, self._event, args=(hour, "close-all-sockets", "socket drop")).start()
        share = {r.name: n // len(recs) + (1 if i < n % len(recs) else 0) for i, r in enumerate(recs)}
        kinds, weights = zip(*KINDS)

        def strategy(rec: Recorder, count: int, seed: int) -> None:
            rng = random.Random(seed)
            times = sorted(rng.uniform(0, trading_s) for _ in range(count))
            for i, at in enumerate(times):
                delay = t_hour + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                kind = rng.choices(kinds, weights)[0]
                row = self.send(rec, day_signal(rng, kind, f"{RUN}-{rec.name}-h{hour}-{i}",
                                                self.prices.get(self.contracts.get(DAY_SYMBOL))), hour)
                row["kind"] = kind

        def fan() -> None:
            rec = self.recorders["fan"]
            for i in range(a.fan_per_hour):
                delay = t_hour + trading_s * (i + 0.5) / a.fan_per_hour - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                side = "buy" if i % 2 == 0 else "sell"
                row = self.send(rec, {"action": side, "ticker": FAN_SYMBOL, "quantity": 1, "id": f"{RUN}-fan-h{hour}-{i}"},
                                hour)
                row["fan"] = True
        threads = [threading.Thread(target=strategy, args=(r, share[r.name], hour * 1000 + k), daemon=True)
                   for k, r in enumerate(recs)] + [threading.Thread(target=fan, daemon=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop_prices.set()
        walker.join(5)
        # the checkpoint: every strategy to a known position, compared with the broker's
        target = (hour % 3) + 1
        side = "buy" if hour % 2 else "sell"
        expected = {}
        for rec in recs:
            self.send(rec, {"action": side, "position": "long" if side == "buy" else "short", "position_size": target,
                            "ticker": DAY_SYMBOL, "id": f"{RUN}-{rec.name}-h{hour}-checkpoint"}, f"{hour}-checkpoint")
            for acct in rec.accounts:
                expected[(acct, self.contracts.get(DAY_SYMBOL))] = target if side == "buy" else -target
        wrong = self.wait_positions(expected)
        rows = [r for r in self.sent if r["hour"] == hour]
        ms = sorted(r["ms"] for r in rows if not r.get("fan") and r["http"])
        fan_ms = sorted(r["ms"] for r in rows if r.get("fan") and r["http"])
        fig = {"hour": hour, "signals": len(rows), "http": dict(collections.Counter(r["http"] for r in rows)),
               "errors": dict(collections.Counter(r["error"] for r in rows if r.get("error"))),
               "p50_ms": round(_pct(ms, 50), 1) if ms else None, "p99_ms": round(_pct(ms, 99), 1) if ms else None,
               "fan_p50_ms": round(_pct(fan_ms, 50), 1) if fan_ms else None,
               "fan_max_ms": round(fan_ms[-1], 1) if fan_ms else None,
               "positions_exact": not wrong, "positions_wrong": {f"{k[0]}": v for k, v in list(wrong.items())[:5]},
               "real_s": round(time.monotonic() - t_hour, 1)}
        # where the tail is: p50/p99 per kind of signal, and the slowest signals of the hour
        by_kind = collections.defaultdict(list)
        for r in rows:
            if r.get("kind") and r["http"]:
                by_kind[r["kind"]].append(r["ms"])
        fig["by_kind"] = {k: {"n": len(v), "p50_ms": round(_pct(sorted(v), 50), 1), "p99_ms": round(_pct(sorted(v), 99), 1)}
                          for k, v in sorted(by_kind.items())}
        fig["slowest"] = [{"kind": r.get("kind"), "ms": round(r["ms"], 1), "at_s": round(r["t"] - wall_t0, 2),
                           "status": r.get("status"), "recorder": r["recorder"]}
                          for r in sorted((r for r in rows if not r.get("fan") and r["http"]),
                                          key=lambda r: -r["ms"])[:8]]
        fig.update(self.sample_server())
        remaining = t_hour + a.hour_s - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        self.hours.append(fig)
        print(f"  hour {hour}: {fig}", flush=True)

    def _event(self, hour: int, what: str, label: str) -> None:
        try:
            answer = self.sim.control("POST", f"/{what}", {})
            self.events.append(f"hour {hour}: {label} ({what}: {answer})")
        except (OSError, RuntimeError) as exc:
            self.events.append(f"hour {hour}: {label} FAILED: {exc}")

    def sample_server(self) -> dict:
        out = proc_figures(self.server.worker())
        try:
            out["journal_mb"] = round(sum(p.stat().st_size for p in self.workdir.glob("journal.sqlite3*")) / 1e6, 2)
        except OSError:
            pass
        try:
            code, st = self.server.status()
        except OSError:
            code, st = 0, {}
        if code == 200:
            conns = (st.get("connection_pool") or {}).get("connections") or {}
            # (one connection entry per account: a login's socket and state once)
            held = list({str(c.get("login")): c.get("broker_state", {}) for c in conns.values()}.values())
            out["orders_held"] = sum(h.get("orders_held", 0) for h in held)
            out["orders_pruned"] = sum(h.get("orders_pruned", 0) for h in held)
            out["orders_left_out"] = sum(h.get("orders_left_out_at_sync", 0) for h in held)
            gcs = st.get("gc") or {}
            out["gc"] = {k: gcs.get(k) for k in ("collections", "total_ms", "max_ms", "pauses_over_1ms", "gen2",
                                                 "idle_passes", "last_idle_pass_ms", "last_idle_pass_objects")}
            keeper = st.get("housekeeping") or {}
            out["fills_pending"] = keeper.get("fills_pending")
            out["budget_warning"] = [k for k, v in (st.get("request_budget") or {}).items() if v.get("warning")]
        return out

    def requests_by_hour(self) -> dict:
        """Per simulated hour: the most requests one login sent in it, and the peak of one login in
        one simulated minute (samples every hour_s / 60 real seconds)."""
        out = {}
        by_hour = collections.defaultdict(list)
        for hour, t, totals in self.budget_samples:
            by_hour[hour].append((t, totals))
        for hour, samples in sorted(by_hour.items()):
            hour_max, minute_peak = 0, 0
            for login in samples[-1][1]:
                series = [s[1].get(login, 0) for s in samples]
                # a restart resets a process's counters: count only increases
                deltas = [max(0, b - a) for a, b in zip(series, series[1:])]
                hour_max = max(hour_max, sum(deltas))
                minute_peak = max(minute_peak, max(deltas, default=0))
            out[hour] = {"max_login_per_hour": hour_max, "max_login_per_minute": minute_peak,
                         "hour_share": round(hour_max / 5000, 3), "minute_share": round(minute_peak / 80, 3)}
        return out

    # -- after the day ---------------------------------------------------------------------------
    def burst(self, n: int) -> dict:
        rec = self.recorders["burst"]
        before = self.sim.positions()
        contract = self.contracts.get(BURST_SYMBOL)
        bodies = [{"action": "buy" if i % 3 else "sell", "ticker": BURST_SYMBOL, "quantity": 1,
                   "id": f"{RUN}-burst-{i}"} for i in range(n)]
        net = sum(1 if b["action"] == "buy" else -1 for b in bodies)
        book_before = len(self.sim.control("GET", "/orders"))
        handover_before = (self.server.status()[1].get("lanes") or {}).get("handover") or {}
        clients = [Recorder(rec.name, rec.token, rec.accounts) for _ in range(16)]
        queue = list(enumerate(bodies))
        lock = threading.Lock()
        t0 = time.time()

        def worker(c: Recorder) -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    _i, body = queue.pop(0)
                self.send(c, body, "burst")
        threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expected = {(a, contract): before.get((a, contract), 0) + net for a in rec.accounts}
        wrong = self.wait_positions(expected)
        book = [o for o in self.sim.control("GET", "/orders")[book_before:] if o.get("symbol") == contract]
        times = sorted(o["time"] for o in book)
        span = (times[-1] - t0) if times else float("nan")
        # the lane's turnaround, per account: the previous order executed at the broker -> the next
        # order's intent journaled (its fill event reached the server, the lane woke, planned) ->
        # the next order at the broker (journal commit, frame, loopback)
        created = self.intent_times()
        gaps, to_intent, to_broker = [], [], []
        by_acct = collections.defaultdict(list)
        for o in book:
            by_acct[o["accountSpec"]].append(o)
        for orders in by_acct.values():
            orders.sort(key=lambda o: o["time"])
            for prev, nxt in zip(orders, orders[1:]):
                gaps.append((nxt["time"] - prev["time"]) * 1000)
                at = created.get(nxt.get("clOrdId"))
                if at is not None:
                    to_intent.append((at - prev["time"]) * 1000)
                    to_broker.append((nxt["time"] - at) * 1000)
        gaps.sort(), to_intent.sort(), to_broker.sort()
        ms = sorted(r["ms"] for r in self.sent if r["hour"] == "burst")
        # the server's own hand-over (execution/handover.py): the previous orders' final event
        # applied -> the lane's next job started (the broker and the loopback not in it)
        handover = (self.server.status()[1].get("lanes") or {}).get("handover") or {}
        handovers = handover.get("count", 0) - handover_before.get("count", 0)
        return {"signals": n, "orders": len(book), "seconds": round(span, 3),
                "orders_per_s": round(len(book) / span, 1) if span and span > 0 else None,
                "answer_p50_ms": round(_pct(ms, 50), 1), "answer_p99_ms": round(_pct(ms, 99), 1),
                "lane_gap_p50_ms": round(_pct(gaps, 50), 2) if gaps else None,
                "lane_gap_p99_ms": round(_pct(gaps, 99), 2) if gaps else None,
                "gap_to_next_intent_p50_ms": round(_pct(to_intent, 50), 2) if to_intent else None,
                "gap_intent_to_broker_p50_ms": round(_pct(to_broker, 50), 2) if to_broker else None,
                "handover_n": handovers, "handover_p50_ms": handover.get("p50_ms") if handovers else None,
                "handover_p99_ms": handover.get("p99_ms") if handovers else None,
                "positions_exact": not wrong, "positions_wrong": {k[0]: v for k, v in wrong.items()}}

    def intent_times(self) -> Dict[str, float]:
        """clOrdId -> when its intent was journaled (the server's clock; one machine)."""
        conn = sqlite3.connect(f"file:{self.server.db}?mode=ro", uri=True)
        try:
            return {r[0]: r[1] for r in conn.execute("SELECT cl_ord_id, created_at FROM order_intents")}
        finally:
            conn.close()

    def fanout(self, rtt: float, n: int) -> dict:
        rec = self.recorders["fan"]
        self.sim.control("POST", "/faults", {"response_latency_ms": float(rtt)})
        contract = self.contracts.get(FAN_SYMBOL)
        answers, lasts, spreads = [], [], []
        try:
            for i in range(n):
                book_before = len(self.sim.control("GET", "/orders"))
                t0 = time.time()
                row = self.send(rec, {"action": "buy" if i % 2 == 0 else "sell", "ticker": FAN_SYMBOL, "quantity": 1,
                                      "id": f"{RUN}-fanout-{rtt}-{i}"}, f"fanout-{rtt}")
                book = [o for o in self.sim.control("GET", "/orders")[book_before:] if o.get("symbol") == contract]
                answers.append(row["ms"])
                if book:
                    ts = sorted(o["time"] for o in book)
                    lasts.append((ts[-1] - t0) * 1000)
                    spreads.append((ts[-1] - ts[0]) * 1000)
        finally:
            self.sim.control("POST", "/faults", {"response_latency_ms": 0.0})
        answers.sort(), lasts.sort(), spreads.sort()
        return {"rtt_ms": rtt, "accounts": len(rec.accounts), "logins": self.args.logins, "n": n,
                "answer_p50_ms": round(_pct(answers, 50), 1), "answer_p99_ms": round(_pct(answers, 99), 1),
                "last_order_p50_ms": round(_pct(lasts, 50), 1) if lasts else None,
                "last_order_p99_ms": round(_pct(lasts, 99), 1) if lasts else None,
                "spread_p50_ms": round(_pct(spreads, 50), 1) if spreads else None,
                "spread_p99_ms": round(_pct(spreads, 99), 1) if spreads else None}

    def check_journal(self) -> dict:
        book = self.sim.control("GET", "/orders")
        cl_counts = collections.Counter(o["clOrdId"] for o in book if o.get("clOrdId"))
        conn = sqlite3.connect(str(self.server.db))
        conn.row_factory = sqlite3.Row
        intents = conn.execute("SELECT cl_ord_id, state, broker_order_id, kind FROM order_intents").fetchall()
        signals = {r["dedupe_key"]: r["status"] for r in conn.execute(
            "SELECT dedupe_key, status FROM signals WHERE dedupe_key IS NOT NULL AND duplicate_of IS NULL")}
        conn.close()
        journal_cl = {r["cl_ord_id"] for r in intents}
        book_ids = {o.get("orderId") for o in book if o.get("orderId") is not None}
        # (a liquidation carries no clOrdId at the broker: found by its order id)
        lost_orders = [r["cl_ord_id"] for r in intents if r["state"] in ("acked", "reconciled")
                       and r["cl_ord_id"] not in cl_counts and r["broker_order_id"] not in book_ids]
        answered = [r for r in self.sent if 200 <= (r["http"] or 0) < 300 and r["id"]]
        lost_signals = [r["id"] for r in answered if r["id"] not in signals]
        states = collections.Counter(r["state"] for r in intents)
        return {"book_orders": len(book), "intents": len(intents), "intent_states": dict(states),
                "lost_orders": len(lost_orders), "lost_signals": len(lost_signals),
                "duplicated_orders": sum(c - 1 for c in cl_counts.values() if c > 1),
                "book_orders_not_journaled": sum(1 for cl in cl_counts if cl not in journal_cl),
                "unknown_intents": states.get("unknown", 0) + states.get("sending", 0),
                "signals_sent": len(self.sent), "signals_2xx": len(answered),
                "signal_statuses": dict(collections.Counter(signals.values())),
                "examples": {"lost_orders": lost_orders[:5], "lost_signals": lost_signals[:5]}}


# ---------------------------------------------------------------------------------------------

def render(doc: dict) -> str:
    lines = [f"soak: {doc['scale']} -- load average before {doc['loadavg_before']}, after {doc['loadavg_after']}",
             "", "| sim hour | signals | p50 ms | p99 ms | fan-out (all accounts) p50 / max ms | RSS MB | fds | threads | "
             "journal MB | orders held / pruned / left out at sync | GC >=1ms (max ms) | req/login/h max | req/login/min peak | positions |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    reqs = doc["result"].get("requests_by_hour", {})
    for h in doc["result"]["hours"]:
        r = reqs.get(h["hour"]) or reqs.get(str(h["hour"])) or {}
        gc = h.get("gc") or {}
        lines.append(f"| {h['hour']} | {h['signals']} | {h['p50_ms']} | {h['p99_ms']} | {h['fan_p50_ms']} / {h['fan_max_ms']} "
                     f"| {h.get('rss_mb')} | {h.get('fds')} | {h.get('threads')} | {h.get('journal_mb')} | "
                     f"{h.get('orders_held')} / {h.get('orders_pruned')} / {h.get('orders_left_out')} | "
                     f"{gc.get('pauses_over_1ms')} ({gc.get('max_ms')}) | "
                     f"{r.get('max_login_per_hour')} ({r.get('hour_share')}) | {r.get('max_login_per_minute')} "
                     f"({r.get('minute_share')}) | {'exact' if h['positions_exact'] else 'WRONG'} |")
    res = doc["result"]
    lines += ["", "p50 / p99 ms by kind of signal:", ""]
    kinds = sorted({k for h in res["hours"] for k in (h.get("by_kind") or {})})
    lines += ["| sim hour | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for h in res["hours"]:
        bk = h.get("by_kind") or {}
        lines.append(f"| {h['hour']} | " + " | ".join(
            f"{bk[k]['p50_ms']} / {bk[k]['p99_ms']} (n {bk[k]['n']})" if k in bk else "" for k in kinds) + " |")
    lines += ["", "slowest signals per hour (kind ms @ seconds into the hour):"]
    for h in res["hours"]:
        lines.append(f"  hour {h['hour']}: " + ", ".join(f"{s['kind']} {s['ms']} @{s['at_s']}" for s in h.get("slowest") or []))
    lines += ["", "events: " + "; ".join(res["events"]), "", f"burst: {res.get('burst')}"]
    for f in res.get("fanout") or []:
        lines.append(f"fan-out: {f}")
    lines += [f"exactly once: {res['exactly_once']}", f"server at the end: {res.get('server_end')}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--sim-child"]:
        return sim_child(argv[1:])
    p = argparse.ArgumentParser(prog="python -m bench.soak")
    p.add_argument("--logins", type=int, default=10)
    p.add_argument("--accounts", type=int, default=5, help="accounts per login")
    p.add_argument("--signals", type=int, default=4000, help="the day's signals (all recorders)")
    p.add_argument("--hours", type=int, default=6, help="simulated hours")
    p.add_argument("--hour-s", type=float, default=100.0, help="real seconds per simulated hour")
    p.add_argument("--fan-per-hour", type=int, default=6, help="fan-outs to every account per simulated hour")
    p.add_argument("--burst", type=int, default=150)
    p.add_argument("--fanout-n", type=int, default=20)
    p.add_argument("--rtts", default="0,50")
    p.add_argument("--seed", type=int, default=29)
    p.add_argument("--no-events", dest="events", action="store_false",
                   help="no token renewal, socket drop or restart (what grows without them)")
    p.add_argument("--quick", action="store_true", help="2 logins x 2 accounts, 240 signals, 3 hours of 20 s")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.json"))
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.logins, args.accounts, args.signals, args.hours, args.hour_s = 2, 2, 240, 3, 20.0
        args.fan_per_hour, args.burst, args.fanout_n = 2, 30, 4
    args.rtts = [float(x) for x in str(args.rtts).split(",") if x.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    scale = (f"{args.logins} logins x {args.accounts} accounts, {args.signals} signals over {args.hours} simulated "
             f"hours of {args.hour_s:g} s, {args.fan_per_hour} fan-outs/hour, burst {args.burst}, fan-out n {args.fanout_n}"
             f" at RTT {args.rtts}")
    print(f"soak: {scale}; work directory {workdir}", flush=True)
    doc: Dict[str, Any] = {"scale": scale, "args": {k: v for k, v in vars(args).items()},
                           "loadavg_before": open("/proc/loadavg").read().split()[:3],
                           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    try:
        doc["git_head"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(ROOT), capture_output=True,
                                         text=True).stdout.strip()
    except OSError:
        pass
    day = Day(args, workdir)
    try:
        doc["result"] = day.run()
    finally:
        try:
            day.server.stop()
        except Exception:  # noqa: BLE001
            pass
        day.sim.stop()
    doc["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    doc["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    text = render(doc)
    print(text)
    print(f"\nwritten {out}; work directory {workdir}{' (kept)' if args.keep else ''}")
    if not args.keep:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
