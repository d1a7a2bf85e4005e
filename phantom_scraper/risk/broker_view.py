"""The risk guard's view of the broker: each login's socket-fed ``BrokerState`` (no second tracker).

``accounts`` maps an account id to a callable returning its login's ``BrokerState`` (or None before
the pool made one).  Positions, working orders and the cash balance are read from memory: no broker
round trip.  Changes to a cash balance, a position or an order wake the guard for that account.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Tuple

from phantom_scraper.tradovate.broker_state import WORKING_STATES

log = logging.getLogger(__name__)

_WORKING = WORKING_STATES
_WATCHED = frozenset({"cashBalance", "position", "order"})


class BrokerStateView:
    def __init__(self, states: Dict[int, Callable[[], object]]):
        self._states = dict(states)
        self._listening: set = set()

    def _state(self, account_id: int):
        getter = self._states.get(account_id)
        return getter() if getter is not None else None

    def positions(self, account_id: int) -> Dict[int, Tuple[int, Optional[float]]]:
        state = self._state(account_id)
        out: Dict[int, Tuple[int, Optional[float]]] = {}
        for p in (state.positions(account_id) if state is not None else []):
            if p.get("contractId") is None:
                continue
            net = int(p.get("netPos") or 0)
            price = p.get("netPrice")
            out[int(p["contractId"])] = (net, float(price) if price is not None else None)
        return out

    def working_orders(self, account_id: int) -> List[dict]:
        state = self._state(account_id)
        if state is None:
            return []
        return sorted((o for o in state.entities("order")
                       if o.get("accountId") == account_id and o.get("ordStatus") in _WORKING),
                      key=lambda o: o["id"])

    def entry_orders(self, account_id: int, contract_id: int) -> List[dict]:
        """Working orders of the contract that are not exit legs (no OSO parent, no OCO partner):
        entries (or plain exits) that may still fill, with their latest ``orderQty``."""
        state = self._state(account_id)
        if state is None or not hasattr(state, "working_orders"):
            return []
        return [o for o in state.working_orders(account_id, contract_id)
                if o.get("parentId") is None and o.get("ocoId") is None]

    def cash_balance(self, account_id: int) -> Optional[dict]:
        state = self._state(account_id)
        return state.cash_balance(account_id) if state is not None else None

    def fresh(self, account_id: int) -> bool:
        state = self._state(account_id)
        return bool(state is not None and getattr(state, "fresh", False))

    def listen(self, on_account: Callable[[int], None], on_all: Callable[[], None]) -> None:
        """Subscribe to every login's state once (a state shared by several accounts counts once)."""
        for account_id in self._states:
            state = self._state(account_id)
            if state is None or id(state) in self._listening or not hasattr(state, "add_listener"):
                continue
            self._listening.add(id(state))

            def listener(etype, event_type, entity, _on=on_account, _all=on_all):
                if etype == "sync":
                    _all()
                elif etype in _WATCHED and isinstance(entity, dict) and entity.get("accountId") is not None:
                    _on(int(entity["accountId"]))

            state.add_listener(listener, entity_types=("sync", *_WATCHED))
