"""Tradovate for one login: token, REST calls, socket order calls and ``place_order_smart()``.

The public surface the order router uses (``order_router.OrderTransport``):

* ``send_ws(ws, endpoint, body)`` / ``send_rest(endpoint, body)``: one attempt each, returned as an
  ``outcome.Attempt`` (``not_sent`` / ``acked`` / ``rejected`` / ``unknown``), never raised;
* ``list_commands()``: the order book's commands, searched by intent id;
* ``stop_event``: set by ``close()``; the router sends nothing once it is set and ends searches;
* ``settings``.

``place_order_smart`` hands one intent to ``order_router.SmartOrder``: WebSocket first, REST only
when the socket attempt provably never left, and never a second order after an attempt that may
have executed (an ``unknown`` is searched by ``clOrdId``, then settled in the background).
Penalty tickets and HTTP 401 are proofs of non-execution: they are waited out / re-authenticated
and resent inside one attempt.  ``order/liquidateposition`` has no ``clOrdId``: the intent id
travels in ``customTag50`` only with the ``TRADOVATE_CUSTOM_TAG50`` opt-in; otherwise an unknown
liquidation is found by ``find_liquidation`` (account, contract, time).  An HTTP 429 makes the
login quiet (``tradovate.quiet``): background calls stop for Tradovate's hour, orders still go.
Live refuses to start without a device id (``config.device_id_problem``).
"""
from __future__ import annotations

import logging
import threading
import uuid
from typing import Any, Callable, List, Optional
from urllib.parse import urlparse

from phantom_scraper.config import (HOW_TO_CHOOSE_DEVICE_ID, REAL_REST_URLS, ConfigError, Credentials, Settings,
                                    derive_ws_url, device_id_problem)
from phantom_scraper.errors import (AuthError, BrokerError, NotSentError, PenaltyError, TooManyRequestsError,
                                    TradovateError)
from phantom_scraper.tradovate.router import OrderResult, SmartOrder
from phantom_scraper.tradovate.outcome import Attempt, attempt_of
from phantom_scraper.tradovate.auth import TokenKeeper
from phantom_scraper.tradovate import budget as request_budget
from phantom_scraper.tradovate.quiet import QuietGate
from phantom_scraper.tradovate.rest import RestClient, is_order_endpoint
from phantom_scraper.tradovate.search import liquidations_since
from phantom_scraper.tradovate.wire import check_order_result
from phantom_scraper.tradovate.ws import TradovateWebSocket

logger = logging.getLogger(__name__)

def new_cl_ord_id() -> str:
    return "ps-" + uuid.uuid4().hex  # 35 chars, well under the 64-char limit


