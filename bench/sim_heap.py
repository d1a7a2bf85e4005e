"""What the simulator's day costs its garbage collector: before and after in one run.

    .venv/bin/python -m bench.sim_heap                          # 6,000 bracketed entries, this tree
    .venv/bin/python -m bench.sim_heap --baseline 9c7d9f7       # the same against git ref 9c7d9f7

A standalone simulator exchange (no sockets) trades a day: ``--entries`` market entries, each with
a target and a stop (``placeOSO``), the price moving so that the entry and one leg fill and the other
leg is cancelled -- three orders, three execution reports or more, two fills per entry.  At each of
``--steps`` checkpoints it prints the objects the collector tracks (``gc.get_objects()`` after a
full collection) and how long a full collection takes (the median of three): what every thread of
the simulator waits for when one runs.  The day's placing time is printed too.

The exchange is set up as the simulator's own process sets itself up: where the tree has
``daybook.freeze_process`` it is called once the exchange exists (``SIM_HEAP_NO_FREEZE=1`` leaves it
out: a simulator embedded in another process, such as the server's paper trading).

``--baseline REF``: REF's tree is extracted (``git archive``) and the same day runs on its
``phantom_scraper`` in a subprocess, between two runs of this tree's (after, before, after), so that
drift on a shared machine shows.  Figures in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def day(entries: int, steps: int) -> dict:
    from phantom_scraper.tradovate_sim.config import SimConfig, UserSpec
    from phantom_scraper.tradovate_sim.exchange import Exchange

    ex = Exchange(SimConfig(users=(UserSpec.with_accounts("heap", "pw", 5, prefix="HEAP"),)))
    user = next(iter(ex._users))
    accounts = ex._user_accounts[user]
    contract = ex.catalog.front("ES")
    ex.add_listener(lambda events: None)
    try:  # as the simulator's own process does (this tree; an older tree has no such step)
        from phantom_scraper.tradovate_sim.daybook import freeze_process
    except ImportError:
        freeze_process = None
    if freeze_process is not None and not os.environ.get("SIM_HEAP_NO_FREEZE"):
        freeze_process()
    rows, placing_s = [], 0.0
    per_step = max(1, entries // steps)
    for step in range(steps):
        started = time.perf_counter()
        for i in range(step * per_step, (step + 1) * per_step):
            price = ex.price(contract.id)
            side, other, sign = ("Buy", "Sell", 1) if i % 2 else ("Sell", "Buy", -1)
            ex.place_oso(user, {"accountId": accounts[i % len(accounts)], "action": side, "symbol": contract.name,
                                "orderQty": 1, "orderType": "Market", "isAutomated": True,
                                "bracket1": {"action": other, "orderType": "Limit", "price": price + sign * 10},
                                "bracket2": {"action": other, "orderType": "Stop", "stopPrice": price - sign * 10}},
                         "ws")
            ex.set_price(contract.id, price + 15 * sign)
            ex.set_price(contract.id, price)
        placing_s += time.perf_counter() - started
        gc.collect()
        tracked = len(gc.get_objects())
        pauses = []
        for _ in range(3):
            t0 = time.perf_counter()
            gc.collect()
            pauses.append((time.perf_counter() - t0) * 1000)
        rows.append({"entries": (step + 1) * per_step, "orders": len(ex._entities["order"]),
                     "tracked": tracked, "full_collection_ms": round(statistics.median(pauses), 1)})
    return {"rows": rows, "placing_s": round(placing_s, 2),
            "us_per_entry": round(placing_s / (per_step * steps) * 1e6, 1)}


def _half(tree: Path, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--entries", str(args.entries),
                          "--steps", str(args.steps)], env=env, cwd=str(tree), capture_output=True, text=True,
                         timeout=1800)
    if out.returncode != 0:
        return {"failed": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _print(label: str, doc: dict) -> None:
    if "failed" in doc:
        print(f"{label}: failed\n{doc['failed']}")
        return
    print(f"{label}: placing {doc['placing_s']} s ({doc['us_per_entry']} us per entry)")
    print("  entries | orders | tracked objects | full collection ms")
    for r in doc["rows"]:
        print(f"  {r['entries']:7d} | {r['orders']:6d} | {r['tracked']:15d} | {r['full_collection_ms']:.1f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=6000)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--baseline", help="a git ref to run the same day on, between two runs of this tree")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(day(args.entries, args.steps)))
        return 0
    if not args.baseline:
        _print("this tree", _half(ROOT, args))
        return 0
    with tempfile.TemporaryDirectory(prefix="sim-heap-") as tmp:
        archive = subprocess.run(["git", "archive", args.baseline, "phantom_scraper"], cwd=str(ROOT),
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp)
        for label, tree in (("after", ROOT), (f"before ({args.baseline})", Path(tmp)), ("after again", ROOT)):
            load = os.getloadavg()[0]
            _print(f"{label}, load average {load:.2f}", _half(tree, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
