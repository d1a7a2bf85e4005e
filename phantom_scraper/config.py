"""Typed, frozen configuration read once from the environment (and ``.env``).

Every time constant carries its unit in its name.  Secrets are ``repr=False`` so a logged or
printed ``Settings`` never shows them.  Tests build ``Settings`` directly (or with
``Settings.from_env(overrides)``) and scale the time constants down.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

ENVIRONMENTS = ("sim", "demo", "live")

# Tradovate's real hosts (PROTOCOL.md §1.1).
REAL_REST_URLS = {
    "demo": "https://demo.tradovateapi.com/v1",
    "live": "https://live.tradovateapi.com/v1",
}


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


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number") from exc


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer") from exc


def _database_url(env: Mapping[str, str]) -> Optional[str]:
    """DATABASE_URL when it names PostgreSQL; unset means SQLite at DATABASE_PATH."""
    url = (env.get("DATABASE_URL") or "").strip()
    if not url:
        return None
    if not url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL (unset it to use SQLite at DATABASE_PATH)")
    return url


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


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
class Settings:
    tradovate_env: str = "sim"
    credentials: Optional[Credentials] = None
    rest_url: Optional[str] = None  # None: the environment's default (sim: the embedded simulator)
    ws_url: Optional[str] = None  # None: derived from rest_url
    accounts_filter: Tuple[str, ...] = ()  # TRADOVATE_ACCOUNTS, account names
    recorders_file: Optional[str] = None  # RECORDERS_FILE

    webhook_secret: Optional[str] = field(default=None, repr=False)
    admin_token: Optional[str] = field(default=None, repr=False)
    database_path: str = "data/journal.sqlite3"
    # DATABASE_URL: a postgresql:// URL puts the journal in PostgreSQL instead (it holds a password)
    database_url: Optional[str] = field(default=None, repr=False)
    use_websocket_orders: bool = True

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
    rest_timeout_s: float = 10.0
    penalty_max_wait_s: float = 60.0  # longest p-time waited out before resending with p-ticket

    # Token
    token_renew_margin_s: float = 15 * 60  # renew this long before expirationTime

    # Pool and keep-alive daemon
    keepalive_interval_s: float = 30.0
    max_concurrent_connects: int = 2
    reconnect_backoff_initial_s: float = 1.0
    reconnect_backoff_max_s: float = 60.0

    # Webhook
    webhook_budget_s: float = 2.0  # answer 200 with outcomes within this, else 202

    # Several instances on one PostgreSQL journal (DATABASE_URL): see phantom_scraper/coordinator.py
    lease_poll_interval_s: float = 1.0  # a standby tries to take the logins over this often
    pending_signal_max_age_s: float = 30.0  # a handed-off signal no owner took by then: expired
    handoff_poll_interval_s: float = 0.02  # a standby checks its handed-off signal's outcome
    max_body_bytes: int = 64 * 1024
    dedupe_window_s: float = 5.0  # identical bodies WITHOUT an id within this are dropped (ids: always)
    subtract_exit_qty: bool = True  # reversal entry = signal quantity - quantity closed (default recorder)
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
        return tuple(missing)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        tradovate_env = (env.get("TRADOVATE_ENV") or "sim").strip().lower()
        if tradovate_env not in ENVIRONMENTS:
            raise ConfigError(f"TRADOVATE_ENV must be one of {', '.join(ENVIRONMENTS)}")
        creds = None
        if env.get("TRADOVATE_USERNAME") or env.get("TRADOVATE_PASSWORD"):
            creds = Credentials(
                username=env.get("TRADOVATE_USERNAME", ""),
                password=env.get("TRADOVATE_PASSWORD", ""),
                app_id=env.get("TRADOVATE_APP_ID") or "phantom-scraper",
                app_version=env.get("TRADOVATE_APP_VERSION") or "1.0",
                cid=env.get("TRADOVATE_CID") or "0",
                sec=env.get("TRADOVATE_SEC") or "",
                device_id=env.get("TRADOVATE_DEVICE_ID") or "",
            )
        accounts = tuple(a.strip() for a in (env.get("TRADOVATE_ACCOUNTS") or "").split(",") if a.strip())
        allow = tuple(a.strip() for a in (env.get("WEBHOOK_IP_ALLOWLIST") or "").split(",") if a.strip())
        values = dict(
            tradovate_env=tradovate_env,
            credentials=creds,
            rest_url=env.get("TRADOVATE_REST_URL") or None,
            ws_url=env.get("TRADOVATE_WS_URL") or None,
            accounts_filter=accounts,
            recorders_file=env.get("RECORDERS_FILE") or None,
            webhook_secret=env.get("WEBHOOK_SECRET") or None,
            admin_token=env.get("ADMIN_TOKEN") or None,
            database_path=env.get("DATABASE_PATH") or cls.database_path,
            database_url=_database_url(env),
            use_websocket_orders=_bool(env, "USE_WEBSOCKET_ORDERS", True),
            heartbeat_interval_s=_float(env, "WS_HEARTBEAT_INTERVAL_S", cls.heartbeat_interval_s),
            order_ack_timeout_s=_float(env, "ORDER_ACK_TIMEOUT_S", cls.order_ack_timeout_s),
            reconcile_window_s=_float(env, "RECONCILE_WINDOW_S", cls.reconcile_window_s),
            keepalive_interval_s=_float(env, "KEEPALIVE_INTERVAL_S", cls.keepalive_interval_s),
            webhook_budget_s=_float(env, "WEBHOOK_BUDGET_S", cls.webhook_budget_s),
            lease_poll_interval_s=_float(env, "LEASE_POLL_INTERVAL_S", cls.lease_poll_interval_s),
            pending_signal_max_age_s=_float(env, "PENDING_SIGNAL_MAX_AGE_S", cls.pending_signal_max_age_s),
            dedupe_window_s=_float(env, "DEDUPE_WINDOW_S", cls.dedupe_window_s),
            subtract_exit_qty=_bool(env, "SUBTRACT_EXIT_QUANTITY", cls.subtract_exit_qty),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            ip_allowlist_enabled=_bool(env, "WEBHOOK_IP_ALLOWLIST_ENABLED", False) or bool(allow),
            trust_proxy_headers=_bool(env, "TRUST_PROXY_HEADERS", False),
            http_header_timeout_s=_float(env, "HTTP_HEADER_TIMEOUT_S", cls.http_header_timeout_s),
            http_body_timeout_s=_float(env, "HTTP_BODY_TIMEOUT_S", cls.http_body_timeout_s),
            http_keepalive_idle_s=_float(env, "HTTP_KEEPALIVE_IDLE_S", cls.http_keepalive_idle_s),
            http_max_connections=_int(env, "HTTP_MAX_CONNECTIONS", cls.http_max_connections),
            http_max_connections_per_source=_int(env, "HTTP_MAX_CONNECTIONS_PER_SOURCE",
                                                 cls.http_max_connections_per_source),
        )
        if allow:
            values["ip_allowlist"] = allow
        proxies = tuple(a.strip() for a in (env.get("TRUSTED_PROXY_CIDRS") or "").split(",") if a.strip())
        if proxies:
            values["trusted_proxy_cidrs"] = proxies
        values.update(overrides)
        return cls(**values)
