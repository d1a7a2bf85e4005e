"""Reading a ``user/syncrequest`` snapshot for ``BrokerState``, without what it would only prune again.

Tradovate's snapshot carries the whole trading day: every order with its versions, fills and
strategy links, also those finished hours ago.  After a resync (a renewed token, a dropped socket)
most of them were already dropped from the state once (journaled, settled, referred to by nothing
working); after a restart none were seen, but most finished long before.  Keeping them until the
next pruning pass made each resync raise the process's memory by a day's orders.  So
:func:`read_snapshot` leaves out, as it reads, a finished order (and everything of that order) when

* the state dropped it before (``gone``: its fills were journaled then), or
* it finished at least ``keep_s`` before the snapshot's newest activity (both times on the broker's
  clock: no local clock is compared), and ``keep_s`` is given;

and in both cases only when no working order of the snapshot refers to it (a bracket parent, an
OCO partner or group).  The fills of an order left out for its age are returned (``old_fills``)
so the journal's fill ledger still keeps each of them once; what ``filled_since`` and
``order_status`` need stays (``gone_fills``, ``finished``; not rebuilt for the orders the state
recorded before, ``recorded``).
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Container, Dict, List, Optional, Tuple

# snapshot collection name -> entityType (docs/TRADOVATE.md, "WebSocket")
SINGULAR = {
    "users": "user", "userProperties": "userProperty", "properties": "property", "accounts": "account",
    "accountRiskStatuses": "accountRiskStatus", "marginSnapshots": "marginSnapshot",
    "userAccountAutoLiqs": "userAccountAutoLiq", "cashBalances": "cashBalance", "currencies": "currency",
    "positions": "position", "fillPairs": "fillPair", "orders": "order", "contracts": "contract",
    "contractMaturities": "contractMaturity", "products": "product", "exchanges": "exchange",
    "spreadDefinitions": "spreadDefinition", "commands": "command", "commandReports": "commandReport",
    "executionReports": "executionReport", "orderVersions": "orderVersion", "fills": "fill",
    "fillFees": "fillFee", "orderStrategies": "orderStrategy", "orderStrategyLinks": "orderStrategyLink",
    "userPlugins": "userPlugin", "contractGroups": "contractGroup", "orderStrategyTypes": "orderStrategyType",
}
# entity types that belong to one order (its ``orderId``): they leave with it
OF_ORDER = ("orderVersion", "fill", "orderStrategyLink", "executionReport", "commandReport", "command")


@dataclass
class Snapshot:
    entities: Dict[str, Dict[Any, dict]] = field(default_factory=dict)  # what the state keeps
    finished: Dict[Any, str] = field(default_factory=dict)  # order id left out -> its final status
    recorded: set = field(default_factory=set)  # of those: the ones in ``gone`` (the state has their record)
    gone_fills: Dict[Any, Tuple[int, ...]] = field(default_factory=dict)  # of those: (fill id, signed qty, ...) flat
    old_fills: List[Tuple[dict, Any]] = field(default_factory=list)  # (fill, account id) left out for age
    made_by: List[Tuple[Any, Any]] = field(default_factory=list)  # (maker, order id) of orders left out
    max_fill_id: int = 0  # over every fill read, kept or not


def epoch(stamp: Any) -> Optional[float]:
    """A Tradovate timestamp (ISO 8601, ``Z``) as epoch seconds; None when absent or unparseable."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _rows(value: Any) -> List[dict]:
    rows = value if isinstance(value, list) else ([value] if isinstance(value, dict) else [])
    return [r for r in rows if isinstance(r, dict) and r.get("id") is not None]


def read_snapshot(snapshot: dict, *, done_states: Container[str], working_states: Container[str],
                  gone: Container[Any] = (), keep_s: Optional[float] = None) -> Snapshot:
    """The snapshot's entities by type and id (rows copied), finished orders left out as above."""
    by_type: Dict[str, List[dict]] = {}
    for plural, value in snapshot.items():
        by_type.setdefault(SINGULAR.get(plural, plural), []).extend(_rows(value))
    orders = by_type.get("order", [])
    fills = by_type.get("fill", [])
    out = Snapshot()
    out.max_fill_id = max((f["id"] for f in fills if isinstance(f["id"], int)), default=0)

    # what working orders refer to: their parents, OCO partners and groups (any account: conservative)
    working_refs, working_ocos = set(), set()
    for o in orders:
        if o.get("ordStatus") in working_states:
            working_refs.update(x for x in (o["id"], o.get("parentId"), o.get("ocoId")) if x is not None)
            if o.get("ocoId") is not None:
                working_ocos.add(o["ocoId"])

    newest, last_at = None, {}  # the snapshot's latest activity; per done order, its latest time
    if keep_s is not None:
        done_ids = {o["id"] for o in orders if o.get("ordStatus") in done_states}
        for rows, key in ((orders, "id"), (fills, "orderId")):
            for row in rows:
                at = epoch(row.get("timestamp"))
                if at is None:
                    continue
                newest = at if newest is None or at > newest else newest
                oid = row.get(key)
                if oid in done_ids:
                    last_at[oid] = max(at, last_at.get(oid, at))
    accounts: Dict[Any, Any] = {}
    for o in orders:
        oid = o["id"]
        if o.get("ordStatus") not in done_states or oid in working_refs or o.get("ocoId") in working_ocos \
                or o.get("parentId") in working_refs:
            continue
        if oid in gone:
            out.finished[oid] = o.get("ordStatus")
            out.recorded.add(oid)
        elif newest is not None and oid in last_at and newest - last_at[oid] >= keep_s:
            out.finished[oid] = o.get("ordStatus")
            accounts[oid] = o.get("accountId")
        else:
            continue
        if o.get("parentId") is not None:
            out.made_by.append((o["parentId"], oid))

    left_out = out.finished
    for etype, rows in by_type.items():
        store = out.entities.setdefault(etype, {})
        for row in rows:
            if etype == "order" and row["id"] in left_out:
                continue
            owner = row.get("orderId") if etype in OF_ORDER else None
            if owner is not None and owner in left_out:
                if etype == "fill" and owner not in out.recorded:
                    qty = int(row.get("qty") or 0)
                    out.gone_fills[owner] = out.gone_fills.get(owner, ()) + (
                        int(row["id"]), qty if row.get("action") == "Buy" else -qty)
                    if owner in accounts:
                        out.old_fills.append((row, accounts[owner]))
                elif etype == "orderStrategyLink" and row.get("orderStrategyId") is not None:
                    out.made_by.append((("strategy", row["orderStrategyId"]), owner))
                continue
            store[row["id"]] = dict(row)
    return out
