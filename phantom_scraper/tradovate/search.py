"""Finding order intents at the broker by their id, and the DUPLICATE alarm (no I/O here).

Every intent carries one id on every attempt: ``clOrdId`` (``uuid`` for an order strategy).
``order/liquidateposition`` has no ``clOrdId``; its intent id travels in ``customTag50`` only when
the login opted in (``TRADOVATE_CUSTOM_TAG50``: CME treats tag 50 as a registered operator id and
Tradovate answers "customTag50 is not enabled" to logins without it).  Without the tag a
liquidation is found by what it is (:func:`liquidations_since`): an order on the account and
contract, created after the request left, that no ``clOrdId`` claims.  The broker's
``command/list`` shows each command with its ``orderId`` and those fields, so one list answers
for every intent of a login at once.  Used by the router's bounded search after an ``unknown`` outcome, by start-up
reconciliation and by background settlement.

The alarm: a search that sees two broker orders for one intent id, or an order whose id belongs
to an intent already acked with another order id, means a second order exists for one intent.
That must never happen; :func:`alarm_duplicate` logs ``DUPLICATE`` at ERROR and keeps it for the
status page (:func:`recent_duplicates`).
"""
from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
from typing import Any, Deque, Dict, Iterable, List, Optional

from phantom_scraper import events

logger = logging.getLogger(__name__)

INTENT_FIELDS = ("clOrdId", "customTag50")


def key_field(kind_or_endpoint: str, custom_tag50: bool = False) -> Optional[str]:
    """The field carrying the intent id for an order kind (``placeorder``) or endpoint: ``uuid``
    for an order strategy (found in ``orderStrategy/list``, see :func:`strategies_by_intent`);
    for a liquidation ``customTag50`` when the login opted in, else None (no field carries it)."""
    name = kind_or_endpoint.strip("/").lower()
    if name.endswith("startorderstrategy"):
        return "uuid"
    if name.endswith("liquidateposition"):
        return "customTag50" if custom_tag50 else None
    return "clOrdId"


def _epoch(value: Any) -> Optional[float]:
    """An entity ``timestamp`` (ISO-8601, ``Z``) as epoch seconds, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def liquidations_since(orders: Optional[Iterable[Any]], commands: Optional[Iterable[Any]], account_id: int,
                       contract_id: int, since: float, exclude: Iterable[int] = ()) -> List[int]:
    """Order ids that may be the liquidation sent at ``since`` (epoch seconds, on the broker's
    clock, already widened by the caller's slack): orders of ``account_id`` in ``contract_id``
    created at or after ``since`` whose commands carry no ``clOrdId`` (every other order of this
    server carries one), that are not in ``exclude`` (orders already adopted by an intent) and
    that are no exit leg (``parentId``/``ocoId`` set: an OSO bracket or an OCO partner, created by
    the command of their entry; a liquidation's order stands alone).
    One id: that is the liquidation.  Several: ambiguous (a manual order at the same moment);
    the caller adopts none of them."""
    claimed = {c.get("orderId") for c in commands or () if isinstance(c, dict) and c.get("clOrdId")}
    claimed.update(exclude)
    found = set()
    for o in orders or ():
        if not isinstance(o, dict) or o.get("id") is None or o["id"] in claimed:
            continue
        if o.get("accountId") != account_id or o.get("contractId") != contract_id:
            continue
        if o.get("parentId") is not None or o.get("ocoId") is not None:
            continue  # an exit leg of an entry of ours, never a liquidation
        at = _epoch(o.get("timestamp"))
        if at is not None and at >= since:
            found.add(o["id"])
    return sorted(found)


def strategies_by_intent(strategies: Optional[Iterable[Any]], wanted: Optional[Iterable[str]] = None) -> Dict[str, List[int]]:
    """``{uuid: sorted distinct orderStrategy ids}`` from an ``orderStrategy/list`` answer (an order
    strategy's id stands for the order id of its intent)."""
    wanted_set = set(wanted) if wanted is not None else None
    found: Dict[str, set] = {}
    for st in strategies or ():
        if not isinstance(st, dict) or st.get("id") is None or not st.get("uuid"):
            continue
        if wanted_set is None or st["uuid"] in wanted_set:
            found.setdefault(str(st["uuid"]), set()).add(st["id"])
    return {k: sorted(v) for k, v in found.items()}


def orders_by_intent(commands: Optional[Iterable[Any]], wanted: Optional[Iterable[str]] = None) -> Dict[str, List[int]]:
    """``{intent id: sorted distinct broker order ids}`` from a ``command/list`` answer (both id
    fields); only the ids in ``wanted`` when given."""
    wanted_set = set(wanted) if wanted is not None else None
    found: Dict[str, set] = {}
    for c in commands or ():
        if not isinstance(c, dict) or c.get("orderId") is None:
            continue
        for name in INTENT_FIELDS:
            intent = c.get(name)
            if intent and (wanted_set is None or intent in wanted_set):
                found.setdefault(str(intent), set()).add(c["orderId"])
    return {k: sorted(v) for k, v in found.items()}


_DUPLICATES: Deque[dict] = collections.deque(maxlen=100)
_SEEN: set = set()
_LOCK = threading.Lock()  # serialises _DUPLICATES/_SEEN (bookkeeping only)


def alarm_duplicate(intent_id: str, order_ids: Iterable[int], why: str) -> bool:
    """Log ``DUPLICATE`` at ERROR (once per intent and set of orders) and keep it for the status
    page.  Returns True when this is a new alarm."""
    ids = sorted(set(order_ids))
    key = (intent_id, tuple(ids))
    with _LOCK:
        if key in _SEEN:
            return False
        _SEEN.add(key)
        _DUPLICATES.append({"intent_id": intent_id, "order_ids": ids, "why": why, "at": time.time()})
    logger.error("DUPLICATE: intent %s has broker orders %s (%s)", intent_id, ids, why)
    events.emit("duplicate", cl_ord_id=intent_id, order_ids=ids)
    return True


def check_found(found: Dict[str, List[int]], acked: Optional[Dict[str, Optional[int]]] = None) -> None:
    """Raise the alarm for every intent with two orders, or with an order other than the one it
    was acked with (``acked``: intent id -> journaled broker order id)."""
    for intent_id, ids in found.items():
        if len(ids) > 1:
            alarm_duplicate(intent_id, ids, "two broker orders carry one intent id")
            continue
        known = (acked or {}).get(intent_id)
        if known is not None and ids and ids[0] != known:
            alarm_duplicate(intent_id, [known, *ids], f"acked as order {known}, the broker also has {ids[0]}")


def recent_duplicates() -> List[dict]:
    with _LOCK:
        return list(_DUPLICATES)
