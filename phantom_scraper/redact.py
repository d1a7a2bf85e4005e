"""Redaction: secrets never reach a log line.

``install()`` puts a filter on the root handlers (and gunicorn's access log uses it too) that
replaces every registered secret and the token in ``/webhook/<token>`` paths with ``***``.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Iterable

_SECRETS: set = set()
_SECRETS_LOCK = threading.Lock()  # guards _SECRETS membership
_WEBHOOK_PATH = re.compile(r"(/webhook/)[^\s/?\"']+")
_KEY_VALUE = re.compile(r'(?i)(?<![A-Za-z0-9_])("?(?:secret|password|token|accessToken|mdAccessToken|sec)"?\s*[:=]\s*"?)([^"\s,&}]+)')


def register_secret(*values: str) -> None:
    with _SECRETS_LOCK:
        for value in values:
            if value and len(value) >= 4:
                _SECRETS.add(value)


def scrub(text: str) -> str:
    """Replace every registered secret (only those) with ``***``; safe on JSON."""
    if not text:
        return text
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
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
