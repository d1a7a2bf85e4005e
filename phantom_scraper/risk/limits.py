"""Each account's :class:`~.rules.RiskLimits`: environment defaults, overridden in the recorders file.

Per-account overrides (by account name) and per-recorder signal rates in ``RECORDERS_FILE``::

    {
      "logins": {...},
      "recorders": [{"name": "nq-scalper", "webhook_token_env": "NQ_TOKEN", "max_signals_per_minute": 5,
                     "accounts": [...]}],
      "risk": {"accounts": {"DEMO0001": {"max_position": 2, "daily_loss_limit": 500,
                                         "daily_profit_target": 1000, "trailing_drawdown": 300,
                                         "trading_hours": "Mon-Fri 08:30-15:00 America/Chicago",
                                         "flatten_at_close": true}}}
    }

A key present overrides the default (``null`` removes a limit for that account); a key absent keeps it.
An override must name an account some login has (:func:`check_names`, at start, as recorder links
are checked): a mistyped name would otherwise leave that account on the defaults in silence.
"""
from __future__ import annotations

import json
import logging
from typing import Dict, Iterable, Optional, Tuple

from phantom_scraper.config import ConfigError, RiskSettings

from phantom_scraper.hours import TradingHours, TradingHoursError
from phantom_scraper.risk.rules import RiskLimits

log = logging.getLogger(__name__)

_NUMBERS = ("daily_loss_limit", "daily_profit_target", "trailing_drawdown")
_KEYS = set(_NUMBERS) | {"max_position", "trading_hours", "flatten_at_close"}


def default_limits(risk: RiskSettings) -> RiskLimits:
    return RiskLimits(max_position=risk.max_position, trading_hours=TradingHours.parse(risk.trading_hours),
                      flatten_at_close=risk.flatten_at_close, daily_loss_limit=risk.daily_loss_limit,
                      daily_profit_target=risk.daily_profit_target, trailing_drawdown=risk.trailing_drawdown)


def _override(base: RiskLimits, name: str, spec) -> RiskLimits:
    if not isinstance(spec, dict):
        raise ConfigError(f"risk.accounts.{name} must be an object")
    unknown = set(spec) - _KEYS
    if unknown:
        raise ConfigError(f"risk.accounts.{name}: unknown key(s) {', '.join(sorted(unknown))}")
    changes = {}
    for key in _NUMBERS:
        if key in spec:
            value = spec[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ConfigError(f"risk.accounts.{name}.{key} must be a positive number or null")
            changes[key] = None if value is None else float(value)
    if "max_position" in spec:
        value = spec["max_position"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"risk.accounts.{name}.max_position must be a whole number or null")
        changes["max_position"] = value
    if "trading_hours" in spec:
        try:
            changes["trading_hours"] = TradingHours.parse(spec["trading_hours"])
        except TradingHoursError as exc:
            raise ConfigError(f"risk.accounts.{name}.trading_hours: {exc}") from exc
    if "flatten_at_close" in spec:
        changes["flatten_at_close"] = bool(spec["flatten_at_close"])
    return base.replace(**changes)


def load_limits(settings) -> Tuple[RiskLimits, Dict[str, RiskLimits], Dict[str, Optional[int]]]:
    """(defaults, {account name: limits}, {recorder name: max signals per minute})."""
    defaults = default_limits(settings.risk)
    per_account: Dict[str, RiskLimits] = {}
    per_recorder: Dict[str, Optional[int]] = {}
    if not settings.recorders_file:
        return defaults, per_account, per_recorder
    try:
        with open(settings.recorders_file, "r", encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"RECORDERS_FILE {settings.recorders_file!r} cannot be read: {exc}") from exc
    risk = doc.get("risk") or {}
    if not isinstance(risk, dict):
        raise ConfigError("RECORDERS_FILE: risk must be an object")
    for name, spec in (risk.get("accounts") or {}).items():
        per_account[str(name)] = _override(defaults, str(name), spec)
    for rec in doc.get("recorders") or []:
        if isinstance(rec, dict) and "max_signals_per_minute" in rec:
            value = rec["max_signals_per_minute"]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"recorder {rec.get('name')!r}: max_signals_per_minute must be a whole number or null")
            per_recorder[str(rec.get("name"))] = value
    return defaults, per_account, per_recorder


def check_names(per_account: Dict[str, RiskLimits], known: Iterable[str], *, complete: bool = True) -> None:
    """ConfigError when an override names an account that no login has (names are exact: Tradovate's).
    With ``complete`` False (a login is down: its accounts are not known yet) a loud warning instead."""
    known = set(known)
    unknown = sorted(n for n in per_account if n not in known)
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = sorted(k for k in known if k.lower() == name.lower())
        hints.append(repr(name) + (f" (did you mean {close[0]!r}?)" if close else ""))
    message = ("RECORDERS_FILE risk.accounts names account(s) that no login has: " + ", ".join(hints)
               + "; the logins have: " + (", ".join(sorted(known)) or "none"))
    if not complete:
        log.warning("%s (a login that is down may have them; their limits apply once it is open)", message)
        return
    raise ConfigError(message)
