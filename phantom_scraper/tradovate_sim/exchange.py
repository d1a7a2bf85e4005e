"""The simulated broker's state: users, accounts, tokens, entities, positions, book of record.

Everything lives in plain dicts guarded by ONE lock (``Exchange._lock``) that is held for
bookkeeping only — never across I/O, sleeps or listener calls.  Entity changes made under the lock
are collected as events and handed to the listeners after it is released.  Order logic lives in
:mod:`.orders` (a mixin sharing this state).
"""
from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .catalog import Catalog, Contract
from .clock import SimClock
from .market import Market
from .config import SimConfig
from .orders import OrderInfo, OrderMixin
from .strategies import StrategyMixin
from .pnl import CashMixin, cme_trade_date
from .timefmt import iso_z, trade_date
from .daybook import OrderInfos, Store, refreeze, wire

log = logging.getLogger(__name__)

Event = Tuple[int, str, str, dict]  # (account id, entityType, eventType, entity snapshot)

# entityType -> field linking it to its master for `<type>/deps?masterid=`
MASTER_FIELD = {
    "account": "userId", "order": "accountId", "orderVersion": "orderId", "command": "orderId",
    "commandReport": "commandId", "executionReport": "commandId", "fill": "orderId",
    "position": "accountId", "cashBalance": "accountId",
    "orderStrategy": "accountId", "orderStrategyLink": "orderStrategyId",
}
ENTITY_TYPES = tuple(MASTER_FIELD)
# syncrequest snapshot collection names
PLURALS = {
    "user": "users", "account": "accounts", "position": "positions", "order": "orders",
    "orderVersion": "orderVersions", "command": "commands", "commandReport": "commandReports",
    "executionReport": "executionReports", "fill": "fills", "cashBalance": "cashBalances",
    "contract": "contracts", "product": "products", "contractMaturity": "contractMaturities",
    "userProperty": "userProperties", "property": "properties", "accountRiskStatus": "accountRiskStatuses",
    "marginSnapshot": "marginSnapshots", "userAccountAutoLiq": "userAccountAutoLiqs", "currency": "currencies",
    "fillPair": "fillPairs", "exchange": "exchanges", "spreadDefinition": "spreadDefinitions",
    "fillFee": "fillFees", "orderStrategy": "orderStrategies", "orderStrategyLink": "orderStrategyLinks",
    "userPlugin": "userPlugins", "annualReview": "annualReviews", "userReadStatus": "userReadStatuses",
    "userPromoCode": "userPromoCodes", "contractGroup": "contractGroups", "orderStrategyType": "orderStrategyTypes",
}

BAD_CREDENTIALS = ("Incorrect username or password. Please try again, noting that passwords "
                   "are case-sensitive.")


