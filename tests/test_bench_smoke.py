"""The benchmark (bench/latency.py) in a tiny configuration, so it cannot rot.

Asserts only that it completes and writes the JSON with every row; no timing is asserted.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOOR_KEYS = ("0-ws", "0-rest", "0-ws-13", "0-ws-50", "0-sync-1", "0-sync-13", "0-sync-50")


def _env():
    env = dict(os.environ)
    for var in ("RECORDERS_FILE", "USE_WEBSOCKET_ORDERS", "TRADOVATE_REST_URL", "TRADOVATE_WS_URL"):
        env.pop(var, None)
    return env


def _bench(*args, timeout=110):
    return subprocess.run([sys.executable, "-m", "bench.latency", *args], cwd=str(ROOT), env=_env(),
                          capture_output=True, text=True, timeout=timeout)


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
    expected = {(k, 5.0) for k in ("1", "2", "3", "4", "6-1", "6-5", "6-13", "6-50", "1g") + FLOOR_KEYS}
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
    assert {c["issue"] for c in doc["targets"]} == {"7", "17"}
    issue17 = {c["what"] for c in doc["targets"] if c["issue"] == "17"}
    assert "(7) gunicorn throughput, 1 account, 0 lost / 0 duplicated" in issue17
    assert "spread first -> last account's frame, 50 accounts, p50, RTT 5" in issue17
    assert "[issue 17]" in doc["table"] and "[issue 7]" in doc["table"]


def test_only_runs_the_chosen_rows_and_every_floor(tmp_path):
    """`--only 1,6-13`: those rows, no server for the others, and the floors (with the user-sync ones)."""
    out = tmp_path / "only.json"
    proc = _bench("--only", "1,6-13", "--n", "4", "--rtts", "5", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert sorted(r["key"] for r in doc["rows"]) == sorted(FLOOR_KEYS + ("1", "6-13"))
    assert "throughput" not in doc
    rows = {r["key"]: r for r in doc["rows"]}
    for key in FLOOR_KEYS + ("1", "6-13"):
        assert rows[key]["latency_ms"]["n"] == 4 and rows[key]["errors"] == 0, rows[key]
    # the user-sync floor's socket really receives the orders' props events (the simulator pushes them)
    for size in (1, 13, 50):
        assert rows[f"0-sync-{size}"]["props_events_read"] >= 4 * size, rows[f"0-sync-{size}"]
    assert {c["what"] for c in doc["targets"] if c["issue"] == "17"} >= {
        "webhook received -> order frame written, 1 account, p50, RTT 5",
        "webhook -> ack minus RTT, 1 account, p50, RTT 5"}

    floor_only = _bench("--only", "floor", "--n", "3", "--rtts", "5", "--out", str(out))
    assert floor_only.returncode == 0, floor_only.stdout[-2000:] + floor_only.stderr[-2000:]
    assert sorted(r["key"] for r in json.loads(out.read_text())["rows"]) == sorted(FLOOR_KEYS)

    bad = _bench("--only", "1,8", "--out", str(out))
    assert bad.returncode == 2 and "unknown row '8'" in bad.stderr


def _is_git_checkout() -> bool:
    try:
        return subprocess.run(["git", "rev-parse", "--verify", "HEAD^{commit}"], cwd=str(ROOT),
                              capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _is_git_checkout(), reason="needs a git checkout (git archive HEAD)")
def test_baseline_against_head_runs_both_halves_side_by_side(tmp_path):
    """`--baseline HEAD --baseline-sandwich`: after, before (HEAD's own tree and bench), after again."""
    out = tmp_path / "baseline.json"
    proc = _bench("--baseline", "HEAD", "--baseline-sandwich", "--only", "1", "--n", "3", "--rtts", "5",
                  "--skip-throughput", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "[before] " in proc.stdout and "[after] " in proc.stdout and "[after2] " in proc.stdout
    doc = json.loads(out.read_text())
    assert [h["name"] for h in doc["halves"]] == ["after", "before", "after2"]
    for half in doc["halves"]:
        assert half["returncode"] == 0 and half["doc"], half.get("output_tail")
        assert len(half["loadavg_start"]) == 3 and len(half["loadavg_end"]) == 3
    after, before = doc["halves"][0], doc["halves"][1]
    assert after["product_code_from"] == str(ROOT)
    tree = Path(before["tree"])
    assert before["product_code_from"] == str(tree) and not tree.exists()  # REF's own code; tree removed
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(ROOT), capture_output=True, text=True).stdout
    assert doc["baseline"]["commit"] == head.strip()
    rows = {(r["key"], r["rtt_ms"]): r for r in doc["comparison"]["rows"]}
    assert {k for k in rows if not k[0].startswith("0-") and ":" not in k[0]} == {("1", 5.0)}
    row = rows[("1", 5.0)]
    for name in ("before", "after", "after2"):
        assert row[name]["n"] == 3 and row[name]["p50"] is not None
    assert row["floor_p50"] is not None and row["floor_sync_p50"] is not None
    whats = {t["what"] for t in doc["comparison"]["issue17_targets"]}
    assert "webhook -> ack minus RTT, 1 account, p50, RTT 5" in whats
    assert "before p50" in doc["table"] and "after p50" in doc["table"]


def test_a_failed_baseline_half_is_reported_beside_the_current_one(tmp_path):
    """A before half that fails (here: its bench exits with a usage error) is said to have failed;
    the after half's figures are still in the comparison."""
    from bench import compare

    before = compare.run_half("before", ROOT, ["--only", "nonsense", "--out", str(tmp_path / "b.json")],
                              tmp_path / "b.json")
    assert before["returncode"] == 2 and before["doc"] is None and "exit status 2" in before["error"]
    assert any("unknown row" in line for line in before["output_tail"])
    summary = {"n": 3, "p50": 2.5, "p99": 3.0}
    after_doc = {"rows": [{"key": "1", "rtt_ms": 5.0, "title": "(1) webhook -> ack", "accounts": 1,
                           "latency_ms": summary, "overhead_minus_rtt_ms": summary},
                          {"key": "0-ws", "rtt_ms": 5.0, "title": "(0) floor", "accounts": 1,
                           "latency_ms": {"n": 3, "p50": 5.4, "p99": 5.6}}]}
    after = {"name": "after", "doc": after_doc, "started": "00:00:00 UTC", "loadavg_start": (0, 0, 0),
             "loadavg_end": (0, 0, 0)}
    doc = {"date": "-", "machine": {"nproc": 2, "cpu": "-", "python": "-", "git": {}},
           "baseline": {"ref": "X", "commit": None}, "halves": [after, before]}
    doc["comparison"] = compare.compare(doc["halves"], ("1",), chosen=True)
    row = next(r for r in doc["comparison"]["rows"] if r["key"] == "1")
    assert row["after"]["p50"] == 2.5 and row["before"]["p50"] is None and row["floor_p50"] == 5.4
    table = compare.render(doc)
    assert "before half FAILED: exit status 2" in table and "unknown row" in table


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


def test_soak_runs_a_tiny_day_with_nothing_lost_or_duplicated(tmp_path):
    """bench/soak.py at the smallest scale: one login, two accounts, one short simulated hour, a
    small burst and fan-out.  Asserts it completes, loses and duplicates nothing and the positions
    match what the signals asked (no timing)."""
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--logins", "1", "--accounts", "2", "--signals", "16", "--hours", "1",
         "--hour-s", "6", "--fan-per-hour", "1", "--burst", "6", "--fanout-n", "2", "--rtts", "0", "--out", str(out)],
        cwd=str(ROOT), env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())["result"]
    once = result["exactly_once"]
    assert (once["lost_orders"], once["lost_signals"], once["duplicated_orders"], once["book_orders_not_journaled"]) \
        == (0, 0, 0, 0), once
    assert once["signals_2xx"] == once["signals_sent"] > 16
    assert [h["positions_exact"] for h in result["hours"]] == [True]
    assert result["burst"]["positions_exact"] and result["burst"]["orders"] == 12
    assert result["fanout"][0]["accounts"] == 2