class TradovateIntegration:
    MAX_PENALTY_ROUNDS = 2

    def __init__(
        self,
        credentials: Optional[Credentials] = None,
        rest_url: Optional[str] = None,
        ws_url: Optional[str] = None,
        is_demo: bool = True,
        settings: Optional[Settings] = None,
    ):
        self.settings = settings or Settings()
        creds = credentials or self.settings.credentials
        if creds is None:
            raise AuthError("no Tradovate credentials configured (TRADOVATE_USERNAME/TRADOVATE_PASSWORD)")
        problem = device_id_problem("demo" if is_demo else "live", creds.device_id)
        if problem:
            raise ConfigError(f"login {creds.username!r}: {problem}")
        if not creds.device_id and self.settings.tradovate_env != "sim":
            logger.warning("login %r has no device id (TRADOVATE_DEVICE_ID); demo tolerates it, live refuses to "
                           "start without one: %s", creds.username, HOW_TO_CHOOSE_DEVICE_ID)
        self.credentials = creds
        self.rest_url = (rest_url or REAL_REST_URLS["demo" if is_demo else "live"]).rstrip("/")
        self.ws_url = ws_url or derive_ws_url(self.rest_url)
        self.is_demo = is_demo
        self._stop = threading.Event()  # set by close(): interrupts penalty waits and polling
        self._rest = RestClient(self.rest_url, timeout_s=self.settings.rest_timeout_s,
                                connect_timeout_s=min(5.0, self.settings.rest_timeout_s))
        self._auth = TokenKeeper(creds, self._rest, self.settings, self._stop)
        self.quiet = QuietGate(creds.username, self.settings.rate_limit_quiet_s)
        # what this login sends, REST and its order sockets alike (Tradovate's limits are per user)
        self._rest.budget = request_budget.for_login(
            f"{creds.username}@{urlparse(self.rest_url).netloc}", per_minute=self.settings.broker_requests_per_minute,
            per_hour=self.settings.broker_requests_per_hour)

    @property
    def request_budget(self) -> request_budget.RequestBudget:
        return self._rest.budget

    # ------------------------------------------------------------------ token
    def authenticate(self) -> str:
        return self._auth.login()

    def ensure_token(self) -> str:
        return self._auth.ensure_token()

    def reauthenticate(self, stale_token: str) -> str:
        """After ``stale_token`` was refused (a socket's authorize, a 401): a fresh token -- a new
        login unless another thread already replaced that token (single flight)."""
        return self._auth.reauthenticate(stale_token)

    @property
    def access_token(self) -> Optional[str]:
        tok = self._auth.token
        return tok.access_token if tok else None

    @property
    def md_access_token(self) -> Optional[str]:
        """The login's ``mdAccessToken`` (the market-data socket's second choice), or None."""
        tok = self._auth.token
        return (tok.md_access_token or None) if tok else None

    @property
    def token_expires_at(self) -> Optional[float]:
        tok = self._auth.token
        return tok.expires_at if tok else None

    @property
    def user_id(self) -> Optional[int]:
        tok = self._auth.token
        return tok.user_id if tok else None

    def add_token_listener(self, fn: Callable[[str], None]) -> None:
        self._auth.add_listener(fn)

    @property
    def stop_event(self) -> threading.Event:
        """Set by ``close()`` (or by a shutdown that settles): nothing more is sent, waits end."""
        return self._stop

    def close(self) -> None:
        self._stop.set()
        self._rest.close()

    # ------------------------------------------------------------------ REST core
    def _with_penalty(self, send: Callable[[Optional[str]], Any], what: str) -> Any:
        """Run ``send(p_ticket)``; a penalty (not executed) is waited out and resent with its ticket."""
        ticket: Optional[str] = None
        for round_no in range(self.MAX_PENALTY_ROUNDS + 1):
            try:
                return send(ticket)
            except PenaltyError as exc:
                wait_s = exc.retry_after_s
                if exc.captcha or wait_s is None or wait_s > self.settings.penalty_max_wait_s \
                        or round_no == self.MAX_PENALTY_ROUNDS:
                    raise
                logger.warning("%s: penalty ticket, waiting %.1f s then resending with p-ticket", what, wait_s)
                if self._stop.wait(wait_s):
                    raise
                ticket = exc.p_ticket
        raise AssertionError("unreachable")

    def _rest_call(self, method: str, path: str, params: Optional[dict] = None, body: Any = None) -> Any:
        """One logical REST call: token, penalty handling, at most one re-login and resend on 401.
        While the login is quiet after a 429, a non-essential call is refused before it leaves."""
        self.quiet.check(path, is_order_endpoint(path))
        try:
            return self._rest_call_once(method, path, params, body)
        except TooManyRequestsError:
            self.quiet.trip(path)
            raise

    def _rest_call_once(self, method: str, path: str, params: Optional[dict], body: Any) -> Any:
        timeout = self.settings.order_ack_timeout_s if is_order_endpoint(path) else self.settings.rest_timeout_s

        def attempt(token: str) -> Any:
            def send(ticket: Optional[str]) -> Any:
                b, p = body, params
                if ticket is not None:
                    if method == "GET":
                        p = dict(params or {}, **{"p-ticket": ticket})
                    else:
                        b = dict(body or {}, **{"p-ticket": ticket})
                return self._rest.send(method, path, token=token, params=p, body=b, timeout_s=timeout)
            return self._with_penalty(send, path)

        token = self._token_before_send(path, self.ensure_token)
        try:
            return attempt(token)
        except BrokerError as exc:
            if exc.status != 401:
                raise
        # A 401 means the call was not executed: one re-authentication, one resend.
        logger.warning("%s: HTTP 401, re-authenticating once and resending", path)
        stale = token
        token = self._token_before_send(path, lambda: self._auth.reauthenticate(stale))
        try:
            return attempt(token)
        except BrokerError as exc:
            if exc.status == 401:
                raise AuthError(f"{path}: token refused again after re-authentication") from exc
            raise

    @staticmethod
    def _token_before_send(path: str, get_token: Callable[[], str]) -> str:
        """The token for a call about to be sent.  For an order, a failure here (login or renewal
        timed out, HTTP 5xx, connection lost) means the order itself never left: ``NotSentError``,
        never an ambiguous ``BrokerError`` that would be journaled as an unknown outcome."""
        try:
            return get_token()
        except (AuthError, NotSentError):
            raise  # already say "not executed"
        except TradovateError as exc:
            if is_order_endpoint(path):
                raise NotSentError(f"{path}: no access token ({exc}); the order was not sent") from exc
            raise

    # ------------------------------------------------------------------ REST reads
    def list_accounts(self) -> List[dict]:
        return self._rest_call("GET", "account/list") or []

    def _entity(self, path: str, params: dict) -> Optional[dict]:
        """One entity by a GET, or None when the broker has none (404, or an empty answer)."""
        try:
            found = self._rest_call("GET", path, params=params)
        except BrokerError as exc:
            if exc.status == 404:
                return None
            raise
        return found if isinstance(found, dict) and found else None

    def find_contract(self, name: str) -> Optional[dict]:
        return self._entity("contract/find", {"name": name})

    def get_contract(self, contract_id: int) -> Optional[dict]:
        return self._entity("contract/item", {"id": contract_id})

    def find_product(self, name: str) -> Optional[dict]:
        """``product/find?name=NQ`` (``valuePerPoint``, ``tickSize``), or None."""
        return self._entity("product/find", {"name": name})

    def cash_balance_snapshot(self, account_id: int) -> dict:
        """``cashBalance/getcashbalancesnapshot``: realized and open P&L of the account right now."""
        return self._rest_call("POST", "cashBalance/getcashbalancesnapshot", body={"accountId": account_id}) or {}

    def suggest_contracts(self, root: str, limit: int = 5) -> List[dict]:
        return self._rest_call("GET", "contract/suggest", params={"t": root, "l": limit}) or []

    def list_maturities(self, product_id: int) -> List[dict]:
        """The product's ``contractMaturity`` entities (``expirationMonth``, ``expirationDate``)."""
        return self._rest_call("GET", "contractMaturity/deps", params={"masterid": product_id}) or []

    def roll_contract(self, name: str, forward: bool = True, if_expired: bool = True) -> Optional[dict]:
        data = self._rest_call("POST", "contract/rollcontract",
                               body={"name": name, "forward": forward, "ifExpired": if_expired})
        return data.get("contract") if isinstance(data, dict) else None

    def list_deps(self, entity: str, master_id: Optional[int]) -> List[dict]:
        """``{entity}/deps?masterid=`` (or ``{entity}/list`` without a master): e.g. a strategy's
        ``orderStrategyLink`` rows, an order's ``orderVersion`` or ``fill`` rows."""
        if master_id is None:
            return self._rest_call("GET", f"{entity}/list") or []
        return self._rest_call("GET", f"{entity}/deps", params={"masterid": master_id}) or []

    def get_order(self, order_id: int) -> Any:
        """``order/item?id=`` (its ``ordStatus``)."""
        return self._rest_call("GET", "order/item", params={"id": order_id})

    def get_order_strategy(self, strategy_id: int) -> Any:
        """``orderStrategy/item?id=`` (its ``status``)."""
        return self._rest_call("GET", "orderStrategy/item", params={"id": strategy_id})

    def interrupt_order_strategy(self, strategy_id: int) -> Any:
        """``orderStrategy/interruptorderstrategy``: the broker's answer (``errorText`` when it had
        already ended)."""
        return self._rest_call("POST", "orderStrategy/interruptorderstrategy",
                               body={"orderStrategyId": strategy_id})

    def list_positions(self, account_id: Optional[int] = None) -> List[dict]:
        return self.list_deps("position", account_id)

    def list_orders(self, account_id: Optional[int] = None) -> List[dict]:
        return self.list_deps("order", account_id)

    def list_commands(self, order_id: Optional[int] = None) -> List[dict]:
        return self.list_deps("command", order_id)

    def list_order_strategies(self) -> List[dict]:
        return self.list_deps("orderStrategy", None)

    def list_fills(self, order_id: Optional[int] = None) -> List[dict]:
        return self.list_deps("fill", order_id)

    def list_order_versions(self, order_id: Optional[int] = None) -> List[dict]:
        return self.list_deps("orderVersion", order_id)

    LIQUIDATION_SLACK_S = 5.0  # the broker's clock may run behind ours; its Date header has 1 s resolution

    def find_liquidation(self, account_id: Any, contract_id: Any, since: float,
                         exclude: Any = ()) -> List[int]:
        """The orders that may be the ``order/liquidateposition`` sent at ``since`` (epoch seconds,
        this machine's clock) without ``customTag50``: orders of the account in the contract created
        since then (on the broker's clock, less a slack) that no ``clOrdId`` claims.  One id: found.
        Several: ambiguous (the caller adopts none).  Raises ``TradovateError`` when unreadable."""
        if account_id is None or contract_id is None:
            return []
        offset = self._rest.server_clock_offset_s or 0.0
        orders = self.list_orders(int(account_id))
        commands = self.list_commands()
        return liquidations_since(orders, commands, int(account_id), int(contract_id),
                                  since + offset - self.LIQUIDATION_SLACK_S, exclude)

    # ------------------------------------------------------------------ REST orders
    def _rest_order(self, endpoint: str, body: dict) -> dict:
        return check_order_result(endpoint, self._rest_call("POST", endpoint, body=body))

    def place_order_rest(self, body: dict) -> dict:
        return self._rest_order("order/placeorder", body)

    def place_oso_rest(self, body: dict) -> dict:
        return self._rest_order("order/placeoso", body)

    def liquidate_position_rest(self, body: dict) -> dict:
        return self._rest_order("order/liquidateposition", body)

    def cancel_order_rest(self, body: dict) -> dict:
        return self._rest_order("order/cancelorder", body)

    def modify_order_rest(self, body: dict) -> dict:
        return self._rest_order("order/modifyorder", body)

    # ------------------------------------------------------------------ WebSocket
    def open_websocket(self, name: Optional[str] = None) -> TradovateWebSocket:
        """A connected socket authorized with the current token (one re-login if it is refused)."""
        token = self.ensure_token()
        try:
            return self._new_socket(token, name).connect()
        except AuthError:
            logger.warning("socket authorize refused; re-authenticating once")
            token = self._auth.reauthenticate(token)
            return self._new_socket(token, name).connect()

    def _new_socket(self, token: str, name: Optional[str]) -> TradovateWebSocket:
        s = self.settings
        ws = TradovateWebSocket(
            self.ws_url, token,
            name=name or f"{self.credentials.username}@{urlparse(self.ws_url).netloc}",
            heartbeat_interval_s=s.heartbeat_interval_s,
            connect_timeout_s=s.ws_connect_timeout_s,
            max_message_bytes=s.ws_max_message_bytes,
            idle_probe_after_s=s.ws_idle_probe_after_s,
            probe_timeout_s=s.ws_probe_timeout_s,
        )
        ws.budget = self._rest.budget
        return ws

    def _ws_order(self, ws: TradovateWebSocket, endpoint: str, body: dict,
                  sent: Optional[Callable[[], Any]] = None) -> Any:
        """The socket's answer ``d`` (a penalty is waited out and resent with its ticket).
        ``sent``: the first frame was already written in a batch; ``sent()`` is its answer."""
        def send(ticket: Optional[str]) -> Any:
            if ticket is None and sent is not None:
                return sent()
            b = body if ticket is None else dict(body, **{"p-ticket": ticket})
            return ws.request(endpoint, b, timeout=self.settings.order_ack_timeout_s)
        try:
            return self._with_penalty(send, endpoint)
        except TooManyRequestsError:
            self.quiet.trip(endpoint)
            raise

    def send_ws(self, ws: TradovateWebSocket, endpoint: str, body: dict,
                sent: Optional[Callable[[], Any]] = None) -> Attempt:
        """One order attempt over the socket, classified (never raises)."""
        return attempt_of("websocket", lambda: self._ws_order(ws, endpoint, body, sent))

    def send_rest(self, endpoint: str, body: dict) -> Attempt:
        """One order attempt over REST, classified (never raises)."""
        return attempt_of("rest", lambda: self._rest_order(endpoint, body))

    def place_order_ws(self, ws: TradovateWebSocket, body: dict) -> dict:
        return check_order_result("order/placeorder", self._ws_order(ws, "order/placeorder", body))

    def place_oso_ws(self, ws: TradovateWebSocket, body: dict) -> dict:
        return check_order_result("order/placeoso", self._ws_order(ws, "order/placeoso", body))

    def liquidate_position_ws(self, ws: TradovateWebSocket, body: dict) -> dict:
        return check_order_result("order/liquidateposition", self._ws_order(ws, "order/liquidateposition", body))

    def cancel_order_ws(self, ws: TradovateWebSocket, body: dict) -> dict:
        return check_order_result("order/cancelorder", self._ws_order(ws, "order/cancelorder", body))

    def modify_order_ws(self, ws: TradovateWebSocket, body: dict) -> dict:
        return check_order_result("order/modifyorder", self._ws_order(ws, "order/modifyorder", body))

    # ------------------------------------------------------------------ smart placement
    def place_order_smart(
        self,
        body: dict,
        ws: Optional[TradovateWebSocket] = None,
        endpoint: str = "order/placeorder",
        cl_ord_id: Optional[str] = None,
        *,
        fallback_reason: Optional[str] = None,
        on_unknown: Optional[Callable[[str], None]] = None,
    ) -> OrderResult:
        """Place one order intent; see ``order_router`` for the transport rules.  Never raises for
        a broker outcome: ``OrderResult.status`` is acked / rejected / not_sent / unknown."""
        return self.smart_order(body, ws, endpoint, cl_ord_id, fallback_reason=fallback_reason,
                                on_unknown=on_unknown).run()

    def smart_order(self, body: dict, ws: Optional[TradovateWebSocket] = None, endpoint: str = "order/placeorder",
                    cl_ord_id: Optional[str] = None, *, fallback_reason: Optional[str] = None,
                    on_unknown: Optional[Callable[[str], None]] = None) -> SmartOrder:
        """The intent, ready to ``run()`` (its ``body`` carries the intent id): a fan-out writes
        several intents' frames in one batch, then runs each with ``run(sent=...)``."""
        return SmartOrder(self, body, ws, endpoint, cl_ord_id, new_cl_ord_id, fallback_reason=fallback_reason,
                          on_unknown=on_unknown)
