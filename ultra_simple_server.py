"""Flask routes: the webhook, the WebSocket status JSON, manual trades, health, a status page.

``create_app()`` is the composition root: it builds the connection pool (``recorder_service``) and
the service, and hands the one to the other (nothing under ``phantom_scraper/`` imports a module
from this directory).  It starts nothing.  Background work (embedded simulator in
``sim`` mode, logins, journal recovery, pool warm-up, keep-alive daemon) starts per worker
process: from gunicorn's ``post_worker_init`` hook (gunicorn.conf.py), on the first request, or in
``main()`` when run directly (``python ultra_simple_server.py``).
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
import threading
from typing import Optional

from flask import Flask, Response, g, request

import recorder_service
from phantom_scraper import redact
from phantom_scraper.web.account_view import AccountView
from phantom_scraper.web import console, read_routes
from phantom_scraper.web.alert_log import AlertLog
from phantom_scraper.web.admin_auth import AdminGate, FailureLimiter, admin_required
from phantom_scraper.web.csrf import same_origin_json
from phantom_scraper.ops.metrics import Metrics
from phantom_scraper.config import ConfigError, Settings
from phantom_scraper.door.policy import SourcePolicy
from phantom_scraper.journal.errors import JournalUnavailableError
from phantom_scraper.journal.health import RETRY_AFTER_S
from phantom_scraper.app import malloc_arenas
from phantom_scraper.app.service import ServiceUnavailable, TradingService, WebhookResult

logger = logging.getLogger(__name__)

_TEXT_TYPES = re.compile(r"^(text/[\w.+-]+|application/(json|[\w.+-]+\+json|x-www-form-urlencoded))$", re.I)
# ``token``: PickMyTrade's messages carry the secret there (docs/PAYLOAD.md)
_SECRET_IN_TEXT = re.compile(r'"(?:secret|passphrase|token)"\s*:\s*"((?:[^"\\]|\\.)*)"', re.I)


class Runtime:
    """Per-process state hung on the app: settings, the service, the embedded simulator."""

    def __init__(self, settings: Settings, service: TradingService):
        self.settings = settings
        self.service = service
        self.simulator = None
        self.notifier = None  # phantom_scraper.ops.notify.Notifier when NOTIFY_URLS is set
        self.metrics = None  # phantom_scraper.ops.metrics.Metrics (create_app sets it)
        self._forget_contracts = None  # unsubscribes fill_events.remember_contracts
        self.account_view = AccountView(ttl_s=settings.status_cache_s)  # the status page's broker reads
        # every webhook request, refused ones included; never kept past the journal's retention
        days = settings.journal_retention_days
        self.alert_log = AlertLog(max_age_s=min(7 * 86400, days * 86400) if days and days > 0 else 7 * 86400)
        self._boot_lock = threading.Lock()  # serialises the one-time boot
        self._booted = False

    def boot(self, *, wait: bool = False) -> None:
        """Start background work once per process (idempotent)."""
        with self._boot_lock:
            if self._booted:
                return
            self._booted = True
        if self.settings.tradovate_env == "sim" and not self.settings.rest_url:
            from phantom_scraper.tradovate_sim import Simulator

            self.simulator = Simulator().start()
            logger.info("Embedded Tradovate simulator (paper trading) at %s", self.simulator.rest_url)
            self.settings = self.settings.replace(rest_url=self.simulator.rest_url, ws_url=self.simulator.ws_url,
                                                  md_url=self.settings.md_url or self.simulator.md_url)
            self.service.settings = self.settings
        if self.metrics is not None:
            self.metrics.start()
        if self._forget_contracts is None:  # fills are shown by contract name
            from phantom_scraper import events
            from phantom_scraper.ops import fill_events

            self._forget_contracts = events.subscribe(fill_events.remember_contracts)
        if self.settings.notify_urls:
            from phantom_scraper.ops.notify import Notifier

            s = self.settings
            self.notifier = Notifier(s.notify_urls, s.notify_events, disconnect_after_s=s.notify_disconnect_after_s,
                                     coalesce_s=s.notify_coalesce_s, min_interval_s=s.notify_min_interval_s,
                                     send_timeout_s=s.rest_timeout_s, contract_info=self._contract_info).start()
        if wait:
            self.service.start()
        else:
            self.service.start_in_background()

    def _contract_info(self, contract_id: int):
        """(name, USD per point) of a contract, asked of the first login's broker once (cached)."""
        from phantom_scraper.ops import history_source

        for login in list(self.service.logins.values()):
            return history_source.contract_info(login.integration, contract_id)
        return contract_id, None

    def shutdown(self, timeout_s: float = 10.0) -> None:
        self.service.stop(timeout_s)
        if self.notifier is not None:
            self.notifier.stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self._forget_contracts is not None:
            self._forget_contracts()
            self._forget_contracts = None
        self.alert_log.stop()
        if self.simulator is not None:
            self.simulator.stop()

    def unknown_open(self) -> Optional[int]:
        """Order intents in 'unknown' (need a person's attention), or None without a journal."""
        journal = self.service.journal
        if journal is None:
            return None
        return sum(1 for intent in journal.pending_intents() if intent["state"] == "unknown")


