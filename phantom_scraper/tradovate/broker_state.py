"""What the broker says one login holds, kept current from its socket's ``user/syncrequest`` stream.

``BrokerState`` is fed by the pooled socket of one login (``attach(client, ...)`` right after the
socket is authorized): the ``user/syncrequest`` snapshot loads every entity, then each ``props``
event (``{"entityType", "eventType": Created|Updated|Deleted, "entity": {...} or [...]}``,
docs/TRADOVATE.md "WebSocket") replaces or deletes one stored entity.  Every entity type is stored generically by id, so
``position``, ``order``, ``orderVersion``, ``fill``, ``orderStrategy`` and ``cashBalance`` (the
types subscribed, ``SYNC_ENTITY_TYPES``) are all available; the readers below answer the common
questions.

Freshness: the state is *fresh* only while the socket it was synced on is the current one and its
snapshot has been applied.  A close, a replacement socket (reconnect, renewed token) or a failed
sync makes it stale until the new socket's snapshot arrives; callers then read over REST instead
(``fresh`` is False).  Events from a socket that is no longer current are ignored.  Events that
arrive while the snapshot is in flight are buffered and applied after it.

Bounded memory (tradovate/broker_pruning.py): a finished order (``DONE_STATES``) stays while
something may still read it, then ``prune_finished`` (called off the hot path by the server's
housekeeping) drops it with its versions, fills and strategy links: only after ``keep_s`` since it
finished, after the position event that follows its fill, when no working order of its account and
contract is its OCO partner or bracket child, and when the caller's ``may_drop`` (the fills
journaled) agrees.  A resync's snapshot, which carries the whole day, does not bring such orders
back: it is read without the finished orders dropped before nor those older than ``keep_s``
(tradovate/snapshot.py; their fills still reach the journal's fill ledger once, through
``take_snapshot_fills``).  What the readers answered for a dropped order stays true:
``order_status`` and ``order_settled`` give its final status and True (a compact record of the last
``FINISHED_KEPT`` dropped orders); ``entity``/``entities`` no longer list it (the history reads the
journal's fills).

Threads: events arrive on the socket's loop thread, readers run on order threads.  ``_lock`` guards
the dicts only; listeners are called after it is released, and ``wait_for`` waits on a Condition
(which releases the lock while waiting).  Nothing here does network I/O except ``attach``, which
sends the one syncrequest from the caller's (connect) thread, holding no lock.
"""
from __future__ import annotations

import copy
import itertools
import logging
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from phantom_scraper.errors import TradovateError
from phantom_scraper.tradovate.broker_pruning import FinishedOrders, new_finished_record
# The one table of order states, used everywhere an order's state matters (re-exported from here)
from phantom_scraper.tradovate.order_states import (  # noqa: F401
    CANCELLABLE_STATES, DONE_STATES, MODIFIABLE_STATES, PENDING_STATES, RESTING_STATES, WORKING_STATES)
from phantom_scraper.tradovate.snapshot import OF_ORDER, read_snapshot

logger = logging.getLogger(__name__)

# Requested explicitly: Tradovate's Partner docs say an omitted entityTypes now means "nothing",
# while the retail examples get everything; naming them works under both readings.  Only what is
# read here or by a listener: a market order's command, commandReport and two executionReports
# are a third of its events, and nothing reads them (the order's own status and its fill carry
# what they say), so they are not subscribed -- less for the broker to send and for the socket
# thread to parse on every order.
SYNC_ENTITY_TYPES = ("user", "account", "position", "order", "orderVersion", "fill", "orderStrategy",
                     "orderStrategyLink", "cashBalance")


def sync_body(account_ids: Iterable[int], user_id: Optional[int]) -> Dict[str, Any]:
    """The ``user/syncrequest`` body, per Tradovate's Partner docs ("user/syncrequest"):

    * ``accounts`` (the login's account ids) with ``entityTypes`` -- never ``users`` together with
      ``entityTypes`` (the docs say not to combine them);
    * ``splitResponses: false``, sent explicitly (the docs call the field mandatory; ``true`` is for
      B2B vendors and splits the snapshot into several answers, which this client does not read --
      one login's accounts fit one answer, ``Settings.ws_max_message_bytes`` allows 64 MiB);
    * without any account id (nothing to trade yet) only ``users``, the official retail examples'
      form, which subscribes to everything.
    """
    accounts = sorted({int(a) for a in account_ids})
    if accounts:
        return {"accounts": accounts, "entityTypes": list(SYNC_ENTITY_TYPES), "splitResponses": False}
    body: Dict[str, Any] = {"splitResponses": False}
    if user_id is not None:
        body["users"] = [int(user_id)]
    return body



