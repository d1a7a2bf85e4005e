"""A tiny in-process event bus: producers call ``emit(kind, **fields)``; subscribers (the
notifier, the metrics) receive an :class:`Event`.

Producers sit on the order path, so ``emit`` only builds one small object and calls each
subscriber; a subscriber must be as cheap (a counter increment, a ``put_nowait`` on a queue):
no formatting, no I/O, no lock held for long.  A subscriber that raises is logged and skipped.
With no subscriber ``emit`` returns at once.

Kinds in use (fields in brackets; a producer may add more):

======================  =====================================================================
``startup``/``shutdown`` [environment, accounts]
``signal_received``     [signal_id, t (perf_counter at receipt)]
``signal``              [signal_id, status, outcomes (AccountOutcome list), contract, signal]
``duplicate_signal``    [signal_id, duplicate_of]
``duplicate``           a DUPLICATE alarm: one clOrdId matches several orders [cl_ord_id, order_ids]
``settled``             an ``unknown`` intent settled [cl_ord_id, order_id, state]
``socket_down``         [login, reason]; ``socket_up`` [login, reconnect]
``token_renewed``       [login]
``login_down``          a login could not be opened; the others run [login, error, retrying]
``login_up``            a login that was down is open [login, accounts]
``auth``                authentication failed [login, error]; ``penalty`` [what, wait_s, captcha]
``risk``                a risk lock or the kill switch [account, locked, reason]
``risk_pnl``            an account's P&L became unknown (its rules cannot act) or known again
                        [account, unknown, reason]
``risk_flatten``        a flatten the guard must do failed; it is retried [account, why, error,
                        still_open, retry_in_s]
``rate_limited``        HTTP 429: the login goes quiet for Tradovate's hour [login, what, quiet_s]
``strategy_alert``      an order strategy needs the trader (breakeven found no stop, a refusal,
                        bracket legs not where the plan put them) [intent_id, account, text]
``fill``                [account, account_id, contract, side, qty, price, order_id, latency_ms,
                        fill_id, timestamp, trade_date]
``fill_snapshot``       a socket's snapshot loaded: its fills [fills: dicts with the fields of ``fill``]
``drift``               an account not where its lane expects it [account, contract, expected, actual, since]
``drift_cleared``       [account, contract, actual]
``late_execution``      a late unknown squared toward the lane's expectation [account, contract, expected,
                        actual, result, signal_id, cl_ord_ids]; ``drift_healed`` (DRIFT_ACTION=heal) the same
``budget``              a login passed 80 % of its request budget [login, last_minute, last_hour]
``journal_write``       [seconds]
======================  =====================================================================
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Tuple

logger = logging.getLogger(__name__)


class Event:
    __slots__ = ("kind", "fields", "at")

    def __init__(self, kind: str, fields: Dict[str, Any]):
        self.kind = kind
        self.fields = fields
        self.at = time.time()

    def __repr__(self) -> str:
        return f"Event({self.kind!r}, {sorted(self.fields)})"


Subscriber = Callable[[Event], None]

_subscribers: Tuple[Subscriber, ...] = ()  # replaced whole (copy-on-write): emit reads it unlocked
_lock = threading.Lock()  # serialises subscribe/unsubscribe


def subscribe(fn: Subscriber) -> Callable[[], None]:
    """Add ``fn``; returns a function that removes it again."""
    global _subscribers
    with _lock:
        _subscribers = _subscribers + (fn,)

    def unsubscribe() -> None:
        global _subscribers
        with _lock:
            _subscribers = tuple(s for s in _subscribers if s is not fn)

    return unsubscribe


def emit(kind: str, **fields: Any) -> None:
    subscribers = _subscribers
    if not subscribers:
        return
    event = Event(kind, fields)
    for fn in subscribers:
        try:
            fn(event)
        except Exception:  # noqa: BLE001 - a subscriber must never break its producer
            logger.exception("event subscriber failed on %s", kind)
