"""The server over real HTTP on 127.0.0.1: chunked bodies, secrets in logs and bodies, and
``python ultra_simple_server.py`` as a user runs it."""
from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from phantom_scraper import redact
from phantom_scraper.config import Credentials
from phantom_scraper.tradovate_sim import SimConfig, Simulator, UserSpec
from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET
from tests.helpers import SIM_TEST_CONFIG, server_settings
from tests.helpers import BUY, wait_for, ws_ready

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def test_chunked_oversize_body_is_413(make_server_app, serve_app, sim):
    base = serve_app(make_server_app())
    pad = "x" * (70 * 1024)

    def chunks():  # no Content-Length: the server must cut the stream off itself
        yield b'{"action":"buy","ticker":"MNQ1!","quantity":1,"pad":"'
        for i in range(0, len(pad), 8192):
            yield pad[i:i + 8192].encode()
        yield b'"}'

    r = requests.post(f"{base}/webhook/{SECRET}", data=chunks(), headers={"Content-Type": "text/plain"}, timeout=5)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"
    small = iter([BUY[:10].encode(), BUY[10:].encode()])
    r = requests.post(f"{base}/webhook/{SECRET}", data=small, headers={"Content-Type": "text/plain"}, timeout=5)
    assert r.status_code == 200, r.text
    assert len(sim.orders()) == 2


def test_no_secret_in_bodies_status_or_logs(tmp_path, serve_app, caplog):
    """Webhook secret, admin token, Tradovate password, access token: never in a response body,
    the status JSON, the status page, or a log line (ours or the werkzeug access log)."""
    password = "Pw-Tradovate-5ecret-77"
    config = SimConfig(**{**SIM_TEST_CONFIG.__dict__, "users": (UserSpec(name="trader", password=password),)})
    import ultra_simple_server

    caplog.set_level(logging.DEBUG)
    ws_level = logging.getLogger("websockets").level
    # What the server installs on loggers (not on handlers: the test's handler stays unfiltered,
    # so a secret our own code logs would show).
    ultra_simple_server.install_log_redaction()
    try:
        with Simulator(config) as sim:
            from ultra_simple_server import create_app

            settings = server_settings(sim, tmp_path, credentials=Credentials("trader", password),
                                       webhook_budget_s=0.3)
            app = create_app(settings)
            runtime = app.extensions["runtime"]
            runtime.boot(wait=True)
            try:
                base = serve_app(app)
                ws_ready(app)
                token = runtime.service.logins["default"].integration.access_token
                secrets = {"webhook secret": SECRET, "admin token": ADMIN, "password": password,
                           "access token": token}
                assert token and len(token) > 16
                bodies = []

                def call(method, path, **kw):
                    r = requests.request(method, base + path, timeout=5, **kw)
                    bodies.append((method, path, r.status_code, r.text))
                    return r

                admin = {"Authorization": f"Bearer {ADMIN}"}
                assert call("POST", f"/webhook/{SECRET}", data=BUY).status_code == 200
                call("POST", f"/webhook/{SECRET}", data=BUY)  # duplicate
                call("POST", f"/webhook/{SECRET}?secret={SECRET}", data='{"action":"buy"')
                call("POST", f"/webhook/{SECRET}", data=b"\xff", headers={"Content-Type": "application/octet-stream"})
                call("POST", f"/webhook/{SECRET}", data='{"action":"buy","ticker":"ZZZ1!"}')
                call("POST", "/webhook", data=json.dumps({"secret": SECRET, "action": "sell", "ticker": "MES1!"}))
                call("POST", "/webhook", data=json.dumps({"secret": ADMIN, "action": "sell", "ticker": "MES1!"}))
                call("POST", f"/webhook/{ADMIN}", data=BUY)
                call("POST", f"/webhook/{password}", data=BUY)
                call("POST", f"/webhook/{token}", data=BUY)
                call("POST", "/api/manual-trade", data='{"action":"buy","ticker":"MYM1!","secret":"%s"}' % SECRET,
                     headers=admin)
                call("POST", "/api/manual-trade", data=BUY, headers={"Authorization": f"Bearer {password}"})
                sim.faults.response_latency_ms = 500
                assert call("POST", f"/webhook/{SECRET}", data='{"action":"buy","ticker":"MGC1!"}').status_code in (200, 202)
                sim.faults.response_latency_ms = 0
                sim.faults.http_500_next = 1
                call("POST", f"/webhook/{SECRET}", data='{"action":"buy","ticker":"M2K1!"}')
                call("GET", "/api/signals", headers=admin)
                call("GET", "/api/websocket-status")
                call("GET", "/health")
                call("GET", "/")
                call("GET", f"/nope/{SECRET}")
                # the signal answered 202 finishes: its log lines are in too
                wait_for(lambda: all(s["status"] not in ("received", "executing")
                                     for s in requests.get(base + "/api/signals", headers=admin, timeout=5).json()["signals"]),
                         timeout_s=5)
            finally:
                runtime.shutdown(5)
    finally:
        for name in ("werkzeug", "gunicorn.access", "gunicorn.error"):
            logging.getLogger(name).removeFilter(ultra_simple_server._ACCESS_FILTER)
        logging.getLogger("websockets").setLevel(ws_level)

    # urllib3's lines about this test's own requests to the server are the client's log, not the server's
    log_text = "\n".join(r.getMessage() for r in caplog.records
                         if not (r.name.startswith("urllib3") and base in r.getMessage()))
    assert "POST /webhook/*** HTTP/1.1" in log_text  # the access log is there, redacted
    assert "Order signal=" in log_text or "order" in log_text.lower()
    for what, value in secrets.items():
        assert value not in log_text, f"the {what} is in the log"
        for method, path, status, text in bodies:
            assert value not in text, f"the {what} is in the answer to {method} {path} ({status})"


