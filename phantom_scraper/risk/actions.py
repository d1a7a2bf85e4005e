"""What the risk guard does at the broker, through the same journaled path as a signal.

A flatten is a ``close`` signal of recorder ``risk`` for one account and contract: journaled (it
shows in ``/api/signals``), planned (``order/liquidateposition``: cancels the contract's working
orders and closes the position) and executed by ``execution.execute_trade_simple`` on the account's
pooled connection (WebSocket first, clOrdId reconciliation, never a blind resend).  Cancels of
orders in other contracts go over REST (a cancel may be retried).  Reads (contract, product,
cash-balance snapshot) are cached or rate-bounded by the guard.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Callable, Dict, Optional

from phantom_scraper.execution import executors
from phantom_scraper.execution.dispatch import execute_trade_simple
from phantom_scraper.signals import AccountTarget, Contract, parse_signal

log = logging.getLogger(__name__)

RISK_RECORDER = "risk"


class ServiceRiskActions:
    """``integration_for(account_id)``, ``connection_for(account_id)`` and ``account_name(account_id)``
    come from the service; ``settings`` and ``journal`` are the service's."""

    def __init__(self, *, journal, settings, integration_for: Callable, connection_for: Callable,
                 account_name: Callable[[int], str], contract_name: Callable[[int], Optional[str]] = lambda c: None,
                 workers=None):
        self.journal = journal
        # the service's executors.Workers: its lanes are what a lock barrier drains (without one:
        # the bare functions' shared set, as execute_trade_simple uses then)
        self.workers = workers if workers is not None else executors.shared()
        self.settings = settings
        self._integration_for = integration_for
        self._connection_for = connection_for
        self._account_name = account_name
        self._contract_name = contract_name
        self._lock = threading.Lock()  # guards _contracts
        self._contracts: Dict[int, dict] = {}

    def _contract(self, account_id: int, contract_id: int) -> dict:
        with self._lock:
            found = self._contracts.get(contract_id)
        if found is not None:
            return found
        name = self._contract_name(contract_id)
        entity = {"id": contract_id, "name": name} if name else self._integration_for(account_id).get_contract(contract_id)
        if not entity or not entity.get("name"):
            raise LookupError(f"contract {contract_id} unknown to the broker")
        with self._lock:
            self._contracts[contract_id] = entity
        return entity

    def flatten(self, account_id: int, contract_id: int, reason: str) -> str:
        entity = self._contract(account_id, contract_id)
        name = entity["name"]
        contract = Contract(id=contract_id, name=name, root=name[:-2], tick_size=float(entity.get("providerTickSize") or 0.01))
        payload = {"action": "close", "symbol": name, "comment": f"risk guard: {reason}"[:300],
                   "account": self._account_name(account_id)}
        signal = parse_signal(json.dumps(payload))
        explicit = f"risk-{account_id}-{contract_id}-{int(time.time() * 1000)}"
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        signal_id, duplicate, _ = self.journal.record_signal(RISK_RECORDER, signal.payload, explicit, digest, 0)
        if duplicate:
            return "duplicate request: nothing sent"
        target = AccountTarget(id=account_id, name=self._account_name(account_id))
        outcomes = []
        try:
            outcomes = execute_trade_simple(signal, contract, [(target, self._connection_for(account_id))],
                                            journal=self.journal, signal_id=signal_id, settings=self.settings,
                                            workers=self.workers)
        finally:
            status = outcomes[0].status if outcomes else "error"
            self.journal.set_signal_status(signal_id, {"skipped": "skipped"}.get(status, status),
                                           json.dumps([o.summary() for o in outcomes], default=str))
        outcome = outcomes[0]
        text = outcome.status + (f" order {outcome.order_id}" if outcome.order_id else "") + \
            (f" ({outcome.error})" if outcome.error else "")
        return f"{text}; signal {signal_id}"

    def drain(self, account_id: int, timeout_s: float) -> bool:
        """Wait until every lane of the account has passed what was queued on it when called
        (the lock barrier's first step).  False when that took longer than ``timeout_s``."""
        return self.workers.lanes.drain(account_id, self.settings, timeout_s)

    def cancel(self, account_id: int, order_id: int) -> None:
        self._integration_for(account_id).cancel_order_rest({"orderId": order_id, "isAutomated": True})

    def value_per_point(self, contract_id: int) -> Optional[float]:
        account_id = None
        entity = None
        with self._lock:
            entity = self._contracts.get(contract_id)
        ti = self._integration_for(account_id)
        if entity is None:
            name = self._contract_name(contract_id)
            entity = {"id": contract_id, "name": name} if name else ti.get_contract(contract_id)
        if not entity or not entity.get("name"):
            return None
        with self._lock:
            self._contracts.setdefault(contract_id, entity)
        product = ti.find_product(entity["name"][:-2])
        return float(product["valuePerPoint"]) if product and product.get("valuePerPoint") else None

    def cash_snapshot(self, account_id: int) -> dict:
        snap = self._integration_for(account_id).cash_balance_snapshot(account_id)
        if isinstance(snap, dict) and snap.get("errorText"):
            raise LookupError(snap["errorText"])
        return snap
