"""Summarise py-spy's collapsed stacks (``--format raw``) of the gunicorn worker (bench row 7).

    .venv/bin/python -m bench.pyspy_summary FILE [--top 25]

Prints, as a share of all samples of the worker's threads while the load ran: where the time is
spent by leaf frame (own time), grouped into the kinds of work that explain it (waiting, the
journal's SQLite, logging, JSON, the socket loop, Flask/werkzeug, the product's own code), and the
product functions with the most inclusive time.  A diagnostic for bench/RESULTS.md, not a test.
"""
from __future__ import annotations

import argparse
import collections
import re
from typing import Dict, List, Tuple

KINDS: List[Tuple[str, str]] = [
    ("idle / waiting (locks, queues, select, sleep)",
     r"\b(wait|acquire|_wait_for_tstate_lock|select|poll|sleep|get \(queue|get \(.*queue\.py)|threading\.py|queue\.py|selectors\.py"),
    ("journal (sqlite3)", r"journal|sqlite"),
    ("logging", r"logging/"),
    ("JSON", r"json/"),
    ("socket loop (asyncio, websockets)", r"asyncio|websockets|ws_client"),
    ("HTTP (gunicorn worker, werkzeug, flask)", r"gunicorn|werkzeug|flask|door/"),
    ("broker state / lanes / risk (socket events)", r"broker_state|account_lanes|lanes\.py|risk/|fill_events|exit_legs"),
    ("product, other", r"phantom_scraper|ultra_simple_server|recorder_service"),
]


def load(path: str) -> List[Tuple[List[str], int]]:
    stacks = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line or " " not in line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                stacks.append((stack.split(";"), int(count)))
            except ValueError:
                continue
    return stacks


def kind_of(frame: str) -> str:
    for name, pattern in KINDS:
        if re.search(pattern, frame):
            return name
    return "other (stdlib, C)"


def summarise(stacks: List[Tuple[List[str], int]], top: int = 25) -> str:
    total = sum(c for _, c in stacks) or 1
    by_kind: Dict[str, int] = collections.Counter()
    leaf: Dict[str, int] = collections.Counter()
    inclusive: Dict[str, int] = collections.Counter()
    for frames, count in stacks:
        frames = [f for f in frames if not f.startswith("thread ") and not f.startswith("process ")]
        if not frames:
            continue
        leaf[frames[-1]] += count
        by_kind[kind_of(frames[-1])] += count
        for frame in set(frames):
            if "phantom_scraper" in frame or "ultra_simple_server" in frame:
                inclusive[frame] += count
    out = [f"{total} samples (all threads of the worker)", "", "by kind of work (leaf frame):"]
    for name, count in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        out.append(f"  {100.0 * count / total:5.1f} %  {name}")
    out += ["", f"top {top} leaf frames (own time):"]
    for frame, count in leaf.most_common(top):
        out.append(f"  {100.0 * count / total:5.1f} %  {frame}")
    out += ["", f"top {top} product frames (inclusive):"]
    for frame, count in inclusive.most_common(top):
        out.append(f"  {100.0 * count / total:5.1f} %  {frame}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    print(summarise(load(args.file), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
