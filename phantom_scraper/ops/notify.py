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
* every message goes through the redaction registry, and events carry no secret to begin with;
* its Apprise ``type`` is the most severe of its lines: ``failure`` (rejections, unknown outcomes,
  duplicates, locks, authentication), ``warning`` (disconnects, penalties), ``success`` (fills),
  ``info`` (start, stop, unlocks, reconnects); its title names what it holds (a shutdown is
  "stopping", never "startup");
* a lock kept from before a restart is not announced again (the event says ``restored``);
* a login whose socket has not connected ``disconnect_after_s`` after the notifier started is
  reported then, however late its first attempt failed.

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

# Apprise's notification types, least to most severe (a message takes its most severe line's).
SEVERITY = ("info", "success", "warning", "failure")
_ROLE_WORDS = {"take_profit": "take-profit", "stop": "stop-loss", "entry": "entry", "exit": "exit"}


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


@dataclass(frozen=True)
class Line:
    category: str  # NOTIFY_EVENTS' category (what a user turns on or off)
    text: str
    severity: str = "info"  # SEVERITY
    label: str = ""  # what the title says (default: the category)


@dataclass
class _Destination:
    name: str  # scheme://host only: how it is logged
    send: Callable[[str, str, str], bool]
    lines: List[Line] = field(default_factory=list)  # waiting
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

    def send(title: str, body: str, notify_type: str = "info") -> bool:
        return bool(app.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT,
                               notify_type=apprise.NotifyType(notify_type)))

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
                 sender_factory: Optional[Callable[[str], Callable[[str, str, str], bool]]] = None,
                 contract_info: Optional[Callable[[int], Tuple[str, Optional[float]]]] = None):
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
        # A fill's contract by name and value per point: those seen in signals, else this look-up
        # ((name, USD per point), cached by its provider; on the notifier thread).
        self._contract_info = contract_info
        self._started_at: Optional[float] = None  # monotonic; a login never up is "down" since then
        self._ever_up: set = set()  # logins whose socket has connected once

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> "Notifier":
        if self._thread is None and self._destinations:
            self._started_at = time.monotonic()
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
            for line in self._lines(event):
                self._add(line)
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return

    def _add(self, line: "Line") -> None:
        if line.category not in self.enabled:
            return
        now = time.monotonic()
        for d in self._destinations:
            if not d.lines:
                d.first_at = now
            d.lines.append(line)

    def _check_disconnects(self) -> None:
        now = time.monotonic()
        for login, since in list(self._down_since.items()):
            if login not in self._alerted and now - since >= self.disconnect_after_s:
                self._alerted[login] = since
                never = login not in self._ever_up
                self._add(Line("disconnected", f"WebSocket of {login} " + (
                    f"has NOT CONNECTED since the start ({now - since:.0f} s)" if never
                    else f"DOWN for {now - since:.0f} s"), "warning", "disconnected"))

    def _send_due(self, force: bool = False) -> None:
        now = time.monotonic()
        for d in self._destinations:
            if not d.lines:
                continue
            if not force and now < max(d.first_at + self.coalesce_s, d.next_allowed):
                continue
            lines, d.lines = d.lines, []
            title, body, kind = self._compose(lines)
            d.next_allowed = now + self.min_interval_s
            try:
                ok = d.send(title, body, kind)
            except Exception as exc:  # noqa: BLE001 - counted and logged, never retried
                ok = False
                logger.warning("Notification to %s failed: %s", d.name, type(exc).__name__)
            if ok:
                d.sent += 1
            else:
                d.failed += 1
                logger.warning("Notification to %s not delivered (%d line(s) dropped)", d.name, len(lines))

    def _compose(self, lines: List["Line"]) -> Tuple[str, str, str]:
        """(title, body, Apprise type): the title names what the lines are (in order of the
        categories), the type is the most severe line's."""
        labels: List[str] = []
        for line in sorted(lines, key=lambda ln: CATEGORIES.index(ln.category)):
            label = line.label or line.category
            if label not in labels:
                labels.append(label)
        title = f"{self.title}: {', '.join(labels)}" + (f" ({len(lines)})" if len(lines) > 1 else "")
        shown = [line.text for line in lines[:MAX_LINES]]
        if len(lines) > MAX_LINES:
            shown.append(f"... and {len(lines) - MAX_LINES} more")
        kind = max((line.severity for line in lines), key=SEVERITY.index)
        return redact.redact(title), redact.redact("\n".join(shown)), kind

    # -- events -> text (on the notifier thread) -------------------------------------------------
    def _lookup(self, contract) -> Tuple[object, Optional[float]]:
        name = history_source.known_contract_name(contract)
        value = self._value_per_point(contract)
        if (name == contract or value is None) and contract is not None and self._contract_info is not None:
            try:
                found = self._contract_info(int(contract))
                name, value = (found[0] or name), (found[1] if value is None else value)
            except Exception:  # noqa: BLE001 - the id is shown instead
                logger.debug("contract %s: look-up failed", contract, exc_info=True)
        return name, value

    def _lines(self, event: events.Event) -> List["Line"]:
        f = event.fields
        kind = event.kind
        if kind == "signal":
            return self._signal_lines(f)
        if kind == "settled":
            found = f.get("order_id")
            text = (f"order {f.get('cl_ord_id')} settled: found at the broker as order {found}" if found
                    else f"order {f.get('cl_ord_id')} settled as {f.get('state')}")
            return [Line("unknown", text, "warning" if found else "failure", "unknown outcome settled")]
        if kind == "duplicate":
            return [Line("duplicate", f"DUPLICATE: {f.get('cl_ord_id')} matches orders {f.get('order_ids')}", "failure")]
        if kind == "duplicate_signal":
            return [Line("duplicate", f"duplicate signal {f.get('signal_id')} (of {f.get('duplicate_of')}): nothing placed",
                         "warning", "duplicate signal")]
        if kind == "socket_down":
            login = str(f.get("login"))
            since = time.monotonic()
            if login not in self._ever_up and self._started_at is not None:
                since = min(since, self._started_at)  # never connected: counted from the start
            self._down_since.setdefault(login, since)
            return []
        if kind == "socket_up":
            login = str(f.get("login"))
            self._ever_up.add(login)
            self._down_since.pop(login, None)
            since = self._alerted.pop(login, None)
            return [Line("disconnected", f"WebSocket of {login} back up after {time.monotonic() - since:.0f} s",
                         "info", "reconnected")] if since is not None else []
        if kind == "login_down":
            how = "retrying" if f.get("retrying") else "not retried: fix it and restart"
            return [Line("disconnected", f"login {f.get('login')} unavailable ({how}); its accounts' signals are "
                                         f"refused: {f.get('error')}", "failure", "login unavailable")]
        if kind == "login_up":
            return [Line("disconnected", f"login {f.get('login')} open again ({f.get('accounts')} account(s))",
                         "info", "login open")]
        if kind == "auth":
            return [Line("auth", f"authentication failed for {f.get('login')}: {f.get('error')}", "failure",
                         "authentication failed")]
        if kind == "penalty":
            extra = " (captcha required)" if f.get("captcha") else ""
            return [Line("auth", f"penalty on {f.get('what')}: wait {f.get('wait_s')} s{extra}", "warning", "penalty")]
        if kind == "rate_limited":
            return [Line("auth", f"HTTP 429 for {f.get('login')} on {f.get('what')}: Tradovate locks the login out for "
                                 f"an hour; background calls paused {float(f.get('quiet_s') or 0):.0f} s, orders still "
                                 f"sent", "failure", "rate limited")]
        if kind == "strategy_alert":
            return [Line("risk", f"order strategy {f.get('intent_id')} ({f.get('account')}): {f.get('text')}",
                         "failure", "order strategy")]
        if kind in ("risk", "kill_switch"):
            if f.get("restored"):
                return []  # a lock kept from before a restart: announced when it was taken
            locked = f.get("locked", True)
            who = f.get("account") or "all accounts"
            word = "kill switch" if kind == "kill_switch" else "risk"
            text = f"{word}: {who} {'LOCKED' if locked else 'unlocked'}" + (f" — {f.get('reason')}" if f.get("reason") else "")
            return [Line("risk", text, "failure" if locked else "info", ("locked" if locked else "unlocked"))]
        if kind == "risk_pnl":
            who = f.get("account")
            if f.get("unknown"):
                return [Line("risk", f"risk: {who} P&L UNKNOWN — its P&L rules cannot act: {f.get('reason')}",
                             "failure", "P&L unknown")]
            return [Line("risk", f"risk: {who} P&L known again", "info", "P&L known")]
        if kind == "risk_flatten":
            return [Line("risk", f"risk: {f.get('account')} flatten FAILED ({f.get('why')}): {f.get('error')}; "
                                 f"still open: {f.get('still_open') or 'nothing'}; retry in {f.get('retry_in_s')} s",
                         "failure", "flatten failed")]
        if kind == "drift":
            return [Line("drift", f"DRIFT: {f.get('account')} {self._lookup(f.get('contract'))[0]} is at "
                                  f"{f.get('actual')}, expected {f.get('expected')} (since {f.get('since')})", "failure")]
        if kind == "drift_cleared":
            return [Line("drift", f"drift cleared: {f.get('account')} {self._lookup(f.get('contract'))[0]} at "
                                  f"{f.get('actual')} again", "info", "drift cleared")]
        if kind in ("late_execution", "drift_healed"):
            what = "late execution squared" if kind == "late_execution" else "drift healed"
            return [Line("drift", f"{what}: {f.get('account')} {self._lookup(f.get('contract'))[0]} from "
                                  f"{f.get('actual')} toward {f.get('expected')}: {f.get('result')}", "warning", what)]
        if kind in ("startup", "shutdown"):
            verb = "started" if kind == "startup" else "stopping"
            return [Line("startup", f"server {verb} ({f.get('environment', '?')}"
                                    + (f", {f['accounts']} account(s)" if f.get("accounts") is not None else "") + ")",
                         "info", verb)]
        if kind == "fill":
            return [self._fill_line(f)]
        return []

    def _fill_line(self, f: dict) -> "Line":
        latency = f" in {float(f['latency_ms']):.0f} ms" if f.get("latency_ms") is not None else ""
        contract, value_per_point = self._lookup(f.get("contract"))
        role = _ROLE_WORDS.get(f.get("role") or "", "")
        text = f"fill {f.get('account')}: {f.get('side')} {f.get('qty')} {contract} @ {f.get('price')}"
        text += f" ({role})" if role else ""
        pnl = _exit_pnl(f, value_per_point)
        if pnl is not None:
            text += f", realized {'+' if pnl > 0 else ''}{pnl:,.2f} USD"
        elif f.get("closes"):
            text += ", realized P&L not known (no average price)"
        return Line("fill", text + latency, "success", "fill")

    @staticmethod
    def _value_per_point(contract) -> Optional[float]:
        try:
            return history_source.known_value_per_point(int(contract))
        except (TypeError, ValueError):
            return None

    def _signal_lines(self, f: dict) -> List["Line"]:
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
                out.append(Line("unknown", f"{name}: {what} outcome UNKNOWN ({ids}); not resent, "
                                           f"settled by clOrdId — check the account", "failure", "unknown outcome"))
            else:
                out.append(Line("rejected", f"{name}: {what} {_FAILED[status]} — {getattr(o, 'error', '')}", "failure"))
        return out


def _exit_pnl(f: dict, value_per_point: Optional[float]) -> Optional[float]:
    """USD realized by a fill that closes (part of) a position: the closed quantity times the move
    from the position's average price (``net_before``/``avg_before``: the position the fill met)."""
    net, avg, price, qty = f.get("net_before"), f.get("avg_before"), f.get("price"), f.get("qty")
    if not net or avg is None or price is None or not qty or not value_per_point:
        return None
    side = 1 if str(f.get("side")).lower() == "buy" else -1
    if (net > 0) == (side > 0):
        return None  # adds to the position: nothing realized
    closed = min(abs(int(qty)), abs(int(net)))
    direction = 1 if net > 0 else -1
    return round(direction * (float(price) - float(avg)) * closed * float(value_per_point), 2)
