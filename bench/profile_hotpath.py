"""Where the in-process time of one webhook goes (a diagnostic, not part of the benchmark).

    .venv/bin/python -m bench.profile_hotpath [--n 300] [--rtt 0] [--accounts 1] [--cprofile]

Same set-up as rows 1/6 of ``bench.latency`` (simulator in its own process, the product's Flask
app on a werkzeug threaded server in this process).  Wraps the functions on the hot path with
``perf_counter`` (in this process only) and prints, per signal, the median time of each step and
of each thread hand-off.  ``--cprofile`` also runs cProfile in every thread started after set-up
(request thread, executor threads, the socket's loop thread) and prints the top functions.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import logging
import pstats
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

from bench import latency as L

EVENTS: List[tuple] = []  # (label, start, end)
MARKS: Dict[str, float] = {}


def timed(owner, name: str, label: str) -> None:
    orig = getattr(owner, name, None)
    if orig is None:  # the product moved it: skip (this is a diagnostic)
        return
    if asyncio.iscoroutinefunction(orig):
        @functools.wraps(orig)
        async def wrapper(*a, **k):
            t = time.perf_counter()
            MARKS[label + ":start"] = t
            try:
                return await orig(*a, **k)
            finally:
                EVENTS.append((label, t, time.perf_counter()))
    else:
        @functools.wraps(orig)
        def wrapper(*a, **k):
            t = time.perf_counter()
            MARKS[label + ":start"] = t
            try:
                return orig(*a, **k)
            finally:
                end = time.perf_counter()
                MARKS[label + ":end"] = end
                EVENTS.append((label, t, end))
    setattr(owner, name, wrapper)


def install() -> None:
    from phantom_scraper import signals, tradovate_integration
    from phantom_scraper.execution import account, executors
    from phantom_scraper.journal import journal
    from phantom_scraper.app import intake, service, signal_run
    from phantom_scraper.app.logins import LoginBook
    from phantom_scraper.tradovate import ws as ws_client
    from phantom_scraper.signals import SymbolResolver

    timed(intake, "parse_signal", "parse_signal")
    timed(SymbolResolver, "resolve", "resolver.resolve")
    timed(journal.Journal, "record_signal", "journal.record_signal")
    timed(journal.Journal, "create_intent", "journal.create_intent")
    timed(journal.Journal, "set_intent_state", "journal.set_intent_state")
    timed(journal.Journal, "set_signal_status", "journal.set_signal_status")
    timed(LoginBook, "targets_for", "service.targets_for")
    timed(service.TradingService, "handle_signal", "service.handle_signal (whole)")
    timed(intake, "outcomes_body", "service._outcomes_body")
    timed(signal_run, "execute_trade_simple", "execution.execute_trade_simple")
    timed(account, "_run_step", "account._run_step")
    timed(account, "_run_account", "account._run_account")
    timed(signal_run.SignalRunner, "process", "service._process (executor thread)")
    timed(tradovate_integration.TradovateIntegration, "place_order_smart", "place_order_smart")
    timed(ws_client.TradovateWebSocket, "request", "ws.request (caller thread)")
    timed(ws_client.TradovateWebSocket, "_send_request", "ws._send_request (loop thread)")
    timed(signals, "plan_orders", "signals.plan_orders") if hasattr(signals, "plan_orders") else None
    timed(logging.FileHandler, "emit", "logging FileHandler.emit")

    orig_executor = executors.Workers.executor

    def executor(self, kind):  # every service's "signal" executor marks the hand-off
        pool = orig_executor(self, kind)
        if kind == "signal" and not getattr(pool, "_profiled", False):
            orig_submit = pool.submit

            def submit(fn, *a, **k):
                MARKS["submit"] = time.perf_counter()
                return orig_submit(fn, *a, **k)

            pool.submit, pool._profiled = submit, True
        return pool

    executors.Workers.executor = executor


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rtt", type=float, default=0.0)
    ap.add_argument("--accounts", type=int, default=1, choices=L.FANOUT_SIZES)
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--switch-interval-ms", type=float, default=None,
                    help="sys.setswitchinterval for this process (experiment; default 5 ms)")
    ap.add_argument("--log-level", default="INFO", help="experiment: the server's log level (production: INFO)")
    ap.add_argument("--no-autocheckpoint", action="store_true",
                    help="experiment: PRAGMA wal_autocheckpoint=0 on the journal (checkpoint off the order path)")
    args = ap.parse_args(argv)
    if args.switch_interval_ms is not None:
        import sys
        sys.setswitchinterval(args.switch_interval_ms / 1000.0)
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    logging.basicConfig(filename=str(workdir / "server.log"), level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    L.install_hooks()
    install()
    profiles: List[cProfile.Profile] = []
    if args.cprofile:
        def start_profile(*_):
            import sys
            sys.setprofile(None)
            p = cProfile.Profile()
            profiles.append(p)
            p.enable()
        threading.setprofile(start_profile)
    sim = L.SimProcess(workdir)
    try:
        recorders = L.write_recorders(workdir, sim)
        server = L.InProcessServer(workdir, sim, recorders, websocket=True, name="profile")
        try:
            sim.reset(response_latency_ms=args.rtt)
            if args.no_autocheckpoint:
                j = server.runtime.service.journal
                with j._lock:
                    j._connection().execute("PRAGMA wal_autocheckpoint = 0")
            client = L.Client(server.port)
            path = f"/webhook/{L._token(args.accounts)}"
            per_signal: Dict[str, List[float]] = {}
            totals = []
            for i in range(args.n + 20):
                EVENTS.clear()
                MARKS.clear()
                L.PROBE.current = None
                t0 = time.perf_counter()
                status, doc = client.post(path, L.signal_body("prof", i))
                t1 = time.perf_counter()
                time.sleep(0.002)  # let the done-callback (set_signal_status) finish before the next one
                if i < 20 or status != 200:
                    continue
                totals.append((t1 - t0) * 1000)
                rec = L.PROBE.done[-1]
                sums: Dict[str, float] = {}
                for label, s, e in EVENTS:
                    sums[label] = sums.get(label, 0.0) + (e - s) * 1000
                for label, v in sums.items():
                    per_signal.setdefault(label, []).append(v)
                # hand-offs (single account only: one of each)
                ev = {label: (s, e) for label, s, e in EVENTS}
                def add(name, v):
                    per_signal.setdefault(name, []).append(v * 1000)
                add("client POST -> WSGI entry (HTTP server)", rec["t_in"] - t0)
                add("WSGI exit -> client has response", t1 - rec["t_out"])
                if "submit" in MARKS and "execution.execute_trade_simple" in ev:
                    add("HAND-OFF submit -> executor thread starts", ev["execution.execute_trade_simple"][0] - MARKS["submit"])
                if "ws.request (caller thread)" in ev and "ws._send_request (loop thread)" in ev:
                    add("HAND-OFF ws.request -> loop thread runs _send_request",
                        ev["ws._send_request (loop thread)"][0] - ev["ws.request (caller thread)"][0])
                    add("HAND-OFF loop resolves answer -> ws.request returns",
                        ev["ws.request (caller thread)"][1] - rec["acks"][-1] if rec["acks"] else 0)
                if rec["frames"] and "ws._send_request (loop thread)" in ev:
                    add("_send_request start -> frame written", rec["frames"][0] - ev["ws._send_request (loop thread)"][0])
                if rec["frames"] and rec["acks"]:
                    add("frame written -> answer resolved (network + simulator + RTT)", rec["acks"][-1] - rec["frames"][0])
                if "execution.execute_trade_simple" in ev and "service._outcomes_body" in ev:
                    add("HAND-OFF executor returns -> request thread resumes",
                        ev["service._outcomes_body"][0] - ev["execution.execute_trade_simple"][1])
                if "service.handle_signal (whole)" in ev:
                    add("handle_signal return -> WSGI exit (Flask, json.dumps indent=2)", rec["t_out"] - ev["service.handle_signal (whole)"][1])
                    add("WSGI entry -> handle_signal entry (Flask routing, body read)", ev["service.handle_signal (whole)"][0] - rec["t_in"])
                add("WSGI entry -> frame written", rec["frames"][0] - rec["t_in"] if rec["frames"] else 0)
                add("answer resolved -> WSGI exit", rec["t_out"] - rec["acks"][-1] if rec["acks"] else 0)
            client.close()
        finally:
            server.stop()
    finally:
        sim.stop()
    print(f"{args.n} signals, {args.accounts} account(s), RTT {args.rtt:g} ms; POST->response "
          f"{L.summarize(totals)}")
    print(f"{'step (ms per signal)':<70}{'p50':>9}{'p90':>9}{'mean':>9}")
    for label, vals in sorted(per_signal.items(), key=lambda kv: -L.summarize(kv[1])["p50"]):
        s = L.summarize(vals)
        print(f"{label:<70}{s['p50']:>9.3f}{s['p90']:>9.3f}{s['mean']:>9.3f}")
    if profiles:
        for p in profiles:
            p.disable()
        buf = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=buf)
        for p in profiles[1:]:
            stats.add(p)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)
        # CPU spent in the product's own code and the libraries it calls per signal (waits are
        # C-level lock/queue/poll calls and do not match these names).
        buf.write("\n--- own time (tottime) of product, json, sqlite, logging, websockets, flask, werkzeug frames\n")
        stats.sort_stats("tottime").print_stats(r"phantom_scraper|json|sqlite|logging|websockets|flask|werkzeug|service|execution", 45)
        print(buf.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
