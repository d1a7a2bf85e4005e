"""One HTTP exchange with Tradovate's REST API, with every library error translated.

``RestClient.send()`` makes exactly one request (no retries at any layer: the adapter is mounted
with ``max_retries=0``) and maps the outcome onto ``errors.py``:

* every ``requests`` exception goes through ``outcome.REQUESTS_EXCEPTIONS`` (one table):
  ``not_sent`` (connection refused, DNS, connect timeout, TLS handshake, a request that could not
  be prepared) -> ``NotSentError``; anything else (read timeout, connection lost after sending,
  an answer cut mid-body) -> ``OutcomeUnknownError`` for order endpoints, ``BrokerError`` for reads
* HTTP 401 -> ``BrokerError(status=401)`` (the caller re-authenticates once)
* HTTP 429 -> ``TooManyRequestsError`` (a ``RateLimitedError``; the login goes quiet: ``quiet.py``); a ``p-ticket`` body -> ``PenaltyError`` (not executed)
* HTTP 5xx -> ``OutcomeUnknownError`` for order endpoints, else ``BrokerError``
* any other non-2xx -> ``BrokerError(status)``

Order answers (``failureReason`` ...) are classified by ``outcome.classify_answer`` for both
transports.
"""
from __future__ import annotations

import email.utils
import logging
import time
from typing import Any, Mapping, Optional

import requests
from requests.adapters import HTTPAdapter

from phantom_scraper.errors import BrokerError, NotSentError, OutcomeUnknownError, TooManyRequestsError
from phantom_scraper.tradovate.outcome import Outcome, classify_requests_exception
from phantom_scraper.tradovate.wire import penalty_from

logger = logging.getLogger(__name__)

# Endpoints that change broker state: an ambiguous failure on them is "outcome unknown".
ORDER_ENDPOINTS = frozenset(
    {
        "order/placeorder",
        "order/placeoso",
        "order/placeoco",
        "order/liquidateposition",
        "order/cancelorder",
        "order/modifyorder",
        "orderstrategy/startorderstrategy",
        "orderstrategy/interruptorderstrategy",
        "orderstrategy/modifyorderstrategy",
    }
)


def is_order_endpoint(path: str) -> bool:
    return path.strip("/").lower() in ORDER_ENDPOINTS


class RestClient:
    """A keep-alive ``requests.Session`` bound to one REST base URL."""

    def __init__(self, base_url: str, timeout_s: float = 10.0, connect_timeout_s: float = 5.0):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        # requests' Session is shared by the caller threads; urllib3's pool is thread-safe and
        # nothing here mutates session state per call (headers are passed per request).
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=0, pool_maxsize=16)  # never retry: orders are not idempotent
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"Accept": "application/json"})
        # Server clock minus local clock, from the last answer's Date header (None before one):
        # token expiry is measured on the server's clock.  A float written whole (GIL-atomic).
        self.server_clock_offset_s: Optional[float] = None
        self.budget: Any = None  # the login's RequestBudget (tradovate/budget.py)

    def close(self) -> None:
        self.session.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        token: Optional[str] = None,
        params: Optional[Mapping[str, Any]] = None,
        body: Any = None,
        timeout_s: Optional[float] = None,
    ) -> Any:
        path = path.strip("/")
        order = is_order_endpoint(path)
        url = f"{self.base_url}/{path}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        read_timeout = timeout_s if timeout_s is not None else self.timeout_s
        started = time.monotonic()
        if self.budget is not None:
            self.budget.note()
        try:
            resp = self.session.request(
                method, url, params=params, json=body, headers=headers,
                timeout=(min(self.connect_timeout_s, read_timeout), read_timeout),
            )
        except requests.exceptions.RequestException as exc:
            if classify_requests_exception(exc) is Outcome.NOT_SENT:
                raise NotSentError(f"{path}: request not sent ({type(exc).__name__})") from exc
            raise self._after_send(path, order, f"{type(exc).__name__} after sending") from exc
        elapsed_ms = (time.monotonic() - started) * 1000.0
        logger.debug("%s %s -> %s in %.0f ms", method, path, resp.status_code, elapsed_ms)
        self._note_server_clock(resp.headers.get("Date"), elapsed_ms / 1000.0)
        return self._translate(path, order, resp)

    def _note_server_clock(self, date: Optional[str], rtt_s: float) -> None:
        if not date:
            return
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        # Date has a 1 s resolution and is stamped mid-flight: compare with the request's midpoint.
        self.server_clock_offset_s = server + 0.5 - (time.time() - rtt_s / 2.0)

    @staticmethod
    def _after_send(path: str, order: bool, what: str) -> Exception:
        if order:
            return OutcomeUnknownError(f"{path}: sent, then {what}")
        return BrokerError(f"{path}: {what}")

    @staticmethod
    def _translate(path: str, order: bool, resp: requests.Response) -> Any:
        status = resp.status_code
        if status == 429:  # empty body, no Retry-After (Partner docs): the login is locked out for an hour
            raise TooManyRequestsError(f"{path}: {TooManyRequestsError.TEXT}")
        if status >= 500 and order:
            raise OutcomeUnknownError(f"{path}: HTTP {status} after sending")
        if status >= 300:
            raise BrokerError(f"{path}: HTTP {status} {resp.text[:200]!r}", status=status)
        if not resp.content.strip():
            return None
        try:
            data = resp.json()
        except ValueError as exc:
            if order:
                raise OutcomeUnknownError(f"{path}: unparseable HTTP {status} answer") from exc
            raise BrokerError(f"{path}: unparseable answer", status=status) from exc
        penalty = penalty_from(data)
        if penalty is not None:
            raise penalty
        return data
