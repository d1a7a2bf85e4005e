"""What a busy server's heap keeps between full garbage collections (issue 29).

    .venv/bin/python -m bench.heap_growth [--signals 1000] [--steps 3] [--baseline REF]

The server freezes its heap after each batch of signals and runs full collections only while
idle (at most every 10 minutes while busy: ``app/gc_policy.py``), so garbage in reference cycles
stays until then.  This runs the product in this process (``bench.latency``'s in-process server:
the real service, journal and pool against the simulator in its own process) and sends
``--signals`` webhooks per step on the 5-account recorder (two in three entries with a bracket in
ticks and the price it needs, one in three a close), one after another; at each step's end the
housekeeping drops the finished orders (keep time scaled down to ``KEEP_S``), as a day's passes
would.  Then it prints per step: how many signals were refused (0 expected) and orders dropped
so far, the objects in the frozen generation (what the next full pass must walk), RSS, and -- with
``--census`` at the end -- the types of the cyclic garbage (collected with ``gc.DEBUG_SAVEALL``).  ``--baseline REF`` runs REF's
tree (git archive) the same way first, in a subprocess, for a before/after in one run.  ``--live``
traces allocations (``tracemalloc``) from the first step's end to the last's and prints where the
memory that stays alive was allocated (the product's innermost frame), per signal.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench import latency as L
from bench.resync_memory import rss_mb


def census() -> dict:
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        kinds = collections.Counter()
        for o in gc.garbage:
            name = type(o).__name__
            if name == "function":
                kinds["function " + o.__qualname__] += 1
            elif name not in ("dict", "tuple", "list", "cell", "method", "builtin_function_or_method", "set"):
                kinds[f"{type(o).__module__}.{type(o).__qualname__}"] += 1
        return {"objects": len(gc.garbage), "by_type": dict(kinds.most_common(12))}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def live_sites(before: "tracemalloc.Snapshot", signals: int, top: int = 8) -> dict:
    """Growth since ``before`` by the innermost product (or werkzeug/flask) frame that allocated it."""
    by_site: collections.Counter = collections.Counter()
    for stat in tracemalloc.take_snapshot().compare_to(before, "traceback"):
        frames = [f for f in stat.traceback if "phantom_scraper" in f.filename or "/werkzeug/" in f.filename
                  or "/flask/" in f.filename]
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "other"
        by_site[where] += stat.size_diff
    total = sum(by_site.values())
    return {"bytes_per_signal": round(total / signals), "by_site": {k: round(v / signals) for k, v in by_site.most_common(top)}}


KEEP_S = 1.0


def housekeep(server) -> int:
    """What the housekeeping thread does in a day: once the last orders are ``KEEP_S`` old and their
    fills journaled, its passes drop the finished orders (until a pass finds none)."""
    service = server.runtime.service
    time.sleep(KEEP_S + 0.5)  # the last fills' events have arrived and their keep time is over
    if service.fill_ledger is not None:
        service.fill_ledger.flush()
    while service.housekeeping.run_once()["orders_pruned"]:
        pass
    return service.housekeeping.orders_pruned  # (with its own thread's passes, since the start)


def run(signals: int, steps: int, want_census: bool, want_live: bool = False) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="heap-"))
    sim = L.SimProcess(workdir)
    try:
        # finished orders leave the broker state KEEP_S after they finished (the day's setting, 120 s,
        # scaled down): each step ends with the housekeeping's passes, as a day's would have run
        server = L.InProcessServer(workdir, sim, L.write_recorders(workdir, sim), websocket=True, name="heap",
                                   settings={"broker_state_keep_s": KEEP_S})
        client = L.Client(server.port)
        token = os.environ["BENCH_TOKEN_FAN5"]
        rng = random.Random(29)
        # an entry's brackets in ticks need its price: the contract's, as the simulator quotes it
        _status, warm = client.post(f"/webhook/{token}", json.dumps(
            {"action": "close", "ticker": L.SYMBOL, "id": f"heap-{L.RUN}-warm"}).encode())
        price = float(sim.control("GET", f"/price?symbol={warm['contract']}")["price"])
        refused = 0
        gc.collect()
        rows = [{"signals": 0, "frozen": gc.get_freeze_count(), "rss_mb": rss_mb()}]
        for step in range(steps):
            for i in range(signals):
                if i % 3 == 0:
                    body = {"action": "close", "ticker": L.SYMBOL, "id": f"heap-{L.RUN}-{step}-{i}"}
                else:
                    body = {"action": rng.choice(("buy", "sell")), "ticker": L.SYMBOL, "quantity": 1,
                            "id": f"heap-{L.RUN}-{step}-{i}", "price": price,
                            "takeProfit": {"ticks": 8}, "stopLoss": {"ticks": 8}}
                status, _answer = client.post(f"/webhook/{token}", json.dumps(body).encode())
                refused += status >= 400
            L.PROBE.done.clear()  # (the bench's own per-request records)
            pruned = housekeep(server)
            gc.collect()  # the young generations: what is left is frozen or alive
            rows.append({"signals": (step + 1) * signals, "frozen": gc.get_freeze_count(), "rss_mb": rss_mb(),
                         "refused": refused, "orders_pruned": pruned})
            print(f"  after {rows[-1]['signals']} signals ({refused} refused, {pruned} orders pruned so far): "
                  f"frozen objects {rows[-1]['frozen']}, RSS {rows[-1]['rss_mb']} MB", flush=True)
            if want_live and step == 0:
                gc.unfreeze()  # (only what is alive is compared: the cyclic garbage goes first)
                gc.collect()
                gc.freeze()
                tracemalloc.start(12)
                before = tracemalloc.take_snapshot()
        out = {"rows": rows}
        if want_live and steps > 1:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            out["live"] = live_sites(before, signals * (steps - 1))
            tracemalloc.stop()
            print(f"  alive after the first step, per signal: {out['live']['bytes_per_signal']} bytes; by where it "
                  f"was allocated (bytes per signal): {out['live']['by_site']}", flush=True)
        if want_census:
            out["garbage"] = census()
            out["rss_after_full_pass_mb"] = rss_mb()
        server.stop()
        return out
    finally:
        sim.proc.terminate()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.heap_growth")
    p.add_argument("--signals", type=int, default=1000)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--census", action="store_true")
    p.add_argument("--live", action="store_true", help="where the memory that stays alive was allocated")
    p.add_argument("--baseline", default=None, metavar="REF")
    p.add_argument("--json", action="store_true", help="(internal) print the result as JSON last")
    a = p.parse_args(argv)
    results = {}
    if a.baseline:
        tree = Path(tempfile.mkdtemp(prefix="heap-base-"))
        archive = subprocess.run(["git", "archive", a.baseline], cwd=str(L.ROOT), capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        os.symlink(L.ROOT / ".venv", tree / ".venv")
        # (the baseline may predate this module: run this file against the baseline's package)
        (tree / "bench" / "heap_growth.py").write_text(Path(__file__).read_text())
        print(f"baseline {a.baseline}:", flush=True)
        proc = subprocess.run([sys.executable, "-m", "bench.heap_growth", "--signals", str(a.signals), "--steps",
                               str(a.steps), "--json"] + (["--census"] if a.census else []), cwd=str(tree),
                              capture_output=True, text=True)
        print("\n".join(l for l in proc.stdout.splitlines() if l.startswith("  ")), flush=True)
        results[a.baseline] = json.loads(proc.stdout.strip().splitlines()[-1])
        print("this tree:", flush=True)
    results["this"] = run(a.signals, a.steps, a.census, a.live)
    if a.json:
        print(json.dumps(results["this"]))
        return 0
    print()
    for name, res in results.items():
        rows = res["rows"]
        per_k = (rows[-1]["frozen"] - rows[1]["frozen"]) / max(1, (len(rows) - 2)) / (a.signals / 1000)
        mb_k = (rows[-1]["rss_mb"] - rows[1]["rss_mb"]) / max(1, (len(rows) - 2)) / (a.signals / 1000)
        print(f"{name}: frozen objects per 1,000 signals {per_k:,.0f}; RSS per 1,000 signals {mb_k:.1f} MB"
              + (f"; cyclic garbage at the end {res['garbage']['objects']:,} objects, {res['garbage']['by_type']}"
                 if "garbage" in res else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
