"""Where a signal's CPU goes, thread by thread (a diagnostic for bench/RESULTS.md, not a test).

    .venv/bin/python -m bench.cpu_by_thread [--accounts 1|5|13|50] [--n 400] [--rtt 0]

Same set-up as rows 1/6 of ``bench.latency`` (simulator in its own process, the product's Flask app
on a werkzeug threaded server in this process, a keep-alive client in this process, signals one
after the other).  After a warm-up it reads every thread's CPU time from ``/proc/self/task`` before
and after ``--n`` signals and prints CPU milliseconds per signal by thread name, with the
simulator's CPU and the POST -> answer latency beside them.  On this benchmark the product is
CPU-bound (one interpreter: the threads' CPU adds up to the latency), so this is what explains the
latency left over the floor.  Threads that exited meanwhile (werkzeug's one per connection) show as
"request threads (exited)".

To see the same for another tree (e.g. main before issue 17), run this file from that tree's root:
``cd OLD && python /path/to/bench/cpu_by_thread.py`` (it imports the product from the working
directory).
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the product (and bench.latency) of the tree it is run from

from bench import latency as L  # noqa: E402

_TCK = os.sysconf("SC_CLK_TCK")


def _threads_cpu() -> dict:
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / _TCK
    return out


def _proc_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TCK


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cpu_by_thread", description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=13, choices=L.FANOUT_SIZES)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--rtt", type=float, default=0.0)
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    logging.basicConfig(filename=str(workdir / "server.log"), level=logging.INFO)
    sim = L.SimProcess(workdir)
    try:
        sim.reset(response_latency_ms=args.rtt)
        server = L.InProcessServer(workdir, sim, L.write_recorders(workdir, sim), websocket=True, name="ws")
        client = L.Client(server.port)
        path = f"/webhook/{L._token(args.accounts)}"
        for i in range(20):
            client.post(path, L.signal_body("cpu-warm", i))
        time.sleep(0.3)
        before, proc0, sim0 = _threads_cpu(), time.process_time(), _proc_cpu(sim.proc.pid)
        latencies = []
        for i in range(args.n):
            t0 = time.perf_counter()
            status, doc = client.post(path, L.signal_body("cpu", i))
            latencies.append((time.perf_counter() - t0) * 1000)
            if status != 200 or doc.get("status") != "acked":
                raise SystemExit(f"signal {i}: HTTP {status} {doc}")
        time.sleep(0.5)  # the last signals' final writes and events
        after, proc1, sim1 = _threads_cpu(), time.process_time(), _proc_cpu(sim.proc.pid)
        names = {t.native_id: t.name for t in threading.enumerate()}
        by_name: "collections.Counter[str]" = collections.Counter()
        for tid, cpu in after.items():
            name = re.sub(r"[-_]\d+$", "", names.get(tid, f"thread {tid}"))
            name = re.sub(r"^Thread-\d+ \(process_request_thread\)$", "request threads (werkzeug)", name)
            name = re.sub(r"@127\.0\.0\.1:\d+$", "", name)
            by_name[name] += cpu - before.get(tid, 0.0)
        total = proc1 - proc0
        by_name["request threads (exited)"] += total - sum(by_name.values())
        server.stop()
    finally:
        sim.stop()
    n = args.n
    print(f"{args.accounts} account(s), RTT {args.rtt:g} ms, {n} signals one after the other; "
          f"POST -> answer p50 {statistics.median(latencies):.2f} ms")
    print(f"CPU per signal: this process {1000 * total / n:.2f} ms (server threads + the benchmark client), "
          f"simulator {1000 * (sim1 - sim0) / n:.2f} ms")
    for name, cpu in by_name.most_common():
        if cpu > 0:
            print(f"  {name:<38} {1000 * cpu / n:6.3f} ms")
    print("(MainThread is the benchmark's HTTP client; /proc counts in ticks of 10 ms: use n >= 200)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
