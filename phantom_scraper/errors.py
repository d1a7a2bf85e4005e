"""Exceptions raised by the Tradovate client, named by what the caller should do.

::

    TradovateError
    ├── AuthError                 credentials/token refused: fix configuration, do not loop
    │   └── CaptchaRequiredError  penalty with p-captcha: a person must wait (~1 h)
    ├── NotSentError              the request provably never reached the broker: safe to fall back
    │   └── RateLimitedError      the broker refused to execute it (429 / penalty): back off
    │       └── PenaltyError      a p-ticket: wait p-time, then resend with "p-ticket"
    ├── OrderRejectedError        the broker answered with failureReason: final, never retried
    ├── OutcomeUnknownError       it may or may not have executed: reconcile by clOrdId
    │   └── ConnectionLostError   ... because its socket closed before the answer
    └── BrokerError               any other broker/HTTP error on a read or a cancel

Library errors (``requests``, ``websockets``, ``asyncio``) are translated into these at the
boundary with ``raise ... from exc``.  No message ever contains a token, password or secret.
"""
from __future__ import annotations

from typing import Optional


class TradovateError(Exception):
    """Base class for everything the Tradovate client raises."""


class AuthError(TradovateError):
    """Authentication failed (bad credentials, expired/revoked token that could not be renewed)."""


class CaptchaRequiredError(AuthError):
    """The broker demands a captcha (``p-captcha``); an automated client must stop and wait."""

    def __init__(self, message: str, p_time_s: Optional[float] = None):
        super().__init__(message)
        self.p_time_s = p_time_s


class NotSentError(TradovateError):
    """The request never left this process, or the broker certainly did not execute it.

    Falling back to another transport (WebSocket -> REST) is safe.
    """


class RateLimitedError(NotSentError):
    """HTTP 429 or a penalty ticket we did not (or could not) wait out: not executed."""

    def __init__(self, message: str, retry_after_s: Optional[float] = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooManyRequestsError(RateLimitedError):
    """HTTP 429 (socket ``s=429``): Tradovate's user-level limit.  Not executed; documented with an
    empty body, no ``Retry-After`` and a rolling hour's lock-out (``tradovate.quiet``)."""

    TEXT = "HTTP 429: Tradovate locked this login out (a rolling hour); not executed"


class PenaltyError(RateLimitedError):
    """A penalty ticket (``p-ticket``/``p-time``): the request was not executed.

    The caller may wait ``retry_after_s`` and resend the identical body plus ``"p-ticket"``;
    with ``captcha`` true an automated client cannot complete the call and must stop.
    """

    def __init__(self, message: str, p_ticket: str, retry_after_s: Optional[float], captcha: bool = False):
        super().__init__(message, retry_after_s)
        self.p_ticket = p_ticket
        self.captcha = captcha


class OrderRejectedError(TradovateError):
    """The broker refused the order with a ``failureReason``; final on every transport."""

    def __init__(self, failure_reason: str, failure_text: str = ""):
        super().__init__(f"{failure_reason}: {failure_text}" if failure_text else failure_reason)
        self.failure_reason = failure_reason
        self.failure_text = failure_text


class OutcomeUnknownError(TradovateError):
    """The request may have executed (timeout, socket lost after the write, HTTP 5xx).

    Never resend blindly: look the order up by its ``clOrdId`` first.
    """


class ConnectionLostError(OutcomeUnknownError):
    """The socket closed after the frame was written and before its answer: the frame may have
    been executed, or may never have been read.  Unlike a socket that stays open and does not
    answer (a broker executing late), this one can be proved absent after the reconnect
    (``tradovate.outcome``'s ``connection_lost``; execution/absence.py)."""


class BrokerError(TradovateError):
    """Any other error answer from the broker (non-order calls)."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


def describe(exc: BaseException) -> str:
    """``Type: message`` for logs and outcomes (messages never hold secrets: see the module docstring)."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
