"""``GET /`` in a real headless Chromium (Debian's package) served by a real server on 127.0.0.1:
what a person sees before and after a trade, and no secret on the page."""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess

import pytest

from phantom_scraper.web.status_page import render
from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET
from tests.helpers import ADMIN_HEADERS, BUY, post, wait_for, ws_ready

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def chromium(args, tmp_path, timeout_s=30):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def visible_text(dom: str) -> str:
    """The text a person reads: tags and the <head> removed, whitespace collapsed."""
    body = re.sub(r"(?is)<head.*?</head>|<script.*?</script>|<style.*?</style>", " ", dom)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_status_page_in_headless_chromium(make_server_app, serve_app, sim, tmp_path):
    app = make_server_app(status_open_in_sim=False, status_cache_s=0.0)  # behind the login, as in demo/live
    base = serve_app(app)
    ws_ready(app)

    refused = visible_text(chromium(["--dump-dom", base + "/"], tmp_path))
    assert "Connection pool" not in refused and "No signals yet" not in refused  # 401: the browser asks
    base = base.replace("http://", f"http://trader:{ADMIN}@")  # HTTP Basic, the token as the password

    before = visible_text(chromium(["--dump-dom", base + "/"], tmp_path))
    assert "No signals yet" in before
    assert "keep-alive daemon: running" in before
    assert "demo@sim" in before or "10001" in before  # the pool is shown

    client = app.test_client()
    assert post(client, BUY).status_code == 200
    assert post(client, '{"action":"buy","ticker":"ZZZ1!","quantity":1}').status_code == 400

    wait_for(lambda: "MNQZ6" in client.get("/", headers=ADMIN_HEADERS).get_data(as_text=True))  # broker state caught up
    dom = chromium(["--dump-dom", base + "/"], tmp_path)
    after = visible_text(dom)
    assert "No signals yet" not in after
    assert "MNQ1!" in after and "acked" in after
    assert re.search(r"DEMO0001: acked via websocket in \d+(\.\d+)? ms", after), after
    assert re.search(r"DEMO0002: acked via websocket in \d+(\.\d+)? ms", after), after
    assert "ZZZ1!" in after and "unknown_symbol" in after  # errors are shown
    assert "DEMO0001 Realized" in after and "Open positions" in after and "MNQZ6 long 1 @" in after  # per account
    for secret in (SECRET, ADMIN, app.extensions["runtime"].service.logins["default"].integration.access_token):
        assert secret not in dom

    if os.environ.get("STATUS_PAGE_SCREENSHOT"):  # for a person to look at: STATUS_PAGE_SCREENSHOT=/tmp/page.png
        chromium([f"--screenshot={os.environ['STATUS_PAGE_SCREENSHOT']}", "--window-size=1400,900", base + "/"], tmp_path)


def test_render_escapes_and_handles_empty_state():
    page = render({}, [])
    assert "No signals yet" in page and "No connection yet" in page
    evil = [{"received_at": 1.0, "recorder": "<b>x</b>", "status": "acked", "payload": {"ticker": "<script>"},
             "summary": '[{"account_name": "<i>", "status": "acked", "transport": "websocket", "latency_ms": 2}]'}]
    page = render({"connection_pool": {"connections": {}}}, evil)
    assert page.count("<script>") == 1 and "&lt;script&gt;" in page and "<b>x</b>" not in page  # (the refresh)


def test_status_page_shows_what_a_trader_needs(make_server_app, sim):
    """Attention at the top (unknown outcomes, risk locks), per account positions, working orders and
    bracket legs, realized P&L with an inline SVG curve, and the History table."""
    from phantom_scraper import events

    app = make_server_app(status_cache_s=0.0)
    ws_ready(app)
    client = app.test_client()
    sim.set_price("MNQZ6", 21000.0)
    assert post(client, '{"action":"buy","ticker":"MNQ1!","quantity":2}').status_code == 200
    sim.set_price("MNQZ6", 21010.0)
    assert post(client, '{"action":"sell","ticker":"MNQ1!","quantity":1,"id":"p2"}').status_code == 200
    r = post(client, '{"action":"buy","ticker":"MESZ6","quantity":1,"price":6000,'
                     '"takeProfit":{"ticks":40},"stopLoss":{"ticks":20},"id":"p3"}')
    assert r.status_code == 200, r.get_data(as_text=True)
    signal_id = r.get_json()["signal_id"]
    journal = app.extensions["runtime"].service.journal
    journal.create_intent(signal_id, 10001, "DEMO0001", 9, "placeorder", {"action": "Buy"}, f"ps-{signal_id}-10001-9",
                          state="sending")
    journal.set_intent_state(f"ps-{signal_id}-10001-9", "unknown", error="no answer")
    events.emit("risk", account="DEMO0002", locked=True, reason="daily loss limit reached")

    def page_now():
        return client.get("/", headers=ADMIN_HEADERS).get_data(as_text=True)

    # the socket's broker state catches up with the bracket's legs a moment after the webhook answer
    page = wait_for(lambda: (lambda p: p if re.search(r"Sell 1 (Limit|Stop)", visible_text(p)) else None)(page_now()))
    text = visible_text(page)
    assert page.index("id='attention'") < page.index("Connection pool")  # at the top
    assert "1 order(s) with an UNKNOWN outcome" in text and f"ps-{signal_id}-10001-9" in text
    assert "Risk locks" in text and "DEMO0002: daily loss limit reached" in text and "LOCKED" in text
    assert re.search(r"DEMO0001 Realized \(\d{4}-\d\d-\d\d\): \+20\.00 · open P&L (—|[+-]?[\d,.]+) · "
                     r"1 closed trade: 1 won, 0 lost", text), text
    assert "MNQZ6 long 1 @ 21,000" in text  # one contract left long at 21000
    # the bracket's legs by role, not by order id
    assert re.search(r"take-profit MESZ6 Sell 1 Limit", text) and re.search(r"stop-loss MESZ6 Sell 1 Stop", text), text
    assert "<svg class='equity'" in page and "<polyline" in page and "USD, realized today" in page  # with axes
    assert re.search(r"\d{4}-\d\d-\d\d DEMO0001 \+20\.00 1 1 0", text), text
    assert "src=" not in page and page.count("<script") == 1  # nothing fetched; one inline script (refresh)
