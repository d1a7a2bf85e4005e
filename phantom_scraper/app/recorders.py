"""Which accounts a signal trades: logins, recorders and their account links.

Without a recorders file there is one login (``TRADOVATE_*``) and one recorder, ``default``, whose
webhook token is ``WEBHOOK_SECRET`` and which trades every active account of the login (narrowed
by ``TRADOVATE_ACCOUNTS``) with multiplier 1.

With ``RECORDERS_FILE`` (JSON) several logins and strategies can be described.  The file holds no
secret: passwords and webhook tokens are named by environment variables::

    {
      "logins": {
        "main": {"env": "demo", "username_env": "MAIN_USER", "password_env": "MAIN_PASS",
                 "cid_env": "MAIN_CID", "sec_env": "MAIN_SEC", "app_id": "phantom-scraper",
                 "device_id": "my-server-1"}
      },
      "recorders": [
        {"name": "nq-scalper", "webhook_token_env": "NQ_SCALPER_TOKEN",
         "accounts": [{"login": "main", "account": "DEMO0001", "multiplier": 2, "max_qty": 5},
                      {"login": "main", "account": "DEMO0002", "enabled": false}]}
      ]
    }

A recorder's optional ``"subtract_exit_quantity": false`` makes a reversal enter with the full
signal quantity instead of quantity minus the position closed (default ``SUBTRACT_EXIT_QUANTITY``,
on; see docs/PAYLOAD.md, Reversals).

A login's optional ``rest_url``/``ws_url``/``md_url`` override its environment's hosts (as
``TRADOVATE_REST_URL``/``TRADOVATE_WS_URL``/``TRADOVATE_MD_URL`` do for the default login).  A login
of the service's own environment without ``rest_url`` inherits all three of the service's URLs (one
that names only ``rest_url`` gets its socket URL derived from it); a login of another environment
gets that environment's hosts.  Start-up logs each login's three URLs (:func:`describe_urls`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

from phantom_scraper.config import REAL_MD_URL, REAL_REST_URLS, ConfigError, Credentials, Settings, derive_ws_url

DEFAULT_LOGIN = "default"
DEFAULT_RECORDER = "default"


@dataclass(frozen=True)
class LoginConfig:
    name: str
    env: str  # sim | demo | live
    credentials: Credentials
    rest_url: Optional[str]
    ws_url: Optional[str]
    md_url: Optional[str] = None  # the market-data socket (None: none known)

    @property
    def is_demo(self) -> bool:
        return self.env != "live"


@dataclass(frozen=True)
class AccountLink:
    login: str
    account: str  # the Tradovate account name (account/list .name)
    multiplier: int = 1
    max_qty: Optional[int] = None
    enabled: bool = True


@dataclass(frozen=True)
class Recorder:
    name: str
    token: str = field(repr=False)
    accounts: Optional[Tuple[AccountLink, ...]]  # None: every active account of the default login
    account_filter: Tuple[str, ...] = ()  # with accounts=None: only these names (TRADOVATE_ACCOUNTS)
    subtract_exit_qty: bool = True  # reversal sizing (docs/PAYLOAD.md): False = the quantity is the entry


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{what} must be a positive integer")
    return value


def load(settings: Settings, env: Optional[Mapping[str, str]] = None) -> Tuple[Dict[str, LoginConfig], Tuple[Recorder, ...]]:
    """Logins and recorders from ``settings`` (and the recorders file, if configured)."""
    env = os.environ if env is None else env
    if not settings.recorders_file:
        creds = settings.credentials or Credentials(username="demo", password="demo")
        login = LoginConfig(DEFAULT_LOGIN, settings.tradovate_env, creds,
                            settings.resolved_rest_url(), settings.ws_url, settings.resolved_md_url())
        recorder = Recorder(DEFAULT_RECORDER, settings.webhook_secret or "", None, settings.accounts_filter,
                            subtract_exit_qty=settings.subtract_exit_qty)
        return {DEFAULT_LOGIN: login}, (recorder,)
    try:
        with open(settings.recorders_file, "r", encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"RECORDERS_FILE {settings.recorders_file!r} cannot be read: {exc}") from exc
    return _parse(doc, settings, env)


def _urls(spec: dict, login_env: str, settings: Settings) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """(REST, socket, market data) of one login: its own, else inherited all three together."""
    own_rest = spec.get("rest_url")
    if own_rest:
        rest = str(own_rest).rstrip("/")
        ws = spec.get("ws_url") or derive_ws_url(rest)
        md = spec.get("md_url") or (settings.resolved_md_url() if login_env == settings.tradovate_env
                                    else REAL_MD_URL if login_env in REAL_REST_URLS else None)
    elif login_env == settings.tradovate_env:  # the service's own environment: its three URLs
        rest = settings.resolved_rest_url()
        ws = spec.get("ws_url") or settings.resolved_ws_url()
        md = spec.get("md_url") or settings.resolved_md_url()
    else:
        rest = REAL_REST_URLS.get(login_env)
        ws = spec.get("ws_url") or (derive_ws_url(rest) if rest else None)
        md = spec.get("md_url") or (REAL_MD_URL if rest else None)
    return rest, ws, md


def describe_urls(login: LoginConfig) -> str:
    """``REST <url>, socket <url>, market data <url>`` (the start-up log's line per login)."""
    ws = login.ws_url or (derive_ws_url(login.rest_url) if login.rest_url else None)
    return f"REST {login.rest_url or '-'}, socket {ws or '-'}, market data {login.md_url or '-'}"


def _parse(doc, settings: Settings, env: Mapping[str, str]):
    if not isinstance(doc, dict):
        raise ConfigError("RECORDERS_FILE must hold a JSON object")
    logins: Dict[str, LoginConfig] = {}
    missing = []
    for name, spec in (doc.get("logins") or {}).items():
        if not isinstance(spec, dict):
            raise ConfigError(f"login {name!r} must be an object")
        login_env = (spec.get("env") or settings.tradovate_env).lower()
        if login_env not in ("sim", "demo", "live"):
            raise ConfigError(f"login {name!r}: env must be sim, demo or live")

        def secret(key: str, default: str = "") -> str:
            var = spec.get(key)
            if not var:
                return default
            value = env.get(var)
            if value is None:
                missing.append(var)
                return default
            return value

        creds = Credentials(
            username=secret("username_env", spec.get("username", "")),
            password=secret("password_env"),
            app_id=spec.get("app_id") or "phantom-scraper",
            app_version=spec.get("app_version") or "1.0",
            cid=secret("cid_env", str(spec.get("cid", "0"))),
            sec=secret("sec_env"),
            device_id=spec.get("device_id") or "",
        )
        logins[name] = LoginConfig(name, login_env, creds, *_urls(spec, login_env, settings))
    recorders = []
    seen_tokens = set()
    for i, spec in enumerate(doc.get("recorders") or []):
        if not isinstance(spec, dict) or not spec.get("name"):
            raise ConfigError(f"recorder #{i + 1} needs a name")
        token_var = spec.get("webhook_token_env")
        token = env.get(token_var, "") if token_var else ""
        if not token:
            missing.append(token_var or f"webhook_token_env of recorder {spec['name']}")
        elif token in seen_tokens:
            raise ConfigError(f"recorder {spec['name']!r} reuses another recorder's webhook token")
        seen_tokens.add(token)
        links = []
        for link in spec.get("accounts") or []:
            login = link.get("login", DEFAULT_LOGIN)
            if login not in logins:
                raise ConfigError(f"recorder {spec['name']!r} names unknown login {login!r}")
            if not link.get("account"):
                raise ConfigError(f"recorder {spec['name']!r}: every account link needs 'account'")
            max_qty = link.get("max_qty")
            links.append(AccountLink(
                login=login,
                account=str(link["account"]),
                multiplier=_positive_int(link.get("multiplier", 1), f"{spec['name']}/{link['account']} multiplier"),
                max_qty=None if max_qty is None else _positive_int(max_qty, f"{spec['name']}/{link['account']} max_qty"),
                enabled=bool(link.get("enabled", True)),
            ))
        if not links:
            raise ConfigError(f"recorder {spec['name']!r} links no account")
        subtract = spec.get("subtract_exit_quantity", settings.subtract_exit_qty)
        if not isinstance(subtract, bool):
            raise ConfigError(f"recorder {spec['name']!r}: subtract_exit_quantity must be true or false")
        recorders.append(Recorder(str(spec["name"]), token, tuple(links), subtract_exit_qty=subtract))
    if missing:
        raise ConfigError("RECORDERS_FILE names environment variables that are not set: " + ", ".join(sorted(set(missing))))
    if not logins or not recorders:
        raise ConfigError("RECORDERS_FILE needs at least one login and one recorder")
    return logins, tuple(recorders)
