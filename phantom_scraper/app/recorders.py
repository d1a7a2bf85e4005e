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
on; see docs/PAYLOAD.md, Reversals).  Its optional ``"signal_mode"``: ``orders`` (buy = buy the
quantity) or ``side`` (buy = be long, as TradersPost and PickMyTrade mean it; default
``SIGNAL_MODE``; docs/PAYLOAD.md, "Signal modes").

An account link's ``multiplier`` may be a fraction (1.5: each order rounded to the nearest
contract, half up, at least 1); ``max_qty_mode`` is ``clip`` (default: an order above ``max_qty``
is cut to it, noted in the answer, so the copies stay in step) or ``reject`` (that account places
nothing for the signal).

In demo/live, the default recorder (no recorders file) trades more than one account only when
``TRADOVATE_ACCOUNTS`` names them (``check_accounts``): a login's first alert must never reach
accounts nobody chose (a prop trader's evaluation accounts).  The start-up log lists the accounts
each recorder trades.

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
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

from phantom_scraper.config import REAL_MD_URL, REAL_REST_URLS, ConfigError, Credentials, Settings, derive_ws_url

SIGNAL_MODES = ("orders", "side")  # (the same words as phantom_scraper.signals.model's)
MAX_QTY_MODES = ("clip", "reject")

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
    multiplier: Union[int, float] = 1
    max_qty: Optional[int] = None
    enabled: bool = True
    max_qty_mode: str = "clip"


@dataclass(frozen=True)
class Recorder:
    name: str
    token: str = field(repr=False)
    accounts: Optional[Tuple[AccountLink, ...]]  # None: every active account of the default login
    account_filter: Tuple[str, ...] = ()  # with accounts=None: only these names (TRADOVATE_ACCOUNTS)
    subtract_exit_qty: bool = True  # reversal sizing (docs/PAYLOAD.md): False = the quantity is the entry
    signal_mode: str = "orders"  # orders | side (docs/PAYLOAD.md, "Signal modes")


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{what} must be a positive integer")
    return value


def _positive_number(value, what: str) -> Union[int, float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
        raise ConfigError(f"{what} must be a number greater than 0 (e.g. 1, 2 or 1.5)")
    return value


def _word(value, allowed: Tuple[str, ...], what: str) -> str:
    word = str(value).strip().lower() if isinstance(value, str) else None
    if word not in allowed:
        raise ConfigError(f"{what} must be one of: {', '.join(allowed)}")
    return word


def load(settings: Settings, env: Optional[Mapping[str, str]] = None) -> Tuple[Dict[str, LoginConfig], Tuple[Recorder, ...]]:
    """Logins and recorders from ``settings`` (and the recorders file, if configured)."""
    env = os.environ if env is None else env
    if not settings.recorders_file:
        creds = settings.credentials or Credentials(username="demo", password="demo")
        login = LoginConfig(DEFAULT_LOGIN, settings.tradovate_env, creds,
                            settings.resolved_rest_url(), settings.ws_url, settings.resolved_md_url())
        recorder = Recorder(DEFAULT_RECORDER, settings.webhook_secret or "", None, settings.accounts_filter,
                            subtract_exit_qty=settings.subtract_exit_qty,
                            signal_mode=_word(settings.signal_mode, SIGNAL_MODES, "SIGNAL_MODE"))
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
            where = f"{spec['name']}/{link['account']}"
            links.append(AccountLink(
                login=login,
                account=str(link["account"]),
                multiplier=_positive_number(link.get("multiplier", 1), f"{where} multiplier"),
                max_qty=None if max_qty is None else _positive_int(max_qty, f"{where} max_qty"),
                enabled=bool(link.get("enabled", True)),
                max_qty_mode=_word(link.get("max_qty_mode", "clip"), MAX_QTY_MODES, f"{where} max_qty_mode"),
            ))
        if not links:
            raise ConfigError(f"recorder {spec['name']!r} links no account")
        subtract = spec.get("subtract_exit_quantity", settings.subtract_exit_qty)
        if not isinstance(subtract, bool):
            raise ConfigError(f"recorder {spec['name']!r}: subtract_exit_quantity must be true or false")
        mode = _word(spec.get("signal_mode", settings.signal_mode), SIGNAL_MODES,
                     f"recorder {spec['name']!r}: signal_mode")
        recorders.append(Recorder(str(spec["name"]), token, tuple(links), subtract_exit_qty=subtract,
                                  signal_mode=mode))
    if missing:
        raise ConfigError("RECORDERS_FILE names environment variables that are not set: " + ", ".join(sorted(set(missing))))
    if not logins or not recorders:
        raise ConfigError("RECORDERS_FILE needs at least one login and one recorder")
    return logins, tuple(recorders)


def check_accounts(recorders: Iterable[Recorder], accounts: Mapping[str, Iterable[str]], env: str) -> List[str]:
    """The start-up log's lines: the accounts each recorder will trade.  ``accounts``: login name
    -> the login's active account names.  ConfigError when, in demo/live, the default recorder
    would trade more than one account that ``TRADOVATE_ACCOUNTS`` did not name, or when it names
    an account the login does not have."""
    lines = []
    for rec in recorders:
        if rec.accounts is None:
            have = sorted(accounts.get(DEFAULT_LOGIN, ()))
            unknown = [a for a in rec.account_filter if a not in have]
            if unknown:
                raise ConfigError(f"TRADOVATE_ACCOUNTS names {', '.join(unknown)}, which the login does not have "
                                  f"(it has: {', '.join(have) or 'no active account'})")
            names = [a for a in have if not rec.account_filter or a in rec.account_filter]
            if env in ("demo", "live") and not rec.account_filter and len(names) > 1:
                raise ConfigError(f"the login has {len(names)} accounts ({', '.join(names)}); set TRADOVATE_ACCOUNTS "
                                  "to the ones this server may trade (or describe them in RECORDERS_FILE) -- "
                                  "without it every account of the login would trade")
        else:
            names = [f"{link.account} x{link.multiplier:g}" + (f" max {link.max_qty} ({link.max_qty_mode})"
                                                               if link.max_qty else "")
                     for link in rec.accounts if link.enabled]
        lines.append(f"recorder {rec.name} ({rec.signal_mode} mode) trades: {', '.join(names) or 'no account'}")
    return lines
