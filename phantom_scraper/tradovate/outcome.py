"""The one answer to "might this order attempt have executed?", for both transports.

Every attempt to send an order intent ends as exactly one :class:`Outcome`:

``not_sent``
    the request provably never reached the broker, or the broker provably did not execute it:
    connect refused, DNS, connect timeout, TLS handshake, socket not open, frame never written,
    HTTP/socket 401, 429, a penalty ticket (``p-ticket``), no access token.  Falling back to REST
    is safe (except after a 429/penalty: another transport would only deepen the lock-out).
``acked``
    the broker answered with an order id / command id.
``rejected``
    the broker answered this request with a failure (``failureReason``, ``violations``,
    ``errorText``, HTTP/socket 4xx other than 401/429).  Final.
``unknown``
    anything else once bytes may have left: read timeout, connection reset, an answer cut
    mid-body (``ChunkedEncodingError``), an unparseable answer, 5xx, a socket closed while
    waiting, an unexpected exception.  Never resent: searched by ``clOrdId``, then settled.

Each transport first translates its library's exceptions into ``errors.py`` at its boundary
(``tradovate_rest.RestClient`` through :data:`REQUESTS_EXCEPTIONS` below, ``ws_client`` for
websockets/asyncio); :func:`classify_error` and :func:`classify_answer` then map that tree and the
broker's answer onto an outcome.  Nothing above the transports interprets exceptions again.

:class:`IntentOutcome` enforces the rule that makes resends impossible to get wrong: once any
attempt of an intent may have executed (``unknown`` or ``acked``), every later outcome of that
intent is at best ``unknown``.
"""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Type, Union

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from phantom_scraper.errors import (
    AuthError,
    BrokerError,
    ConnectionLostError,
    NotSentError,
    OrderRejectedError,
    OutcomeUnknownError,
    RateLimitedError,
    TradovateError,
)


class Outcome(str, enum.Enum):
    NOT_SENT = "not_sent"
    ACKED = "acked"
    REJECTED = "rejected"
    UNKNOWN = "unknown"

    @property
    def may_have_executed(self) -> bool:
        return self in (Outcome.ACKED, Outcome.UNKNOWN)


@dataclass(frozen=True)
class Attempt:
    """One attempt over one transport, classified.  Both transports return this type."""

    outcome: Outcome
    transport: str  # "websocket" | "rest"
    answer: Dict[str, Any] = field(default_factory=dict)  # the broker's PlaceOrderResult when acked
    reason: str = ""  # why (for logs and the journal); never holds a secret
    failure_reason: Optional[str] = None  # rejected: the broker's failureReason
    failure_text: Optional[str] = None
    rate_limited: bool = False  # not_sent because the broker said "back off" (429, penalty)
    # unknown because the socket closed before the answer (not: an open socket that did not answer
    # in time).  The ONE place that tells the two apart; only this kind may be proved absent later.
    connection_lost: bool = False

    @property
    def order_id(self) -> Optional[int]:
        """``orderId``; for an order strategy its ``orderStrategy.id``."""
        if self.answer.get("orderId") is None and isinstance(self.answer.get("orderStrategy"), dict):
            return self.answer["orderStrategy"].get("id")
        return self.answer.get("orderId")


# ---------------------------------------------------------------------------------------------
# REST: every exception class of ``requests`` -> outcome.  A test walks requests.exceptions and
# fails if a class is missing here (see tests/test_outcome.py).