Listener = Callable[[str, str, Optional[dict]], None]

_BY_ACCOUNT = ("position", "cashBalance")  # entity types indexed by their accountId


class BrokerState(FinishedOrders):
    """One login's positions, orders, fills, cash balances... as last reported by its socket.

    Listeners ``fn(entity_type, event_type, entity)`` run on the socket thread after each change
    (``("sync", "Loaded", None)`` after a snapshot, ``("sync", "Stale", None)`` when it goes stale);
    they must be quick, must not call the socket, and must not change ``entity`` (it is the stored
    row itself: no copy per event).
    """

    def __init__(self, name: str = "broker", keep_s: Optional[float] = None):
        self.name = name
        # a snapshot leaves out finished orders older than this (tradovate/snapshot.py); None: only
        # those dropped before
        self.keep_s = keep_s
        self._generation = itertools.count(1)
        # Guards every attribute below; dict bookkeeping only (no I/O, no listener calls under it).
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified after every applied change
        self._entities: Dict[str, Dict[int, dict]] = {}
        # Indexes kept with _entities (readers on the order path must not scan a day's history):
        self._live: Dict[tuple, set] = {}  # (account, contract) -> ids of orders in WORKING_STATES
        self._latest_version: Dict[int, dict] = {}  # order id -> its newest orderVersion
        # position / cashBalance: account id -> {entity id: entity} (a 50-account fan-out reads
        # each account's own, not every account's, 50 times)
        self._by_account: Dict[str, Dict[Any, Dict[int, dict]]] = {t: {} for t in _BY_ACCOUNT}
        self._account_of: Dict[tuple, Any] = {}  # (entity type, id) -> the account it is filed under
        self._current_gen: Optional[int] = None  # generation of the socket feeding us
        self._synced = False  # the current generation's snapshot has been applied
        self._buffer: List[dict] = []  # events of the current generation received before its snapshot
        self._listeners: List[tuple] = []  # (listener, entity types wanted or None)
        # (account, contract) -> ids of orders whose fill arrived but no position event since
        self._unposted_fills: Dict[tuple, set] = {}
        self._fills_by_order: Dict[Any, Dict[int, dict]] = {}  # order id -> {fill id: fill}
        self._max_fill_id = 0
        # order id -> ids of the orders it made: OSO/strategy legs (parentId), and an order strategy's
        # orders (orderStrategyLink) under ("strategy", its id)
        self._made_by: Dict[Any, tuple] = {}  # maker -> the order ids it made
        # Pruning (see the module docstring): order id -> monotonic time it was first seen finished;
        # order id -> {(entity type, id)} of its versions, fills, links; dropped order id -> final status
        self._done_at: Dict[int, float] = {}
        self._of_order: Dict[Any, set] = {}
        # dropped order id -> final status and fills (filled_since still counts them), compact
        self._finished = new_finished_record()
        self.pruned_orders = 0
        self.left_out_at_sync = 0  # finished orders a snapshot brought back and the state did not keep
        self._old_fills: List[tuple] = []  # (fill, account id) of orders the last snapshot left out for age
        self.synced_at: Optional[float] = None
        self.events_applied = 0
        self.last_error: Optional[str] = None

    # ------------------------------------------------------------------ feeding
    def attach(self, client: Any, *, account_ids: Iterable[int] = (), user_id: Optional[int] = None,
               timeout_s: float = 10.0) -> bool:
        """Make ``client`` (an authorized ``TradovateWebSocket``) the feed and sync on it.

        Blocks for the one ``user/syncrequest`` (bounded by ``timeout_s``); call it from a
        connect thread, never under a lock.  Returns whether the state is fresh afterwards.
        """
        gen = self.begin(client)
        body = sync_body(account_ids, user_id)
        try:
            snapshot = client.request("user/syncrequest", body, timeout=timeout_s)
        except TradovateError as exc:
            self._stale(gen, f"syncrequest failed: {exc}")
            logger.warning("%s: user/syncrequest failed (%s); positions are read over REST until a resync",
                           self.name, exc)
            return False
        return self.load_snapshot(gen, snapshot)

    def begin(self, client: Any) -> int:
        """Start a new generation fed by ``client``; returns its number.  No I/O."""
        gen = next(self._generation)
        with self._lock:
            was_synced = self._synced
            self._current_gen, self._synced, self._buffer = gen, False, []
        add = getattr(client, "add_listener", None)
        if add is not None:
            add(lambda msg, _gen=gen: self.on_message(_gen, msg))
        add_close = getattr(client, "add_close_listener", None)
        if add_close is not None:
            add_close(lambda _ws, _gen=gen: self._stale(_gen, "socket closed"))
        if was_synced:
            self._notify("sync", "Stale", None)
        return gen

    def load_snapshot(self, gen: int, snapshot: Any) -> bool:
        """Apply a SyncMessage snapshot for generation ``gen``, then the events buffered behind it."""
        if not isinstance(snapshot, dict):
            self._stale(gen, f"unexpected snapshot {type(snapshot).__name__}")
            return False
        with self._lock:
            gone = self._finished.frozen()
        parsed = read_snapshot(snapshot, done_states=DONE_STATES, working_states=WORKING_STATES, gone=gone,
                               keep_s=self.keep_s)
        fresh = parsed.entities
        with self._lock:
            if gen != self._current_gen:
                return False  # a newer socket took over while this snapshot was in flight
            self._entities = fresh
            self._reindex_locked()
            self._left_out_locked(parsed)
            self._unposted_fills = {}
            buffered, self._buffer = self._buffer, []
            for msg in buffered:
                self._apply_locked(msg)
            self._synced = True
            self.synced_at = time.time()
            self.last_error = None
            self._changed.notify_all()
        logger.info("%s: sync snapshot loaded (%d positions, %d orders kept, %d finished left out, %d buffered "
                    "events)", self.name, len(fresh.get("position", {})), len(fresh.get("order", {})),
                    len(parsed.finished), len(buffered))
        self._notify("sync", "Loaded", None)
        return True

    def on_message(self, gen: int, msg: dict) -> None:
        """Socket event listener (socket thread): ``props`` events change the state."""
        if not isinstance(msg, dict) or msg.get("e") != "props" or not isinstance(msg.get("d"), dict):
            return
        d = msg["d"]
        with self._lock:
            if gen != self._current_gen:
                return  # from a socket that is no longer ours
            if not self._synced:
                self._buffer.append(d)
                return
            changed = self._apply_locked(d)
            self._changed.notify_all()
        for etype, event_type, entity in changed:
            self._notify(etype, event_type, entity)

    def apply_event(self, d: dict) -> None:
        """Apply one ``props`` payload directly (tests, REST-fed callers; copied: the caller keeps its own)."""
        d = copy.deepcopy(d)
        with self._lock:
            changed = self._apply_locked(d)
            self._changed.notify_all()
        for etype, event_type, entity in changed:
            self._notify(etype, event_type, entity)

    def mark_stale(self, reason: str = "marked stale") -> None:
        with self._lock:
            gen = self._current_gen
        if gen is not None:
            self._stale(gen, reason)

    def _stale(self, gen: int, reason: str) -> None:
        with self._lock:
            if gen != self._current_gen:
                return
            was_synced = self._synced
            self._synced, self._current_gen, self._buffer = False, None, []
            self.last_error = reason
            self._changed.notify_all()
        if was_synced:
            logger.info("%s: broker state stale (%s)", self.name, reason)
            self._notify("sync", "Stale", None)

    def _apply_locked(self, d: dict) -> List[tuple]:
        etype, event_type, entity = d.get("entityType"), d.get("eventType"), d.get("entity")
        if not isinstance(etype, str):
            return []
        rows = entity if isinstance(entity, list) else [entity]
        store = self._entities.setdefault(etype, {})
        changed = []
        for row in rows:
            if not isinstance(row, dict) or row.get("id") is None:
                continue
            if event_type == "Deleted":
                store.pop(row["id"], None)
            else:  # (the decoded event is ours alone: stored as it is, never changed in place)
                store[row["id"]] = row
            self._index_locked(etype, store.get(row["id"]), row)
            if etype == "fill":
                self._index_fill_locked(store.get(row["id"]), row)
            elif etype in ("order", "orderStrategyLink") and event_type != "Deleted":
                self._index_made_locked(etype, row)
            if etype == "fill" and event_type == "Created":
                order = self._entities.get("order", {}).get(row.get("orderId"))
                if order is not None:
                    key = (order.get("accountId"), order.get("contractId"))
                    self._unposted_fills.setdefault(key, set()).add(order["id"])
            elif etype == "position":
                self._unposted_fills.pop((row.get("accountId"), row.get("contractId")), None)
            changed.append((etype, event_type, row))
        self.events_applied += len(changed)
        return changed

    def _index_fill_locked(self, stored: Optional[dict], row: dict) -> None:
        fills = self._fills_by_order.setdefault(row.get("orderId"), {})
        if stored is None:
            fills.pop(row["id"], None)
        else:
            fills[row["id"]] = stored
            if isinstance(row["id"], int) and row["id"] > self._max_fill_id:
                self._max_fill_id = row["id"]

    def _index_made_locked(self, etype: str, row: dict) -> None:
        if etype == "order" and row.get("parentId") is not None:
            self._add_made_locked(row["parentId"], row["id"])
        elif etype == "orderStrategyLink" and row.get("orderStrategyId") is not None and row.get("orderId") is not None:
            self._add_made_locked(("strategy", row["orderStrategyId"]), row["orderId"])

    def _reindex_locked(self) -> None:
        self._fills_by_order, self._max_fill_id, self._made_by = {}, 0, {}
        for row in self._entities.get("fill", {}).values():
            self._index_fill_locked(row, row)
        for etype in ("order", "orderStrategyLink"):
            for row in self._entities.get(etype, {}).values():
                self._index_made_locked(etype, row)
        self._live, self._latest_version = {}, {}
        self._by_account, self._account_of = {t: {} for t in _BY_ACCOUNT}, {}
        self._of_order = {}
        done_at, self._done_at = self._done_at, {}
        for etype in OF_ORDER[1:]:  # (orderVersion: below)
            for row in self._entities.get(etype, {}).values():
                self._index_locked(etype, row, row)
        for etype in _BY_ACCOUNT:
            for row in self._entities.get(etype, {}).values():
                self._index_locked(etype, row, row)
        for version in self._entities.get("orderVersion", {}).values():
            self._index_locked("orderVersion", version, version)
        for order in self._entities.get("order", {}).values():
            self._index_locked("order", order, order)
        for oid in self._done_at:  # a resync does not restart an order's clock
            if oid in done_at:
                self._done_at[oid] = done_at[oid]

    def _index_locked(self, etype: str, stored: Optional[dict], row: dict) -> None:
        """Keep the indexes in step with one stored entity (``stored`` None: it was deleted)."""
        if etype == "order":
            key = (row.get("accountId"), row.get("contractId"))
            if stored is not None:
                key = (stored.get("accountId"), stored.get("contractId"))
            live = self._live.setdefault(key, set())
            if stored is not None and stored.get("ordStatus") in WORKING_STATES:
                live.add(row["id"])
            else:
                for ids in ([live] if stored is not None else self._live.values()):
                    ids.discard(row["id"])
            if stored is not None and stored.get("ordStatus") in DONE_STATES:
                self._done_at.setdefault(row["id"], time.monotonic())
            else:
                self._done_at.pop(row["id"], None)
        elif etype in OF_ORDER:
            owner = (stored or row).get("orderId")
            if owner is not None:
                members = self._of_order.setdefault(owner, set())
                if stored is not None:
                    members.add((etype, row["id"]))
                else:
                    members.discard((etype, row["id"]))
            if etype != "orderVersion":
                return
        if etype == "orderVersion" and stored is not None and stored.get("orderId") is not None:
            current = self._latest_version.get(stored["orderId"])
            if current is None or stored["id"] >= current["id"]:
                self._latest_version[stored["orderId"]] = stored
        elif etype == "orderVersion" and stored is None:
            for oid, version in list(self._latest_version.items()):
                if version["id"] == row["id"]:
                    del self._latest_version[oid]
        elif etype in _BY_ACCOUNT:
            key = (etype, row["id"])
            if key in self._account_of:  # (where it was filed: moved or deleted)
                self._by_account[etype].get(self._account_of.pop(key), {}).pop(row["id"], None)
            if stored is not None:
                account = stored.get("accountId")
                self._by_account[etype].setdefault(account, {})[row["id"]] = stored
                self._account_of[key] = account

    # ------------------------------------------------------------------ listeners
    def add_listener(self, fn: Listener, entity_types: Optional[Iterable[str]] = None) -> None:
        """``entity_types``: call ``fn`` only for those (``"sync"`` for the snapshot/stale
        notices); None: for everything.  A fan-out brings ~9 events per order: a listener that
        wants one kind is not called for the other eight."""
        wanted = None if entity_types is None else frozenset(entity_types)
        with self._lock:  # copy-on-write: _notify iterates a snapshot
            self._listeners = self._listeners + [(fn, wanted)]

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            self._listeners = [(f, w) for f, w in self._listeners if f is not fn]

    def _notify(self, etype: str, event_type: str, entity: Optional[dict]) -> None:
        for fn, wanted in self._listeners:
            if wanted is not None and etype not in wanted:
                continue
            try:
                fn(etype, event_type, entity)
            except Exception:  # noqa: BLE001 - a listener must not break the feed
                logger.exception("%s: broker-state listener failed", self.name)

    # ------------------------------------------------------------------ reading
    @property
    def fresh(self) -> bool:
        """The snapshot of the current socket has been applied and the socket is still open."""
        with self._lock:
            return self._synced

    def entities(self, entity_type: str) -> List[dict]:
        """Copies of every stored entity of ``entity_type``."""
        with self._lock:
            return [dict(e) for e in self._entities.get(entity_type, {}).values()]

    def fill_mark(self) -> int:
        """The highest fill id held (fills after it are newer)."""
        with self._lock:
            return self._max_fill_id

    def filled_since(self, order_ids: Iterable[int], after_id: int, spent: Optional[List[Any]] = None) -> int:
        """Signed quantity (Buy +, Sell -) of the fills with an id above ``after_id`` of ``order_ids``
        and of the orders they made (bracket legs by ``parentId``; an order strategy's orders when
        ``("strategy", its id)`` is given).

        ``spent``: a list that receives the ids of ``order_ids`` that can never count again -- the
        order and all it made were dropped (final and settled, their fills all here: see
        broker_pruning) and none has a fill above ``after_id`` -- so that a caller whose ``after_id``
        only grows can stop asking about them (the drift monitor's expectation)."""
        total = 0
        with self._lock:
            orders = self._entities.get("order", {})
            counted = set()  # (an order reached from two of order_ids is summed once)
            for root in order_ids:
                quiet, todo, seen = True, [root], set()
                while todo:
                    oid = todo.pop()
                    if oid in seen:
                        continue
                    seen.add(oid)
                    todo.extend(self._made_by.get(oid, ()))
                    held = oid in orders
                    late = self._signed_fills_after(oid, held, after_id)
                    # still held (its last fills may be on their way), not known yet, or a fill counts
                    quiet = quiet and not held and oid in self._finished and not late
                    if oid not in counted:
                        counted.add(oid)
                        total += sum(late)
                if quiet and spent is not None:
                    spent.append(root)
        return total

    def _signed_fills_after(self, order_id: Any, held: bool, after_id: int) -> List[int]:
        """The signed quantities of an order's fills with an id above ``after_id`` (held fills, and
        those a dropped order left in the record).  Caller holds ``_lock``."""
        fills = self._fills_by_order.get(order_id, {})
        out = [(int(f.get("qty") or 0) if f.get("action") == "Buy" else -int(f.get("qty") or 0))
               for f in fills.values() if int(f.get("id") or 0) > after_id]
        gone = () if held else self._finished.fills(order_id)  # its order was pruned
        out.extend(signed for fill_id, signed in zip(gone[::2], gone[1::2])
                   if fill_id > after_id and fill_id not in fills)
        return out

    def entity(self, entity_type: str, entity_id: int) -> Optional[dict]:
        with self._lock:
            found = self._entities.get(entity_type, {}).get(entity_id)
            return dict(found) if found is not None else None

    def positions(self, account_id: Optional[int] = None) -> List[dict]:
        """Position entities (of one account, or all), copies."""
        with self._lock:
            if account_id is None:
                return [dict(p) for p in self._entities.get("position", {}).values()]
            return [dict(p) for p in self._by_account["position"].get(account_id, {}).values()]

    def net_pos(self, account_id: int, contract_id: int) -> int:
        """The net position (0 when none is known).  Check ``fresh`` before trusting it."""
        with self._lock:
            return sum(int(p.get("netPos") or 0) for p in self._by_account["position"].get(account_id, {}).values()
                       if p.get("contractId") == contract_id)

    def order_status(self, order_id: int) -> Optional[str]:
        with self._lock:
            order = self._entities.get("order", {}).get(order_id)
            return order.get("ordStatus") if order is not None else self._finished.status(order_id)

    def finished_at(self, order_ids: Iterable[int]) -> Optional[float]:
        """When the last of ``order_ids`` was first seen final (``time.monotonic()``, the event
        applied); None unless every one is final and still held."""
        with self._lock:
            times = [self._done_at.get(i) for i in order_ids if i is not None]
        return max(times) if times and None not in times else None

    def order_settled(self, order_id: int) -> bool:
        """The order rests (Working/Suspended) or is final, and if it filled, the position
        event that follows its fill has arrived.  False while unknown or pending."""
        with self._lock:
            order = self._entities.get("order", {}).get(order_id)
            if order is None:
                return order_id in self._finished  # dropped only once settled
            status = order.get("ordStatus")
            if status in RESTING_STATES or (status in DONE_STATES and status != "Filled"):
                return True
            if status != "Filled":
                return False
            pending = self._unposted_fills.get((order.get("accountId"), order.get("contractId")), ())
            return order_id not in pending

    def working_orders(self, account_id: int, contract_id: int) -> List[dict]:
        """Live orders of the account in the contract, each with its latest version's
        ``orderQty``/``orderType``/``price``/``stopPrice`` merged in (copies)."""
        with self._lock:
            orders = self._entities.get("order", {})
            out = []
            for oid in self._live.get((account_id, contract_id), ()):
                o = orders.get(oid)
                if o is not None and o.get("ordStatus") in WORKING_STATES:
                    row = dict(o)
                    version = self._latest_version.get(oid)
                    if version is not None:
                        for key in ("orderQty", "orderType", "price", "stopPrice"):
                            if key in version:
                                row[key] = version[key]
                    out.append(row)
            return sorted(out, key=lambda r: r["id"])

    def position_before_fill(self, order_id: int) -> Optional[Tuple[int, Optional[float]]]:
        """(net position, average price) the order's fill met, while the position that fill moves
        has not arrived yet (the broker sends the fill first); None once it has, or if unknown."""
        with self._lock:
            order = self._entities.get("order", {}).get(order_id)
            if order is None:
                return None
            key = (order.get("accountId"), order.get("contractId"))
            if order_id not in self._unposted_fills.get(key, ()):
                return None
            for p in self._by_account["position"].get(key[0], {}).values():
                if p.get("contractId") == key[1]:
                    price = p.get("netPrice")
                    return int(p.get("netPos") or 0), (float(price) if price is not None else None)
            return 0, None

    def order_version(self, order_id: int) -> Optional[dict]:
        """The order's newest ``orderVersion`` (``orderType``, ``price``, ...), a copy; None if unknown."""
        with self._lock:
            found = self._latest_version.get(order_id)
            return dict(found) if found is not None else None

    def cash_balance(self, account_id: int) -> Optional[dict]:
        """The account's ``cashBalance`` entity (``amount``, ``realizedPnL``, ...), None if unknown."""
        with self._lock:
            rows = list(self._by_account["cashBalance"].get(account_id, {}).values())
            return dict(max(rows, key=lambda c: c["id"])) if rows else None

    def wait_for(self, predicate: Callable[["BrokerState"], bool], timeout_s: float) -> bool:
        """Wait (lock released while waiting) until ``predicate(self)`` is true after a change,
        the state goes stale, or ``timeout_s`` passes.  Returns the predicate's last value.

        ``predicate`` runs without the lock held and may use the readers above."""
        deadline = time.monotonic() + timeout_s
        while True:
            if predicate(self):
                return True
            with self._lock:
                if not self._synced:
                    return False
                seen = self.events_applied
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait_for(lambda: self.events_applied != seen or not self._synced,
                                       timeout=remaining)

    def wait_fresh(self, timeout_s: float) -> bool:
        """Wait until a snapshot has been applied on the current socket (or ``timeout_s``)."""
        with self._lock:
            return self._changed.wait_for(lambda: self._synced, timeout=timeout_s)

    def sizes(self) -> Dict[str, int]:
        """How many entities of each type are held (the soak benchmark and /status watch them)."""
        with self._lock:
            return {etype: len(rows) for etype, rows in self._entities.items() if rows}

    def status(self) -> dict:
        with self._lock:
            return {"fresh": self._synced, "synced_at": self.synced_at, "events_applied": self.events_applied,
                    "positions": sum(1 for p in self._entities.get("position", {}).values() if p.get("netPos")),
                    "orders_held": len(self._entities.get("order", {})), "orders_pruned": self.pruned_orders,
                    "orders_left_out_at_sync": self.left_out_at_sync,
                    "last_error": self.last_error}
