"""Executing order-strategy steps: what happens around the placement itself (journal records,
interrupts, the open-strategy list).  The placement of ``startorderstrategy`` goes through the
same router and order-intent journal as every other order (``execution._run_step``); this module
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
from typing import Any, Dict, List

from .errors import TradovateError
from .strategy_store import StrategyStore

log = logging.getLogger(__name__)

ENDPOINT = "orderStrategy/startorderstrategy"
INTERRUPT = "orderStrategy/interruptorderstrategy"


def store_for(journal) -> StrategyStore:
    """One store per journal (its table is created once).  A wrapper that batches intent states
    (execution's fan-out) is unwrapped to its journal."""
    if not hasattr(journal, "_write") and hasattr(journal, "journal"):
        journal = journal.journal
    store = getattr(journal, "_strategy_store", None)
    if store is None:
        store = StrategyStore(journal)
        try:
            journal._strategy_store = store
        except AttributeError:  # a journal stand-in without attributes: a fresh store each time
            pass
    return store


def has_open(journal, account_id: int, contract_id: int) -> bool:
    if journal is None:
        return False
    return store_for(journal).has_open(account_id, contract_id)


def before_start(journal, signal_id: str, target, contract, step, intent_id: str) -> None:
    store_for(journal).record(intent_id, signal_id, target.id, target.name, contract.id, contract.name,
                              int(step.meta.get("direction") or (1 if step.body.get("action") == "Buy" else -1)),
                              step.body["params"], step.meta)


def strategy_id_of(response: Dict[str, Any]) -> Any:
    strategy = (response or {}).get("orderStrategy")
    return strategy.get("id") if isinstance(strategy, dict) else None


def after_start(journal, intent_id: str, status: str, strategy_id: Any) -> None:
    store = store_for(journal)
    if status == "acked" and strategy_id is not None:
        store.acked(intent_id, int(strategy_id))
    elif status in ("rejected", "not_sent"):
        store.failed(intent_id)


def interrupt_open(journal, ti, account_id: int, contract_id: int) -> List[int]:
    """Interrupt this server's open strategies for the account and contract; their ids."""
    store = store_for(journal)
    done = []
    for rec in store.open(account_id, contract_id):
        if rec["strategy_id"] is None:
            continue  # never acknowledged: liquidation cancels whatever legs exist
        try:
            answer = ti._rest_call("POST", INTERRUPT, body={"orderStrategyId": rec["strategy_id"]})
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


LIVE = ("Working", "Suspended", "PendingNew")


def _live_legs(ti, strategy_id: int) -> Dict[str, List[dict]]:
    """``{bracket number: [{orderId, label, orderQty, orderType, price, stopPrice, ...}]}``, live legs."""
    out: Dict[str, List[dict]] = {}
    for link in ti._list("orderStrategyLink", strategy_id) or []:
        label = str(link.get("label") or "")
        if label[:2] not in ("tp", "sl") or not link.get("orderId"):
            continue
        order = ti._rest_call("GET", "order/item", params={"id": link["orderId"]})
        if not isinstance(order, dict) or order.get("ordStatus") not in LIVE:
            continue
        versions = [v for v in ti._list("orderVersion", link["orderId"]) or [] if isinstance(v, dict)]
        if versions:
            out.setdefault(label[2:], []).append(dict(max(versions, key=lambda v: v.get("id") or 0),
                                                     orderId=link["orderId"], label=label))
    return out


def resize_open(journal, ti, account_id: int, contract_id: int, position: int) -> int:
    """After a reduction: shrink the open strategies' exit legs to ``|position|`` contracts, the
    last brackets first (the nearest targets keep their size).  Returns the legs changed."""
    keep, changed = abs(int(position)), 0
    for rec in store_for(journal).open(account_id, contract_id):
        if rec["strategy_id"] is None:
            continue
        brackets = _live_legs(ti, rec["strategy_id"])
        for number in sorted(brackets, key=lambda n: int(n) if n.isdigit() else 0):
            legs = brackets[number]
            qty = max(int(l.get("orderQty") or 0) for l in legs)
            allowed = min(qty, keep)
            keep -= allowed
            for leg in legs:
                if allowed == 0:
                    ti.cancel_order_rest({"orderId": leg["orderId"], "isAutomated": True})
                    changed += 1
                elif allowed < int(leg.get("orderQty") or 0):
                    body = {"orderId": leg["orderId"], "orderQty": allowed, "orderType": leg.get("orderType"),
                            "isAutomated": True}
                    for key in ("price", "stopPrice", "pegDifference"):
                        if leg.get(key) is not None:
                            body[key] = leg[key]
                    ti.modify_order_rest(body)
                    changed += 1
    if changed:
        log.info("account %s: %d exit leg(s) resized to a position of %s", account_id, changed, position)
    return changed


def refresh(journal, integration_for_account) -> int:
    """Close rows whose broker strategy is no longer active; returns how many were closed."""
    store = store_for(journal)
    closed = 0
    for rec in store.open():
        if rec["strategy_id"] is None:
            continue
        try:
            entity = integration_for_account(rec["account_id"])._rest_call(
                "GET", "orderStrategy/item", params={"id": rec["strategy_id"]})
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
