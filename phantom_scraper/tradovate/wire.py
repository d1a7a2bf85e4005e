"""Tradovate wire-format helpers shared by the socket and REST clients (no I/O).

* request frames: ``<endpoint>\\n<id>\\n<query>\\n<body>`` with compact JSON bodies;
* server ``a[...]`` frames: a JSON array (tolerantly also a single object) of message dicts;
* ``d`` may arrive as a JSON-encoded string (observed) and is decoded when it plainly is one;
* a ``{"p-ticket", "p-time", "p-captcha"}`` body is a penalty: the request was not executed.
"""
from __future__ import annotations

import json
from typing import Any, List, Optional

import orjson

from phantom_scraper.errors import OrderRejectedError, OutcomeUnknownError, PenaltyError
from phantom_scraper.tradovate.outcome import Outcome, classify_answer


def encode_body(body: Any) -> str:
    """Compact JSON (double quotes), or "" for no body.  Raises TypeError/ValueError early."""
    return "" if body is None else json.dumps(body, separators=(",", ":"))


def encode_frame(endpoint: str, request_id: int, query: str, body_text: str) -> str:
    return f"{endpoint}\n{request_id}\n{query or ''}\n{body_text}"


def parse_messages(text: str) -> Optional[List[dict]]:
    """The messages of an ``a`` frame; None when the payload is not JSON.  (orjson: every frame
    the socket receives is parsed here, most of them event batches; it is ~2x the stdlib's speed.)"""
    try:
        msgs = orjson.loads(text[1:])
    except ValueError:  # (orjson.JSONDecodeError is a ValueError)
        return None
    if isinstance(msgs, dict):
        msgs = [msgs]
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def decode_d(d: Any) -> Any:
    if isinstance(d, str) and d[:1] in ("{", "[", '"'):
        try:
            return orjson.loads(d)
        except ValueError:
            return d
    return d


def penalty_from(d: Any) -> Optional[PenaltyError]:
    """A penalty body as a ``PenaltyError``, else None."""
    if isinstance(d, dict) and d.get("p-ticket"):
        p_time = d.get("p-time")
        captcha = bool(d.get("p-captcha"))
        return PenaltyError(
            f"penalty ticket: wait {p_time} s" + (" (captcha required)" if captcha else ""),
            p_ticket=str(d["p-ticket"]),
            retry_after_s=float(p_time) if isinstance(p_time, (int, float)) else None,
            captcha=captcha,
        )
    return None


def as_int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def check_order_result(endpoint: str, d: Any) -> dict:
    """A PlaceOrderResult/CommandResult as a dict; a failure raises ``OrderRejectedError``, an
    answer without an id ``OutcomeUnknownError`` (the rules are ``outcome.classify_answer``)."""
    attempt = classify_answer(d, "")
    if attempt.outcome is Outcome.ACKED:
        return d
    if attempt.outcome is Outcome.REJECTED:
        raise OrderRejectedError(attempt.failure_reason or "Rejected", attempt.failure_text or "")
    raise OutcomeUnknownError(f"{endpoint}: {attempt.reason}")
