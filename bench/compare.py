"""``python -m bench.latency --baseline REF``: before and after in one run, on one machine.

The tree of git ref REF is materialised with ``git archive REF | tar -x`` into a temporary
directory (no worktree left behind; works on a clean clone), and that tree's own ``bench.latency``
runs there in a subprocess (its own product code, simulator, Procfile) with the same arguments as
far as it accepts them (read from its ``--help``).  This tree's ``bench.latency`` runs in a
subprocess too, so both halves have the same process layout.  Order: after, before, and with
``--baseline-sandwich`` after again, with the load average at the start and end of each half, so
that drift on a shared machine shows.  Both halves' progress lines are streamed, prefixed.

The combined table: per row key and RTT, before p50/p99, after p50/p99, and the floors of the
(first) after half.  The output JSON holds every half's own document and the comparison.  A
half that fails is reported as failed; the others are still reported.
"""
from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from bench import latency

ROOT = latency.ROOT

# this bench's options that a half is given, if that half's bench.latency accepts them
_PASSED = (("--quick", None), ("--n", "n"), ("--rtts", "rtts"), ("--throughput-s", "throughput_s"),
           ("--clients", "clients"), ("--skip-throughput", None), ("--only", "only"))


def materialise(ref: str, dest: Path) -> str:
    """``git archive REF | tar -x`` into ``dest``; returns the full commit id."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=str(ROOT),
                            capture_output=True, text=True, timeout=30)
    if commit.returncode != 0:
        raise RuntimeError(f"git rev-parse {ref}: {commit.stderr.strip()}")
    sha = commit.stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", "--format=tar", sha], cwd=str(ROOT), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True, timeout=300)
    archive.stdout.close()
    err = archive.stderr.read().decode(errors="replace")
    archive.stderr.close()
    if archive.wait(60) != 0 or untar.returncode != 0:
        raise RuntimeError(f"git archive {sha} | tar -x failed: {err.strip()} {untar.stderr.decode(errors='replace')}")
    if not (dest / "bench" / "latency.py").exists():
        raise RuntimeError(f"{ref} ({sha[:12]}) has no bench/latency.py")
    return sha


def _env(tree: Path) -> Dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # that tree's packages first, also for the simulator and gunicorn it starts
    env["PYTHONPATH"] = os.pathsep.join([str(tree)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def accepted_options(tree: Path) -> Optional[set]:
    """The long options that tree's ``bench.latency --help`` lists (None if it would not say)."""
    try:
        out = subprocess.run([sys.executable, "-m", "bench.latency", "--help"], cwd=str(tree), env=_env(tree),
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return set(re.findall(r"--[a-z][a-z0-9-]*", out.stdout))


def imports_from(tree: Path) -> Optional[str]:
    """Where a half's product code is imported from (a check that the before half runs REF's code)."""
    try:
        out = subprocess.run([sys.executable, "-c", "import os, phantom_scraper, ultra_simple_server; "
                              "print(os.path.dirname(os.path.dirname(os.path.abspath(phantom_scraper.__file__))))"],
                             cwd=str(tree), env=_env(tree), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def half_argv(args, accepted: Optional[set], out: Path, *, py_spy: bool) -> Tuple[List[str], List[str]]:
    """The command-line arguments a half is given, and the notes on what it could not be given."""
    argv: List[str] = []
    notes: List[str] = []
    only = latency.parse_only(args.only)
    for opt, attr in _PASSED:
        if attr is None:
            on = bool(getattr(args, opt[2:].replace("-", "_")))
            if not on:
                continue
            value = None
        else:
            value = getattr(args, attr)
            if value is None:
                continue
        if accepted is not None and opt not in accepted:
            notes.append(f"its bench.latency has no {opt}" + (f" (asked: {value})" if value is not None else ""))
            if opt == "--only":
                notes.append("it ran every row it has; the table shows the chosen ones")
                if not ({"1g", "7"} & set(only)) and not args.skip_throughput and \
                        "--skip-throughput" in accepted:
                    argv.append("--skip-throughput")  # neither 1g nor 7 chosen: spare it the gunicorn rows
            continue
        argv.append(opt)
        if value is not None:
            argv.append(str(value))
    if py_spy and args.py_spy:
        if accepted is None or "--py-spy" in accepted:
            argv += ["--py-spy", args.py_spy]
    argv += ["--out", str(out)]
    return argv, notes


def run_half(name: str, tree: Path, argv: List[str], out: Path) -> Dict[str, Any]:
    """Run ``tree``'s bench.latency with ``argv``, streaming its lines prefixed with ``[name]``."""
    cmd = [sys.executable, "-m", "bench.latency"] + argv
    half: Dict[str, Any] = {"name": name, "tree": str(tree), "command": " ".join(cmd), "cwd": str(tree),
                            "loadavg_start": os.getloadavg(),
                            "started": dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S UTC")}
    print(f"[{name}] start {half['started']}, load average {_load(half['loadavg_start'])}: {' '.join(cmd[1:])} "
          f"(cwd {tree})", flush=True)
    tail: "collections.deque[str]" = collections.deque(maxlen=40)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=str(tree), env=_env(tree), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            print(f"[{name}] {line}", flush=True)
        rc = proc.wait()
    except BaseException:
        # ours: SIGINT, so that its finally blocks stop the simulator and gunicorn it started
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        raise
    half["returncode"] = rc
    half["duration_s"] = round(time.monotonic() - t0, 1)
    half["loadavg_end"] = os.getloadavg()
    half["ended"] = dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S UTC")
    doc = None
    if rc == 0:
        try:
            doc = json.loads(out.read_text())
        except (OSError, ValueError) as exc:
            half["error"] = f"no JSON from the run: {exc}"
    else:
        half["error"] = f"exit status {rc}"
    if doc is None:
        half["output_tail"] = list(tail)
    half["doc"] = doc
    print(f"[{name}] end {half['ended']} ({half['duration_s']} s), load average {_load(half['loadavg_end'])}"
          + (f"; FAILED: {half['error']}" if "error" in half else ""), flush=True)
    return half


def _load(values) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "-"


# ---------------------------------------------------------------------------------------------
# the comparison

_SUBROWS = {  # derived figures shown under their row: (label, field, floor key prefix or None)
    "1": (("  (1) minus RTT", "overhead_minus_rtt_ms", True),
          ("  (5) webhook received -> order frame written", "webhook_received_to_first_frame_ms", False)),
    "1g": (("  (1g) minus RTT", "overhead_minus_rtt_ms", True),),
    "6-13": (("  first -> last account's frame written", "first_to_last_frame_ms", False),),
    "6-50": (("  first -> last account's frame written", "first_to_last_frame_ms", False),),
}


def _floor_keys(row: dict) -> Tuple[Optional[str], Optional[str]]:
    """The raw floor and the raw + user sync floor that a product row is measured against."""
    key, accounts = row["key"], row.get("accounts", 1)
    if key in ("2", "3"):
        return "0-rest", None
    if key.startswith("0-"):
        return None, None
    if accounts == 1:
        return "0-ws", "0-sync-1"
    if accounts in (13, 50):
        return f"0-ws-{accounts}", f"0-sync-{accounts}"
    return None, None


def _fig(summary: Optional[dict], field: str, minus: float = 0.0) -> Optional[float]:
    if not summary or not summary.get("n") or summary.get(field) is None:
        return None
    return round(summary[field] - minus, 3)


def _columns(halves: List[dict]) -> List[str]:
    """Column order: before, after, after again (whatever order they ran in)."""
    rank = {"before": 0, "after": 1, "after2": 2}
    return sorted((h["name"] for h in halves), key=lambda n: rank.get(n, 9))


def _chosen(doc: Optional[dict], only: Tuple[str, ...]) -> Optional[dict]:
    """``doc`` narrowed to the --only rows and the floors (a bench without --only ran them all)."""
    if not doc:
        return doc
    narrowed = dict(doc, rows=[r for r in doc.get("rows") or [] if r["key"].startswith("0-") or r["key"] in only])
    if "7" not in only:
        narrowed.pop("throughput", None)
    return narrowed


def compare(halves: List[dict], only: Tuple[str, ...], chosen: bool) -> Dict[str, Any]:
    """Rows keyed (key, RTT) across the halves; the floors from the first after half that has them."""
    docs = {h["name"]: _chosen(h.get("doc"), only) if chosen else h.get("doc") for h in halves}
    names = _columns(halves)
    index: Dict[Tuple[str, float], Dict[str, dict]] = {}
    titles: Dict[Tuple[str, float], dict] = {}
    for name in names:
        for r in (docs[name] or {}).get("rows") or []:
            k = (r["key"], float(r["rtt_ms"]))
            index.setdefault(k, {})[name] = r
            if k not in titles or name.startswith("after"):
                titles[k] = r
    floor_doc = next((docs[n] for n in names if n.startswith("after") and docs[n]), None) or \
        next((d for d in docs.values() if d), None)
    floors = {(r["key"], float(r["rtt_ms"])): r["latency_ms"] for r in (floor_doc or {}).get("rows") or []
              if r["key"].startswith("0-")}
    rows: List[dict] = []
    for k in sorted(index, key=lambda k: (k[1], latency.ROW_ORDER.get(k[0], 99), k[0])):
        key, rtt = k
        ref = titles[k]
        fk, sk = _floor_keys(ref)
        entry = {"key": key, "rtt_ms": rtt, "title": ref.get("title", key), "accounts": ref.get("accounts")}
        for name in names:
            s = (index[k].get(name) or {}).get("latency_ms")
            entry[name] = {"p50": _fig(s, "p50"), "p99": _fig(s, "p99"), "n": (s or {}).get("n")}
        entry["floor_p50"] = _fig(floors.get((fk, rtt)), "p50") if fk else None
        entry["floor_sync_p50"] = _fig(floors.get((sk, rtt)), "p50") if sk else None
        entry["floor_keys"] = [fk, sk]
        rows.append(entry)
        for label, field, minus_rtt in _SUBROWS.get(key, ()):
            sub = {"key": f"{key}:{field}", "rtt_ms": rtt, "title": label, "field": field}
            for name in names:
                s = (index[k].get(name) or {}).get(field)
                sub[name] = {"p50": _fig(s, "p50"), "p99": _fig(s, "p99"), "n": (s or {}).get("n")}
            if minus_rtt:
                sub["floor_p50"] = _fig(floors.get((fk, rtt)), "p50", rtt) if fk else None
                sub["floor_sync_p50"] = _fig(floors.get((sk, rtt)), "p50", rtt) if sk else None
            rows.append(sub)
    throughput = {}
    for name in names:
        tp = (docs[name] or {}).get("throughput")
        if tp:
            throughput[name] = {f: tp.get(f) for f in ("signals_per_s", "lost", "duplicated_clordid",
                                                        "duplicated_signal_orders", "client_threads", "elapsed_s",
                                                        "error")}
            throughput[name]["latency_p50"] = (tp.get("latency_ms") or {}).get("p50")
            throughput[name]["worker_cpu_ms_per_signal"] = (tp.get("cpu_ms_per_signal") or {}).get("gunicorn_worker")
    targets: List[dict] = []
    by_what: Dict[str, dict] = {}
    for name in names:
        if not docs[name]:
            continue
        for c in latency.evaluate(docs[name]):
            if c["issue"] != "17":
                continue
            t = by_what.get(c["what"])
            if t is None:
                t = by_what[c["what"]] = {"issue": c["issue"], "what": c["what"], "target": c["target"]}
                targets.append(t)
            t[name] = {"value": c["value"], "met": c["met"]}
    return {"rows": rows, "throughput": throughput, "issue17_targets": targets}


def _cell(v: Optional[float], width: int = 9) -> str:
    return "-".rjust(width) if v is None else f"{v:{width}.2f}"


def render(doc: Dict[str, Any]) -> str:
    halves = doc["halves"]
    names = _columns(halves)
    label = {"after": "after", "before": "before", "after2": "after again"}
    cmp_ = doc["comparison"]
    out = []
    b = doc["baseline"]
    git = doc["machine"].get("git") or {}
    out.append(f"Before / after in one run  {doc['date']}  ({doc['machine']['nproc']} cores, {doc['machine']['cpu']}, "
               f"Python {doc['machine']['python']})")
    out.append(f"  before = {b['ref']} ({(b.get('commit') or '?')[:12]}), its own bench.latency in a git-archive tree; "
               f"after = this tree (HEAD {git.get('head', '?')}, {git.get('uncommitted_files', '?')} uncommitted files)")
    for h in halves:  # in the order they ran
        state = "ok" if h.get("doc") else f"FAILED ({h.get('error')})"
        ran = (f"{h['started']} - {h.get('ended', '-')} ({h.get('duration_s', '-')} s), load average "
               f"{_load(h.get('loadavg_start'))} -> {_load(h.get('loadavg_end'))}: ") if h.get("started") else ""
        out.append(f"  {label.get(h['name'], h['name']):<12} {ran}{state}"
                   + (f"; {'; '.join(h['notes'])}" if h.get("notes") else ""))
    out.append("  ms; floor = the after half's raw WS client (rows 2/3: raw REST); +sync = raw WS after "
               "user/syncrequest, props read and discarded; under 'minus RTT' rows, the floor minus RTT too")
    head = f"{'row':<58}{'RTT':>5}"
    for name in names:
        short = {"after": "after", "before": "before", "after2": "again"}.get(name, name)
        head += f"{short + ' p50':>12}{'p99':>9}"
    head += f"{'floor':>9}{'+sync':>9}"
    out.append(head)
    out.append("-" * len(head))
    for r in cmp_["rows"]:
        line = f"{r['title'][:57]:<58}{r['rtt_ms']:>5g}"
        for name in names:
            line += f"{_cell(r[name]['p50'], 12)}{_cell(r[name]['p99'])}"
        line += f"{_cell(r.get('floor_p50'))}{_cell(r.get('floor_sync_p50'))}"
        out.append(line)
    if cmp_["throughput"]:
        out.append("")
        out.append("(7) gunicorn throughput, 1 account, RTT 0:")
        for name in names:
            tp = cmp_["throughput"].get(name)
            if not tp:
                continue
            if tp.get("signals_per_s") is None:
                out.append(f"  {label.get(name, name):<12} failed: {tp.get('error')}")
                continue
            out.append(f"  {label.get(name, name):<12} {tp['signals_per_s']} signals/s ({tp['client_threads']} clients, "
                       f"{tp['elapsed_s']} s); lost {tp['lost']}, duplicated clOrdId {tp['duplicated_clordid']}, "
                       f"signals with >1 order {tp['duplicated_signal_orders']}; p50 {tp['latency_p50']} ms; "
                       f"worker CPU {tp['worker_cpu_ms_per_signal']} ms/signal")
    if cmp_["issue17_targets"]:
        out.append("")
        out.append("issue 17 targets (the before half where it has the row):")
        for t in cmp_["issue17_targets"]:
            parts = []
            for name in names:
                v = t.get(name)
                parts.append(f"{label.get(name, name)} " + (f"{v['value']} {latency._yes(v['met'])}" if v else "-"))
            out.append(f"  [issue 17] {t['what']} (target {t['target']}): " + ";  ".join(parts))
    for h in halves:
        if not h.get("doc"):
            out.append("")
            tail = (h.get("output_tail") or [])[-15:]
            out.append(f"{label.get(h['name'], h['name'])} half FAILED: {h.get('error')}" + ("; its last lines:" if tail else ""))
            out.extend("    " + line for line in tail)
    return "\n".join(out)


def run(args) -> int:
    """The --baseline run (args: bench.latency's parsed arguments)."""
    started = time.time()
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    tree = tmp / "tree"
    only = latency.parse_only(args.only)
    doc: Dict[str, Any] = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                           "mode": "baseline", "machine": latency.machine_info(),
                           "baseline": {"ref": args.baseline, "tree": str(tree)},
                           "config": {"n": args.n, "quick": args.quick, "rtts": args.rtts, "only": args.only,
                                      "throughput_s": args.throughput_s, "clients": args.clients,
                                      "skip_throughput": args.skip_throughput, "sandwich": args.baseline_sandwich},
                           "halves": []}
    print(f"bench.latency --baseline {args.baseline}: after (this tree), before ({args.baseline})"
          + (", after again" if args.baseline_sandwich else "") + f"; temp dir {tmp}", flush=True)
    before_error = None
    try:
        doc["baseline"]["commit"] = materialise(args.baseline, tree)
    except Exception as exc:  # reported, and the after half still runs
        before_error = f"could not materialise {args.baseline}: {exc}"
        print(f"[before] {before_error}", flush=True)
    accepted_here = accepted_options(ROOT)
    accepted_there = accepted_options(tree) if before_error is None else None
    plan = [("after", ROOT, accepted_here), ("before", tree, accepted_there)]
    if args.baseline_sandwich:
        plan.append(("after2", ROOT, accepted_here))
    try:
        for name, where, accepted in plan:
            if name == "before" and before_error is not None:
                doc["halves"].append({"name": "before", "tree": str(tree), "error": before_error, "doc": None})
                continue
            out = tmp / f"{name}.json"
            argv, notes = half_argv(args, accepted, out, py_spy=(name == "after"))
            half = run_half(name, where, argv, out)
            half["notes"] = notes
            half["product_code_from"] = imports_from(where)
            if half["product_code_from"] != str(where):
                notes.append(f"its product code imports from {half['product_code_from']}, not {where}")
            doc["halves"].append(half)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    doc["machine"]["loadavg_at_end"] = os.getloadavg()
    doc["duration_s"] = round(time.time() - started, 1)
    doc["comparison"] = compare(doc["halves"], only, chosen=bool(args.only))
    doc["table"] = render(doc)
    out_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print()
    print(doc["table"])
    print(f"\nJSON: {out_path} (both halves' documents and the comparison); took {doc['duration_s']} s")
    return 0 if all(h.get("doc") for h in doc["halves"] if h["name"] != "before") else 1
