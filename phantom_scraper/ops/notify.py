"""Notifications through Apprise (Discord, Telegram, Slack, e-mail, Pushover, ntfy, webhooks...).

The :class:`Notifier` subscribes to :mod:`phantom_scraper.events`.  Its subscriber only filters
by kind and does ``put_nowait`` on a bounded queue (a full queue drops the event and counts it),
so the order path never waits for a notification.  One named thread (``notifier``) drains the
queue, turns events into text, and sends:

* bursts coalesce: lines arriving within ``coalesce_s`` of the first go out as one message (a
  13-account fan-out is one message, not 13);
* rate-limited per destination: at most one message per ``min_interval_s``; what arrives in
  between joins the next message;
* a failed send is logged and counted, and dropped: never retried forever;
* every message goes through the redaction registry, and events carry no secret to begin with.

Event kinds map to the categories of ``NOTIFY_EVENTS``::

    rejected   an order rejected / not sent / failed (with the broker's reason)
    unknown    an order whose outcome is unknown, and its settlement
    duplicate  a DUPLICATE alarm (one clOrdId matching several orders) and duplicate signals
    disconnected  a login's socket down longer than NOTIFY_DISCONNECT_AFTER_S, and back
    auth       authentication failures, penalties, captcha
    risk       risk locks and the kill switch
    drift      an account not where its lane expects it, a late execution squared, a heal
    startup    start and stop
    fill       every fill (off by default)
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from phantom_scraper import events, redact
from phantom_scraper.config import CATEGORIES, DEFAULT_EVENTS, parse_events, split_urls  # noqa: F401
from phantom_scraper.ops import history_source

logger = logging.getLogger(__name__)

MAX_LINES = 40  # per message; the rest is summarised as "... and N more"

# Which categories an event kind can produce (the subscriber drops the rest without queueing).
_KIND_CATEGORIES: Dict[str, Tuple[str, ...]] = {
    "signal": ("rejected", "unknown"),
    "settled": ("unknown",),
    "duplicate": ("duplicate",),
    "duplicate_signal": ("duplicate",),
    "socket_down": ("disconnected",),
    "socket_up": ("disconnected",),
    "auth": ("auth",),
    "penalty": ("auth",),
    "rate_limited": ("auth",),
    "login_down": ("disconnected",),
    "login_up": ("disconnected",),
    "strategy_alert": ("risk",),
    "risk": ("risk",),
    "kill_switch": ("risk",),
    "risk_pnl": ("risk",),
    "risk_flatten": ("risk",),
    "drift": ("drift",),
    "drift_cleared": ("drift",),
    "late_execution": ("drift",),
    "drift_healed": ("drift",),
    "startup": ("startup",),
    "shutdown": ("startup",),
    "fill": ("fill",),
}

_FAILED = {"rejected": "REJECTED", "not_sent": "NOT SENT", "error": "FAILED"}


def url_secrets(url: str) -> List[str]:
    """The parts of an Apprise URL that are credentials (bot tokens, passwords, webhook keys)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return [url]
    found = [url, parts.password or "", parts.username or ""]
    host = parts.hostname or ""
    if "." not in host and len(host) >= 8:  # tgram://<bot token>/..., discord://<id>/<token>
        found.append(host)
    found += [seg for seg in parts.path.split("/") if len(seg) >= 8]
    found += [v for _k, v in urllib.parse.parse_qsl(parts.query) if len(v) >= 8]
    return [f for f in found if f]


@dataclass
class _Destination:
    name: str  # scheme://host only: how it is logged
    send: Callable[[str, str], bool]
    lines: List[Tuple[str, str]] = field(default_factory=list)  # (category, text) waiting
    first_at: float = 0.0  # monotonic time the oldest waiting line arrived
    next_allowed: float = 0.0  # rate limit: no message before this
    sent: int = 0
    failed: int = 0


def _apprise_sender(url: str, timeout_s: float) -> Callable[[str, str], bool]:
    import apprise

    sep = "&" if "?" in url else "?"
    if "cto=" not in url and "rto=" not in url:  # every send bounded in time
        url = f"{url}{sep}cto={timeout_s:g}&rto={timeout_s:g}"
    app = apprise.Apprise()
    if not app.add(url):
        raise ValueError("NOTIFY_URLS: an entry is not a valid Apprise URL")

    def send(title: str, body: str) -> bool:
        return bool(app.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))

    return send


def _safe_name(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host if '.' in host or host == 'localhost' else '…'}"
    except ValueError:
        return "?"


