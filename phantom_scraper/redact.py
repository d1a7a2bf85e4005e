"""Redaction: secrets never reach a log line.

``install()`` puts a filter on the root handlers (and gunicorn's access log uses it too) that
replaces every registered secret and the token in ``/webhook/<token>`` paths with ``***``.
"""
from __future__ import annotations

import logging
import re
import threading
import weakref
from typing import Dict, Iterable, Tuple

_WEBHOOK_PATH = re.compile(r"(/webhook/)[^\s/?\"']+")
_KEY_VALUE = re.compile(r'(?i)(?<![A-Za-z0-9_])("?(?:secret|password|token|accessToken|mdAccessToken|sec)"?\s*[:=]\s*"?)([^"\s,&}]+)')

# Guards _STATIC, _LIVE and the rebuild of _ORDERED.  Re-entrant: a garbage collection triggered
# while it is held may run an owner's weakref finalizer (_forget) on the same thread, which takes
# it again (with a plain Lock that thread deadlocked, hanging a start-up in register_secret).
_LOCK = threading.RLock()
_STATIC: set = set()  # secrets for the life of the process: webhook secret, admin token, passwords
_LIVE: Dict[int, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {}  # owner id -> (current, previous)
# What scrub() walks, longest first: rebuilt on every change, read without the lock (a tuple
# swapped in one assignment), so a log line never sorts anything.
_ORDERED: Tuple[str, ...] = ()


def _usable(values: Iterable[str]) -> Tuple[str, ...]:
    return tuple(v for v in values if v and len(v) >= 4)


def _rebuild() -> None:
    global _ORDERED
    every = set(_STATIC)
    for current, previous in _LIVE.values():
        every.update(current)
        every.update(previous)
    _ORDERED = tuple(sorted(every, key=len, reverse=True))


def register_secret(*values: str) -> None:
    """Secrets that stay secret for the life of the process."""
    with _LOCK:
        fresh = set(_usable(values)) - _STATIC
        if fresh:
            _STATIC.update(fresh)
            _rebuild()


def set_live_secrets(owner: object, *values: str) -> None:
    """The current tokens of ``owner`` (a login's token holder): they replace its previous ones,
    which are kept one renewal longer (a line logged during the renewal); older ones are dropped,
    so the registry does not grow with every renewal.  Forgotten when ``owner`` is collected."""
    key = id(owner)
    with _LOCK:
        known = key in _LIVE
        current = _LIVE[key][0] if known else ()
        fresh = _usable(values)
        if fresh == current:
            return
        _LIVE[key] = (fresh, current)
        _rebuild()
    if not known:
        weakref.finalize(owner, _forget, key)


def _forget(key: int) -> None:
    with _LOCK:
        if _LIVE.pop(key, None) is not None:
            _rebuild()


def registered_count() -> int:
    return len(_ORDERED)


def scrub(text: str) -> str:
    """Replace every registered secret (only those) with ``***``; safe on JSON."""
    if not text:
        return text
    for secret in _ORDERED:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def scrub_values(obj):
    """A copy of a JSON-like structure with registered secrets removed from string values
    (keys are left alone, so a short secret cannot mangle the structure)."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {k: scrub_values(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_values(v) for v in obj]
    return obj


def redact(text: str) -> str:
    """For log lines: registered secrets, ``/webhook/<token>`` and ``key=value`` secrets."""
    if not text:
        return text
    text = scrub(text)
    text = _WEBHOOK_PATH.sub(r"\1***", text)
    return _KEY_VALUE.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave the record to logging's own error path
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, ()
        return True


def install(handlers: Iterable[logging.Handler] = ()) -> None:
    """Attach the filter to the root logger's handlers (and any given ones), once."""
    targets = list(logging.getLogger().handlers) + list(handlers)
    for handler in targets:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
