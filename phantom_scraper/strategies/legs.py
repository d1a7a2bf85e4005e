"""An order strategy's orders, identified by what they are -- never by their link labels.

Tradovate documents ``orderStrategyLink.label`` as a free string; only our simulator says
``entry``/``tp1``/``sl1``.  So the strategy's orders (its ``orderStrategyLink`` rows) are read
with their latest ``orderVersion`` and sorted by what Tradovate does document:

* the entry is the order on the strategy's side (``action`` Buy for a long strategy);
* exits are on the opposite side; among them a ``Stop``/``StopLimit`` is a stop leg, a
  ``TrailingStop``/``TrailingStopLimit`` a trailing leg (Tradovate refuses any change but the
  quantity: ``TrailingStopNonOrderQtyModify``), a ``Limit``/``MIT``/``LimitIfTouched`` a target.

Reads only (``orderStrategyLink/deps``, ``order/item``, ``orderVersion/deps``); raises
``TradovateError`` when the broker cannot be read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from phantom_scraper.tradovate.broker_state import CANCELLABLE_STATES

STOP_TYPES = frozenset({"Stop", "StopLimit"})
TRAILING_TYPES = frozenset({"TrailingStop", "TrailingStopLimit"})
TARGET_TYPES = frozenset({"Limit", "MIT", "LimitIfTouched"})
LIVE = CANCELLABLE_STATES  # a leg still standing (a modify of ours may be in flight)


@dataclass
class Leg:
    order_id: int
    action: Optional[str]
    status: Optional[str]
    version: Dict[str, Any] = field(default_factory=dict)  # the latest orderVersion

    @property
    def order_type(self) -> Optional[str]:
        return self.version.get("orderType")

    @property
    def qty(self) -> Optional[int]:
        return self.version.get("orderQty")

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def role(self) -> str:
        otype = self.order_type
        if otype in STOP_TYPES:
            return "stop"
        if otype in TRAILING_TYPES:
            return "trailing"
        if otype in TARGET_TYPES:
            return "target"
        return "other"

    def price_of(self) -> Optional[float]:
        """The price that matters for this leg: ``stopPrice`` for stops, ``price`` for targets."""
        key = "price" if self.role == "target" else "stopPrice"
        value = self.version.get(key)
        return float(value) if value is not None else None


def entry_action(direction: int) -> str:
    return "Buy" if direction > 0 else "Sell"


def _leg(ti, order_id: int) -> Leg:
    order = ti.get_order(order_id)
    order = order if isinstance(order, dict) else {}
    versions = [v for v in (ti.list_deps("orderVersion", order_id) or []) if isinstance(v, dict)]
    version = max(versions, key=lambda v: v.get("id") or 0) if versions else {}
    return Leg(order_id, order.get("action"), order.get("ordStatus"), version)


def linked_order_ids(ti, strategy_id: int) -> List[int]:
    links = ti.list_deps("orderStrategyLink", int(strategy_id)) or []
    return sorted({int(l["orderId"]) for l in links if isinstance(l, dict) and l.get("orderId") is not None})


def strategy_legs(ti, strategy_id: int, direction: int) -> Tuple[Optional[Leg], List[Leg]]:
    """(the entry or None, the exit legs) of the broker's order strategy."""
    legs = [_leg(ti, oid) for oid in linked_order_ids(ti, strategy_id)]
    side = entry_action(direction)
    entries = [l for l in legs if l.action == side]
    exits = [l for l in legs if l.action is not None and l.action != side]
    return (min(entries, key=lambda l: l.order_id) if entries else None), exits


def entry_fill(ti, entry_order_id: int) -> Optional[Tuple[float, int]]:
    """The entry's (average fill price, contracts filled), None while it has not filled."""
    fills = [f for f in (ti.list_deps("fill", entry_order_id) or []) if isinstance(f, dict)]
    qty = sum(f.get("qty") or 0 for f in fills)
    if not qty:
        return None
    return sum((f.get("qty") or 0) * float(f.get("price")) for f in fills) / qty, int(qty)


def entry_fill_price(ti, entry_order_id: int) -> Optional[float]:
    """The entry's average fill price, None while it has not filled."""
    fill = entry_fill(ti, entry_order_id)
    return fill[0] if fill is not None else None