# -- python ultra_simple_server.py -------------------------------------------------------------

def _run_server(tmp_path, **env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADOVATE_", "WEBHOOK_", "ADMIN_", "DATABASE_"))}
    env.update(PORT="0", HOST="127.0.0.1", DATABASE_PATH=str(tmp_path / "data" / "journal.sqlite3"),
               PYTHONUNBUFFERED="1", **env_extra)
    return subprocess.Popen([PYTHON, str(REPO / "ultra_simple_server.py")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_directly_without_env_places_a_paper_trade_with_the_printed_curl(tmp_path):
    proc = _run_server(tmp_path)
    try:
        from tests.helpers import LineReader

        reader = LineReader(proc.stdout)  # never block on readline: a hung start fails at the deadline
        errors = LineReader(proc.stderr)  # the log: drained so the server never blocks on a full pipe

        def curl_line():
            return next((ln.strip() for ln in list(reader.lines) if ln.strip().startswith("curl ")), None)
        try:
            curl = wait_for(lambda: curl_line() or proc.poll() is not None, timeout_s=20, interval_s=0.05)
        except AssertionError:
            curl = None
        curl = curl if isinstance(curl, str) else None
        lines = list(reader.lines)
        out = "".join(lines)
        assert curl, f"no curl printed; stdout:\n{out}\nstderr:\n{errors.text()}"
        assert "webhook URL" in out and "secret" in out and "PAPER TRADING" in out
        secret = re.search(r"secret\s*:\s*(\S+)", out).group(1)
        args = shlex.split(curl)
        url = next(a for a in args if a.startswith("http://"))
        body = args[args.index("-d") + 1]
        headers = dict(h.split(": ", 1) for h in (args[i + 1] for i, a in enumerate(args) if a == "-H"))
        assert url.startswith("http://127.0.0.1:") and url.endswith("/webhook/" + secret)
        assert re.search(r"webhook URL\s*:\s*" + re.escape(url.rsplit("/", 1)[0]), out)
        r = requests.post(url, data=body, headers=headers, timeout=5)
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["status"] == "acked" and all(a["order_ids"] for a in data["accounts"])
        base = url.split("/webhook/")[0]
        status = requests.get(base + "/api/websocket-status", timeout=5).json()
        assert status["environment"] == "sim" and status["connection_pool"]["size"] >= 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(base + "/health", timeout=2)
        # the secret is kept for the next start, readable only by its owner
        kept = tmp_path / "data" / "sim_webhook_secret"
        assert kept.read_text().strip() == secret and (kept.stat().st_mode & 0o077) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        reader.join(5)
        errors.join(5)


@pytest.mark.parametrize("env,missing", [
    ({"TRADOVATE_ENV": "demo"}, ["TRADOVATE_USERNAME", "TRADOVATE_PASSWORD", "WEBHOOK_SECRET"]),
    ({"TRADOVATE_ENV": "live", "TRADOVATE_USERNAME": "u"}, ["TRADOVATE_PASSWORD", "WEBHOOK_SECRET"]),
    ({"TRADOVATE_ENV": "demo", "TRADOVATE_USERNAME": "u", "TRADOVATE_PASSWORD": "p"}, ["WEBHOOK_SECRET"]),
])
def test_demo_or_live_without_credentials_refuses_to_start(tmp_path, env, missing):
    proc = _run_server(tmp_path, **env)
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "Cannot start" in err
    for name in missing:
        assert name in err
    present = {"TRADOVATE_USERNAME", "TRADOVATE_PASSWORD", "WEBHOOK_SECRET"} - set(missing)
    for name in present:
        assert name not in err
    assert "curl" not in out


def test_import_and_create_app_open_no_socket_and_start_no_thread(tmp_path):
    """In a fresh interpreter: importing the server, its gunicorn config and calling
    create_app() (settings from the environment) opens no socket and starts no thread."""
    code = """
import socket, threading, sys
import urllib3  # its import probes IPv6 support with a throw-away socket: a library's, not ours
opened = []
real = socket.socket.__init__
def spy(self, *a, **kw):
    opened.append(a); real(self, *a, **kw)
socket.socket.__init__ = spy
import ultra_simple_server
import gunicorn_conf_probe  # noqa
app = ultra_simple_server.create_app()
assert app.extensions["runtime"].service.state == "new"
names = [t.name for t in threading.enumerate()]
print("THREADS", names, "SOCKETS", len(opened))
sys.exit(0 if names == ["MainThread"] and not opened else 1)
"""
    probe = tmp_path / "gunicorn_conf_probe.py"
    probe.write_text((REPO / "gunicorn.conf.py").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADOVATE_", "WEBHOOK_", "ADMIN_"))}
    env.update(DATABASE_PATH=str(tmp_path / "data" / "j.sqlite3"), PYTHONPATH=f"{REPO}{os.pathsep}{tmp_path}")
    done = subprocess.run([PYTHON, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
