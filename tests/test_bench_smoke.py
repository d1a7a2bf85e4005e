"""The benchmark (bench/latency.py) in a tiny configuration, so it cannot rot.

Asserts only that it completes and writes the JSON with every row; no timing is asserted.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_runs_and_writes_every_row(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    for var in ("RECORDERS_FILE", "USE_WEBSOCKET_ORDERS", "TRADOVATE_REST_URL", "TRADOVATE_WS_URL"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.latency", "--quick", "--n", "5", "--rtts", "5",
         "--throughput-s", "1", "--clients", "4", "--out", str(out)],
        cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    keys = {(r["key"], r["rtt_ms"]) for r in doc["rows"]}
    expected = {(k, 5.0) for k in ("1", "2", "3", "4", "6-1", "6-5", "6-13", "6-50")}
    assert expected <= keys, keys
    for row in doc["rows"]:
        assert row["latency_ms"]["n"] == 5, (row["key"], row["errors"], row.get("error_samples"))
        for field in ("p50", "p90", "p99", "max"):
            assert row["latency_ms"][field] is not None
    assert set(doc["ratios"]["5"]) >= {"(2)/(1)", "(3)/(1)", "(4)/(1)"}
    tp = doc["throughput"]
    assert "error" not in tp, tp
    for field in ("signals_per_s", "lost", "duplicated_clordid", "duplicated_signal_orders"):
        assert tp[field] is not None
    assert doc["targets"] and doc["table"]


def test_journal_backends_benchmark_runs_on_both_backends(tmp_path):
    """bench/journal_backends.py with N=5 (needs TEST_DATABASE_URL; skipped otherwise)."""
    from tests.pg_support import database_url, private_schema

    out = tmp_path / "journal_backends.json"
    with private_schema(database_url()) as url:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.journal_backends", "--n", "5", "--warmup", "2",
             "--database-url", url, "--out", str(out)],
            cwd=str(ROOT), capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert [r["backend"] for r in doc["runs"]] == ["sqlite", "postgres"]
    for run in doc["runs"]:
        assert run["latency_ms"]["n"] == 5 and run["journal_status"] == {"acked": 5}
    assert doc["added_p50_ms"] is not None


def test_door_comparison_runs(tmp_path):
    """`--door-compare`: row (1g) through the front door and through plain gthread, side by side."""
    out = tmp_path / "door.json"
    env = dict(os.environ)
    for var in ("RECORDERS_FILE", "USE_WEBSOCKET_ORDERS", "TRADOVATE_REST_URL", "TRADOVATE_WS_URL"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.latency", "--door-compare", "--n", "4", "--rtts", "5", "--rounds", "2",
         "--out", str(out)], cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["key"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"1g-door", "1g-gthread"}
    assert "DoorWorker" in rows["1g-door"]["command"] and "gthread" in rows["1g-gthread"]["command"]
    for row in rows.values():
        assert row["latency_ms"]["n"] == 4 and row["errors"] == 0, row
