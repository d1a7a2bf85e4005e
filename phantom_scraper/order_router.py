"""One order intent through ``place_order_smart``: WebSocket first, REST only when safe.

Exactly one intent id per call (``clOrdId``; ``customTag50`` for ``order/liquidateposition``, which
has no ``clOrdId``), set in the body once and reused on every attempt.  Attempts happen only:

1. over the socket, when ``use_websocket_orders`` and the socket is open;
2. over REST, when the socket attempt provably never left (``NotSentError``, or s=401 which means
   "not executed"), or when no socket is usable;
3. once more over REST, with the same id, when an unknown outcome was followed by a bounded
   reconciliation that found nothing (logged at WARNING).

An unknown outcome is reconciled by polling ``command/list`` for a command carrying the intent id;
a found command's ``orderId`` is adopted.  Rejections (``failureReason``) are final everywhere.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from . import events
from .errors import (
    BrokerError,
    NotSentError,
    OrderRejectedError,
    OutcomeUnknownError,
    RateLimitedError,
    TradovateError,
)

if TYPE_CHECKING:  # pragma: no cover
    from .tradovate_integration import TradovateIntegration
    from .ws_client import TradovateWebSocket

logger = logging.getLogger(__name__)

MAX_INTENT_ID = 64


@dataclass
class OrderResult:
    status: str  # "acked" | "rejected"
    order_id: Optional[int]
    transport: str  # "websocket" | "rest"
    latency_ms: float
    reconciled: bool
    cl_ord_id: str
    failure_reason: Optional[str] = None
    failure_text: Optional[str] = None
    fallback_reason: Optional[str] = None
    response: Dict[str, Any] = field(default_factory=dict)  # the broker's answer (e.g. oso1Id)


class SmartOrder:
    def __init__(self, ti: "TradovateIntegration", body: dict, ws: Optional["TradovateWebSocket"],
                 endpoint: str, intent_id: Optional[str], new_id) -> None:
        self.ti = ti
        self.ws = ws
        self.endpoint = endpoint.strip("/")
        self.key_field = "customTag50" if self.endpoint.lower() == "order/liquidateposition" else "clOrdId"
        intent = intent_id or body.get(self.key_field) or new_id()
        if len(str(intent)) > MAX_INTENT_ID:
            raise ValueError(f"{self.key_field} longer than {MAX_INTENT_ID} characters")
        self.intent = str(intent)
        self.body = dict(body, **{self.key_field: self.intent})
        self.body.setdefault("isAutomated", True)  # exchange rule for non-manual orders
        self.started = time.monotonic()
        self.fallback_reason: Optional[str] = None
        self.resent_after_unknown = False

    # ------------------------------------------------------------------ flow
    def run(self) -> OrderResult:
        ws = self.ws
        if self.ti.use_websocket_orders:
            if ws is not None and ws.is_open:
                result = self._try_websocket(ws)
                if result is not None:
                    return result
            else:
                self.fallback_reason = "no WebSocket" if ws is None else f"WebSocket is {ws.state.value}"
            logger.warning("REST fallback for %s %s=%s: %s", self.endpoint, self.key_field, self.intent,
                           self.fallback_reason)
        return self._try_rest()

    def _try_websocket(self, ws: "TradovateWebSocket") -> Optional[OrderResult]:
        """An OrderResult, or None when the request provably never executed (fall back)."""
        try:
            d = self.ti._ws_order(ws, self.endpoint, self.body)
        except OrderRejectedError as exc:
            return self._rejected(exc, "websocket")
        except RateLimitedError:
            raise  # the broker says back off; another transport would only deepen the lock-out
        except NotSentError as exc:
            self.fallback_reason = f"WebSocket request not sent: {exc}"
            return None
        except BrokerError as exc:
            if exc.status == 401:  # not executed; REST re-authenticates on its own
                self.fallback_reason = f"socket refused the token: {exc}"
                return None
            raise
        except OutcomeUnknownError as exc:
            logger.warning("%s %s=%s: outcome unknown over WebSocket (%s); reconciling",
                           self.endpoint, self.key_field, self.intent, exc)
            return self._after_unknown("websocket", exc)
        result = self._acked(d, "websocket", reconciled=False)
        logger.info("%s placed via WebSocket: %s=%s orderId=%s latency=%.0f ms", self.endpoint,
                    self.key_field, self.intent, result.order_id, result.latency_ms)
        return result

    def _try_rest(self) -> OrderResult:
        try:
            d = self.ti._rest_order(self.endpoint, self.body)
        except OrderRejectedError as exc:
            return self._rejected(exc, "rest")
        except OutcomeUnknownError as exc:
            logger.warning("%s %s=%s: outcome unknown over REST (%s); reconciling",
                           self.endpoint, self.key_field, self.intent, exc)
            return self._after_unknown("rest", exc)
        result = self._acked(d, "rest", reconciled=False)
        logger.info("%s placed via REST: %s=%s orderId=%s latency=%.0f ms", self.endpoint,
                    self.key_field, self.intent, result.order_id, result.latency_ms)
        return result

    def _after_unknown(self, transport: str, cause: OutcomeUnknownError) -> OrderResult:
        command, searched = self._reconcile()
        if command is not None:
            result = self._acked({"orderId": command.get("orderId")}, transport, reconciled=True)
            logger.warning("%s %s=%s: reconciled, adopting orderId=%s (%s)", self.endpoint, self.key_field,
                           self.intent, result.order_id, transport)
            return result
        if not searched:
            raise OutcomeUnknownError(
                f"{self.endpoint} {self.key_field}={self.intent}: outcome unknown and the order book "
                f"could not be read; not resending"
            ) from cause
        if self.resent_after_unknown:
            raise OutcomeUnknownError(
                f"{self.endpoint} {self.key_field}={self.intent}: outcome unknown after the one resend"
            ) from cause
        self.resent_after_unknown = True
        logger.warning("%s %s=%s: nothing found after %.1f s of reconciliation; resending ONCE over REST "
                       "with the same %s", self.endpoint, self.key_field, self.intent,
                       self.ti.settings.reconcile_window_s, self.key_field)
        return self._try_rest()

    # ------------------------------------------------------------------ reconciliation
    def _reconcile(self) -> Tuple[Optional[dict], bool]:
        """(command carrying our intent id, whether any read succeeded) within the window."""
        settings = self.ti.settings
        deadline = time.monotonic() + settings.reconcile_window_s
        searched = False
        while True:
            try:
                commands = self.ti.list_commands()
                searched = True
            except TradovateError as exc:
                logger.warning("reconcile %s=%s: command/list failed: %s", self.key_field, self.intent, exc)
                commands = []
            matches = [c for c in commands or []
                       if isinstance(c, dict) and c.get(self.key_field) == self.intent
                       and c.get("orderId") is not None]
            if matches:
                if len({c["orderId"] for c in matches}) > 1:
                    logger.error("DUPLICATE: %s=%s matches orders %s", self.key_field, self.intent,
                                 sorted({c["orderId"] for c in matches}))
                    events.emit("duplicate", cl_ord_id=self.intent, order_ids=sorted({c["orderId"] for c in matches}))
                return min(matches, key=lambda c: c.get("id") or 0), True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, searched
            if self.ti._stop.wait(min(settings.reconcile_poll_interval_s, remaining)):
                return None, searched

    # ------------------------------------------------------------------ results
    def _elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000.0, 1)

    def _acked(self, d: dict, transport: str, reconciled: bool) -> OrderResult:
        return OrderResult(
            status="acked", order_id=d.get("orderId"), transport=transport, latency_ms=self._elapsed_ms(),
            reconciled=reconciled, cl_ord_id=self.intent, fallback_reason=self.fallback_reason,
            response=dict(d),
        )

    def _rejected(self, exc: OrderRejectedError, transport: str) -> OrderResult:
        logger.warning("%s %s=%s rejected via %s: %s", self.endpoint, self.key_field, self.intent,
                       transport, exc)
        return OrderResult(
            status="rejected", order_id=None, transport=transport, latency_ms=self._elapsed_ms(),
            reconciled=False, cl_ord_id=self.intent, failure_reason=exc.failure_reason,
            failure_text=exc.failure_text, fallback_reason=self.fallback_reason,
        )
