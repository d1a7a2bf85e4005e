"""Settling order intents whose outcome is ``unknown``: search by id, adopt, never resend.

Two entry points, both read-only at the broker (``command/list``) and both one list per login:

* :func:`reconcile_pending` (start-up, before signals are accepted): intents left ``sending`` or
  ``unknown`` by a process that is gone (see the journal's owner lease) become ``unknown``, then
  ``reconciled`` when the broker has their order.  Not found: they stay ``unknown``.
* :class:`Settler` (every keep-alive cycle): intents a gone owner left ``sending`` become
  ``unknown``; every ``unknown`` intent of this process or of a gone owner, and every recent
  ``not_placed`` one, is looked up; found -> ``reconciled`` (WARNING);
  still nothing after ``unknown_settle_period_s`` -> ``not_placed`` (WARNING).  A login whose
  list answers 429 or a penalty is skipped for 1, 2, 4 ... cycles (capped), so settlement never
  competes with orders for the login's rate budget.

This process's own ``sending`` intents are in flight and left alone -- unless one is still
``sending`` ``stale_sending_s`` after it was sent and its final state is not waiting in the final
writer: its outcome was written and then lost (a PostgreSQL crash loses asynchronously committed
final states) or never written.  It becomes ``unknown`` and is settled like the others, so an
acked order does not stay ``sending`` while the process lives.

Each list is also checked for a second order of one intent (``order_search.check_found``:
``DUPLICATE`` at ERROR).  Nothing here ever sends an order.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Callable, Dict, List, Optional, Set, Tuple

from phantom_scraper import events
from phantom_scraper.execution import executors
from phantom_scraper.errors import RateLimitedError, TradovateError
from phantom_scraper.journal.records import _intent_dict
from phantom_scraper.tradovate.search import check_found, orders_by_intent, strategies_by_intent

logger = logging.getLogger(__name__)

IntegrationFor = Callable[[int], object]
MAX_BACKOFF_CYCLES = 16


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _by_login(intents: List[dict], integration_for_account: IntegrationFor) -> List[Tuple[object, List[dict]]]:
    """Intents grouped by the login (integration) that can see them, in first-seen order."""
    groups: Dict[int, Tuple[object, List[dict]]] = {}
    for intent in intents:
        ti = integration_for_account(intent["account_id"])
        if ti is None:
            logger.debug("settle %s later: account %s has no login", intent["cl_ord_id"], intent["account_id"])
            continue
        groups.setdefault(id(ti), (ti, []))[1].append(intent)
    return list(groups.values())


def _search(journal, ti, intents: List[dict]) -> Dict[str, List[int]]:
    """One ``command/list`` for all of ``intents`` -> ``{clOrdId: order ids}``; raises
    ``TradovateError`` when the book cannot be read.  Checks for duplicates on the way."""
    found = orders_by_intent(ti.list_commands())
    if any(i.get("kind") == "startorderstrategy" for i in intents):  # found by uuid, not by command
        found.update(strategies_by_intent(ti.list_order_strategies()))
    try:
        known = journal.intents_by_cl_ord_id(found)
    except Exception as exc:  # noqa: BLE001 - the duplicate check must not stop settling
        logger.warning("DUPLICATE check skipped: %s", _describe(exc))
        known = {}
    acked = {cl: i["broker_order_id"] for cl, i in known.items() if i["state"] in ("acked", "reconciled")}
    check_found(found, acked)
    result = {i["cl_ord_id"]: found.get(i["cl_ord_id"], []) for i in intents}
    if not getattr(getattr(ti, "settings", None), "custom_tag50", False):  # liquidations carry no id: found by what they are
        claimed = {oid for ids in found.values() for oid in ids}
        for intent in intents:
            if intent.get("kind") == "liquidateposition" and not result[intent["cl_ord_id"]]:
                result[intent["cl_ord_id"]] = _liquidation(ti, intent, claimed)
    return result


def _liquidation(ti, intent: dict, claimed: set) -> List[int]:
    """The one order that can be this liquidation (account, contract, created after the intent),
    or [] (none, or several: ambiguous, logged, never adopted)."""
    try:
        body = json.loads(intent.get("request_json") or "{}")
    except ValueError:
        return []
    ids = ti.find_liquidation(body.get("accountId"), body.get("contractId"), float(intent["created_at"]), claimed)
    if len(ids) > 1:
        logger.error("Liquidation %s: %d candidate orders %s on its account and contract; none adopted",
                     intent["cl_ord_id"], len(ids), ids)
        return []
    return ids


def find_order_id(ti, cl_ord_id: str, kind: str = "placeorder") -> Optional[int]:
    """The broker order id of the command carrying ``cl_ord_id`` (``customTag50`` for a
    liquidation with the opt-in), or None.  Raises ``TradovateError`` when the book cannot be read."""
    if kind == "startorderstrategy":
        found = strategies_by_intent(ti.list_order_strategies(), [cl_ord_id])
    else:  # both id fields are searched
        found = orders_by_intent(ti.list_commands(), [cl_ord_id])
    check_found(found)
    ids = found.get(cl_ord_id) or []
    return ids[0] if ids else None


def reconcile_pending(journal, integration_for_account: IntegrationFor) -> List[dict]:
    """Start-up: settle intents a gone process left ``sending``/``unknown`` (no resend).

    Returns one dict per intent: ``cl_ord_id``, ``order_id`` and ``state`` (``reconciled`` when
    found, else ``unknown``).  Intents of another live process are not touched; this process's
    own ``unknown`` intents are included (at start-up it has none in flight).
    """
    orphaned = {p["cl_ord_id"] for p in journal.pending_intents(orphaned_only=True)}
    pending = [i for i in journal.pending_intents() if i["cl_ord_id"] in orphaned
               or (i["state"] == "unknown" and i.get("owner") == journal.owner_id)]
    settled: List[dict] = []
    for intent in pending:
        if intent["state"] == "sending":  # left by a gone process: no longer in flight anywhere
            journal.set_intent_state(intent["cl_ord_id"], "unknown", error="in flight at restart")
            intent["state"] = "unknown"
    results = {i["cl_ord_id"]: None for i in pending}
    for ti, group in _by_login(pending, integration_for_account):
        try:
            found = _search(journal, ti, group)
        except TradovateError as exc:
            logger.error("Cannot reconcile %d intent(s) yet: %s (settled in the background)", len(group),
                         _describe(exc))
            continue
        for intent in group:
            ids = found.get(intent["cl_ord_id"])
            if ids:
                journal.set_intent_state(intent["cl_ord_id"], "reconciled", broker_order_id=ids[0], reconciled=True)
                logger.warning("Reconciled %s after restart: found at the broker as order %s",
                               intent["cl_ord_id"], ids[0])
                results[intent["cl_ord_id"]] = ids[0]
            else:
                logger.error("Order %s outcome UNKNOWN after restart: not at the broker yet; not resent, "
                             "searched in the background", intent["cl_ord_id"])
    for intent in pending:
        order_id = results[intent["cl_ord_id"]]
        settled.append({"cl_ord_id": intent["cl_ord_id"], "order_id": order_id,
                        "state": "reconciled" if order_id is not None else "unknown"})
        events.emit("settled", **settled[-1])
    return settled


class Settler:
    """Background settlement, one :meth:`run_once` per keep-alive cycle (see the module doc)."""

    def __init__(self, journal, integration_for_account: IntegrationFor, settle_period_s: float = 300.0,
                 clock: Callable[[], float] = time.time, *, stale_sending_s: Optional[float] = None,
                 held: Callable[[], Set[str]] = set, book=None):
        self.journal = journal
        # the lanes' expectation book whose orders in doubt a settlement resolves (the service's;
        # without one, the bare functions' shared set's)
        self._book = book if book is not None else executors.shared().book
        self.integration_for_account = integration_for_account
        self.settle_period_s = float(settle_period_s)
        self._clock = clock
        self.stale_sending_s = stale_sending_s  # None: this process's own 'sending' intents are never touched
        self._held = held  # clOrdIds whose final state waits in the final writer
        # Only the keep-alive thread calls run_once: no lock needed for these.
        self._cycle = 0
        self._skip_until: Dict[int, int] = {}  # id(integration) -> first cycle to try again
        self._failures: Dict[int, int] = {}

    def run_once(self) -> List[dict]:
        """One pass; returns the intents it changed (``cl_ord_id``, ``state``, ``order_id``)."""
        self._cycle += 1
        for intent in self.journal.pending_intents(orphaned_only=True):
            if intent["state"] == "sending":  # its process went away after start-up (lease expired)
                self.journal.set_intent_state(intent["cl_ord_id"], "unknown", error="owner gone while in flight")
        self._own_stale_sending()
        intents = self.journal.unsettled_intents()
        changed: List[dict] = []
        for ti, group in _by_login(intents, self.integration_for_account):
            key = id(ti)
            if self._skip_until.get(key, 0) > self._cycle:
                continue
            try:
                found = _search(self.journal, ti, group)
            except RateLimitedError as exc:  # 429 / penalty: back off, orders come first
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                self._skip_until[key] = self._cycle + min(MAX_BACKOFF_CYCLES, 2 ** (failures - 1)) + 1
                logger.info("Settlement backing off for %d cycle(s): %s", self._skip_until[key] - self._cycle - 1,
                            _describe(exc))
                continue
            except TradovateError as exc:
                logger.debug("Settlement deferred: %s", _describe(exc))
                continue
            self._failures.pop(key, None)
            now = self._clock()
            for intent in group:
                changed.extend(self._settle(intent, found.get(intent["cl_ord_id"]) or [], now))
        return changed

    def _own_stale_sending(self) -> None:
        if self.stale_sending_s is None:
            return
        # this process's intents still 'sending' whose last change is older than the limit
        stale = [_intent_dict(r) for r in self.journal.query(
            "SELECT * FROM order_intents WHERE state = 'sending' AND owner = ? AND updated_at < ? ORDER BY id",
            (self.journal.owner_id, self._clock() - self.stale_sending_s))]
        if not stale:
            return
        held = self._held()
        for intent in stale:
            cl = intent["cl_ord_id"]
            if cl in held:
                continue
            try:
                self.journal.set_intent_state(cl, "unknown", error="still 'sending' long after it was sent "
                                                                  "(its outcome was not journaled)")
            except ValueError:  # its outcome landed meanwhile
                continue
            logger.warning("Order %s was still 'sending' %.0f s after it was sent (its outcome was lost or never "
                           "journaled): now 'unknown', looked up by clOrdId (never resent)", cl, self.stale_sending_s)

    def _settle(self, intent: dict, ids: List[int], now: float) -> List[dict]:
        cl = intent["cl_ord_id"]
        if ids:
            self._book.resolved(cl, ids[0])
            self.journal.set_intent_state(cl, "reconciled", broker_order_id=ids[0], reconciled=True)
            logger.warning("Reconciled %s: found at the broker as order %s (was %s)", cl, ids[0], intent["state"])
            events.emit("settled", cl_ord_id=cl, order_id=ids[0], state="reconciled")
            return [{"cl_ord_id": cl, "state": "reconciled", "order_id": ids[0]}]
        if intent["state"] == "unknown" and now - float(intent["created_at"]) >= self.settle_period_s:
            self.journal.set_intent_state(cl, "not_placed",
                                          error=f"not at the broker {self.settle_period_s:.0f} s later; not placed")
            self._book.resolved(cl)
            logger.warning("Order %s settled as NOT PLACED: no order at the broker after %.0f s (never resent; "
                           "adopted if it still turns up)", cl, self.settle_period_s)
            events.emit("settled", cl_ord_id=cl, order_id=None, state="not_placed")
            return [{"cl_ord_id": cl, "state": "not_placed", "order_id": None}]
        return []


def settle_unknown(journal, integration_for_account: IntegrationFor, settle_period_s: float = 300.0) -> List[dict]:
    """One settlement pass (a fresh :class:`Settler`); returns the adopted intents as
    ``{"cl_ord_id", "order_id"}``.  Never rejects, never resends."""
    changed = Settler(journal, integration_for_account, settle_period_s).run_once()
    return [{"cl_ord_id": c["cl_ord_id"], "order_id": c["order_id"]} for c in changed if c["state"] == "reconciled"]


__all__ = ["Settler", "find_order_id", "reconcile_pending", "settle_unknown"]
