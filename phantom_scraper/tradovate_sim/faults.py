"""Fault switches, settable while the simulator runs (Python attributes or POST /control/faults).

Counters (``*_next*``) are consumed one per matching request with :meth:`FaultSwitches.take`.
Actions (close sockets, expire tokens, send shutdown) are delegated to the running simulator.
"""
from __future__ import annotations

import random
import secrets
import threading
import time
from typing import Any, Callable, Dict, Optional

# Endpoints that count as "order frames" for the order faults (lower case).
ORDER_ENDPOINTS = frozenset({
    "order/placeorder", "order/placeoso", "order/placeoco", "order/cancelorder",
    "order/modifyorder", "order/liquidateposition", "orderstrategy/startorderstrategy",
    "orderstrategy/modifyorderstrategy", "orderstrategy/interruptorderstrategy",
})

_DEFAULTS: Dict[str, Any] = {
    "response_latency_ms": 0.0,  # added before every response (REST and WS)
    "response_latency_jitter_ms": 0.0,  # plus a uniform random 0..this per response
    "order_delay_ms": 0.0,  # order requests travel this long (+ jitter) before they execute
    "order_delay_jitter_ms": 0.0,  # (per socket they still execute in the order they were sent)
    "connect_latency_ms": 0.0,  # added once per new TCP connection / WS handshake
    "refuse_ws_connects": False,  # WS handshakes answered HTTP 503
    "no_answer_next_orders": 0,  # execute the next N order requests, never answer
    "close_after_next_orders": 0,  # execute, then close the connection before answering
    "close_drops_unread": False,  # with it: the frames behind the closing one are never read (not executed)
    "hold_next_orders": 0,  # socket only: hold the next N order frames hold_orders_ms, then execute
    "hold_orders_ms": 0.0,  # (and answer, if the socket is still open): a broker executing late
    #                        (read while holding: set it to 0 to release the held frames now)
    "oco_cancel_delay_ms": 0.0,  # a filled leg's OCO sibling is cancelled this long after the fill's events
    "props_delay_ms": 0.0,  # entity events (props) reach the sockets this long after they happen: events trail answers
    "blackhole_next_responses": 0,  # drop the next N responses (any request, after execution)
    "http_429_next": 0,  # answer 429 (REST: empty body; WS: {"s":429,"i":..}); not executed
    "http_500_next": 0,  # answer 500 "Internal Server Error, error id: <uuid>"
    "penalty_next": 0,  # answer {"p-ticket","p-time","p-captcha"}; not executed
    # the three above only on these requests (comma list of endpoint names, lower case; a name
    # ending in "/" is a prefix, e.g. "contract/"); empty: the next request of any kind
    "request_faults_only": "",
    "penalty_time_s": 1.0,
    "penalty_captcha": False,
}


def _convert(default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
    return type(default)(value)  # ValueError/TypeError for garbage (control endpoint: 400)


class FaultSwitches:
    """Plain attributes named as in ``_DEFAULTS``; counters consumed atomically by ``take``."""

    def __init__(self, actions: Optional[Dict[str, Callable[..., Any]]] = None):
        # Serialises read-modify-write of the counters and the penalty-ticket dict.
        self._lock = threading.Lock()
        self._actions = dict(actions or {})
        self._tickets: Dict[str, tuple] = {}  # ticket -> (redeemable_at, captcha)
        for key, value in _DEFAULTS.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: Any) -> None:
        if not key.startswith("_") and key not in _DEFAULTS:
            raise AttributeError(f"unknown fault switch {key!r}")
        object.__setattr__(self, key, value)

    # ---- counters -------------------------------------------------------------------------
    def take(self, name: str) -> bool:
        """Consume one unit of counter ``name``; True if it was positive."""
        with self._lock:
            value = getattr(self, name)
            if value and value > 0:
                object.__setattr__(self, name, value - 1)
                return True
            return False

    def targets(self, endpoint: str) -> bool:
        """Whether the request faults (429, 500, penalty) may take ``endpoint``."""
        only = [e.strip().lower() for e in str(self.request_faults_only or "").split(",") if e.strip()]
        name = endpoint.lower()
        return not only or any(name == e or (e.endswith("/") and name.startswith(e)) for e in only)

    def to_dict(self) -> Dict[str, Any]:
        return {key: getattr(self, key) for key in _DEFAULTS}

    def update(self, values: Dict[str, Any]) -> None:
        """Set several switches (control endpoint); unknown keys raise ``KeyError`` before any change."""
        unknown = [key for key in values if key not in _DEFAULTS]
        if unknown:
            raise KeyError(", ".join(unknown))
        converted = {key: _convert(_DEFAULTS[key], value) for key, value in values.items()}
        for key, value in converted.items():
            object.__setattr__(self, key, value)

    def reset(self) -> None:
        with self._lock:
            self._tickets.clear()
        self.update(_DEFAULTS)

    # ---- latencies (ms) ------------------------------------------------------------------------
    def response_latency(self) -> float:
        jitter = float(self.response_latency_jitter_ms)
        return float(self.response_latency_ms) + (random.uniform(0.0, jitter) if jitter > 0 else 0.0)

    def order_delay(self, endpoint: str) -> float:
        if endpoint not in ORDER_ENDPOINTS:
            return 0.0
        jitter = float(self.order_delay_jitter_ms)
        return float(self.order_delay_ms) + (random.uniform(0.0, jitter) if jitter > 0 else 0.0)

    # ---- penalty tickets ------------------------------------------------------------------
    def issue_penalty(self, captcha: bool = False) -> Dict[str, Any]:
        p_time = float(self.penalty_time_s)
        captcha = bool(captcha or self.penalty_captcha)
        ticket = secrets.token_urlsafe(24)
        with self._lock:
            self._tickets[ticket] = (time.monotonic() + p_time, captcha)
        body: Dict[str, Any] = {"p-ticket": ticket, "p-time": p_time}
        if captcha:
            body["p-captcha"] = True
        return body

    def redeem(self, ticket: str, enforce_time: bool) -> str:
        """'ok' (accepted, consumed), 'early' (resent before p-time) or 'invalid' (unknown/captcha)."""
        with self._lock:
            entry = self._tickets.get(ticket)
            if entry is None or entry[1]:
                return "invalid"
            if enforce_time and time.monotonic() < entry[0]:
                return "early"
            del self._tickets[ticket]
            return "ok"

    # ---- actions (delegated to the simulator) ---------------------------------------------
    def _act(self, name: str, *args: Any) -> Any:
        action = self._actions.get(name)
        if action is None:
            raise RuntimeError("the simulator is not running")
        return action(*args)

    def close_all_sockets(self) -> int:
        """Drop every WebSocket and REST connection now (no shutdown event). Returns the count."""
        return self._act("close_all_sockets")

    def expire_all_tokens(self) -> int:
        return self._act("expire_all_tokens")

    def send_shutdown(self, reason_code: str = "Maintenance", reason: str = "") -> int:
        """Send ``shutdown`` on every socket, then close them. Returns the count."""
        return self._act("send_shutdown", reason_code, reason)
