"""Typed, frozen configuration read once from the environment (and ``.env``).

``VARIABLES`` is the table of every environment variable the project reads, and
``Settings.from_env`` is the one place that reads them, but for two readers the table names too:
the embedded simulator's calendar pin ``TRADOVATE_SIM_TODAY`` (the simulator is a program of its
own) and the hosting platforms' variables ``storage_check`` looks at.  The README's table lists the same names (tests/test_config_table.py checks both).

Every time constant carries its unit in its name.  Secrets are ``repr=False`` so a logged or
printed ``Settings`` never shows them.  Tests build ``Settings`` directly (or with
``Settings.from_env(overrides)``) and scale the time constants down.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Tuple

from phantom_scraper.hours import TradingHours, TradingHoursError

ENVIRONMENTS = ("sim", "demo", "live")

# Environment variables each platform sets in its processes.
PLATFORM_VARS = (
    ("DYNO", "Heroku"),
    ("RAILWAY_ENVIRONMENT", "Railway"),
    ("RAILWAY_PROJECT_ID", "Railway"),
    ("RENDER", "Render"),
    ("FLY_APP_NAME", "Fly.io"),
    ("K_SERVICE", "Cloud Run"),
)

# Tradovate's real hosts (docs/TRADOVATE.md, "Hosts").
REAL_REST_URLS = {
    "demo": "https://demo.tradovateapi.com/v1",
    "live": "https://live.tradovateapi.com/v1",
}
# One market-data host serves demo and live (docs/TRADOVATE.md, "Hosts").
REAL_MD_URL = "wss://md.tradovateapi.com/v1/websocket"


def derive_ws_url(rest_url: str) -> str:
    """The user socket URL is the REST base with the scheme swapped and ``/websocket`` appended."""
    base = rest_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return base + "/websocket"


class ConfigError(ValueError):
    """The configuration is incomplete or invalid; the message names the variables."""


def _parsed(env: Mapping[str, str], name: str, default, parse: Callable[[str], object], what: str):
    """``parse(env[name])``, or ``default`` when unset or empty; ConfigError naming ``name`` if it fails."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be {what}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _parsed(env, name, default, float, "a number")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _parsed(env, name, default, int, "an integer")


def _database_url(env: Mapping[str, str], name: str, default: Optional[str]) -> Optional[str]:
    """DATABASE_URL when it names PostgreSQL; unset means SQLite at DATABASE_PATH."""
    url = (env.get(name) or "").strip()
    if not url:
        return default
    if not url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL (unset it to use SQLite at DATABASE_PATH)")
    return url


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    return _parsed(env, name, default, lambda raw: raw.strip().lower() in ("1", "true", "yes", "on"), "a flag")


def _opt_float(env: Mapping[str, str], name: str, default: Optional[float]) -> Optional[float]:
    return _parsed(env, name, default, float, "a number (empty: no limit)")


def _opt_int(env: Mapping[str, str], name: str, default: Optional[int]) -> Optional[int]:
    return _parsed(env, name, default, int, "a whole number (empty: no limit)")


def _trading_hours(env: Mapping[str, str], name: str, default: str) -> str:
    """TRADING_HOURS, checked now (a bad window stops the start-up with the variable named)."""
    text = (env.get(name) or "").strip()
    try:
        TradingHours.parse(text)
    except TradingHoursError as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    return text or default


def _drift_action(text: Optional[str], default: str) -> str:
    value = (text or "").strip().lower() or default
    if value not in ("alert", "heal"):
        raise ConfigError(f"DRIFT_ACTION: {text!r} is not alert or heal")
    return value


def _zone(env: Mapping[str, str], name: str, default):
    text = (env.get(name) or "").strip()
    if not text:
        return default
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{name}: unknown time zone {text!r} (an IANA name such as America/Chicago)") from exc
    return text


def _str(env: Mapping[str, str], name: str, default):
    return env.get(name) or default


def _csv(env: Mapping[str, str], name: str, default):
    items = tuple(a.strip() for a in (env.get(name) or "").split(",") if a.strip())
    return items or default