def _connection_error(exc: BaseException) -> Outcome:
    """``ConnectionError`` is ``not_sent`` only when urllib3 failed before a connection existed."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the real cause
    if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
        return Outcome.NOT_SENT
    return Outcome.UNKNOWN


_Rule = Union[Outcome, Callable[[BaseException], Outcome]]

REQUESTS_EXCEPTIONS: Dict[Type[BaseException], _Rule] = {
    # never left this process: the URL, headers or body could not even be prepared
    requests.exceptions.URLRequired: Outcome.NOT_SENT,
    requests.exceptions.MissingSchema: Outcome.NOT_SENT,
    requests.exceptions.InvalidSchema: Outcome.NOT_SENT,
    requests.exceptions.InvalidURL: Outcome.NOT_SENT,
    requests.exceptions.InvalidHeader: Outcome.NOT_SENT,
    requests.exceptions.InvalidProxyURL: Outcome.NOT_SENT,
    requests.exceptions.InvalidJSONError: Outcome.NOT_SENT,  # the body could not be encoded
    # no connection was made
    requests.exceptions.ConnectTimeout: Outcome.NOT_SENT,
    requests.exceptions.SSLError: Outcome.NOT_SENT,  # TLS handshake: before any request byte
    # a connection existed (or may have): the request may have been executed
    requests.exceptions.ProxyError: _connection_error,
    requests.exceptions.ConnectionError: _connection_error,
    requests.exceptions.ReadTimeout: Outcome.UNKNOWN,
    requests.exceptions.Timeout: Outcome.UNKNOWN,
    requests.exceptions.ChunkedEncodingError: Outcome.UNKNOWN,  # the answer was cut mid-body
    requests.exceptions.ContentDecodingError: Outcome.UNKNOWN,
    requests.exceptions.StreamConsumedError: Outcome.UNKNOWN,
    requests.exceptions.JSONDecodeError: Outcome.UNKNOWN,  # an answer came, unreadable
    requests.exceptions.HTTPError: Outcome.UNKNOWN,
    requests.exceptions.TooManyRedirects: Outcome.UNKNOWN,  # a first request was answered
    requests.exceptions.RetryError: Outcome.UNKNOWN,
    requests.exceptions.UnrewindableBodyError: Outcome.UNKNOWN,  # raised while following a redirect
    requests.exceptions.RequestException: Outcome.UNKNOWN,
}


def classify_requests_exception(exc: BaseException) -> Outcome:
    """The outcome of a request that raised ``exc`` (the most specific rule wins; anything
    outside the table, e.g. a urllib3 error that leaked, is ``unknown``)."""
    for cls in type(exc).__mro__:
        rule = REQUESTS_EXCEPTIONS.get(cls)
        if rule is not None:
            return rule if isinstance(rule, Outcome) else rule(exc)
    return Outcome.UNKNOWN


# ---------------------------------------------------------------------------------------------
# Both transports: the errors.py tree (what RestClient and ws_client raise) -> outcome

def classify_error(exc: BaseException, transport: str) -> Attempt:
    """One failed attempt as an :class:`Attempt`."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OrderRejectedError):
        return Attempt(Outcome.REJECTED, transport, reason=text, failure_reason=exc.failure_reason,
                       failure_text=exc.failure_text)
    if isinstance(exc, RateLimitedError):  # 429 / penalty ticket: not executed, back off
        return Attempt(Outcome.NOT_SENT, transport, reason=text, rate_limited=True)
    if isinstance(exc, (NotSentError, AuthError)):  # never left / token refused before execution
        return Attempt(Outcome.NOT_SENT, transport, reason=text)
    if isinstance(exc, ConnectionLostError):
        return Attempt(Outcome.UNKNOWN, transport, reason=text, connection_lost=True)
    if isinstance(exc, OutcomeUnknownError):
        return Attempt(Outcome.UNKNOWN, transport, reason=text)
    if isinstance(exc, BrokerError):
        status = exc.status
        if status == 401:  # not executed: the token was refused
            return Attempt(Outcome.NOT_SENT, transport, reason=text)
        if status is not None and 400 <= status < 500:  # the broker answered with a refusal
            return Attempt(Outcome.REJECTED, transport, reason=text, failure_reason=f"HTTP {status}",
                           failure_text=text)
        return Attempt(Outcome.UNKNOWN, transport, reason=text)  # 5xx or no status: may have run
    if isinstance(exc, TradovateError):
        return Attempt(Outcome.UNKNOWN, transport, reason=text)
    return Attempt(Outcome.UNKNOWN, transport, reason=f"{type(exc).__name__}: {text}")


# OrderStrategy.status values that mean "started, and already failed" (nothing works at the broker)
FAILED_STRATEGY_STATUSES = frozenset({"ExecutionFailed", "NotEnoughLiquidity"})


def classify_answer(d: Any, transport: str) -> Attempt:
    """A 2xx/``s=200`` answer to an order request: a PlaceOrderResult / CommandResult."""
    if not isinstance(d, dict):
        return Attempt(Outcome.UNKNOWN, transport, reason=f"unexpected answer {str(d)[:200]!r}")
    reason = d.get("failureReason")
    if reason and reason != "Success":
        return Attempt(Outcome.REJECTED, transport, answer=dict(d), reason=str(reason),
                       failure_reason=str(reason), failure_text=str(d.get("failureText") or ""))
    if d.get("violations"):
        text = json.dumps(d["violations"])[:300]
        return Attempt(Outcome.REJECTED, transport, answer=dict(d), reason="Violation",
                       failure_reason="Violation", failure_text=text)
    strategy = d.get("orderStrategy")  # orderStrategy/* answer (OrderStrategyStatusResponse)
    if isinstance(strategy, dict) and strategy.get("status") in FAILED_STRATEGY_STATUSES:
        # The strategy exists but failed at once (e.g. its entry was refused): nothing is working.
        # OrderStrategy.failureMessage carries the broker's text (Tradovate's model reference).
        status = str(strategy["status"])
        text = (strategy.get("failureMessage") or d.get("errorText") or d.get("failureText")
                or f"order strategy {status}")
        return Attempt(Outcome.REJECTED, transport, answer=dict(d), reason=status,
                       failure_reason=str(d.get("failureReason") or status), failure_text=str(text))
    has_id = d.get("orderId") is not None or d.get("commandId") is not None or \
        (isinstance(strategy, dict) and strategy.get("id") is not None)
    if not has_id and d.get("errorText"):
        return Attempt(Outcome.REJECTED, transport, answer=dict(d), reason="Error", failure_reason="Error",
                       failure_text=str(d["errorText"]))
    if not has_id:
        return Attempt(Outcome.UNKNOWN, transport, reason=f"answer without orderId/commandId: {str(d)[:200]}")
    return Attempt(Outcome.ACKED, transport, answer=dict(d))


def attempt_of(transport: str, call: Callable[[], Any]) -> Attempt:
    """Run one attempt (``call`` returns the broker's answer or raises) and classify it."""
    try:
        d = call()
    except BaseException as exc:  # noqa: BLE001 - every exception is classified; none escapes
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return classify_error(exc, transport)
    return classify_answer(d, transport)


class IntentOutcome:
    """The outcome of one intent across its attempts.  Once an attempt may have executed, no
    later attempt can make the intent ``not_sent`` or ``rejected``: at best ``unknown``."""

    def __init__(self) -> None:
        self.may_have_executed = False
        self.last: Optional[Attempt] = None

    def record(self, attempt: Attempt) -> Attempt:
        if self.may_have_executed and attempt.outcome in (Outcome.NOT_SENT, Outcome.REJECTED):
            attempt = Attempt(Outcome.UNKNOWN, attempt.transport,
                              reason=f"an earlier attempt may have executed; then {attempt.reason}")
        if attempt.outcome.may_have_executed:
            self.may_have_executed = True
        self.last = attempt
        return attempt
