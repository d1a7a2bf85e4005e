"""Live prices from Tradovate's market-data socket (``md/subscribeQuote``), for open positions only.

One socket (``TRADOVATE_MD_URL``; Tradovate's md host by default) owned by ONE named thread that
connects, authorizes with the login's access token (or its ``mdAccessToken`` when the access
token is refused: ``QuoteFeed._authorized``), keeps the subscriptions equal to the wanted set
(:meth:`QuoteFeed.want`) and reconnects with capped, jittered back-off.  Quotes reach ``on_quote``
in the socket's thread: ``on_quote(contract_id, price, timestamp)`` with the last trade price (or
the bid/offer mid when a quote has no trade).

Tokens: ``token()`` gives the login's current token (renewed first when due); when the socket's
``authorize`` is refused with every token (an expired or revoked token the login does not know
about yet),
``renew(stale)`` asks the login for a fresh one (a new login unless another thread already got
one) and the feed authorizes once more at once; a second refusal waits out the back-off.  A
failed attempt is never retried before its back-off has passed (only a renewed token or
:meth:`stop` cuts it short), and the token itself is never logged.
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from typing import Callable, Optional, Set, Tuple

from phantom_scraper.errors import AuthError, TradovateError
from phantom_scraper.tradovate.ws import TradovateWebSocket

log = logging.getLogger(__name__)


def _quote_price(entries: dict) -> Optional[float]:
    trade = (entries.get("Trade") or {}).get("price")
    if trade is not None:
        return float(trade)
    bid, offer = (entries.get("Bid") or {}).get("price"), (entries.get("Offer") or {}).get("price")
    if bid is not None and offer is not None:
        return (float(bid) + float(offer)) / 2
    return None


def _epoch(stamp) -> Optional[float]:
    try:
        return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


class QuoteFeed:
    def __init__(self, url: str, token: Callable[[], Optional[str]],
                 on_quote: Callable[[int, float, Optional[float]], None], *, settings,
                 name: str = "md", renew: Optional[Callable[[str], Optional[str]]] = None,
                 md_token: Optional[Callable[[], Optional[str]]] = None):
        self.url = url
        self._token = token
        self._renew = renew  # renew(stale_token) -> a fresh token (the login's re-authentication)
        self._md_token = md_token  # the login's mdAccessToken: tried when accessToken is refused
        self.token_kind: Optional[str] = None  # the token the md socket last accepted (learned)
        self._on_quote = on_quote
        self._settings = settings
        self.name = name
        self._lock = threading.Lock()  # guards _wanted, _ws, _subscribed, last_error
        self._wanted: Set[int] = set()
        self._subscribed: Set[int] = set()
        self._ws: Optional[TradovateWebSocket] = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.last_error: Optional[str] = None
        self._token_renewed = False  # the login's token changed: reconnect with the new one
        self._ws_token: Optional[str] = None  # the token the open socket was authorized with
        self._latest_token: Optional[str] = None  # the last token a renewal announced
        self._retry_at = 0.0  # monotonic: no attempt before (a failed attempt's back-off)
        self.quotes_received = 0
        self.requests_sent = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"risk-{self.name}", daemon=True)
            self._thread.start()

    def want(self, contract_ids: Set[int]) -> None:
        with self._lock:
            changed = set(contract_ids) != self._wanted
            self._wanted = set(contract_ids)
        if changed:
            self._wake.set()

    def token_renewed(self, token=None) -> None:
        """Token listener (any thread): the feed's thread reconnects with the fresh token (not when
        its socket already uses it: the feed's own renewal), and a back-off ends at once."""
        with self._lock:
            self._token_renewed, self._latest_token, self._retry_at = True, token, 0.0
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def live(self) -> Set[int]:
        """Contracts whose quotes are current: subscribed on a connected socket (any thread)."""
        with self._lock:
            ws = self._ws
            return set(self._subscribed) if ws is not None and ws.is_open else set()

    def status(self) -> dict:
        with self._lock:
            ws = self._ws
            return {"url": self.url, "connected": bool(ws and ws.is_open), "subscribed": sorted(self._subscribed),
                    "quotes_received": self.quotes_received, "requests_sent": self.requests_sent,
                    "last_error": self.last_error}

    # -- the feed's thread ------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._lock:
                backoff_s = self._retry_at - time.monotonic()
            if backoff_s > 0:  # a want() or a closing socket never cuts a back-off short
                self._wake.wait(backoff_s)
                self._wake.clear()
                continue
            try:
                self._tend()
                failures = 0
                wait_s = 5.0
            except Exception as exc:  # one logged safety net: the feed must not die silently
                failures += 1
                s = self._settings
                wait_s = min(s.reconnect_backoff_max_s,
                             s.reconnect_backoff_initial_s * 2 ** min(failures, 6) * random.uniform(0.5, 1.5))
                with self._lock:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._retry_at = time.monotonic() + wait_s
                log.warning("Market-data feed %s: %s; retrying in %.1f s", self.url, self.last_error, wait_s)
            self._wake.wait(wait_s)
            self._wake.clear()

    def _on_close(self, ws: TradovateWebSocket) -> None:
        """Close listener (socket thread): only the feed's current socket wakes it -- a socket whose
        connect failed closes too, and must not cut the back-off short."""
        if ws is self._ws:
            self._wake.set()

    def _connect(self) -> Tuple[TradovateWebSocket, str]:
        """A socket authorized with the login's token; when every token is refused, one fresh token
        from the login and one more try.  Raises (the caller backs off)."""
        token = self._token()
        if not token:
            raise TradovateError("no access token for the market-data socket")
        try:
            return self._authorized(token)
        except AuthError:
            if self._renew is None:
                raise
            log.info("Market-data feed %s: authorize refused; asking the login for a fresh token", self.url)
        fresh = self._renew(token)  # a new login, unless another thread already replaced this token
        if not fresh or fresh == token:
            raise AuthError("market-data socket: authorize refused and no fresh token")
        return self._authorized(fresh)

    def _authorized(self, access_token: str) -> Tuple[TradovateWebSocket, str]:
        """An authorized md socket and the token it took.  Which token it takes is not settled
        (Uncertain 7: the official JS examples authorize with ``accessToken``, the trading-strategy
        example with ``mdAccessToken``): the one that worked last goes first, and a refused
        authorize is tried once more with the other token.  Learned per feed, logged once."""
        tokens = [("accessToken", lambda: access_token), ("mdAccessToken", self._md_token)]
        if self.token_kind == "mdAccessToken":
            tokens.reverse()
        refused = []
        for kind, get in tokens:
            token = get() if get is not None else None
            if not token:
                continue
            try:
                ws = self._open(token)
            except AuthError as exc:
                refused.append(f"{kind}: {exc}")
                continue
            if kind != self.token_kind:
                (log.warning if refused else log.info)(
                    "Market-data socket %s authorized with the login's %s%s", self.url, kind,
                    f" (refused: {'; '.join(refused)})" if refused else "")
                self.token_kind = kind
            return ws, access_token
        raise AuthError(f"market-data socket {self.url}: authorize refused with every token ({'; '.join(refused)})")

    def _open(self, token: str) -> TradovateWebSocket:
        s = self._settings
        ws = TradovateWebSocket(self.url, token, name=f"{self.name}-quotes", heartbeat_interval_s=s.heartbeat_interval_s,
                                connect_timeout_s=s.ws_connect_timeout_s, idle_probe_after_s=s.ws_idle_probe_after_s,
                                probe_timeout_s=s.ws_probe_timeout_s)
        ws.add_listener(self._on_event)
        ws.add_close_listener(self._on_close)
        return ws.connect()

    def _tend(self) -> None:
        with self._lock:
            ws, wanted = self._ws, set(self._wanted)
            renewed, self._token_renewed = self._token_renewed, False
            renewed = renewed and (self._latest_token is None or self._latest_token != self._ws_token)
        if renewed and ws is not None:  # quotes pause for one reconnect, never for a token expiry
            ws.close("token renewed")
            ws = None
        if not wanted and (ws is None or not ws.is_open):
            with self._lock:
                self._subscribed = set()
            return
        if ws is None or not ws.is_open:
            ws, token = self._connect()
            with self._lock:
                self._ws, self._ws_token, self._subscribed, self.last_error = ws, token, set(), None
            if not ws.is_open:  # closed before it became the current socket: its listener was quiet
                self._wake.set()
            log.info("Market-data socket connected: %s", self.url)
        with self._lock:
            subscribed = set(self._subscribed)
        for contract_id in sorted(wanted - subscribed):
            self.requests_sent += 1
            answer = ws.request("md/subscribeQuote", body={"symbol": contract_id}, timeout=self._settings.order_ack_timeout_s)
            if isinstance(answer, dict) and answer.get("errorText"):
                raise TradovateError(f"md/subscribeQuote {contract_id}: {answer['errorText']}")
            with self._lock:
                self._subscribed.add(contract_id)
        for contract_id in sorted(subscribed - wanted):
            self.requests_sent += 1
            ws.request("md/unsubscribeQuote", body={"symbol": contract_id}, timeout=self._settings.order_ack_timeout_s)
            with self._lock:
                self._subscribed.discard(contract_id)

    def _on_event(self, event: dict) -> None:
        if event.get("e") != "md":
            return
        for quote in (event.get("d") or {}).get("quotes") or []:
            price = _quote_price(quote.get("entries") or {})
            if price is None or quote.get("contractId") is None:
                continue
            self.quotes_received += 1
            self._on_quote(int(quote["contractId"]), price, _epoch(quote.get("timestamp")))