@dataclass(frozen=True)
class Variable:
    """One environment variable: the ``Settings`` field it sets (``credentials.<x>`` for a login
    field; None when something else reads it), how its text is read, what it means."""

    name: str
    field: Optional[str]
    read: Callable[[Mapping[str, str], str, object], object]
    meaning: str


VARIABLES: Tuple[Variable, ...] = (
    Variable("TRADOVATE_ENV", "tradovate_env", _str, "sim (default: the embedded simulator), demo or live"),
    Variable("TRADOVATE_USERNAME", "credentials.username", _str, "the login (required for demo/live)"),
    Variable("TRADOVATE_PASSWORD", "credentials.password", _str, "the login's password"),
    Variable("TRADOVATE_APP_ID", "credentials.app_id", _str, "the API key's application name (appId; README: Tradovate API credentials)"),
    Variable("TRADOVATE_APP_VERSION", "credentials.app_version", _str, "the API key's appVersion"),
    Variable("TRADOVATE_CID", "credentials.cid", _str, "the API key's client id (CID, a number)"),
    Variable("TRADOVATE_SEC", "credentials.sec", _str, "the API key's secret"),
    Variable("TRADOVATE_DEVICE_ID", "credentials.device_id", _str,
             "a stable id for this server (a UUID you keep; required for live, see docs/TRADOVATE.md)"),
    Variable("TRADOVATE_CUSTOM_TAG50", "custom_tag50", _bool,
             "1: liquidations carry the intent id in customTag50 (only if the login has tag 50 enabled)"),
    Variable("TRADOVATE_RATE_LIMIT_QUIET_S", "rate_limit_quiet_s", _float,
             "after an HTTP 429 the login makes no background calls for this long (Tradovate: an hour)"),
    Variable("TRADOVATE_REST_URL", "rest_url", _str, "overrides the environment's REST base"),
    Variable("TRADOVATE_WS_URL", "ws_url", _str, "overrides the WebSocket URL (default: derived from the REST base)"),
    Variable("TRADOVATE_MD_URL", "md_url", _str, "the market-data socket (default: Tradovate's md host; sim: the simulator's)"),
    Variable("TRADOVATE_ACCOUNTS", "accounts_filter", _csv,
             "comma list of account names to trade (demo/live: required when the login has several)"),
    Variable("RECORDERS_FILE", "recorders_file", _str, "JSON file for several strategies/logins"),
    Variable("WEBHOOK_SECRET", "webhook_secret", _str, "the webhook token (required for demo/live)"),
    Variable("ADMIN_TOKEN", "admin_token", _str, "enables the admin routes"),
    Variable("DATABASE_PATH", "database_path", _str, "the SQLite journal"),
    Variable("DATABASE_URL", "database_url", _database_url, "a postgresql:// URL: the journal in PostgreSQL"),
    Variable("JOURNAL_RETENTION_DAYS", "journal_retention_days", _float,
             "signals, intents, fills and the alert log older than this are pruned (0: keep everything)"),
    Variable("BROKER_STATE_KEEP_S", "broker_state_keep_s", _float,
             "a finished order (journaled, needed by no lane) leaves the in-memory broker state after this "
             "(a resync's snapshot leaves out those older)"),
    Variable("HOUSEKEEPING_INTERVAL_S", "housekeeping_interval_s", _float,
             "how often the broker states are pruned and the journal retention runs"),
    Variable("MALLOC_ARENA_MAX", "malloc_arena_max", _int,
             "glibc malloc arenas the threads share (0: glibc's default, 8 per core); fewer keep memory "
             "flat across resyncs (app/malloc_arenas.py)"),
    Variable("TRADOVATE_REQUESTS_PER_MINUTE", "broker_requests_per_minute", _int,
             "a login's request budget per minute (warning at 80 %)"),
    Variable("TRADOVATE_REQUESTS_PER_HOUR", "broker_requests_per_hour", _int,
             "a login's request budget per hour (warning at 80 %)"),
    Variable("USE_WEBSOCKET_ORDERS", "use_websocket_orders", _bool, "0 sends every order over REST"),
    Variable("WS_HEARTBEAT_INTERVAL_S", "heartbeat_interval_s", _float, "client heartbeat on each socket"),
    Variable("ORDER_ACK_TIMEOUT_S", "order_ack_timeout_s", _float, "wait for an order's answer"),
    Variable("RECONCILE_WINDOW_S", "reconcile_window_s", _float, "search for an unknown outcome by clOrdId"),
    Variable("UNKNOWN_SETTLE_PERIOD_S", "unknown_settle_period_s", _float,
             "an unknown order not found at the broker for this long is settled not_placed"),
    Variable("DRIFT_ACTION", "drift_action", lambda env, name, default: _drift_action(env.get(name), default),
             "alert (default): report an account that is not where its lane expects it; heal: also place the "
             "orders that bring it back (never while locked, never over the risk limits, once per drift)"),
    Variable("DRIFT_CHECK_S", "drift_check_s", _float, "how often the drift monitor compares (also on position events)"),
    Variable("DRIFT_SETTLE_S", "drift_settle_s", _float, "a difference lasting this long is a drift"),
    Variable("ABSENCE_GRACE_S", "absence_grace_s", _float,
             "an order whose socket closed before its answer is searched this long after the reconnect"),
    Variable("RESEND_FRESH_S", "resend_fresh_s", _float,
             "an order proved absent is placed once more (new clOrdId) only this long after its signal arrived"),
    Variable("KEEPALIVE_INTERVAL_S", "keepalive_interval_s", _float, "the keep-alive daemon's cycle"),
    Variable("WEBHOOK_BUDGET_S", "webhook_budget_s", _float, "answer 200 within this, else 202"),
    Variable("LEASE_POLL_INTERVAL_S", "lease_poll_interval_s", _float, "a standby tries to take the logins over"),
    Variable("PENDING_SIGNAL_MAX_AGE_S", "pending_signal_max_age_s", _float, "a handed-off signal expires"),
    Variable("DEDUPE_WINDOW_S", "dedupe_window_s", _float, "an identical body within this is a duplicate"),
    Variable("SUBTRACT_EXIT_QUANTITY", "subtract_exit_qty", _bool, "a reversal's entry is its size minus the exit"),
    Variable("SIGNAL_MODE", "signal_mode", _str,
             "what buy/sell mean: orders (buy the quantity) or side (be long, as TradersPost/PickMyTrade)"),
    Variable("TRADING_DATE", "trading_date", _str, "pins the front-month roll calendar (YYYY-MM-DD)"),
    Variable("MAX_BODY_BYTES", "max_body_bytes", _int, "largest webhook body (413 above)"),
    Variable("WEBHOOK_IP_ALLOWLIST_ENABLED", "ip_allowlist_enabled", _bool, "refuse sources not in the allow-list"),
    Variable("WEBHOOK_IP_ALLOWLIST", "ip_allowlist", _csv, "comma list of allowed sources (enables the check)"),
    Variable("TRUST_PROXY_HEADERS", "trust_proxy_headers", _bool, "take the source from X-Forwarded-For"),
    Variable("TRUSTED_PROXY_CIDRS", "trusted_proxy_cidrs", _csv, "peers whose X-Forwarded-For is believed"),
    Variable("HTTP_HEADER_TIMEOUT_S", "http_header_timeout_s", _float, "front door: request line and headers"),
    Variable("HTTP_BODY_TIMEOUT_S", "http_body_timeout_s", _float, "front door: the body after the headers"),
    Variable("HTTP_KEEPALIVE_IDLE_S", "http_keepalive_idle_s", _float, "front door: idle keep-alive connection"),
    Variable("HTTP_MAX_CONNECTIONS", "http_max_connections", _int, "front door: open client connections"),
    Variable("HTTP_MAX_CONNECTIONS_PER_SOURCE", "http_max_connections_per_source", _int,
             "front door: open connections from one address"),
    Variable("HTTP_WRITE_TIMEOUT_S", "http_write_timeout_s", _float,
             "front door: a client that does not read its answer within this is closed"),
    Variable("HTTP_MAX_PIPELINED", "http_max_pipelined", _int,
             "front door: requests queued on one connection before it is closed"),
    Variable("HTTP_MAX_THREADS_PER_SOURCE", "http_max_threads_per_source", _int,
             "front door: requests from one address in threads at once (0: a quarter of the threads)"),
    Variable("PORT", "port", _int, "where the server listens (the Procfile binds 0.0.0.0:$PORT)"),
    Variable("HOST", "host", _str, "where python ultra_simple_server.py listens"),
    Variable("LOG_LEVEL", "log_level", _str, "log level"),
    Variable("LOG_WEBSOCKET_FRAMES", "log_websocket_frames", _bool, "1 lets the websockets library log frames"),
    Variable("GUNICORN_THREADS", "gunicorn_threads", _int, "gunicorn's threads in its one worker"),
    Variable("GRACEFUL_TIMEOUT_S", "graceful_timeout_s", _int, "gunicorn's graceful_timeout"),
    Variable("SHUTDOWN_TIMEOUT_S", "shutdown_timeout_s", _float, "longest wait for signals in flight at a stop"),
    Variable("ACCESS_LOG", "access_log", _bool, "0 turns gunicorn's access log off"),
    # Risk guard (phantom_scraper/risk): account defaults, overridable per account in RECORDERS_FILE
    Variable("RISK_MAX_POSITION", "risk.max_position", _opt_int, "largest net position per contract and account"),
    Variable("RISK_MAX_SIGNALS_PER_MINUTE", "risk.max_signals_per_minute", _opt_int, "entry signals per minute per recorder"),
    Variable("TRADING_HOURS", "risk.trading_hours", _trading_hours, "windows entries are allowed in"),
    Variable("FLATTEN_AT_CLOSE", "risk.flatten_at_close", _bool, "flatten at each trading window's end"),
    Variable("RISK_DAILY_LOSS_LIMIT", "risk.daily_loss_limit", _opt_float, "USD: flatten and lock at this day's loss"),
    Variable("RISK_DAILY_PROFIT_TARGET", "risk.daily_profit_target", _opt_float, "USD: flatten and lock at this day's gain"),
    Variable("RISK_TRAILING_DRAWDOWN", "risk.trailing_drawdown", _opt_float, "USD below the day's peak: flatten and lock"),
    Variable("RISK_CHECK_INTERVAL_S", "risk.check_interval_s", _float, "the risk guard's periodic checks"),
    Variable("RISK_SNAPSHOT_POLL_S", "risk.snapshot_poll_s", _float, "cash-balance snapshot poll without stream data"),
    Variable("STATUS_OPEN_IN_SIM", "status_open_in_sim", _bool,
             "sim: / and /api/websocket-status open to 127.0.0.1 without the admin token"),
    Variable("DISPLAY_TZ", "display_tz", _zone, "the time zone of times on the status page and in the CSV (IANA name)"),
    Variable("NOTIFY_URLS", "notify_urls", lambda env, name, default: _notify_urls(env.get(name)) or default,
             "Apprise URLs to notify (space/comma separated)"),
    Variable("NOTIFY_EVENTS", "notify_events", lambda env, name, default: _notify_events(env.get(name)),
             "which events to notify (comma list)"),
    Variable("NOTIFY_DISCONNECT_AFTER_S", "notify_disconnect_after_s", _float,
             "a socket down this long is notified"),
    Variable("NOTIFY_MIN_INTERVAL_S", "notify_min_interval_s", _float, "at most one message per destination this often"),
    Variable("TRADOVATE_SIM_TODAY", None, _str, "pins the simulator's calendar (read by the simulator)"),
    # Set by hosting platforms; phantom_scraper/journal/storage_check.py reads them to warn about a disk a redeploy wipes.
    *(Variable(name, None, _str, f"set by {platform}") for name, platform in PLATFORM_VARS),
)


