"""Turns the fills a login's socket reports (``BrokerState`` ``props`` events) into ``fill``
events on :mod:`phantom_scraper.events` (for the notifier's optional ``fill`` messages and the
metrics).  Runs on the socket thread: dictionary lookups only, no network, no formatting."""
from __future__ import annotations

from typing import Callable, Optional

from phantom_scraper import events
from phantom_scraper.ops import history_source


def remember_contracts(event: events.Event) -> None:
    """Subscriber: the contract a signal traded, so a fill can be shown by name (no network)."""
    contract = event.fields.get("contract") if event.kind == "signal" else None
    if contract is not None and getattr(contract, "id", None) is not None:
        history_source.remember_contract(contract.id, contract.name, getattr(contract, "point_value", None))


def listener(state) -> Callable[[str, str, Optional[dict]], None]:
    """A ``BrokerState`` listener emitting one ``fill`` event per fill the broker creates (the
    snapshot's old fills are not re-announced: they arrive as one ``("sync", "Loaded")``)."""
    def on_change(entity_type: str, event_type: str, entity: Optional[dict]) -> None:
        if entity_type == "sync" and event_type == "Loaded":
            snapshot_fills(state)
            return
        if entity_type != "fill" or event_type != "Created" or not entity:
            return
        order = state.entity("order", entity.get("orderId")) or {}
        account_id = order.get("accountId")
        account = state.entity("account", account_id) if account_id is not None else None
        contract_id = entity.get("contractId")
        # The position the fill met (for the realized P&L of an exit): known while the position
        # event that follows the fill has not arrived.
        before = state.position_before_fill(entity.get("orderId")) if hasattr(state, "position_before_fill") else None
        net_before, avg_before = before if before is not None else (None, None)
        version = state.order_version(entity.get("orderId")) if hasattr(state, "order_version") else None
        side = entity.get("action")
        closes = bool(net_before) and ((net_before > 0) != (str(side).lower() == "buy"))
        events.emit("fill", account=(account or {}).get("name") or account_id, account_id=account_id,
                    contract=contract_id,  # named on the notifier's thread
                    side=side, qty=entity.get("qty"), price=entity.get("price"),
                    order_id=entity.get("orderId"), latency_ms=None,
                    role=fill_role((version or {}).get("orderType"), order.get("parentId") is not None, closes),
                    closes=closes, net_before=net_before, avg_before=avg_before,
                    # the journal's fill ledger keeps it (journal/fills.py): parsed on its thread
                    fill_id=entity.get("id"), timestamp=entity.get("timestamp"), trade_date=entity.get("tradeDate"))
    return on_change


def snapshot_fills(state) -> None:
    """After a snapshot: its fills (those made while the socket was down or before the start
    included) as one ``fill_snapshot`` event for the journal's fill ledger, which keeps each fill
    once (by id).  Not ``fill`` events: they were announced when they happened, or not at all."""
    rows = []
    for f, account_id in state.take_snapshot_fills():  # (also those of old orders the state did not keep)
        if account_id is None or f.get("id") is None:
            continue
        rows.append({"fill_id": f["id"], "account_id": account_id, "account": None,
                     "contract": f.get("contractId"), "side": f.get("action"), "qty": f.get("qty"),
                     "price": f.get("price"), "order_id": f.get("orderId"), "timestamp": f.get("timestamp"),
                     "trade_date": f.get("tradeDate")})
    if rows:
        events.emit("fill_snapshot", fills=rows)


def fill_role(order_type: Optional[str], is_leg: bool, closes: bool) -> str:
    """``take_profit``, ``stop``, ``exit`` (a closing market order) or ``entry``."""
    if not (closes or is_leg):
        return "entry"
    if order_type in ("Stop", "StopLimit", "TrailingStop", "TrailingStopLimit"):
        return "stop"
    if order_type in ("Limit", "MIT"):
        return "take_profit"
    return "exit"