def _sim_secret(settings: Settings) -> str:
    """A stable per-install webhook secret for paper trading (kept in the data directory)."""
    folder = os.path.dirname(os.path.abspath(settings.database_path))
    path = os.path.join(folder, "sim_webhook_secret")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            value = fh.read().strip()
            if value:
                return value
    except OSError:
        pass
    os.makedirs(folder, exist_ok=True)
    value = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value)
    return value


def load_settings(env=None) -> Settings:
    settings = Settings.from_env(env)
    if settings.tradovate_env == "sim":
        if not settings.webhook_secret:
            settings = settings.replace(webhook_secret=_sim_secret(settings), webhook_secret_generated=True)
        if not settings.admin_token:
            settings = settings.replace(admin_token=settings.webhook_secret)
    else:
        missing = settings.missing_for_broker()
        if missing:
            raise ConfigError(f"TRADOVATE_ENV={settings.tradovate_env} needs: {', '.join(missing)}")
    _register_secrets(settings)
    return settings


def _register_secrets(settings: Settings) -> None:
    creds = settings.credentials
    redact.register_secret(settings.webhook_secret or "", settings.admin_token or "",
                           creds.password if creds else "", creds.sec if creds else "")


def _read_capped(stream, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``stream`` (a WSGI input that ends at the end of the body)."""
    parts, size = [], 0
    while size < limit:
        chunk = stream.read(min(65536, limit - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def create_app(settings: Optional[Settings] = None, *, boot_on_first_request: bool = True) -> Flask:
    """The app factory.  Nothing here opens a socket or starts a thread."""
    if settings is None:
        try:
            from dotenv import load_dotenv

            load_dotenv()
        except ImportError:  # python-dotenv is in requirements.txt; tolerate its absence
            pass
        settings = load_settings()
    _register_secrets(settings)
    malloc_arenas.limit(settings.malloc_arena_max)  # before any thread starts (only new arenas obey)
    app = Flask(__name__)
    # Never answer /webhook//<token> with a redirect: its Location would echo the token.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    runtime = Runtime(settings, TradingService(settings, pool=recorder_service.WebSocketPool()))
    runtime.metrics = Metrics(status=lambda: runtime.service.status(), unknown_open=runtime.unknown_open,
                              notifier_status=lambda: runtime.notifier.status() if runtime.notifier else None)
    app.extensions["runtime"] = runtime

    @app.before_request
    def _boot_lazily():
        if boot_on_first_request:
            runtime.boot()

    def service() -> TradingService:
        return runtime.service

    # -- errors: one mapper ----------------------------------------------------------------------
    def error(status: int, code: str, message: str, **extra) -> Response:
        body = {"success": False, "error": {"code": code, "message": message, **extra}}
        return app.response_class(json.dumps(body, indent=2) + "\n", status=status, mimetype="application/json")

    @app.errorhandler(413)
    def _too_large(_exc):
        return error(413, "body_too_large", f"the body exceeds {settings.max_body_bytes} bytes")

    @app.errorhandler(404)
    def _not_found(_exc):
        return error(404, "not_found", "no such route")

    @app.errorhandler(405)
    def _bad_method(_exc):
        return error(405, "method_not_allowed", "method not allowed on this route")

    @app.errorhandler(ServiceUnavailable)
    def _unavailable(exc):
        return error(503, "not_ready", str(exc))

    @app.errorhandler(JournalUnavailableError)
    def _journal_unavailable(_exc):
        # Disk full, read-only, database down, or the journal file gone: nothing was recorded, so
        # nothing was placed.  Logged once per episode by the journal (journal/health.py), not here.
        response = error(503, "journal_unavailable",
                         "the journal cannot record signals right now; nothing was placed; retry later")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc):
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return error(exc.code or 500, "http_error", exc.description or exc.name)
        logger.exception("Unhandled error on %s", redact.redact(request.path))
        return error(500, "internal_error", "internal error; see the server log")

    def as_response(result: WebhookResult) -> Response:
        # Compact: these answers go to TradingView and scripts (the status JSON stays indented).
        return app.response_class(json.dumps(result.body, separators=(",", ":"), default=str) + "\n",
                                  status=result.http_status, mimetype="application/json")

    # -- webhook -----------------------------------------------------------------------------------
    sources = SourcePolicy(settings)

    def client_ip() -> str:
        # X-Forwarded-For's right-most entry, only from a trusted proxy (phantom_scraper/door/policy.py).
        return sources.source(request.remote_addr or "", request.headers.get("X-Forwarded-For"))

    def read_body():
        """(raw bytes, error response or None)."""
        ctype = (request.mimetype or "").strip()
        if ctype and not _TEXT_TYPES.match(ctype):
            return None, error(415, "unsupported_media_type", f"the body must be text or JSON, not {ctype}")
        if request.content_length is None and request.environ.get("wsgi.input_terminated"):
            # Chunked, no Content-Length: werkzeug would silently cut the body at the limit;
            # read one byte past it ourselves so an oversize body is a 413, never truncated.
            raw = _read_capped(request.environ["wsgi.input"], settings.max_body_bytes + 1)
        else:
            raw = request.get_data(cache=False)  # 413 above MAX_CONTENT_LENGTH
        if len(raw) > settings.max_body_bytes:
            return None, error(413, "body_too_large", f"the body exceeds {settings.max_body_bytes} bytes")
        g.alert_body = raw  # the alert log files it (redacted, truncated) after the answer
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, error(415, "unsupported_media_type", "the body is not UTF-8 text")
        return raw, None

    app.extensions["admin_gate"] = AdminGate(
        settings.admin_token, sim_open=settings.tradovate_env == "sim" and settings.status_open_in_sim,
        limiter=FailureLimiter(settings.admin_max_failures, settings.admin_failure_window_s),
        client_ip=client_ip, error=error)

    def source_refused() -> Optional[Response]:
        # Under gunicorn the door (phantom_scraper/door) refuses these before a thread; this is the
        # check for `python ultra_simple_server.py` and defence in depth.
        if not sources.webhook_allowed(client_ip()):
            logger.warning("Webhook refused: source %s not in the allow-list", client_ip())
            return error(403, "forbidden_source", "source address not in the allow-list; nothing was placed")
        return None

    @app.after_request
    def _alert_log(response: Response) -> Response:
        if request.endpoint in ("webhook_with_token", "webhook_with_body_secret"):
            try:
                runtime.alert_log.record(
                    source=client_ip(), route=request.path, method=request.method, status=response.status_code,
                    body=g.get("alert_body"), answer=None if response.is_streamed else response.get_data(),
                    note=None if "alert_body" in g else "body not read")
            except Exception:  # noqa: BLE001 - the answer goes out whatever happens here
                logger.exception("alert log: could not record a request")
        return response

    def webhook_common(token: Optional[str], raw: bytes) -> Response:
        recorder = service().recorder_for_token(token)
        if recorder is None:
            return error(401, "unauthorized", "missing or wrong webhook secret; nothing was placed")
        return as_response(service().handle_signal(recorder, raw))

    @app.post("/webhook/<path:token>")
    def webhook_with_token(token: str):
        refused = source_refused()
        if refused is not None:
            return refused
        if service().recorder_for_token(token) is None:  # before reading a byte of the body
            return error(401, "unauthorized", "missing or wrong webhook secret; nothing was placed")
        raw, err = read_body()
        if err is not None:
            return err
        return webhook_common(token, raw)

    @app.post("/webhook")
    def webhook_with_body_secret():
        refused = source_refused()
        if refused is not None:
            return refused
        raw, err = read_body()
        if err is not None:
            return err
        match = _SECRET_IN_TEXT.search(raw.decode("utf-8"))
        token = None
        if match:
            try:
                token = json.loads('"' + match.group(1) + '"')
            except ValueError:
                token = None
        return webhook_common(token, raw)

    # -- status and admin ----------------------------------------------------------------------------
    @app.get("/api/websocket-status")
    @admin_required(open_in_sim=True)
    def websocket_status():
        body = redact.scrub_values(service().status())  # defence in depth: it never holds one
        return app.response_class(json.dumps(body, indent=2, default=str) + "\n", mimetype="application/json")

    # State-changing admin routes: JSON bodies only, never from another site (web/csrf.py).
    app.extensions["csrf"] = {"error": error, "trust_forwarded_host": settings.trust_proxy_headers}

    @app.post("/api/manual-trade")
    @admin_required
    @same_origin_json
    def manual_trade():
        raw, err = read_body()
        if err is not None:
            return err
        return as_response(service().manual_trade(raw))

    def kill_switch_selector():
        # Never a default: a missing or unreadable body is not "all accounts".
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return None, None, error(400, "invalid_json", 'the body must be a JSON object with "accounts"')
        if "accounts" not in body:
            return None, None, error(400, "missing_field", 'name the accounts: "all" or a list of names',
                                     field="accounts")
        return body["accounts"], body, None

    @app.post("/api/kill-switch")
    @admin_required
    @same_origin_json
    def kill_switch():
        """Lock accounts (until unlocked) and flatten them: {"accounts": "all" | [names], "flatten": true}."""
        selector, body, err = kill_switch_selector()
        if err is not None:
            return err
        return as_response(service().kill_switch(selector, flatten=body.get("flatten", True) is not False))

    @app.delete("/api/kill-switch")
    @admin_required
    @same_origin_json
    def kill_switch_release():
        """Unlock accounts (risk locks and kill switch): {"accounts": "all" | [names]}."""
        selector, _body, err = kill_switch_selector()
        if err is not None:
            return err
        return as_response(service().unlock_accounts(selector))

    # The read-only admin routes (/api/signals, /api/accounts, /api/history, /metrics) and the
    # console (the page and its buttons): web/read_routes.py, web/console.py.
    read_routes.register(app, runtime, error)
    console.register(app, runtime, trust_forwarded_host=settings.trust_proxy_headers)

    @app.get("/health")
    def health():
        ready, checks = service().health()
        body = {"status": "ok" if ready else "not_ready", "live": True, "ready": ready, "checks": checks}
        return app.response_class(json.dumps(body, indent=2) + "\n", status=200 if ready else 503,
                                  mimetype="application/json")

    return app


# -- running directly ----------------------------------------------------------------------------

def configure_logging(settings: Optional[Settings] = None) -> None:
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact.install()  # every root handler: registered secrets and /webhook/<token> become ***
    install_log_redaction(settings.log_websocket_frames)


_ACCESS_FILTER = redact.RedactingFilter()


def install_log_redaction(log_websocket_frames: Optional[bool] = None) -> None:
    """Logger-level protection that does not depend on which handlers exist (idempotent).

    * the werkzeug and gunicorn access/error loggers get the redacting filter (request lines
      carry ``/webhook/<token>``);
    * the ``websockets`` library logs every frame at DEBUG, the authorize frame (with the access
      token) included: it is held at INFO unless ``LOG_WEBSOCKET_FRAMES=1``.
    """
    for name in ("werkzeug", "gunicorn.access", "gunicorn.error"):
        log = logging.getLogger(name)
        if _ACCESS_FILTER not in log.filters:
            log.addFilter(_ACCESS_FILTER)
        for handler in log.handlers:
            if not any(isinstance(f, redact.RedactingFilter) for f in handler.filters):
                handler.addFilter(redact.RedactingFilter())
    if log_websocket_frames is None:
        log_websocket_frames = Settings.from_env().log_websocket_frames
    if not log_websocket_frames:
        ws_log = logging.getLogger("websockets")
        if ws_log.getEffectiveLevel() < logging.INFO:
            ws_log.setLevel(logging.INFO)


def startup_banner(settings: Settings, base: str) -> str:
    """What a person needs to start: the URLs and, in ``sim`` mode (paper trading only), the webhook
    secret and the admin login -- printed once at start (by ``main()``, and under gunicorn by
    gunicorn.conf.py: on a hosting platform the log is the only place a user can read it).
    Written to standard output, not through the logging redaction, on purpose."""
    sim = settings.tradovate_env == "sim"
    mode = "PAPER TRADING on the embedded simulator" if sim else f"Tradovate {settings.tradovate_env.upper()}"
    shown = sim and settings.webhook_secret_generated  # a secret the user set is not repeated
    secret = settings.webhook_secret if shown else "<your WEBHOOK_SECRET>"
    lines = ["", f"phantom-scraper is running ({mode})",
             f"  console     : {base}/   (on a hosting platform: your app's public URL)",
             f"  status JSON : {base}/api/websocket-status",
             f"  webhook URL : {base}/webhook/{secret}"]
    if shown:
        lines.append(f"  secret      : {settings.webhook_secret}   (made for paper trading; kept in "
                     f"{os.path.dirname(os.path.abspath(settings.database_path))})")
    same = settings.admin_token == settings.webhook_secret
    lines.append("  admin login : any user name; password: " + (
        ("the secret above" if shown else "your WEBHOOK_SECRET") + " (set ADMIN_TOKEN for another)" if same
        else "your ADMIN_TOKEN"))
    if shown:
        lines += ["", "Place a paper trade:",
                  f"  curl -s -X POST {base}/webhook/{settings.webhook_secret} -H 'Content-Type: application/json' "
                  "-d '{\"action\":\"buy\",\"ticker\":\"MNQ1!\",\"quantity\":1}'"]
    return "\n".join(lines) + "\n\n"


def main(argv=None) -> int:
    try:
        configure_logging()
        app = create_app()
    except ConfigError as exc:
        sys.stderr.write(f"Cannot start: {exc}\n")
        return 2
    runtime: Runtime = app.extensions["runtime"]
    port, host = runtime.settings.port, runtime.settings.host
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("HOST=%s: this server (werkzeug) is for local use only; it has no deadlines or "
                       "connection caps for slow clients. Anything reachable from the internet runs the "
                       "Procfile's gunicorn command (see README, Deploying).", host)
    runtime.boot(wait=True)
    if runtime.service.state != "ready":
        sys.stderr.write(f"Cannot start: {runtime.service.start_error}\n")
        runtime.shutdown()
        return 2
    settings = runtime.settings
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    port = server.server_port
    sys.stdout.write(startup_banner(settings, f"http://{host}:{port}"))
    sys.stdout.flush()
    import signal as _signal

    def _term(_signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    _signal.signal(_signal.SIGTERM, _term)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()  # refuse new connections at once while in-flight work drains
        runtime.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