# NOTIFY_EVENTS' categories (phantom_scraper.ops.notify sends them).
CATEGORIES = ("rejected", "unknown", "duplicate", "disconnected", "auth", "risk", "drift", "startup", "fill")
DEFAULT_EVENTS = ("rejected", "unknown", "duplicate", "disconnected", "auth", "risk", "drift", "startup")


def split_urls(text: str) -> Tuple[str, ...]:
    """``NOTIFY_URLS``: Apprise URLs separated by spaces or commas (a comma inside a URL, as in
    ``mailto://...?to=a,b``, stays: only a comma followed by ``scheme://`` separates)."""
    parts = re.split(r"\s+|,(?=\s*[A-Za-z][A-Za-z0-9+.-]*://)", text or "")
    return tuple(p.strip().strip(",") for p in parts if p and p.strip().strip(","))


def parse_events(text: Optional[str]) -> Tuple[str, ...]:
    """``NOTIFY_EVENTS``: comma list of categories (``all`` for every one); unknown names raise."""
    if text is None or not text.strip():
        return DEFAULT_EVENTS
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    if "all" in names:
        return CATEGORIES
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown:
        raise ValueError(f"NOTIFY_EVENTS: unknown event(s) {', '.join(unknown)}; known: {', '.join(CATEGORIES)}")
    return names


