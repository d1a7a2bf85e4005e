"""One order intent through ``place_order_smart``: WebSocket first, REST only when safe, never twice.

Exactly one intent id per call (``clOrdId``; ``uuid`` for an order strategy; ``customTag50`` for
``order/liquidateposition`` only with the ``TRADOVATE_CUSTOM_TAG50`` opt-in -- without it no field
carries the id and an unknown liquidation is searched by account, contract and time), set in the
body once and reused on every attempt.  Each attempt is classified
by ``outcome`` into ``not_sent`` / ``acked`` / ``rejected`` / ``unknown``; the router only reads
that outcome::

    WebSocket (when Settings.use_websocket_orders and the caller hands an open socket)
      ├─ acked / rejected        -> final
      ├─ not_sent (429/penalty)  -> final not_sent (another transport would deepen the lock-out)
      ├─ not_sent                -> REST, at once ("REST fallback" logged with the reason)
      └─ unknown                 -> on_unknown() (the caller journals it), then a bounded search
                                    by the intent id (command/list):
                                      ├─ found   -> acked, reconciled=True
                                      └─ nothing -> unknown (settled later; NEVER resent)
    REST: the same outcomes, without a further fallback.

Nothing is ever sent after an attempt that may have executed, and nothing is sent once the
transport's stop event is set (shutdown settles, it never sends).

The router depends only on :class:`OrderTransport`, the small public surface of
``TradovateIntegration`` (``send_ws``, ``send_rest``, ``list_commands``, ``stop_event``,
``settings``); it imports nothing from the integration.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol

from phantom_scraper.errors import TradovateError
from phantom_scraper.tradovate.search import check_found, key_field, orders_by_intent, strategies_by_intent
from phantom_scraper.tradovate.outcome import Attempt, IntentOutcome, Outcome

logger = logging.getLogger(__name__)

MAX_INTENT_ID = 64


class OrderTransport(Protocol):
    """What the router needs from one login (``TradovateIntegration`` provides it)."""

    settings: Any
    stop_event: threading.Event

    def send_ws(self, ws: Any, endpoint: str, body: dict, sent: Optional[Callable[[], Any]] = None) -> Attempt: ...

    def send_rest(self, endpoint: str, body: dict) -> Attempt: ...

    def list_commands(self) -> List[dict]: ...

    def list_order_strategies(self) -> List[dict]: ...  # only for orderStrategy/* intents

    def find_liquidation(self, account_id: Any, contract_id: Any, since: float) -> List[int]: ...  # liquidations


@dataclass
class OrderResult:
    status: str  # "acked" | "rejected" | "not_sent" | "unknown"
    order_id: Optional[int]
    transport: str  # "websocket" | "rest" (the transport of the deciding attempt)
    latency_ms: float
    reconciled: bool
    cl_ord_id: str
    failure_reason: Optional[str] = None
    failure_text: Optional[str] = None
    fallback_reason: Optional[str] = None
    response: Dict[str, Any] = field(default_factory=dict)  # the broker's answer (e.g. oso1Id)
    error: Optional[str] = None  # not_sent / unknown: why
    rate_limited: bool = False  # not_sent because the broker said "back off"
    connection_lost: bool = False  # unknown because the socket closed before the answer (outcome.py)


class SmartOrder:
    def __init__(self, transport: OrderTransport, body: dict, ws: Any, endpoint: str,
                 intent_id: Optional[str], new_id: Callable[[], str], *,
                 fallback_reason: Optional[str] = None,
                 on_unknown: Optional[Callable[[str], None]] = None) -> None:
        self.ti = transport
        self.ws = ws
        self.endpoint = endpoint.strip("/")
        # None for a liquidation without the customTag50 opt-in: no field carries the intent id.
        self.key_field = key_field(self.endpoint, bool(getattr(transport.settings, "custom_tag50", False)))
        self.id_label = self.key_field or "intent"
        intent = intent_id or (body.get(self.key_field) if self.key_field else None) or new_id()
        if len(str(intent)) > MAX_INTENT_ID:
            raise ValueError(f"{self.id_label} longer than {MAX_INTENT_ID} characters")
        self.intent = str(intent)
        if self.key_field:
            self.body = dict(body, **{self.key_field: self.intent})
        else:  # never sent without the opt-in (an unregistered tag 50 is an execution reject)
            self.body = {k: v for k, v in body.items() if k != "customTag50"}
        self.body.setdefault("isAutomated", True)  # exchange rule for non-manual orders
        self.started = time.monotonic()
        self.sent_at = time.time()  # wall clock: a liquidation is searched by the time it left
        self.fallback_reason = fallback_reason
        self.on_unknown = on_unknown
        self.outcome = IntentOutcome()

    # ------------------------------------------------------------------ flow
    def run(self, sent: Optional[Callable[[], Any]] = None) -> OrderResult:
        """Place the intent.  ``sent``: the socket attempt's frame was already written as part of a
        batch (``TradovateWebSocket.request_many``, on ``self.ws``); ``sent()`` returns its answer
        ``d`` or raises like ``request()``.  The flow after that first attempt is the same."""
        if sent is not None:
            # Already handed to the socket: no stop check may turn it into "not sent" now.
            attempt = self.outcome.record(self.ti.send_ws(self.ws, self.endpoint, self.body, sent=sent))
            if attempt.outcome is not Outcome.NOT_SENT or attempt.rate_limited:
                return self._finish(attempt)
            self.fallback_reason = f"WebSocket request not sent: {attempt.reason}"
            logger.warning("REST fallback for %s %s=%s: %s", self.endpoint, self.id_label, self.intent,
                           self.fallback_reason)
            return self._finish(self._attempt(lambda: self.ti.send_rest(self.endpoint, self.body)))
        # Settings.use_websocket_orders is read here and nowhere else (webhooks and manual trades alike).
        if not self.ti.settings.use_websocket_orders:
            self.ws, self.fallback_reason = None, None  # REST by configuration: no fallback to report
        elif self.ws is None and not self.fallback_reason:
            self.fallback_reason = "no WebSocket"
        ws = self.ws
        if self.ti.stop_event.is_set():  # shutting down: settle, never send
            return self._finish(Attempt(Outcome.NOT_SENT, "websocket" if ws is not None else "rest",
                                        reason="shutting down; not sent"))
        if ws is not None:
            if ws.is_open:
                attempt = self._attempt(lambda: self.ti.send_ws(ws, self.endpoint, self.body))
                if attempt.outcome is not Outcome.NOT_SENT or attempt.rate_limited:
                    return self._finish(attempt)
                self.fallback_reason = f"WebSocket request not sent: {attempt.reason}"
            else:
                self.fallback_reason = f"WebSocket is {ws.state.value}"
        if self.fallback_reason:
            logger.warning("REST fallback for %s %s=%s: %s", self.endpoint, self.id_label, self.intent,
                           self.fallback_reason)
        return self._finish(self._attempt(lambda: self.ti.send_rest(self.endpoint, self.body)))

    def _attempt(self, send: Callable[[], Attempt]) -> Attempt:
        if self.outcome.may_have_executed:  # unreachable by construction; the guard proves it
            raise AssertionError(f"{self.id_label}={self.intent}: a second attempt after a possible execution")
        if self.ti.stop_event.is_set():  # stopped between the socket attempt and REST
            return self.outcome.record(Attempt(Outcome.NOT_SENT, "rest", reason="shutting down; not sent"))
        return self.outcome.record(send())

    def _finish(self, attempt: Attempt) -> OrderResult:
        if attempt.outcome is Outcome.ACKED:
            result = self._result("acked", attempt, order_id=attempt.order_id, response=dict(attempt.answer))
            logger.debug("%s placed via %s: %s=%s orderId=%s latency=%.0f ms", self.endpoint,
                        "WebSocket" if attempt.transport == "websocket" else "REST", self.id_label,
                        self.intent, result.order_id, result.latency_ms)
            return result
        if attempt.outcome is Outcome.REJECTED:
            logger.warning("%s %s=%s rejected via %s: %s", self.endpoint, self.id_label, self.intent,
                           attempt.transport, attempt.reason)
            return self._result("rejected", attempt, failure_reason=attempt.failure_reason,
                                failure_text=attempt.failure_text)
        if attempt.outcome is Outcome.NOT_SENT:
            logger.warning("%s %s=%s not sent via %s: %s", self.endpoint, self.id_label, self.intent,
                           attempt.transport, attempt.reason)
            return self._result("not_sent", attempt, error=attempt.reason, rate_limited=attempt.rate_limited)
        return self._after_unknown(attempt)

    def _after_unknown(self, attempt: Attempt) -> OrderResult:
        logger.warning("%s %s=%s: outcome unknown over %s (%s); searching, never resending", self.endpoint,
                       self.id_label, self.intent, attempt.transport, attempt.reason)
        if self.on_unknown is not None:
            self.on_unknown(attempt.reason)  # journaled 'unknown' before the search
        order_ids = self._search()
        if order_ids:
            result = self._result("acked", attempt, order_id=order_ids[0], reconciled=True,
                                  response={"orderId": order_ids[0]})
            logger.warning("%s %s=%s: found at the broker, adopting orderId=%s (%s)", self.endpoint,
                           self.id_label, self.intent, result.order_id, attempt.transport)
            return result
        return self._result("unknown", attempt, error=attempt.reason)

    # ------------------------------------------------------------------ bounded search
    def _search(self) -> List[int]:
        """The broker order ids carrying our intent id, polled within the reconcile window (ends
        early, empty, when the stop event is set)."""
        settings = self.ti.settings
        deadline = time.monotonic() + settings.reconcile_window_s
        said_ambiguous = False
        while True:
            try:
                if self.key_field == "uuid":  # an order strategy: orderStrategy/list by uuid
                    found = strategies_by_intent(self.ti.list_order_strategies(), [self.intent])
                elif self.key_field is None:  # a liquidation without customTag50: by what it is
                    ids = self.ti.find_liquidation(self.body.get("accountId"), self.body.get("contractId"),
                                                   self.sent_at)
                    found = {self.intent: ids} if len(ids) == 1 else {}
                    if len(ids) > 1 and not said_ambiguous:  # once per search, not on every poll
                        said_ambiguous = True
                        logger.error("%s %s: %d candidate orders %s on the account and contract since it was "
                                     "sent; none adopted (the intent stays unknown)", self.endpoint, self.intent,
                                     len(ids), ids)
                else:
                    found = orders_by_intent(self.ti.list_commands(), [self.intent])
            except TradovateError as exc:
                logger.warning("search %s=%s: the book is unreadable: %s", self.id_label, self.intent, exc)
                found = {}
            if found.get(self.intent):
                check_found(found)
                return found[self.intent]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if self.ti.stop_event.wait(min(settings.reconcile_poll_interval_s, remaining)):
                return []

    # ------------------------------------------------------------------ results
    def _result(self, status: str, attempt: Attempt, **fields: Any) -> OrderResult:
        return OrderResult(status=status, order_id=fields.pop("order_id", None), transport=attempt.transport,
                           latency_ms=round((time.monotonic() - self.started) * 1000.0, 1),
                           reconciled=fields.pop("reconciled", False), cl_ord_id=self.intent,
                           fallback_reason=self.fallback_reason, connection_lost=attempt.connection_lost,
                           **fields)
