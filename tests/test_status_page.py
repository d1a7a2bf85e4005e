"""``GET /`` in a real headless Chromium (Debian's package) served by a real server on 127.0.0.1:
what a person sees before and after a trade, and no secret on the page."""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess

import pytest

from phantom_scraper.status_page import render
from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET
from tests.helpers import BUY, post, ws_ready

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
    app = make_server_app()
    base = serve_app(app)
    ws_ready(app)

    before = visible_text(chromium(["--dump-dom", base + "/"], tmp_path))
    assert "No signals yet" in before
    assert "keep-alive daemon: running" in before
    assert "demo@sim" in before or "10001" in before  # the pool is shown

    client = app.test_client()
    assert post(client, BUY).status_code == 200
    assert post(client, '{"action":"buy","ticker":"ZZZ1!","quantity":1}').status_code == 400

    dom = chromium(["--dump-dom", base + "/"], tmp_path)
    after = visible_text(dom)
    assert "No signals yet" not in after
    assert "MNQ1!" in after and "acked" in after
    assert re.search(r"DEMO0001: acked via websocket in \d+(\.\d+)? ms", after), after
    assert re.search(r"DEMO0002: acked via websocket in \d+(\.\d+)? ms", after), after
    assert "ZZZ1!" in after and "unknown_symbol" in after  # errors are shown
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
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>x</b>" not in page
