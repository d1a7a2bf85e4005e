"""Prometheus metrics for ``GET /metrics`` (``prometheus_client``, one registry per app).

Counters and histograms follow :mod:`phantom_scraper.events` (a subscriber that only increments
and observes: nothing formatted, nothing written, on the producer's thread).  What the pool, the
journal and the notifier already know (socket state, reconnects, token expiry, open ``unknown``
intents, notifications sent) is read at scrape time by a collector, so it is never stale and
costs the order path nothing.

Latency hops (histogram ``phantom_order_latency_seconds{hop,transport}``):

* ``send_to_ack``: the order request leaving -> the broker's answer (the router's latency);
* ``received_to_ack``: the webhook received -> the account's answer known (for a fan-out, the
  moment the signal's last account answered: an upper bound per account);
* ``received_to_send``: the difference: parsing, journaling, planning, queueing.

``phantom_lane_handover_seconds``: a busy lane's hand-over (``execution/handover.py``).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from phantom_scraper import events

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_JOURNAL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_HANDOVER_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class _StateCollector:
    """Read at scrape time: sockets per login, open unknown intents, notifications."""

    def __init__(self, status: Callable[[], dict], unknown_open: Callable[[], Optional[int]],
                 notifier_status: Callable[[], Optional[dict]]):
        self._status = status
        self._unknown_open = unknown_open
        self._notifier_status = notifier_status

    def collect(self) -> Iterable:
        connected = GaugeMetricFamily("phantom_socket_connected", "1 when the login's WebSocket is open",
                                      labels=["login"])
        reconnects = CounterMetricFamily("phantom_socket_reconnects", "WebSocket reconnects per login",
                                         labels=["login"])
        expires = GaugeMetricFamily("phantom_token_expires_in_seconds", "seconds until the access token expires",
                                    labels=["login"])
        heartbeat = GaugeMetricFamily("phantom_socket_seconds_since_heartbeat", "age of the last heartbeat sent",
                                      labels=["login"])
        try:
            status = self._status() or {}
        except Exception:  # noqa: BLE001 - a scrape must still answer
            logger.exception("metrics: status failed")
            status = {}
        pool = status.get("connection_pool", {}).get("connections", {})
        seen = set()
        for conn in pool.values():  # sub-accounts of one login share its socket: one series per login
            login = str(conn.get("login"))
            if login in seen:
                continue
            seen.add(login)
            connected.add_metric([login], 1.0 if conn.get("ws_connected") else 0.0)
            reconnects.add_metric([login], float(conn.get("reconnect_count") or 0))
            if conn.get("token_expires_in_s") is not None:
                expires.add_metric([login], float(conn["token_expires_in_s"]))
            if conn.get("seconds_since_heartbeat") is not None:
                heartbeat.add_metric([login], float(conn["seconds_since_heartbeat"]))
        yield from (connected, reconnects, expires, heartbeat)
        budgets = status.get("request_budget") or {}
        if budgets:  # tradovate/budget.py: against Tradovate's ~80/minute and ~5,000/hour per login
            minute = GaugeMetricFamily("phantom_broker_requests_last_minute", "requests a login sent in the last minute",
                                       labels=["login"])
            hour = GaugeMetricFamily("phantom_broker_requests_last_hour", "requests a login sent in the last hour",
                                     labels=["login"])
            used = GaugeMetricFamily("phantom_broker_budget_used", "the larger of the minute's and the hour's share "
                                     "of the login's request budget (0..1; warning at 0.8)", labels=["login"])
            for login, b in budgets.items():
                minute.add_metric([login], float(b["last_minute"]))
                hour.add_metric([login], float(b["last_hour"]))
                used.add_metric([login], float(max(b["minute_used"], b["hour_used"])))
            yield from (minute, hour, used)
        yield from _pnl_families((status.get("risk") or {}).get("accounts") or [])
        try:
            unknown = self._unknown_open()
        except Exception:  # noqa: BLE001
            unknown = None
        if unknown is not None:
            g = GaugeMetricFamily("phantom_unknown_intents_open",
                                  "order intents whose outcome is unknown or still in flight (need attention)")
            g.add_metric([], float(unknown))
            yield g
        notifier = self._notifier_status()
        if notifier is not None:
            c = CounterMetricFamily("phantom_notifications", "notification messages by result", labels=["result"])
            for result in ("sent", "failed", "dropped"):
                c.add_metric([result], float(notifier.get(result, 0)))
            yield c


def _pnl_families(accounts) -> Iterable:
    """The trading day's realized and open P&L per account (USD; the risk guard's figures, open
    P&L from market-data quotes); an account whose figure is unknown has no sample."""
    realized = GaugeMetricFamily("phantom_realized_pnl_usd", "realized P&L of the trading day per account, USD",
                                 labels=["account"])
    open_pnl = GaugeMetricFamily("phantom_open_pnl_usd", "open P&L of the positions per account (quotes), USD",
                                 labels=["account"])
    for a in accounts:
        name = str(a.get("account_name"))
        if a.get("realized_pnl") is not None:
            realized.add_metric([name], float(a["realized_pnl"]))
        if a.get("open_pnl") is not None:
            open_pnl.add_metric([name], float(a["open_pnl"]))
    return realized, open_pnl


class Metrics:
    """One per app.  ``start()`` subscribes to the event bus, ``stop()`` unsubscribes."""

    def __init__(self, *, status: Callable[[], dict] = dict, unknown_open: Callable[[], Optional[int]] = lambda: None,
                 notifier_status: Callable[[], Optional[dict]] = lambda: None):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.signals = Counter("phantom_signals", "signals by final status", ["status"], registry=r)
        self.orders = Counter("phantom_orders", "orders (one per account and signal) by outcome and transport",
                              ["outcome", "transport"], registry=r)
        self.latency = Histogram("phantom_order_latency_seconds", "order latency per hop", ["hop", "transport"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.journal_write = Histogram("phantom_journal_write_seconds", "journal transaction latency",
                                       buckets=_JOURNAL_BUCKETS, registry=r)
        self.renewals = Counter("phantom_token_renewals", "access token renewals", ["login"], registry=r)
        self.socket_drops = Counter("phantom_socket_drops", "WebSocket closes and failed connects", ["login"],
                                    registry=r)
        self.penalties = Counter("phantom_penalties", "Tradovate penalty tickets", ["what", "captcha"], registry=r)
        self.rate_limited = Counter("phantom_rate_limited", "HTTP 429 lock-outs (the login went quiet)", ["login"],
                                    registry=r)
        self.strategy_alerts = Counter("phantom_strategy_alerts", "order strategies that need the trader",
                                       registry=r)
        self.auth_failures = Counter("phantom_auth_failures", "authentication failures", registry=r)
        self.duplicates = Counter("phantom_duplicate_alarms", "one clOrdId matching several orders", registry=r)
        self.settled = Counter("phantom_unknown_settled", "unknown intents settled", ["state"], registry=r)
        self.fills = Counter("phantom_fills", "fills reported by the broker's socket", ["account"], registry=r)
        self.final_writes = Counter("phantom_final_writes_retried",
                                    "finished signals' journal writes refused by the journal (failed) and "
                                    "written later (landed)", ["result"], registry=r)
        self.journal_outages = Counter("phantom_journal_outages", "journal unavailable episodes", registry=r)
        self.journal_available = Gauge("phantom_journal_available", "1 while the journal takes writes", registry=r)
        self.journal_available.set(1)
        self.risk_locks = Gauge("phantom_risk_locked", "1 while an account (or 'all') is locked by a risk rule",
                                ["account"], registry=r)
        self.risk_pnl_unknown = Gauge("phantom_risk_pnl_unknown", "1 while an account's P&L rules cannot act: a "
                                      "figure they need is unknown (pnl_unknown)", ["account"], registry=r)
        self.drift = Gauge("phantom_drift", "1 while an account is not where its lane expects it (drift)",
                           ["account", "contract"], registry=r)
        self.steering = Counter("phantom_steering", "late executions squared and drifts healed", ["kind"], registry=r)
        self.lane_handover = Histogram("phantom_lane_handover_seconds", "a busy lane: the previous orders final at the "
                                       "broker -> the next job started", buckets=_HANDOVER_BUCKETS, registry=r)
        r.register(_StateCollector(status, unknown_open, notifier_status))
        self.locks = {}  # account (or "all") -> {"account", "reason", "at"}: what the status page shows
        self._received = OrderedDict()  # signal id -> perf_counter at receipt (bounded)
        self._received_lock = threading.Lock()  # guards _received
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._handlers = {
            "signal_received": self._on_received, "signal": self._on_signal,
            "duplicate_signal": lambda f: self.signals.labels("duplicate").inc(),
            "journal_write": lambda f: self.journal_write.observe(f["seconds"]),
            "token_renewed": lambda f: self.renewals.labels(str(f.get("login"))).inc(),
            "socket_down": lambda f: self.socket_drops.labels(str(f.get("login"))).inc(),
            "penalty": lambda f: self.penalties.labels(str(f.get("what")), str(bool(f.get("captcha"))).lower()).inc(),
            "auth": lambda f: self.auth_failures.inc(),
            "rate_limited": lambda f: self.rate_limited.labels(str(f.get("login"))).inc(),
            "strategy_alert": lambda f: self.strategy_alerts.inc(),
            "duplicate": lambda f: self.duplicates.inc(),
            "settled": lambda f: self.settled.labels(str(f.get("state"))).inc(),
            "risk": self._on_risk, "kill_switch": self._on_risk,
            "risk_pnl": lambda f: self.risk_pnl_unknown.labels(str(f.get("account"))).set(1.0 if f.get("unknown") else 0.0),
            "fill": lambda f: self.fills.labels(str(f.get("account"))).inc(),
            "final_write_failed": lambda f: self.final_writes.labels("failed").inc(f.get("count", 1)),
            "final_write_landed": lambda f: self.final_writes.labels("landed").inc(f.get("count", 1)),
            "journal_down": self._on_journal_down,
            "journal_up": lambda f: self.journal_available.set(1),
            "drift": lambda f: self.drift.labels(str(f.get("account")), str(f.get("contract"))).set(1.0),
            "drift_cleared": lambda f: self.drift.labels(str(f.get("account")), str(f.get("contract"))).set(0.0),
            "late_execution": lambda f: self.steering.labels("late_execution").inc(),
            "drift_healed": lambda f: self.steering.labels("drift_healed").inc(),
            "lane_handover": lambda f: self.lane_handover.observe(f["seconds"]),
        }

    def start(self) -> "Metrics":
        if self._unsubscribe is None:
            self._unsubscribe = events.subscribe(self.on_event)
        return self

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- event handlers (producer threads: increments only) --------------------------------------
    def on_event(self, event: events.Event) -> None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event.fields)

    def _on_received(self, f: dict) -> None:
        with self._received_lock:
            self._received[f["signal_id"]] = f["t"]
            if len(self._received) > 10_000:  # signals that never finish must not pile up
                self._received.popitem(last=False)

    def _on_signal(self, f: dict) -> None:
        now = time.perf_counter()
        with self._received_lock:
            received = self._received.pop(f.get("signal_id"), None)
        self.signals.labels(str(f.get("status"))).inc()
        for o in f.get("outcomes") or ():
            transport = getattr(o, "transport", None) or "none"
            self.orders.labels(str(getattr(o, "status", "?")), transport).inc()
            if getattr(o, "status", None) != "acked" or getattr(o, "latency_ms", None) is None:
                continue
            send_to_ack = o.latency_ms / 1000.0
            self.latency.labels("send_to_ack", transport).observe(send_to_ack)
            if received is not None:
                total = now - received
                self.latency.labels("received_to_ack", transport).observe(total)
                self.latency.labels("received_to_send", transport).observe(max(0.0, total - send_to_ack))

    def _on_journal_down(self, _f: dict) -> None:
        self.journal_outages.inc()
        self.journal_available.set(0)

    def _on_risk(self, f: dict) -> None:
        account = str(f.get("account") or "all")
        locked = bool(f.get("locked", True))
        self.risk_locks.labels(account).set(1.0 if locked else 0.0)
        if locked:  # one dict assignment: readers take a copy
            self.locks[account] = {"account": account, "reason": f.get("reason"), "at": time.time()}
        else:
            self.locks.pop(account, None)