class Notifier:
    """See the module docstring.  ``start()`` subscribes and starts the thread; ``stop()`` joins."""

    def __init__(self, urls: Sequence[str], enabled: Sequence[str] = DEFAULT_EVENTS, *,
                 disconnect_after_s: float = 60.0, coalesce_s: float = 2.0, min_interval_s: float = 10.0,
                 queue_size: int = 1000, send_timeout_s: float = 10.0, title: str = "phantom-scraper",
                 sender_factory: Optional[Callable[[str], Callable[[str, str], bool]]] = None):
        self.enabled = frozenset(enabled)
        self.disconnect_after_s = disconnect_after_s
        self.coalesce_s = coalesce_s
        self.min_interval_s = min_interval_s
        self.title = title
        factory = sender_factory or (lambda u: _apprise_sender(u, send_timeout_s))
        for url in urls:
            redact.register_secret(*url_secrets(url))
        self._destinations = [_Destination(_safe_name(u), factory(u)) for u in urls]
        self._kinds = frozenset(k for k, cats in _KIND_CATEGORIES.items() if self.enabled.intersection(cats))
        self._queue: "queue.Queue[events.Event]" = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._down_since: Dict[str, float] = {}  # login -> monotonic time its socket went down
        self._alerted: Dict[str, float] = {}  # logins reported as disconnected -> down since
        self.dropped = 0  # events refused by a full queue (written by emitters; an int add is atomic enough)

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> "Notifier":
        if self._thread is None and self._destinations:
            self._unsubscribe = events.subscribe(self.on_event)
            self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
            self._thread.start()
            logger.info("Notifications to %d destination(s) for: %s", len(self._destinations),
                        ", ".join(sorted(self.enabled)))
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Unsubscribe, send what is waiting (bounded by the send timeouts), join the thread."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)

    def status(self) -> dict:
        return {"destinations": len(self._destinations), "events": sorted(self.enabled),
                "sent": sum(d.sent for d in self._destinations),
                "failed": sum(d.failed for d in self._destinations), "dropped": self.dropped,
                "queued": self._queue.qsize(), "waiting": sum(len(d.lines) for d in self._destinations)}

    # -- the producer side (any thread; cheap) ---------------------------------------------------
    def on_event(self, event: events.Event) -> None:
        if event.kind not in self._kinds:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    # -- the notifier thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                self._drain(self._wait_s())
                self._check_disconnects()
                self._send_due(force=stopping)
            except Exception:  # noqa: BLE001 - the notifier must not die silently
                logger.exception("notifier loop failed")
                self._stop.wait(1.0)
            if stopping:
                return

    def _wait_s(self) -> float:
        now = time.monotonic()
        due = [max(d.first_at + self.coalesce_s, d.next_allowed) for d in self._destinations if d.lines]
        due += [t + self.disconnect_after_s for t in self._down_since.values()]
        wait = min(due) - now if due else 1.0
        return min(1.0, max(0.0, wait))

    def _drain(self, wait_s: float) -> None:
        try:
            event = self._queue.get(timeout=wait_s) if wait_s > 0 and not self._stop.is_set() \
                else self._queue.get_nowait()
        except queue.Empty:
            return
        while True:
            for category, text in self._lines(event):
                self._add(category, text)
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return

    def _add(self, category: str, text: str) -> None:
        if category not in self.enabled:
            return
        now = time.monotonic()
        for d in self._destinations:
            if not d.lines:
                d.first_at = now
            d.lines.append((category, text))

    def _check_disconnects(self) -> None:
        now = time.monotonic()
        for login, since in list(self._down_since.items()):
            if login not in self._alerted and now - since >= self.disconnect_after_s:
                self._alerted[login] = since
                self._add("disconnected", f"WebSocket of {login} DOWN for {now - since:.0f} s")

    def _send_due(self, force: bool = False) -> None:
        now = time.monotonic()
        for d in self._destinations:
            if not d.lines:
                continue
            if not force and now < max(d.first_at + self.coalesce_s, d.next_allowed):
                continue
            lines, d.lines = d.lines, []
            title, body = self._compose(lines)
            d.next_allowed = now + self.min_interval_s
            try:
                ok = d.send(title, body)
            except Exception as exc:  # noqa: BLE001 - counted and logged, never retried
                ok = False
                logger.warning("Notification to %s failed: %s", d.name, type(exc).__name__)
            if ok:
                d.sent += 1
            else:
                d.failed += 1
                logger.warning("Notification to %s not delivered (%d line(s) dropped)", d.name, len(lines))

    def _compose(self, lines: List[Tuple[str, str]]) -> Tuple[str, str]:
        cats = sorted({c for c, _t in lines}, key=CATEGORIES.index)
        title = f"{self.title}: {', '.join(cats)}" + (f" ({len(lines)})" if len(lines) > 1 else "")
        shown = [t for _c, t in lines[:MAX_LINES]]
        if len(lines) > MAX_LINES:
            shown.append(f"... and {len(lines) - MAX_LINES} more")
        return redact.redact(title), redact.redact("\n".join(shown))

    # -- events -> text (on the notifier thread) -------------------------------------------------
    def _lines(self, event: events.Event) -> List[Tuple[str, str]]:
        f = event.fields
        kind = event.kind
        if kind == "signal":
            return self._signal_lines(f)
        if kind == "settled":
            found = f.get("order_id")
            text = (f"order {f.get('cl_ord_id')} settled: found at the broker as order {found}" if found
                    else f"order {f.get('cl_ord_id')} settled as {f.get('state')}")
            return [("unknown", text)]
        if kind == "duplicate":
            return [("duplicate", f"DUPLICATE: {f.get('cl_ord_id')} matches orders {f.get('order_ids')}")]
        if kind == "duplicate_signal":
            return [("duplicate", f"duplicate signal {f.get('signal_id')} (of {f.get('duplicate_of')}): nothing placed")]
        if kind == "socket_down":
            self._down_since.setdefault(str(f.get("login")), time.monotonic())
            return []
        if kind == "socket_up":
            login = str(f.get("login"))
            self._down_since.pop(login, None)
            since = self._alerted.pop(login, None)
            return [("disconnected", f"WebSocket of {login} back up after {time.monotonic() - since:.0f} s")] \
                if since is not None else []
        if kind == "login_down":
            how = "retrying" if f.get("retrying") else "not retried: fix it and restart"
            return [("disconnected", f"login {f.get('login')} unavailable ({how}); its accounts' signals are "
                                     f"refused: {f.get('error')}")]
        if kind == "login_up":
            return [("disconnected", f"login {f.get('login')} open again ({f.get('accounts')} account(s))")]
        if kind == "auth":
            return [("auth", f"authentication failed for {f.get('login')}: {f.get('error')}")]
        if kind == "penalty":
            extra = " (captcha required)" if f.get("captcha") else ""
            return [("auth", f"penalty on {f.get('what')}: wait {f.get('wait_s')} s{extra}")]
        if kind == "rate_limited":
            return [("auth", f"HTTP 429 for {f.get('login')} on {f.get('what')}: Tradovate locks the login out for "
                             f"an hour; background calls paused {float(f.get('quiet_s') or 0):.0f} s, orders still "
                             f"sent")]
        if kind == "strategy_alert":
            return [("risk", f"order strategy {f.get('intent_id')} ({f.get('account')}): {f.get('text')}")]
        if kind in ("risk", "kill_switch"):
            state = "LOCKED" if f.get("locked", True) else "unlocked"
            who = f.get("account") or "all accounts"
            return [("risk", f"risk: {who} {state}" + (f" — {f.get('reason')}" if f.get("reason") else ""))]
        if kind == "risk_pnl":
            who = f.get("account")
            return [("risk", f"risk: {who} P&L UNKNOWN — its P&L rules cannot act: {f.get('reason')}" if f.get("unknown")
                     else f"risk: {who} P&L known again")]
        if kind == "risk_flatten":
            return [("risk", f"risk: {f.get('account')} flatten FAILED ({f.get('why')}): {f.get('error')}; "
                             f"still open: {f.get('still_open') or 'nothing'}; retry in {f.get('retry_in_s')} s")]
        if kind == "drift":
            return [("drift", f"DRIFT: {f.get('account')} {f.get('contract')} is at {f.get('actual')}, expected "
                              f"{f.get('expected')} (since {f.get('since')})")]
        if kind == "drift_cleared":
            return [("drift", f"drift cleared: {f.get('account')} {f.get('contract')} at {f.get('actual')} again")]
        if kind in ("late_execution", "drift_healed"):
            what = "late execution squared" if kind == "late_execution" else "drift healed"
            return [("drift", f"{what}: {f.get('account')} {f.get('contract')} from {f.get('actual')} toward "
                              f"{f.get('expected')}: {f.get('result')}")]
        if kind in ("startup", "shutdown"):
            verb = "started" if kind == "startup" else "stopping"
            return [("startup", f"server {verb} ({f.get('environment', '?')}"
                                + (f", {f['accounts']} account(s)" if f.get("accounts") is not None else "") + ")")]
        if kind == "fill":
            latency = f" in {float(f['latency_ms']):.0f} ms" if f.get("latency_ms") is not None else ""
            contract = history_source.known_contract_name(f.get("contract"))
            return [("fill", f"fill {f.get('account')}: {f.get('side')} {f.get('qty')} {contract} "
                             f"@ {f.get('price')}{latency}")]
        return []

    def _signal_lines(self, f: dict) -> List[Tuple[str, str]]:
        out = []
        contract = getattr(f.get("contract"), "name", None) or ""
        for o in f.get("outcomes") or ():
            status = getattr(o, "status", None)
            if status not in _FAILED and status != "unknown":
                continue
            planned = getattr(o, "planned", None) or [{}]
            body = planned[-1].get("body") or {}
            what = " ".join(str(x) for x in (body.get("action"), body.get("orderQty"), contract) if x)
            name = getattr(o, "account_name", "?")
            if status == "unknown":
                ids = ", ".join(getattr(o, "cl_ord_ids", None) or [])
                out.append(("unknown", f"{name}: {what} outcome UNKNOWN ({ids}); not resent, "
                                       f"settled by clOrdId — check the account"))
            else:
                out.append(("rejected", f"{name}: {what} {_FAILED[status]} — {getattr(o, 'error', '')}"))
        return out
