"""A busy lane's turnaround, side by side: one server setting against another in one run (issue 29).

    .venv/bin/python -m bench.lane_turnaround                       # the defaults alone: 3 bursts
    .venv/bin/python -m bench.lane_turnaround --variants "ORDER_ACK_TIMEOUT_S=5;ORDER_ACK_TIMEOUT_S=2" \\
        --rounds 5 --burst 150                                      # any server settings, side by side

The simulator in its own process (one user, three accounts) and the product under gunicorn (the
Procfile's command), as in ``bench.soak``.  Each round starts the server once per variant (its
environment plus the variant's ``NAME=VALUE`` pairs, comma-separated; variants separated by ``;``),
in turn, and sends it the soak's burst: ``--burst`` signals at once from 16 clients on one recorder
of three accounts (M2K), i.e. three busy lanes (``--accounts 1``: one).  Per burst: orders/s,
answers, the lane's gap (the previous order executed at the broker -> the next order of the same
account at the broker, from the simulator's book) split at the next intent's journaling, and the
server's own hand-over (``handover``: the previous orders' final event applied -> the next job
started, from ``/api/websocket-status``; execution/handover.py).  Variants alternate within each
round, so a change in the machine's load touches all of them; compare medians of rounds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from bench import soak

FIELDS = ("orders_per_s", "answer_p50_ms", "answer_p99_ms", "lane_gap_p50_ms", "lane_gap_p99_ms",
          "gap_to_next_intent_p50_ms", "gap_intent_to_broker_p50_ms", "handover_p50_ms", "handover_p99_ms")


def parse_variants(text: str) -> List[Dict[str, str]]:
    out = []
    for part in text.split(";"):
        env = {}
        for pair in part.split(","):
            if pair.strip():
                name, _, value = pair.strip().partition("=")
                env[name.strip()] = value.strip()
        out.append(env)
    return out


def label(env: Dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in env.items()) or "(defaults)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lane_turnaround")
    p.add_argument("--variants", default="", help="server settings per variant: NAME=VALUE,...;NAME=VALUE,...")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--burst", type=int, default=150)
    p.add_argument("--accounts", type=int, default=3, choices=(1, 2, 3), help="accounts of the burst's recorder (lanes)")
    p.add_argument("--out", default=str(soak.ROOT / "bench" / "results" / "lane_turnaround.json"))
    a = p.parse_args(argv)
    variants = parse_variants(a.variants)
    args = argparse.Namespace(logins=1, accounts=a.accounts, signals=0, hours=0, hour_s=100.0, fan_per_hour=0,
                              burst=a.burst, fanout_n=0, rtts=[], seed=29, events=False)
    workdir = Path(tempfile.mkdtemp(prefix="lanes-"))
    doc = {"loadavg_before": open("/proc/loadavg").read().split()[:3],
           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "rounds": a.rounds, "burst": a.burst}
    day = soak.Day(args, workdir)
    base_env = dict(day.server.env)
    results: Dict[str, List[dict]] = {label(v): [] for v in variants}
    try:
        for r in range(a.rounds):
            for v in variants:
                day.server.env = dict(base_env, **v)
                day.server.start()
                try:
                    day.send(day.recorders["burst"], {"action": "close", "ticker": soak.BURST_SYMBOL,
                                                      "id": f"{soak.RUN}-warm-{r}-{label(v)}"}, "warm")
                    burst = day.burst(a.burst)
                finally:
                    day.server.stop()
                soak.RUN += "x"  # the next burst's ids are new
                results[label(v)].append(burst)
                print(f"round {r + 1} {label(v)}: " + ", ".join(f"{k} {burst.get(k)}" for k in FIELDS)
                      + f", exact {burst.get('positions_exact')}", flush=True)
    finally:
        day.sim.stop()
    doc["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    doc["results"] = results
    print(f"\nload average before {doc['loadavg_before']}, after {doc['loadavg_after']}; medians of {a.rounds} rounds:\n")
    print("| variant | " + " | ".join(FIELDS) + " | exact |")
    print("|---" * (len(FIELDS) + 2) + "|")
    for name, runs in results.items():
        cells = [str(round(statistics.median(x[k] for x in runs if x.get(k) is not None), 2)) for k in FIELDS]
        print(f"| {name} | " + " | ".join(cells) + f" | {all(x.get('positions_exact') for x in runs)} |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
