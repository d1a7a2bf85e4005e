"""Tradovate's official example clients, unchanged, run under Node against the simulator.

The clients are not part of this project (their source stays in Tradovate's public repositories).
Point ``TRADOVATE_EXAMPLES_DIR`` at a directory holding checkouts of ``example-api-js``,
``example-api-faq`` and ``example-api-trading-strategy``; each test copies the one it needs to a
temporary directory, adds what a developer adds by hand (the tutorials' ``tutorialsURLs.js`` /
``tutorialsCredentials.js``; the base URLs and credentials in the FAQ's ``data.js`` and the robot's
``index.js``), and runs it with ``tests/official_clients/harness.mjs``: a page stand-in for the
browser tutorials (elements, clicks, a CanvasJS recorder; Node's own fetch and WebSocket), and a
keyboard for the robot's terminal questions.  The robot's npm dependencies (``ws``, ``axios``) come
from its own package.json via npm.  Without Node, npm or the checkouts these tests skip;
``tests/test_sim_official_clients.py`` re-enacts the same flows without them.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from phantom_scraper.tradovate_sim import SimConfig, Simulator

CT = ZoneInfo("America/Chicago")
HERE = Path(__file__).parent / "official_clients"
EXAMPLES = Path(os.environ.get("TRADOVATE_EXAMPLES_DIR", "/nonexistent"))
NODE = shutil.which("node")
RUN_TIMEOUT_S = 180


def _node_version() -> tuple:
    try:
        out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout
        return tuple(int(x) for x in out.strip().lstrip("v").split(".")[:2])
    except (OSError, ValueError, subprocess.SubprocessError):
        return (0, 0)


pytestmark = [
    pytest.mark.skipif(NODE is None, reason="Node.js is not installed (.ci/run installs Debian's nodejs and npm)"),
    pytest.mark.skipif(NODE is not None and _node_version() < (20, 10),
                       reason="the harness needs Node 20.10 or later (fetch, WebSocket, module hooks)"),
    pytest.mark.skipif(not (EXAMPLES / "example-api-js").is_dir(),
                       reason="the official example clients are not part of this project: set "
                              "TRADOVATE_EXAMPLES_DIR to a directory with checkouts of tradovate/example-api-js, "
                              "example-api-faq and example-api-trading-strategy"),
]

QUOTE_ENTRIES = ("Bid", "HighPrice", "LowPrice", "Offer", "OpenInterest", "OpeningPrice", "SettlementPrice",
                 "TotalTradeVolume", "Trade")


def _sim(today=dt.date(2026, 11, 24), at=dt.datetime(2026, 11, 24, 9, 30, tzinfo=CT), **cfg) -> Simulator:
    sim = Simulator(SimConfig(today=today, **cfg)).start()
    sim.clock.freeze(at.timestamp())
    return sim


def _run(tmp_path: Path, sim: Simulator, scenario: str, entry: Path, root: Path, rewrites=None, **values) -> dict:
    report_path = tmp_path / f"{scenario}.json"
    harness = {"scenario": scenario, "entry": str(entry), "control": sim.control_url, "report": str(report_path),
               "rewrites": rewrites or {}, "timeout_ms": (RUN_TIMEOUT_S - 10) * 1000, **values}
    env = {**os.environ, "HARNESS": json.dumps(harness),
           "SAMPLES_LOADER": json.dumps({"root": str(root), "rewrites": rewrites or {}})}
    proc = subprocess.run([NODE, "--experimental-websocket", "--no-warnings", "--import", "./register.mjs",
                           "harness.mjs"], cwd=HERE, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    assert report_path.exists(), f"no report; exit {proc.returncode}\n{proc.stderr[-3000:]}"
    report = json.loads(report_path.read_text())
    assert proc.returncode == 0 and not report["errors"], json.dumps(report, indent=1)[-6000:]
    return report


def _tutorials(tmp_path: Path, sim: Simulator) -> Path:
    """A copy of the tutorials with the two files every tutorial imports and a developer writes."""
    root = tmp_path / "example-api-js"
    shutil.copytree(EXAMPLES / "example-api-js" / "tutorial", root / "tutorial")
    host = sim.rest_url.rsplit("/v1", 1)[0]
    (root / "tutorial" / "tutorialsURLs.js").write_text(
        "export const URLs = {\n"
        f"    DEMO_URL: '{sim.rest_url}', LIVE_URL: '{sim.rest_url}',\n"
        f"    WS_DEMO_URL: '{sim.ws_url}', WS_LIVE_URL: '{sim.ws_url}',\n"
        f"    MD_URL: '{sim.md_url}', REPLAY_URL: '{host}/replay-not-served',\n"
        "}\n")
    (root / "tutorial" / "tutorialsCredentials.js").write_text(
        "export const credentials = { name: 'demo', password: 'demo', appId: 'Sample App', appVersion: '1.0', "
        "cid: 0, sec: '' }\n")
    return root


def _app(root: Path, name: str) -> Path:
    return root / "tutorial" / "WebSockets" / name / "src" / "app.js"


@pytest.fixture
def sim():
    simulator = _sim()
    try:
        yield simulator
    finally:
        simulator.stop()


def test_ex07a_product_find_eth(tmp_path, sim):
    root = _tutorials(tmp_path, sim)
    report = _run(tmp_path, sim, "EX-07a", _app(root, "EX-07a-Making-Requests-Solution"), root)
    assert "<h1>ETH</h1>" in report["outlet"]
    assert "tickSize: 0.5<" in report["outlet"] and "valuePerPoint: 50<" in report["outlet"]


def test_ex08a_realtime_quote(tmp_path, sim):
    root = _tutorials(tmp_path, sim)
    report = _run(tmp_path, sim, "EX-08a", _app(root, "EX-08a-Realtime-Market-Data-Solution"), root,
                  symbol="MESZ6", prices=[6002.25, 6001.75])
    for entry in QUOTE_ENTRIES:
        assert f"<h3>{entry}</h3>" in report["outlet"]
    assert report["outlet"].count("<li>price:") >= 7 and report["outlet"].count("<li>size:") >= 4


def test_ex09a_quote_and_dom(tmp_path, sim):
    root = _tutorials(tmp_path, sim)
    report = _run(tmp_path, sim, "EX-09a", _app(root, "EX-09a-Realtime-Market-Data-Pt2-Solution"), root,
                  symbol="MESZ6", prices=[6003.0], best_bid=6002.75)
    assert "<h2>Bids</h2>" in report["outlet2"] and report["outlet2"].count("<li>price:") == 20
    assert "price: 6003.25<" in report["outlet2"]  # the best offer
    assert "<h3>SettlementPrice</h3>" in report["outlet"]


@pytest.mark.parametrize("kind, size", [("MinuteBar", 30), ("DailyBar", 1)])
def test_ex10a_chart(tmp_path, sim, kind, size):
    root = _tutorials(tmp_path, sim)
    report = _run(tmp_path, sim, "EX-10a", _app(root, "EX-10a-Chart-Data-Solution"), root,
                  symbol="NQZ6", type=kind, elements=100, size=size, prices=[21001.0, 21002.0])
    assert report["history_points"] == 100
    assert report["live"][-1]["y"][3] == 21002.0  # [open, high, low, close]
    assert report["renders"] > 0


def test_ex11a_tick_chart(tmp_path, sim):
    root = _tutorials(tmp_path, sim)
    report = _run(tmp_path, sim, "EX-11a", _app(root, "EX-11a-Tick-Charts-Solution"), root,
                  symbol="NQZ6", type="Tick", elements=100, size=1, prices=[20999.5, 21000.25])
    assert report["history_points"] == 100
    assert report["points"] == 102 and report["live"][-1]["y"] == 21000.25


def test_faq_large_chart_requests(tmp_path):
    sim = _sim(today=dt.date(2019, 10, 18), at=dt.datetime(2019, 10, 18, 14, 0, tzinfo=CT),
               md_max_chart_elements=60)
    try:
        root = tmp_path / "example-api-faq"
        shutil.copytree(EXAMPLES / "example-api-faq" / "example-code" / "large-chart-requests", root)
        rewrites = {"src/data.js": [["https://demo.tradovateapi.com/v1", sim.rest_url],
                                    ["wss://md.tradovateapi.com/v1/websocket", sim.md_url],
                                    ["wss://demo.tradovateapi.com/v1/websocket", sim.ws_url],
                                    ["wss://live.tradovateapi.com/v1/websocket", sim.ws_url],
                                    ['"Your credentials here"', '"demo"']]}
        report = _run(tmp_path, sim, "FAQ-large-chart", root / "src" / "index.js", root, rewrites)
        xs = report["xs"]
        assert xs[-1] == "2019-10-07T00:00:00.000Z" and xs[0] == "2019-10-18T19:00:00.000Z"
        hours = [h for h in range(int(_epoch(xs[-1])), int(_epoch(xs[0])) + 1, 3600) if _in_session(h)]
        assert sorted(set(xs)) == [_to_json(h) for h in hours]  # every session hour (pages overlap by one)
    finally:
        sim.stop()


def test_trading_strategy_robot(tmp_path, sim):
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    root = tmp_path / "example-api-trading-strategy"
    shutil.copytree(EXAMPLES / "example-api-trading-strategy", root)
    install = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=root, capture_output=True, text=True,
                             timeout=300)
    if install.returncode != 0:
        pytest.skip(f"npm could not install the robot's dependencies: {install.stderr[-500:]}")
    rewrites = {"index.js": [["https://demo.tradovateapi.com/v1", sim.rest_url],
                             ["wss://demo.tradovateapi.com/v1/websocket", sim.ws_url],
                             ["wss://md.tradovateapi.com/v1/websocket", sim.md_url],
                             ["process.env.USER        = ''", "process.env.USER        = 'demo'"],
                             ["process.env.PASS        = ''", "process.env.PASS        = 'demo'"]]}
    report = _run(tmp_path, sim, "trading-strategy", root / "index.js", root, rewrites,
                  symbol="NQZ6", prices=[21001.0, 21002.5])
    events = report["events"]
    assert events["usersyncinit"] >= 1 and events["dom"] >= 1 and events["quote"] >= 1
    assert report["chart_events"] >= 2 + 2  # history packet(s), end of history, then one per trade
    assert report["last_chart"]["tks"][0]["p"] + report["last_chart"]["bp"] == 21002.5 / 0.25
    assert report["last_quote"]["entries"]["Trade"]["price"] == 21002.5
    assert report["last_dom"]["bids"][0]["price"] == 21002.25


def _in_session(epoch: float) -> bool:
    local = dt.datetime.fromtimestamp(epoch, CT)
    return not (local.weekday() == 5 or local.hour == 16 or (local.weekday() == 6 and local.hour < 17)
                or (local.weekday() == 4 and local.hour > 16))


def _epoch(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()


def _to_json(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