def _notify_urls(raw: Optional[str]) -> Tuple[str, ...]:
    return split_urls(raw or "")


def _notify_events(raw: Optional[str]) -> Tuple[str, ...]:
    try:
        return parse_events(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


HOW_TO_CHOOSE_DEVICE_ID = (
    "choose one stable id per machine and keep it (e.g. the output of "
    "`python -c \"import uuid; print(uuid.uuid4())\"`, stored once); Tradovate checks the device id on "
    "live orders and answers 401 \"Access is denied\" to an unapproved or changing one")


def device_id_problem(env: str, device_id: str) -> Optional[str]:
    """Live without a device id: the reason the process must not start (Tradovate's FAQ: placeOrder
    checks the device id, strictly on live).  Demo/sim: None (the caller warns)."""
    if env == "live" and not (device_id or "").strip():
        return "TRADOVATE_DEVICE_ID is required for live trading: " + HOW_TO_CHOOSE_DEVICE_ID
    return None


@dataclass(frozen=True)
class Credentials:
    """One Tradovate login (``auth/accesstokenrequest`` body)."""

    username: str
    password: str = field(repr=False)
    app_id: str = "phantom-scraper"
    app_version: str = "1.0"
    cid: str = "0"
    sec: str = field(default="", repr=False)
    device_id: str = ""


@dataclass(frozen=True)
class RiskSettings:
    """The risk guard's account defaults (overridable per account in the recorders file) and timing.

    None / empty = no limit.  Money in USD.  See ``phantom_scraper/risk/`` and the README.
    """

    max_position: Optional[int] = None  # RISK_MAX_POSITION: |net position| per contract
    max_signals_per_minute: Optional[int] = None  # RISK_MAX_SIGNALS_PER_MINUTE, per recorder (entries)
    trading_hours: str = ""  # TRADING_HOURS, e.g. "Mon-Fri 08:30-15:00 America/Chicago"
    flatten_at_close: bool = False  # FLATTEN_AT_CLOSE
    daily_loss_limit: Optional[float] = None  # RISK_DAILY_LOSS_LIMIT
    daily_profit_target: Optional[float] = None  # RISK_DAILY_PROFIT_TARGET
    trailing_drawdown: Optional[float] = None  # RISK_TRAILING_DRAWDOWN
    check_interval_s: float = 1.0  # RISK_CHECK_INTERVAL_S: window ends, session start, retries
    flatten_retry_s: float = 10.0  # a locked account still holding a position is flattened again after this
    snapshot_poll_s: float = 300.0  # RISK_SNAPSHOT_POLL_S: getcashbalancesnapshot per account without stream data

    def replace(self, **changes) -> "RiskSettings":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Settings:
    tradovate_env: str = "sim"
    credentials: Optional[Credentials] = None
    rest_url: Optional[str] = None  # None: the environment's default (sim: the embedded simulator)
    ws_url: Optional[str] = None  # None: derived from rest_url
    md_url: Optional[str] = None  # TRADOVATE_MD_URL; None: Tradovate's md host (demo/live), the simulator's (sim)
    accounts_filter: Tuple[str, ...] = ()  # TRADOVATE_ACCOUNTS, account names
    recorders_file: Optional[str] = None  # RECORDERS_FILE

    webhook_secret: Optional[str] = field(default=None, repr=False)
    # sim: the secret was made for this install (data/sim_webhook_secret), not set by the user:
    # the start-up banner prints it (set by load_settings; no variable)
    webhook_secret_generated: bool = False
    admin_token: Optional[str] = field(default=None, repr=False)
    database_path: str = "data/journal.sqlite3"
    # DATABASE_URL: a postgresql:// URL puts the journal in PostgreSQL instead (it holds a password)
    database_url: Optional[str] = field(default=None, repr=False)
    use_websocket_orders: bool = True
    journal_retention_days: float = 90.0  # journal/retention.py; 0 keeps everything
    broker_state_keep_s: float = 120.0  # tradovate/broker_pruning.py, tradovate/snapshot.py
    housekeeping_interval_s: float = 60.0  # app/housekeeping.py
    malloc_arena_max: int = 2  # app/malloc_arenas.py; 0 leaves glibc's default
    broker_requests_per_minute: int = 80  # Tradovate's limits per user (tradovate/budget.py)
    broker_requests_per_hour: int = 5000

    # WebSocket client
    heartbeat_interval_s: float = 2.5
    ws_connect_timeout_s: float = 10.0
    ws_max_message_bytes: int = 64 * 1024 * 1024  # user/syncrequest snapshots can exceed 1 MiB
    ws_idle_probe_after_s: float = 5.0  # no server frame for this long: probe with a ping
    ws_probe_timeout_s: float = 3.0  # no answer to the probe: the socket is dead

    # Orders
    order_ack_timeout_s: float = 5.0  # wait for an order answer on the socket / over REST
    reconcile_window_s: float = 10.0  # how long an unknown outcome is searched by clOrdId
    reconcile_poll_interval_s: float = 0.5
    unknown_settle_period_s: float = 300.0  # an unknown order not found for this long -> not_placed
    drift_action: str = "alert"  # DRIFT_ACTION: alert | heal (execution/drift.py)
    drift_check_s: float = 2.0  # the drift monitor's period (it also runs on position and fill events)
    drift_settle_s: float = 3.0  # a difference that lasts this long is a drift
    absence_grace_s: float = 3.0  # socket closed before the answer: searched this long after the reconnect
    resend_fresh_s: float = 10.0  # proved absent: placed once more only this long after the signal arrived
    rest_timeout_s: float = 10.0
    penalty_max_wait_s: float = 60.0  # longest p-time waited out before resending with p-ticket
    # customTag50 is FIX tag 50 (a CME-registered operator id): only logins with it enabled may send it
    custom_tag50: bool = False
    rate_limit_quiet_s: float = 3600.0  # HTTP 429: Tradovate's lock-out is a rolling hour

    # Token
    token_renew_margin_s: float = 15 * 60  # renew this long before expirationTime

    # Pool and keep-alive daemon
    keepalive_interval_s: float = 30.0
    max_concurrent_connects: int = 2
    reconnect_backoff_initial_s: float = 1.0
    reconnect_backoff_max_s: float = 60.0

    # Webhook
    webhook_budget_s: float = 2.0  # answer 200 with outcomes within this, else 202

    # Several instances on one PostgreSQL journal (DATABASE_URL): see phantom_scraper/journal/coordinator.py
    lease_poll_interval_s: float = 1.0  # a standby tries to take the logins over this often
    pending_signal_max_age_s: float = 30.0  # a handed-off signal no owner took by then: expired
    handoff_poll_interval_s: float = 0.02  # a standby checks its handed-off signal's outcome
    max_body_bytes: int = 64 * 1024
    dedupe_window_s: float = 5.0  # identical bodies WITHOUT an id within this are dropped (ids: always)
    subtract_exit_qty: bool = True  # reversal entry = signal quantity - quantity closed (default recorder)
    signal_mode: str = "orders"  # SIGNAL_MODE: orders | side, for recorders that do not set their own
    trading_date: Optional[str] = None  # YYYY-MM-DD: the roll calendar's "today" (tests, replays); None = UTC today
    ip_allowlist_enabled: bool = False
    ip_allowlist: Tuple[str, ...] = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")
    trust_proxy_headers: bool = False
    # X-Forwarded-For is honoured (with TRUST_PROXY_HEADERS) only from these peers: the platform's
    # proxy reaches the app from a private address; "*" = every peer (the proxy is the only way in).
    trusted_proxy_cidrs: Tuple[str, ...] = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12",
                                            "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")

    # Front door (phantom_scraper/door: the gunicorn worker reads whole requests before a thread)
    http_header_timeout_s: float = 5.0  # request line + headers within this, else closed
    http_body_timeout_s: float = 10.0  # the body within this after the headers, else closed
    http_keepalive_idle_s: float = 5.0  # an idle keep-alive connection is closed after this
    http_max_connections: int = 512  # open client connections, all sources together
    http_max_connections_per_source: int = 32  # open connections from one address
    http_write_timeout_s: float = 2.0  # an answer not taken by the client within this: closed
    http_max_pipelined: int = 16  # requests sent ahead of their answers on one connection
    http_max_threads_per_source: int = 0  # requests of one address in threads at once (0: threads // 4)

    # Process (the local server, gunicorn.conf.py, logging)
    port: int = 8080
    host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_websocket_frames: bool = False
    gunicorn_threads: int = 32
    graceful_timeout_s: int = 15
    shutdown_timeout_s: float = 10.0
    access_log: bool = True

    # Risk guard (phantom_scraper/risk)
    risk: RiskSettings = field(default_factory=RiskSettings)
    # Admin and status routes (phantom_scraper/web/admin_auth.py)
    status_open_in_sim: bool = True  # sim mode: / and the status JSON open to 127.0.0.1
    admin_max_failures: int = 10  # wrong admin credentials per source address within the window
    admin_failure_window_s: float = 300.0
    status_cache_s: float = 3.0  # the status page reads positions/orders/fills at most this often
    display_tz: str = "America/Chicago"  # times on the status page (UTC on hover) and in the CSV

    # Notifications (phantom_scraper/ops/notify.py); the URLs hold bot tokens/passwords
    notify_urls: Tuple[str, ...] = field(default=(), repr=False)
    notify_events: Tuple[str, ...] = ("rejected", "unknown", "duplicate", "disconnected", "auth", "risk", "drift", "startup")
    notify_disconnect_after_s: float = 60.0
    notify_coalesce_s: float = 2.0  # lines within this of the first go out as one message
    notify_min_interval_s: float = 10.0  # per destination

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def is_demo(self) -> bool:
        """Simulator and demo are both paper trading."""
        return self.tradovate_env != "live"

    @property
    def journal_target(self) -> str:
        """What the journal opens: DATABASE_URL (PostgreSQL) when set, else the SQLite file."""
        return self.database_url or self.database_path

    def resolved_rest_url(self) -> Optional[str]:
        if self.rest_url:
            return self.rest_url.rstrip("/")
        return REAL_REST_URLS.get(self.tradovate_env)

    def resolved_ws_url(self) -> Optional[str]:
        if self.ws_url:
            return self.ws_url
        rest = self.resolved_rest_url()
        return derive_ws_url(rest) if rest else None

    def resolved_md_url(self) -> Optional[str]:
        """The market-data socket: TRADOVATE_MD_URL, else Tradovate's md host (None in sim mode
        until the embedded simulator has set its own)."""
        if self.md_url:
            return self.md_url
        return REAL_MD_URL if self.tradovate_env in REAL_REST_URLS else None

    def missing_for_broker(self) -> Tuple[str, ...]:
        """Names of the variables a demo/live start needs but does not have."""
        missing = []
        creds = self.credentials
        if creds is None or not creds.username:
            missing.append("TRADOVATE_USERNAME")
        if creds is None or not creds.password:
            missing.append("TRADOVATE_PASSWORD")
        if not self.webhook_secret:
            missing.append("WEBHOOK_SECRET")
        if self.device_id_problem():
            missing.append("TRADOVATE_DEVICE_ID")
        return tuple(missing)

    def device_id_problem(self) -> Optional[str]:
        """Why this start must not trade live (None when it may): see :func:`device_id_problem`."""
        creds = self.credentials
        return device_id_problem(self.tradovate_env, creds.device_id if creds else "")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, **overrides) -> "Settings":
        """Settings from ``env`` (default: the process environment), read through ``VARIABLES``."""
        env = os.environ if env is None else env
        values, login, risk = {}, {}, {}
        for var in VARIABLES:
            if var.field is None:
                continue
            if var.field.startswith("credentials."):
                login[var.field.split(".", 1)[1]] = env.get(var.name) or ""
                continue
            if var.field.startswith("risk."):
                name = var.field.split(".", 1)[1]
                default = getattr(RiskSettings, name)
                value = var.read(env, var.name, default)
                if value != default:
                    risk[name] = value
                continue
            default = getattr(cls, var.field)
            value = var.read(env, var.name, default)
            if value != default:
                values[var.field] = value
        tradovate_env = str(values.get("tradovate_env", cls.tradovate_env)).strip().lower()
        if tradovate_env not in ENVIRONMENTS:
            raise ConfigError(f"TRADOVATE_ENV must be one of {', '.join(ENVIRONMENTS)}")
        values["tradovate_env"] = tradovate_env
        if login["username"] or login["password"]:
            values["credentials"] = Credentials(**{k: v for k, v in login.items()
                                                   if v or k in ("username", "password")})
        if risk:
            values["risk"] = RiskSettings(**risk)
        if "ip_allowlist" in values:  # naming sources turns the check on
            values["ip_allowlist_enabled"] = True
        values.update(overrides)
        return cls(**values)


