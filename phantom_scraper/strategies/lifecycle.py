"""Executing order-strategy steps: what happens around the placement itself (journal records,
interrupts, the open-strategy list).  The placement of ``startorderstrategy`` goes through the
same router and order-intent journal as every other order (``execution.account._run_step``); this module
only adds the strategy's own record (``StrategyStore``) before the frame leaves and its broker id
after the answer.

* ``before_start``: the strategy row (params, breakeven, legs as planned), committed before sending.
* ``after_start``: the broker's ``orderStrategy.id`` (acked), or ``failed`` (rejected / not sent);
  an unknown outcome leaves the row open without an id until the intent is settled.
* ``interrupt_open``: ``orderStrategy/interruptorderstrategy`` for every open strategy of an
  account and contract (before a liquidation: flatten, reverse, close, target 0).  Interrupting is
  like cancelling -- it can be repeated -- so a failure is logged and the liquidation goes on
  (``order/liquidateposition`` cancels the legs anyway).
* ``refresh``: closes rows whose strategy the broker no longer runs (targets/stops hit).
"""
from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Dict, List

from phantom_scraper.errors import TradovateError
from phantom_scraper.strategies.readback import params_for_broker
from phantom_scraper.strategies.store import StrategyStore

log = logging.getLogger(__name__)

ENDPOINT = "orderStrategy/startorderstrategy"


_stores: "weakref.WeakKeyDictionary[Any, StrategyStore]" = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()  # guards _stores only


def store_for(journal) -> StrategyStore:
    """One store per journal (its table is created once).  A wrapper that batches intent states
    (execution's fan-out) is unwrapped to its journal."""
    if hasattr(journal, "take") and getattr(journal, "journal", None) is not None:
        journal = journal.journal
    with _stores_lock:
        try:
            store = _stores.get(journal)
            if store is None:
                store = _stores[journal] = StrategyStore(journal)
        except TypeError:  # a journal stand-in that cannot be weakly referenced: a fresh store each time
            store = StrategyStore(journal)
    return store


def has_open(journal, account_id: int, contract_id: int) -> bool:
    if journal is None:
        return False
    return store_for(journal).has_open(account_id, contract_id)


def before_start(journal, signal_id: str, target, contract, step, intent_id: str) -> Dict[str, Any]:
    """Record the strategy (committed before the frame leaves) and return the body to send: its
    offsets in the unit the broker was seen to apply for this product (``readback.params_for_broker``)."""
    params, unit = params_for_broker(step.body["params"], contract.name, float(step.meta.get("tick") or 0))
    meta = dict(step.meta, sent_unit=unit)
    store_for(journal).record(intent_id, signal_id, target.id, target.name, contract.id, contract.name,
                              int(step.meta.get("direction") or (1 if step.body.get("action") == "Buy" else -1)),
                              params, meta)
    return dict(step.body, params=params)


def strategy_id_of(response: Dict[str, Any]) -> Any:
    strategy = (response or {}).get("orderStrategy")
    return strategy.get("id") if isinstance(strategy, dict) else None


def after_start(journal, intent_id: str, status: str, strategy_id: Any) -> None:
    store = store_for(journal)
    if status == "acked" and strategy_id is not None:
        store.acked(intent_id, int(strategy_id))
    elif status in ("rejected", "not_sent"):
        store.failed(intent_id)


def strategy_order_ids(ti, intent_id: str, strategy_id: Any) -> List[int]:
    """The strategy's broker orders (its ``orderStrategyLink`` rows, by order id; labels are free
    text at Tradovate and are not read); [] when they cannot be read (logged: the next signal on
    the lane then does not wait for them, and the answer cannot list them)."""
    if strategy_id is None:
        return []
    try:
        links = ti.list_deps("orderStrategyLink", int(strategy_id)) or []
    except TradovateError as exc:
        log.warning("order strategy %s: links unreadable (%s)", strategy_id, exc)
        return []
    return sorted({int(l["orderId"]) for l in links if isinstance(l, dict) and l.get("orderId") is not None})


def interrupt_open(journal, ti, account_id: int, contract_id: int) -> List[int]:
    """Interrupt this server's open strategies for the account and contract; their ids."""
    store = store_for(journal)
    done = []
    for rec in store.open(account_id, contract_id):
        if rec["strategy_id"] is None:
            continue  # never acknowledged: liquidation cancels whatever legs exist
        try:
            answer = ti.interrupt_order_strategy(rec["strategy_id"])
        except TradovateError as exc:
            log.warning("interrupt of order strategy %s (account %s) failed: %s; liquidating anyway",
                        rec["strategy_id"], rec["account_name"], exc)
            continue
        if isinstance(answer, dict) and answer.get("errorText"):
            log.info("order strategy %s (account %s) already ended: %s", rec["strategy_id"],
                     rec["account_name"], answer["errorText"])
        store.closed(rec["intent_id"])
        done.append(rec["strategy_id"])
    return done


def refresh(journal, integration_for_account) -> int:
    """Close rows whose broker strategy is no longer active; returns how many were closed."""
    store = store_for(journal)
    closed = 0
    for rec in store.open():
        if rec["strategy_id"] is None:
            continue
        try:
            entity = integration_for_account(rec["account_id"]).get_order_strategy(rec["strategy_id"])
        except TradovateError:
            continue
        if isinstance(entity, dict) and entity.get("status") not in (None, "ActiveStrategy"):
            store.closed(rec["intent_id"])
            closed += 1
    return closed


def open_by_account(journal) -> Dict[str, List[dict]]:
    """``{account name: [strategy summaries]}`` for the status page (no secrets in these rows)."""
    out: Dict[str, List[dict]] = {}
    if journal is None:
        return out
    for rec in store_for(journal).open():
        brackets = rec["meta"].get("brackets") or []
        out.setdefault(rec["account_name"] or str(rec["account_id"]), []).append({
            "strategy_id": rec["strategy_id"], "intent_id": rec["intent_id"], "symbol": rec["symbol"],
            "side": "long" if rec["direction"] > 0 else "short",
            "brackets": [{k: b[k] for k in ("qty", "profitTarget", "stopLoss", "trailingStop", "autoTrail")
                          if k in b} for b in brackets],
            "breakeven": rec["be_state"], "breakeven_stop": rec["be_stop"], "entry_price": rec["entry_price"],
            "since": rec["created_at"]})
    return out
