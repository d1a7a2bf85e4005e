"""One HTTP exchange with Tradovate's REST API, with every library error translated.

``RestClient.send()`` makes exactly one request (no retries at any layer: the adapter is mounted
with ``max_retries=0``) and maps the outcome onto ``errors.py``:

* connection refused / DNS / connect timeout / TLS handshake -> ``NotSentError``
* read timeout or connection lost after sending -> ``OutcomeUnknownError`` for order endpoints,
  ``BrokerError`` for reads
* HTTP 401 -> ``BrokerError(status=401)`` (the caller re-authenticates once)
* HTTP 429 -> ``RateLimitedError``; a ``p-ticket`` body -> ``PenaltyError`` (not executed)
* HTTP 5xx -> ``OutcomeUnknownError`` for order endpoints, else ``BrokerError``
* any other non-2xx -> ``BrokerError(status)``

Order-result interpretation (``failureReason``) is shared with the socket path:
``check_order_result()``.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Mapping, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .errors import BrokerError, NotSentError, OrderRejectedError, OutcomeUnknownError, RateLimitedError
from .tradovate_wire import penalty_from

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


def check_order_result(endpoint: str, d: Any) -> dict:
    """A PlaceOrderResult/CommandResult: failures raise OrderRejectedError; no id is ambiguous."""
    if not isinstance(d, dict):
        raise OutcomeUnknownError(f"{endpoint}: unexpected answer {str(d)[:200]!r}")
    reason = d.get("failureReason")
    if reason and reason != "Success":
        raise OrderRejectedError(str(reason), str(d.get("failureText") or ""))
    if d.get("violations"):
        raise OrderRejectedError("Violation", json.dumps(d["violations"])[:300])
    strategy = d.get("orderStrategy")  # orderStrategy/* answer: OrderStrategyStatusResponse
    has_id = d.get("orderId") is not None or d.get("commandId") is not None or \
        (isinstance(strategy, dict) and strategy.get("id") is not None)
    if not has_id and d.get("errorText"):
        raise OrderRejectedError("Error", str(d["errorText"]))
    if not has_id:
        raise OutcomeUnknownError(f"{endpoint}: answer without orderId/commandId: {str(d)[:200]}")
    return d


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when urllib3 failed before a connection existed (refused, DNS, connect timeout)."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the real cause
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


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
        try:
            resp = self.session.request(
                method, url, params=params, json=body, headers=headers,
                timeout=(min(self.connect_timeout_s, read_timeout), read_timeout),
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise NotSentError(f"{path}: connect timeout") from exc
        except requests.exceptions.SSLError as exc:
            raise NotSentError(f"{path}: TLS handshake failed") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise self._after_send(path, order, f"no answer within {read_timeout} s") from exc
        except requests.exceptions.ConnectionError as exc:
            if _never_connected(exc):
                raise NotSentError(f"{path}: cannot connect to {self.base_url}") from exc
            raise self._after_send(path, order, f"connection lost ({type(exc).__name__})") from exc
        except requests.exceptions.RequestException as exc:
            raise NotSentError(f"{path}: request not sent ({type(exc).__name__})") from exc
        elapsed_ms = (time.monotonic() - started) * 1000.0
        logger.debug("%s %s -> %s in %.0f ms", method, path, resp.status_code, elapsed_ms)
        return self._translate(path, order, resp)

    @staticmethod
    def _after_send(path: str, order: bool, what: str) -> Exception:
        if order:
            return OutcomeUnknownError(f"{path}: sent, then {what}")
        return BrokerError(f"{path}: {what}")

    @staticmethod
    def _translate(path: str, order: bool, resp: requests.Response) -> Any:
        status = resp.status_code
        if status == 429:
            retry_after = resp.headers.get("Retry-After")
            try:
                retry_s = float(retry_after) if retry_after else None
            except ValueError:
                retry_s = None
            raise RateLimitedError(f"{path}: rate limited (HTTP 429)", retry_s)
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
