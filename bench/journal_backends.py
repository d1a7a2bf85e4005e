"""The journal's two backends under the production server: N webhooks x 2 accounts through gunicorn
(the Procfile's command), once with SQLite (DATABASE_PATH) and once with PostgreSQL (DATABASE_URL).

Each run: the simulator in its own process (RTT 0), gunicorn on 127.0.0.1, one keep-alive client
sending N distinct signals one at a time (buy/sell alternating, 1 contract, two accounts each), timed
POST -> response.  Then it checks: every answer 200 with both accounts acked, the simulator's book
has exactly one order per (signal, account) and no clOrdId twice (no loss, no duplicate), and the
journal has every signal ``acked``.  Prints and writes p50/p90/p99 per backend and the p50 the
Postgres journal adds.

    .venv/bin/python -m bench.journal_backends [--n 1000] [--database-url URL]

Without ``--database-url`` (or ``TEST_DATABASE_URL``) it starts a private PostgreSQL cluster with
fsync on (``.ci/pg_cluster.sh``; Debian's postgresql package must be installed).
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from bench.latency import (ROOT, RUN, Client, SimProcess, _free_port, _get_json, procfile_command,
                           signal_body, summarize)

ACCOUNTS = "DEMO0001,DEMO0002"


def run_backend(name: str, workdir: Path, sim: SimProcess, n: int, warmup: int, database: Dict[str, str]) -> dict:
    sim.reset(response_latency_ms=0.0, connect_latency_ms=0.0)
    port = _free_port()
    token = f"bench-{RUN}-{name}"
    env = dict(os.environ, PORT=str(port), TRADOVATE_ENV="sim", TRADOVATE_REST_URL=sim.rest_url,
               TRADOVATE_WS_URL=sim.ws_url, TRADOVATE_USERNAME="demo", TRADOVATE_PASSWORD="demo",
               TRADOVATE_ACCOUNTS=ACCOUNTS, WEBHOOK_SECRET=token, ADMIN_TOKEN=token,
               DATABASE_PATH=str(workdir / f"{name}.sqlite3"), ACCESS_LOG="0", **database)
    for var in ("RECORDERS_FILE", "USE_WEBSOCKET_ORDERS") + (() if "DATABASE_URL" in database else ("DATABASE_URL",)):
        env.pop(var, None)
    cmd = procfile_command(port)
    log_path = workdir / f"gunicorn-{name}.log"
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if _get_json(port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"gunicorn did not become ready (see {log_path})")
        path = f"/webhook/{token}"
        client = Client(port)
        for i in range(warmup):
            client.post(path, signal_body(f"{name}-warm", i))
        latencies: List[float] = []
        errors: List[Any] = []
        ids: List[str] = []
        for i in range(n):
            body = signal_body(f"{name}-run", i)
            t0 = time.perf_counter()
            status, doc = client.post(path, body)
            latencies.append((time.perf_counter() - t0) * 1000.0)
            accounts = doc.get("accounts") or []
            if status != 200 or doc.get("status") != "acked" or len(accounts) != 2 \
                    or {a.get("status") for a in accounts} != {"acked"}:
                errors.append({"i": i, "status": status, "doc": doc})
            if doc.get("signal_id"):
                ids.append(doc["signal_id"])
        client.close()
        _settle_final_writes(port, token)
        # no loss, no duplicate: the broker's book of record
        per = collections.Counter()
        for order in sim.orders():
            m = re.match(r"^ps-([0-9a-f]+)-(\d+)-(\d+)$", str(order.get("clOrdId") or ""))
            if m and order.get("orderId") is not None:
                per[m.group(1)] += 1
        cl_counts = collections.Counter(str(o.get("clOrdId")) for o in sim.orders() if o.get("orderId") is not None)
        duplicates = {k: v for k, v in cl_counts.items() if v > 1}
        missing = [sid for sid in ids if per[sid] != 2]
        wanted = set(ids)
        journal_status = collections.Counter(status for sid, status in _journal_statuses(database, workdir / f"{name}.sqlite3")
                                             if sid in wanted)
        return {"backend": name, "n": n, "latency_ms": summarize(latencies), "errors": len(errors),
                "first_errors": errors[:3], "signals": len(ids), "orders_per_signal_not_2": len(missing),
                "duplicate_cl_ord_ids": len(duplicates), "journal_status": dict(journal_status),
                "samples_ms": [round(v, 3) for v in latencies]}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _settle_final_writes(port: int, token: str) -> None:
    """A signal's final status is journaled just after its answer (phantom_scraper/execution/final_writes.py); the admin
    routes write what is queued before they read, so one request lets the database catch up."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/api/signals?limit=1", headers={"X-Admin-Token": token})
        conn.getresponse().read()
    finally:
        conn.close()


def _journal_statuses(database: Dict[str, str], sqlite_path: Path) -> List[tuple]:
    """(signal id, status) of every signal, read straight from the journal's database."""
    if "DATABASE_URL" in database:
        import psycopg
        with psycopg.connect(database["DATABASE_URL"], autocommit=True, connect_timeout=10) as conn:
            return conn.execute("SELECT id, status FROM signals").fetchall()
    import sqlite3
    conn = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT id, status FROM signals").fetchall()
    finally:
        conn.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.journal_backends", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "journal_backends.json"))
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-journal-"))
    os.chmod(workdir, 0o755)
    cluster = None
    url = args.database_url
    if not url:
        cluster = workdir / "pg"
        out = subprocess.run(["bash", str(ROOT / ".ci" / "pg_cluster.sh"), "start", str(cluster)], check=True,
                             capture_output=True, text=True, env=dict(os.environ, PG_FSYNC="on")).stdout
        url = out.strip().split("=", 1)[1]
    sim = SimProcess(workdir)
    try:
        runs = [run_backend("sqlite", workdir, sim, args.n, args.warmup, {}),
                run_backend("postgres", workdir, sim, args.n, args.warmup, {"DATABASE_URL": url})]
    finally:
        sim.stop()
        if cluster is not None:
            subprocess.run(["bash", str(ROOT / ".ci" / "pg_cluster.sh"), "stop", str(cluster)], check=False)
    sqlite, pg = runs
    added = round(pg["latency_ms"]["p50"] - sqlite["latency_ms"]["p50"], 3)
    doc = {"when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
           "nproc": os.cpu_count(), "loadavg": os.getloadavg(), "postgres_cluster": "private, fsync on" if cluster else url.split("@")[-1],
           "runs": runs, "added_p50_ms": added}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    for r in runs:
        s = r["latency_ms"]
        print(f"{r['backend']:<9} n={s['n']} p50 {s['p50']} p90 {s['p90']} p99 {s['p99']} max {s['max']} ms | "
              f"errors {r['errors']} | signals {r['signals']} | orders/signal != 2: {r['orders_per_signal_not_2']} | "
              f"duplicate clOrdIds {r['duplicate_cl_ord_ids']} | journal {r['journal_status']}")
    print(f"Postgres adds {added} ms at p50 (load average {os.getloadavg()[0]:.1f})")
    ok = all(r["errors"] == 0 and r["orders_per_signal_not_2"] == 0 and r["duplicate_cl_ord_ids"] == 0
             and r["journal_status"] == {"acked": r["n"]} for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