@dataclass
class _Token:
    user_id: int
    expires_at: float  # epoch seconds
    pair: str  # the access token this md token belongs to (or itself)
    revoked: bool = False
    device_id: str = ""  # the login's deviceId (renewals keep it)

    def valid(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


def catalog_date() -> dt.date:
    """The date contract maturities are generated from: ``TRADOVATE_SIM_TODAY`` (YYYY-MM-DD, used
    by the test suite so dated symbols such as ``NQZ6`` stay valid forever), else today (UTC)."""
    pinned = os.environ.get("TRADOVATE_SIM_TODAY", "").strip()
    if pinned:
        try:
            return dt.date.fromisoformat(pinned)
        except ValueError:
            log.warning("TRADOVATE_SIM_TODAY=%r is not YYYY-MM-DD; using today", pinned)
    return dt.datetime.now(dt.timezone.utc).date()


class Exchange(StrategyMixin, OrderMixin, CashMixin):
    def __init__(self, config: SimConfig):
        self.config = config
        self.catalog = Catalog(config.today or catalog_date())
        self.clock = SimClock()  # market time: fills, quotes, cash balances, book of record
        # bars, ticks, quotes and the book, from one seeded history per contract (market.py)
        self.market = Market(self.catalog, self.clock, config.md_seed, self.price)
        self._quote_listeners: List[Callable[[int, float, float], None]] = []  # (contract id, price, time)
        # Guards every attribute below (and those used by OrderMixin).  Bookkeeping only.
        self._lock = threading.Lock()
        self._listeners: List[Callable[[List[Event]], None]] = []
        self._users: Dict[int, dict] = {}
        self._user_specs: Dict[str, Tuple[int, Any]] = {}
        self._accounts: Dict[int, dict] = {}
        self._accounts_by_name: Dict[str, int] = {}
        self._user_accounts: Dict[int, List[int]] = {}
        self._max_qty: Dict[int, Optional[int]] = {}
        for u_index, spec in enumerate(config.users, start=1):
            self._users[u_index] = {"id": u_index, "name": spec.name, "timestamp": iso_z(time.time()),
                                    "status": "Active", "professional": False}
            self._user_specs[spec.name] = (u_index, spec)
            self._user_accounts[u_index] = []
            for name in spec.accounts:
                acct_id = 10_000 + len(self._accounts) + 1
                self._accounts[acct_id] = {
                    "id": acct_id, "name": name, "userId": u_index, "accountType": "Customer",
                    "active": True, "clearingHouseId": 2, "riskCategoryId": 2, "autoLiqProfileId": 2,
                    "marginAccountType": "Speculator", "legalStatus": "Individual",
                    "archived": False, "timestamp": iso_z(time.time()), "readonly": False}
                self._accounts_by_name[name.upper()] = acct_id
                self._user_accounts[u_index].append(acct_id)
                self._max_qty[acct_id] = spec.max_order_qty
        self._tokens: Dict[str, _Token] = {}
        self._sessions: Dict[int, List[str]] = {}  # user id -> access tokens, oldest first
        self._reset_trading()

    def _reset_trading(self) -> None:
        """(Re)create the trading state; caller holds the lock or is the constructor."""
        self._ids = itertools.count(100_001)  # one sequence for every entity type (docs/TRADOVATE.md, "Order events")
        self._prices: Dict[int, float] = {c.id: c.initial_price for c in self.catalog.contracts.values()}
        # (the day's stores are daybook.Store: frozen with the rest in a simulator's own process)
        self._entities: Dict[str, Dict[int, dict]] = {t: Store() for t in ENTITY_TYPES if t != "account"}
        self._owner: Dict[int, int] = Store()  # entity id -> account id
        self._info: OrderInfos = OrderInfos(OrderInfo)  # order id -> OrderInfo (orders.py; finished: folded)
        self._working: Dict[int, Set[int]] = {}  # contract id -> ids of Working orders
        self._live: Dict[Tuple[int, int], Set[int]] = {}  # (account, contract) -> ids of live orders (LIVE)
        self._latest_version: Dict[int, dict] = Store()  # order id -> its newest orderVersion
        self._positions: Dict[Tuple[int, int], int] = {}  # (account, contract) -> position id
        self._book: List[dict] = []
        self._strategies: Dict[int, Any] = {}  # orderStrategy id -> _Strategy (strategies.py)
        self._strategy_of: Dict[int, int] = {}  # order id -> orderStrategy id
        self._trails: Dict[int, Any] = {}  # order id -> _Trail of a trailing stop
        for acct_id in self._accounts:
            cb_id = next(self._ids)
            self._owner[cb_id] = acct_id
            self._entities["cashBalance"][cb_id] = {
                "id": cb_id, "accountId": acct_id, "timestamp": iso_z(time.time()),
                "tradeDate": cme_trade_date(self.clock()), "currencyId": 1, "amount": 50_000.0,
                "realizedPnL": 0.0, "weekRealizedPnL": 0.0, "amountSOD": 50_000.0}

    # ---- events -----------------------------------------------------------------------------
    def add_listener(self, fn: Callable[[List[Event]], None]) -> None:
        self._listeners.append(fn)

    def add_quote_listener(self, fn: Callable[[int, float, float], None]) -> None:
        self._quote_listeners.append(fn)

    def _publish_quote(self, contract_id: int, price: float) -> None:
        """Call after releasing the lock: every quote listener (the market-data socket) hears it."""
        now = self.clock()
        for fn in list(self._quote_listeners):
            try:
                fn(contract_id, price, now)
            except Exception:
                log.exception("quote listener failed")

    def _publish(self, events: List[Event]) -> None:
        """Call after releasing the lock."""
        if not events:
            return
        for fn in list(self._listeners):
            try:
                fn(events)
            except Exception:  # a broken listener must not break order handling
                log.exception("event listener failed")

    # ---- tokens -------------------------------------------------------------------------------
    def login(self, body: dict) -> Tuple[int, dict]:
        name, password = str(body.get("name") or ""), str(body.get("password") or "")
        entry = self._user_specs.get(name)
        if entry is None or entry[1].password != password:
            return self.config.bad_credentials_status, {"errorText": BAD_CREDENTIALS}
        user_id, spec = entry
        for field, want in (("appId", spec.app_id), ("cid", spec.cid), ("sec", spec.sec)):
            if want is not None and str(body.get(field, "")) != str(want):
                return self.config.bad_credentials_status, {"errorText": "The app is not registered"}
        with self._lock:
            sessions = self._sessions.setdefault(user_id, [])
            limit = self.config.max_sessions_per_user
            while limit and len(sessions) >= limit:
                self._revoke_locked(sessions.pop(0))
            result = self._issue_locked(user_id, str(body.get("deviceId") or ""))
        return 200, result

    def _issue_locked(self, user_id: int, device_id: str = "") -> dict:
        now = time.time()
        expires = now + self.config.token_lifetime_s
        access, md = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._tokens[access] = _Token(user_id, expires, access, device_id=device_id)
        self._tokens[md] = _Token(user_id, expires, access, device_id=device_id)
        self._sessions.setdefault(user_id, []).append(access)
        return {"accessToken": access, "mdAccessToken": md, "expirationTime": iso_z(expires),
                "userStatus": "Active", "userId": user_id, "name": self._users[user_id]["name"],
                "hasLive": False, "hasSimPlus": False}

    def renew(self, token: Optional[str]) -> Optional[dict]:
        """A new token for a still-valid one, else None (-> 401)."""
        with self._lock:
            rec = self._tokens.get(token or "")
            if rec is None or not rec.valid(time.time()) or rec.pair != token:
                return None
            if self.config.renew_revokes_old_token:
                self._revoke_locked(token)
            sessions = self._sessions.get(rec.user_id, [])
            if token in sessions:
                sessions.remove(token)
            return self._issue_locked(rec.user_id, rec.device_id)

    def device_approved(self, token: Optional[str]) -> bool:
        """Live (``SimConfig.live``): placeOrder checks the login's device id (Tradovate's FAQ
        "Understanding deviceId"); a missing or unapproved one is answered 401 "Access is denied"."""
        with self._lock:
            rec = self._tokens.get(token or "")
            device = rec.device_id if rec is not None else ""
        approved = self.config.approved_device_ids
        return bool(device) and (not approved or device in approved)

    def token_user(self, token: Optional[str], md_ok: bool = False) -> Optional[int]:
        """The user id of a valid token (md tokens only when ``md_ok``), else None."""
        with self._lock:
            rec = self._tokens.get(token or "")
            if rec is None or not rec.valid(time.time()) or (rec.pair != token and not md_ok):
                return None
            return rec.user_id

    def token_kind(self, token: Optional[str]) -> Optional[str]:
        """``"access"`` or ``"md"`` for a known token (valid or not), else None."""
        with self._lock:
            rec = self._tokens.get(token or "")
            if rec is None:
                return None
            return "access" if rec.pair == token else "md"

    def _revoke_locked(self, token: str) -> None:
        for rec in self._tokens.values():
            if rec.pair == token:
                rec.revoked = True

    def revoke_token(self, token: str) -> None:
        with self._lock:
            rec = self._tokens.get(token)
            if rec is not None:
                self._revoke_locked(rec.pair)

    def expire_all_tokens(self) -> int:
        now = time.time()
        with self._lock:
            for rec in self._tokens.values():
                rec.expires_at = min(rec.expires_at, now - 0.001)
            return len(self._tokens)

    # ---- accounts and reads -------------------------------------------------------------------
    def account_ids(self, user_id: int) -> List[int]:
        return list(self._user_accounts.get(user_id, ()))  # immutable after construction

    def _visible(self, user_id: int, etype: str, entity: dict) -> bool:
        if etype == "account":
            return entity["userId"] == user_id
        owner = self._owner.get(entity["id"])
        return owner is not None and self._accounts[owner]["userId"] == user_id

    def _store(self, etype: str) -> Dict[int, dict]:
        return self._accounts if etype == "account" else self._entities[etype]

    def list_entities(self, user_id: int, etype: str, masters: Optional[Iterable[int]] = None,
                      ids: Optional[Iterable[int]] = None) -> List[dict]:
        """Copies of the user's entities of ``etype``, optionally filtered by master or id."""
        master_set = set(masters) if masters is not None else None
        with self._lock:
            store = self._store(etype)
            if ids is not None:
                candidates = [store[i] for i in ids if i in store]
            else:
                candidates = list(store.values())
            field = MASTER_FIELD[etype]
            return [wire(e) for e in candidates
                    if self._visible(user_id, etype, e)
                    and (master_set is None or e.get(field) in master_set)]

    def find_account(self, user_id: int, name: str) -> Optional[dict]:
        acct_id = self._accounts_by_name.get((name or "").upper())
        if acct_id is None or self._accounts[acct_id]["userId"] != user_id:
            return None
        return dict(self._accounts[acct_id])

    def user_entity(self, user_id: int) -> dict:
        return dict(self._users[user_id])

    def price(self, contract_id: int) -> float:
        with self._lock:
            return self._prices[contract_id]

    def contract_by_id(self, contract_id: Any) -> Optional[Contract]:
        try:
            return self.catalog.contracts.get(int(contract_id))
        except (TypeError, ValueError):
            return None

    def sync_snapshot(self, user_id: int, account_ids: Set[int], entity_types: Set[str]) -> dict:
        """A SyncMessage-shaped snapshot restricted to ``account_ids`` and ``entity_types``.

        Every subscribed collection is present (an empty list when there is nothing), as the
        official example clients destructure them all; ``contracts``, ``contractMaturities`` and
        ``products`` describe the contracts the account entities refer to."""
        snap: Dict[str, Any] = {"users": [self.user_entity(user_id)], "contractGroups": []}
        for etype in entity_types:
            plural = PLURALS.get(etype)
            if plural is not None and plural not in snap:
                snap[plural] = []
        with self._lock:
            if "account" in entity_types:
                snap["accounts"] = [dict(self._accounts[a]) for a in sorted(account_ids)]
            contract_ids = set()
            for etype, store in self._entities.items():
                rows = [wire(e) for e in store.values() if self._owner.get(e["id"]) in account_ids]
                contract_ids.update(r["contractId"] for r in rows if "contractId" in r)
                if etype in entity_types:
                    snap[PLURALS[etype]] = rows
        contracts = [self.catalog.contracts[c] for c in sorted(contract_ids)]
        if "contract" in entity_types:
            snap["contracts"] = [c.entity() for c in contracts]
        if "contractMaturity" in entity_types:
            snap["contractMaturities"] = [c.maturity_entity(self.catalog.products[c.product.name][0])
                                          for c in contracts]
        if "product" in entity_types:
            names = sorted({c.product.name for c in contracts})
            snap["products"] = [self.catalog.product_entity(n) for n in names]
        return snap

    # ---- control / book of record ---------------------------------------------------------------
    def book(self) -> List[dict]:
        with self._lock:
            out = []
            for entry in self._book:
                row = dict(entry)
                order = self._entities["order"].get(row["orderId"]) if row["orderId"] else None
                if order is not None:
                    row["ordStatus"] = order["ordStatus"]
                out.append(row)
            return out

    def positions(self) -> Dict[Tuple[int, str], int]:
        with self._lock:
            return {(acct, self.catalog.contracts[cid].name): self._entities["position"][pid]["netPos"]
                    for (acct, cid), pid in self._positions.items()}

    def position_rows(self) -> List[dict]:
        with self._lock:
            rows = []
            for (acct, cid), pid in self._positions.items():
                pos = self._entities["position"][pid]
                rows.append({"accountId": acct, "accountSpec": self._accounts[acct]["name"],
                             "contractId": cid, "symbol": self.catalog.contracts[cid].name,
                             "netPos": pos["netPos"], "netPrice": pos["netPrice"]})
            return rows

    def reset(self) -> None:
        """Forget orders, positions and the book; users, accounts, contracts and tokens stay."""
        with self._lock:
            self._reset_trading()
        self.market.reset()
        refreeze()  # the new containers too, in a simulator's own process (daybook.py)