# -- .env.example (generated from VARIABLES; tests/test_config_table.py keeps the file equal) --------

ENV_EXAMPLE_HEADER = """\
# .env.example -- generated from phantom_scraper/config.py (VARIABLES): python -m phantom_scraper.config
# Copy to .env and uncomment what you change.  Each commented line shows the default.  With
# TRADOVATE_ENV unset or "sim" the server trades on the embedded simulator and needs nothing else.
# demo/live need TRADOVATE_USERNAME, TRADOVATE_PASSWORD and WEBHOOK_SECRET, the API key fields
# (README: "Tradovate API credentials"), and TRADOVATE_ACCOUNTS when the login has several accounts.
"""


def _default_of(var: Variable) -> object:
    if var.field.startswith("credentials."):
        return getattr(Credentials, var.field.split(".", 1)[1], "")
    if var.field.startswith("risk."):
        return getattr(RiskSettings, var.field.split(".", 1)[1])
    return getattr(Settings, var.field)


def default_text(var: Variable) -> Optional[str]:
    """The default of ``var`` as it would be written in ``.env`` ("" = unset); None for the
    variables set by others (the hosting platform, the simulator's calendar pin)."""
    if var.field is None:
        return None
    value = _default_of(var)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value == int(value):
        return str(int(value)) if abs(value) >= 1e15 else f"{value:g}"
    return str(value)


def env_example() -> str:
    lines = [ENV_EXAMPLE_HEADER]
    for var in VARIABLES:
        default = default_text(var)
        if default is None:
            continue
        lines.append(f"# {var.meaning}\n# {var.name}={default}\n")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m phantom_scraper.config > .env.example
    print(env_example(), end="")
