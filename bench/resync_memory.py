"""What a resync costs in memory: one login's ``BrokerState`` loading a whole day's snapshot again.

    .venv/bin/python -m bench.resync_memory                 # 20,000 orders (a busy login's day), 3 resyncs
    .venv/bin/python -m bench.resync_memory --orders 50000 --keep-s 120 --resyncs 3
    .venv/bin/python -m bench.resync_memory --logins 10 --orders 3000 --keep-s 20 --variants 0,2,1
    .venv/bin/python -m bench.resync_memory --orders 3000 --record

Builds a ``user/syncrequest`` answer shaped like Tradovate's (and the simulator's): ``--orders``
finished orders spread over six hours, each with its version and (two in three) its fill, plus
one working order at the end.  Then, in this process: the answer's text decoded (as the socket
does), loaded into a fresh state (as after a restart), the finished orders pruned as the
housekeeping would, and the same day loaded again ``--resyncs`` times (a renewed token, a dropped
socket).  It prints the process's RSS after each step and how many orders the state holds, with
the state reading every row (``--keep-s`` none: only what was dropped before is left out) and with
``--keep-s`` (old finished orders left out as they are read).

``--record``: the bytes a finished order the snapshot leaves out still costs the state (``tracemalloc``;
its final status, its fills' signed quantities; the day's fills handed to the ledger first).

``--logins N`` (N > 1): N states resync at once, each on its own thread through ``attach`` with a
client that decodes the answer's frame as the socket does -- a dropped socket or a renewed token on
N logins, and at the end ``malloc_arenas.trim`` (as each housekeeping pass).  ``--variants`` runs
that in a fresh process per ``MALLOC_ARENA_MAX`` value (0: glibc's default; app/malloc_arenas.py)
and prints the RSS after each round side by side.  Figures in
bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import subprocess
import sys
import threading
import time
from typing import List, Optional

from phantom_scraper.tradovate.broker_state import BrokerState

T0 = dt.datetime(2026, 12, 7, 14, 30, tzinfo=dt.timezone.utc)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def day_snapshot(n: int, accounts: int = 5) -> str:
    def at(i: int) -> str:
        return (T0 + dt.timedelta(seconds=6 * 3600 * i / n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"

    orders, versions, fills = [], [], []
    for i in range(n):
        oid = 100_000 + 10 * i
        orders.append({"id": oid, "accountId": 1 + i % accounts, "contractId": 7, "timestamp": at(i),
                       "action": "Buy" if i % 2 else "Sell", "ordStatus": "Filled" if i % 3 else "Canceled",
                       "executionProviderId": 1, "archived": False, "external": False, "admin": False})
        versions.append({"id": oid + 1, "orderId": oid, "orderQty": 1, "orderType": "Market", "price": 21000.25,
                         "timeInForce": "Day", "clOrdId": f"ps-day-{i}-1-0"})
        if i % 3:
            fills.append({"id": oid + 2, "orderId": oid, "contractId": 7, "timestamp": at(i), "action": "Buy",
                          "qty": 1, "price": 21000.25, "active": True, "finallyPaired": 0,
                          "tradeDate": {"year": 2026, "month": 12, "day": 7}})
    orders.append({"id": 99, "accountId": 1, "contractId": 7, "timestamp": at(n), "action": "Buy",
                   "ordStatus": "Working"})
    return json.dumps({"accounts": [{"id": a, "name": f"A{a}"} for a in range(1, accounts + 1)],
                       "positions": [{"id": 900 + a, "accountId": a, "contractId": 7, "netPos": 0}
                                     for a in range(1, accounts + 1)],
                       "orders": orders, "orderVersions": versions, "fills": fills})


def run(orders: int, keep_s: Optional[float], resyncs: int) -> None:
    text = day_snapshot(orders)
    print(f"keep_s={keep_s}: snapshot text {len(text) / 1e6:.1f} MB; RSS {rss_mb()} MB")
    try:
        state = BrokerState("bench", keep_s=keep_s)
    except TypeError:  # a build before snapshots left anything out (for the comparison)
        state = BrokerState("bench")
    for n in range(resyncs + 1):
        state.load_snapshot(state.begin(object()), json.loads(text))
        gc.collect()
        held = state.status()["orders_held"]
        print(f"  {'start' if n == 0 else f'resync {n}'}: {held} orders held, RSS {rss_mb()} MB", end="")
        pruned = 0
        while True:  # the housekeeping's passes, the keep time long past
            step = state.prune_finished(0.0, now=time.monotonic() + 1e6)
            pruned += step
            if not step:
                break
        gc.collect()
        print(f"; pruned {pruned} -> {state.status()['orders_held']} held, RSS {rss_mb()} MB")


class _Answering:
    """A socket client stand-in: ``request`` answers the sync with the frame's text decoded as the
    socket decodes it (wire.parse_messages), on the calling thread."""

    def __init__(self, frame: str):
        self.frame = frame

    def request(self, endpoint: str, body, timeout=None):
        from phantom_scraper.tradovate.wire import parse_messages

        return parse_messages(self.frame)[0]["d"]


def run_logins(orders: int, keep_s: Optional[float], resyncs: int, logins: int) -> List[float]:
    """``logins`` states resyncing at once, ``resyncs + 1`` rounds; RSS after each round."""
    frame = 'a[{"s":200,"i":1,"d":' + day_snapshot(orders) + "}]"
    gc.collect()
    print(f"{logins} logins x {len(frame) / 1e6:.1f} MB snapshot; RSS {rss_mb()} MB", flush=True)
    states = [BrokerState(f"bench-{i}", keep_s=keep_s) for i in range(logins)]
    out = []
    for n in range(resyncs + 1):
        threads = [threading.Thread(target=s.attach, args=(_Answering(frame),), kwargs={"account_ids": [1]})
                   for s in states]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        gc.collect()
        out.append(rss_mb())
        held = sum(s.status()["orders_held"] for s in states)
        print(f"  {'start' if n == 0 else f'resync {n}'}: {held} orders held, RSS {out[-1]} MB", flush=True)
    from phantom_scraper.app import malloc_arenas

    started = time.perf_counter()
    malloc_arenas.trim()  # as the housekeeping's pass does
    out.append(rss_mb())
    print(f"  after malloc_arenas.trim ({(time.perf_counter() - started) * 1000:.2f} ms): RSS {out[-1]} MB", flush=True)
    return out


def record_bytes(orders: int) -> None:
    """Bytes per finished order left out of a snapshot (what the state keeps to answer for it)."""
    import tracemalloc

    text = day_snapshot(orders)
    state = BrokerState("bench", keep_s=20)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state.load_snapshot(state.begin(object()), json.loads(text))
    state.take_snapshot_fills()  # (the fill ledger takes them)
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"{state.left_out_at_sync} finished orders left out, {state.status()['orders_held']} held: "
          f"{kept / max(1, state.left_out_at_sync):.0f} bytes kept per finished order")


def variants(a: argparse.Namespace) -> None:
    rows = []
    for v in a.variants.split(","):
        cmd = [sys.executable, "-m", "bench.resync_memory", "--orders", str(a.orders), "--resyncs", str(a.resyncs),
               "--logins", str(a.logins), "--malloc-arena-max", v] + (["--keep-s", str(a.keep_s)] if a.keep_s else [])
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True).stdout
        print(f"MALLOC_ARENA_MAX={v}:\n{out}", flush=True)
        rows.append((v, json.loads(out.strip().splitlines()[-1])))
    print("| MALLOC_ARENA_MAX | RSS MB after each round (start, resyncs), then after a trim |\n|---|---|")
    for v, rss in rows:
        print(f"| {v}{' (glibc default)' if v == '0' else ''} | {' / '.join(str(x) for x in rss)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--keep-s", type=float, default=None, help="the state's keep time (default: none)")
    ap.add_argument("--resyncs", type=int, default=3)
    ap.add_argument("--logins", type=int, default=1, help="N > 1: N states resync at once on their own threads")
    ap.add_argument("--malloc-arena-max", type=int, default=None, help="app/malloc_arenas.limit first")
    ap.add_argument("--variants", default=None, help="comma list of MALLOC_ARENA_MAX values, one process each")
    ap.add_argument("--record", action="store_true", help="bytes kept per finished order left out, then stop")
    a = ap.parse_args()
    if a.record:
        record_bytes(a.orders)
        return
    if a.variants:
        variants(a)
        return
    if a.malloc_arena_max is not None:
        from phantom_scraper.app import malloc_arenas

        malloc_arenas.limit(a.malloc_arena_max)
    print(f"RSS at start {rss_mb()} MB")
    if a.logins > 1:
        print(json.dumps(run_logins(a.orders, a.keep_s, a.resyncs, a.logins)))
    else:
        run(a.orders, a.keep_s, a.resyncs)


if __name__ == "__main__":
    main()
