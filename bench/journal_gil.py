"""What an order's two journal writes cost beside a busy Python thread (issue 29).

    .venv/bin/python -m bench.journal_gil                 # 0 and 1 busy threads, 200 orders each

SQLite releases the GIL around each statement; when another thread is ready to run, getting it
back can take up to the interpreter's switch interval (5 ms).  So on a busy server the number of
statements on an order's path, not their cost in SQLite, decides what the writes take.  For each
number of busy threads (pure-Python loops, in this process), this journals ``--orders`` signals in
a fresh SQLite journal, each with one order's intent (``create_intent``) and its final state
(``set_intent_state``), and prints p50 / p90 of each write in ms.  Figures in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

from phantom_scraper.journal.journal import Journal, make_cl_ord_id


def run(busy: int, orders: int) -> dict:
    journal = Journal(os.path.join(tempfile.mkdtemp(prefix="journal-gil-"), "journal.sqlite3"))
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinners = [threading.Thread(target=spin, daemon=True) for _ in range(busy)]
    for t in spinners:
        t.start()
    took = {"intent": [], "final state": []}
    try:
        for i in range(orders):
            sid, _dup, _ = journal.record_signal("bench", {"i": i}, f"gil-{i}", None, 60.0)
            cl = make_cl_ord_id(sid, 1, 0)
            t0 = time.perf_counter()
            journal.create_intent(sid, 1, "A1", 0, "placeorder", {"accountId": 1, "action": "Buy", "orderQty": 1},
                                  cl, state="sending")
            t1 = time.perf_counter()
            journal.set_intent_state(cl, "acked", broker_order_id=1000 + i, transport="ws", latency_ms=1.0)
            t2 = time.perf_counter()
            took["intent"].append((t1 - t0) * 1000)
            took["final state"].append((t2 - t1) * 1000)
    finally:
        stop.set()
        for t in spinners:
            t.join()
        journal.close()
    out = {}
    for name, ms in took.items():
        ms.sort()
        out[name] = (round(ms[len(ms) // 2], 3), round(ms[int(len(ms) * 0.9)], 3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--busy", default="0,1", help="comma list of busy-thread counts")
    a = ap.parse_args()
    print("| busy threads | intent p50 / p90 ms | final state p50 / p90 ms |\n|---|---|---|")
    for busy in (int(b) for b in a.busy.split(",")):
        r = run(busy, a.orders)
        print(f"| {busy} | {r['intent'][0]} / {r['intent'][1]} | {r['final state'][0]} / {r['final state'][1]} |",
              flush=True)


if __name__ == "__main__":
    main()
