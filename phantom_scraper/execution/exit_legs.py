"""Bracket legs follow the position, and a lane waits until the broker reflects what it sent.

Exit legs are the *working* bracket orders of one account and contract (an order with a
``parentId`` -- an OSO leg -- or an ``ocoId``).  Take-profit legs (Limit / MIT / LIT) and stop legs
(Stop / StopLimit / trailing) are counted separately; each kind must cover at most the open
position, and exactly it when it covers anything::

    position 0                      -> every working leg is cancelled
    a leg on the position's side    -> cancelled (it would add, not exit)
    legs of one kind cover > |pos|  -> newest first: cancelled, or cut with order/modifyorder

``trim(conn, acct, contract, cover)`` runs *before* a reducing order (the planner's ``trim_legs``
step), so between the two requests the legs cover less than the position, never more; ``sync``
runs after fills (the end of each lane job, and when a leg or a manual trade moved the position).
Suspended legs (their entry has not filled) are not counted: they start working only together with
the position they protect.

Everything here reads the socket-fed ``BrokerState``; when it is not fresh the upkeep is skipped
(logged) and the next fresh sync catches up.  Cancels and modifies are not placements: neither
can open a position, so a failed one is logged, never retried blindly, and the legs are simply
re-read next time.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterable, List, Optional

from phantom_scraper.errors import TradovateError
from phantom_scraper.tradovate.broker_state import CANCELLABLE_STATES, RESTING_STATES

logger = logging.getLogger(__name__)

TAKE_PROFIT_TYPES = frozenset({"Limit", "MIT", "LimitIfTouched"})
STOP_TYPES = frozenset({"Stop", "StopLimit", "TrailingStop", "TrailingStopLimit"})
_RESTING = RESTING_STATES
WORKING = CANCELLABLE_STATES
_FINAL = frozenset({"Filled", "Canceled", "Rejected", "Expired", "Completed"})


# Set for the lane job running in this thread when its previous orders did not show as settled in
# the socket-fed state in time: that state is then behind this lane's own fills, so the job reads
# positions and orders from the broker (REST / socket requests), not from it.  See account_lanes.
_behind = threading.local()


def state_behind() -> bool:
    return getattr(_behind, "lane", False)


def set_state_behind(value: bool) -> None:
    _behind.lane = bool(value)


def fresh_state(conn):
    """The login's socket-fed state when it is synced and not behind this lane's own orders."""
    state = getattr(conn, "broker_state", None)
    return state if state is not None and state.fresh and not state_behind() else None


def is_leg(order: dict) -> bool:
    return order.get("ordStatus") == "Working" and (order.get("parentId") is not None
                                                    or order.get("ocoId") is not None)


def _kind(order: dict) -> Optional[str]:
    otype = order.get("orderType")
    if otype in TAKE_PROFIT_TYPES:
        return "take_profit"
    if otype in STOP_TYPES:
        return "stop"
    return None


def plan_leg_changes(net_pos: int, orders: Iterable[dict], cover: Optional[int] = None,
                     gone: Iterable[int] = (), refit: bool = False) -> List[dict]:
    """Pure: the cancels (``{"cancel": order}``) and cuts (``{"modify": order, "qty": n}``) that make
    each kind of working exit leg cover at most ``cover`` (default ``|net_pos|``).

    ``gone``: legs the broker is about to cancel itself (their OCO partner filled): neither counted
    nor touched.  ``refit``: a kind that covers something but less than ``|net_pos|`` (the broker
    left it short) has its newest leg raised to cover it (``modifyorder`` upward)."""
    cover = abs(net_pos) if cover is None else max(0, min(cover, abs(net_pos)))
    gone = set(gone)
    exit_action = "Sell" if net_pos > 0 else "Buy"
    changes: List[dict] = []
    by_kind = {"take_profit": [], "stop": []}
    for order in orders:
        if not is_leg(order) or order.get("id") in gone:
            continue
        if net_pos == 0 or order.get("action") != exit_action or _kind(order) is None:
            changes.append({"cancel": order})
            continue
        by_kind[_kind(order)].append(order)
    for legs in by_kind.values():
        excess = sum(int(o.get("orderQty") or 0) for o in legs) - cover
        if excess < 0 and refit and legs:  # short: the newest leg is raised to cover the position
            newest = max(legs, key=lambda o: o["id"])
            changes.append({"modify": newest, "qty": int(newest.get("orderQty") or 0) - excess})
            continue
        for order in sorted(legs, key=lambda o: o["id"], reverse=True):  # newest first
            if excess <= 0:
                break
            qty = int(order.get("orderQty") or 0)
            if qty <= excess:
                changes.append({"cancel": order})
                excess -= qty
            else:
                changes.append({"modify": order, "qty": qty - excess})
                excess = 0
    return changes


def oco_gone(state, account_id: int, contract_id: int, legs: Iterable[dict]) -> List[int]:
    """The working legs whose OCO partner (the other leg of its bracket, ``ocoId``) has filled: the
    broker cancels them itself, so upkeep counts them as cancelled already."""
    return [leg["id"] for leg in legs if is_leg(leg) and leg.get("ocoId") is not None
            and state.order_status(leg["ocoId"]) == "Filled"]


def trim(conn, account_id: int, contract_id: int, cover: int, timeout_s: float) -> bool:
    """Cut the exit legs to ``cover`` contracts before a reduction.  False if they could not be
    read (the caller goes on: a reduction alone cannot flip a position, its legs are then synced
    after the fill)."""
    return _apply(conn, account_id, contract_id, cover, timeout_s, why="before a reduction")


def sync(conn, account_id: int, contract_id: int, timeout_s: float) -> bool:
    """Make the exit legs cover exactly the current position (after fills)."""
    return _apply(conn, account_id, contract_id, None, timeout_s, why="after a fill")


def _apply(conn, account_id, contract_id, cover, timeout_s, why) -> bool:
    state = fresh_state(conn)
    if state is None:
        logger.info("Exit legs of account %s contract %s not checked %s: broker state not synced",
                    account_id, contract_id, why)
        return False
    gone = oco_gone(state, account_id, contract_id, state.working_orders(account_id, contract_id))
    leg_filled = bool(gone)
    if gone:  # a leg filled: wait until the broker has resolved its siblings before cutting anything
        resolved = state.wait_for(lambda s: not any(s.order_status(i) in WORKING for i in gone), timeout_s)
        if not resolved:
            logger.warning("Exit legs %s of account %s: their OCO partner filled but the broker has not cancelled "
                           "them within %.1f s; counted as cancelled", gone, account_id, timeout_s)
    net_pos = state.net_pos(account_id, contract_id)
    orders = state.working_orders(account_id, contract_id)
    gone = oco_gone(state, account_id, contract_id, orders)
    # After a leg filled, each kind must still cover the position: raised if the broker left it short.
    changes = plan_leg_changes(net_pos, orders, cover, gone=gone, refit=cover is None and leg_filled)
    if not changes:
        return True
    ti = conn.integration
    client = conn.live_client()
    sent = []
    for change in changes:
        order = change.get("cancel") or change["modify"]
        try:
            if "cancel" in change:
                body = {"orderId": order["id"], "isAutomated": True}
                _send(ti, client, "cancel", body)
                logger.info("Exit leg %s (%s %s) of account %s cancelled %s: position %s",
                            order["id"], order.get("orderType"), order.get("orderQty"), account_id, why, net_pos)
            else:
                body = {"orderId": order["id"], "orderQty": change["qty"], "orderType": order.get("orderType"),
                        "isAutomated": True}
                for key in ("price", "stopPrice"):
                    if order.get(key) is not None:
                        body[key] = order[key]
                _send(ti, client, "modify", body)
                logger.info("Exit leg %s (%s) of account %s cut from %s to %s %s: position %s", order["id"],
                            order.get("orderType"), account_id, order.get("orderQty"), change["qty"], why, net_pos)
            sent.append(change)
        except TradovateError as exc:  # e.g. TooLate: the leg filled or was cancelled meanwhile
            logger.warning("Exit leg %s of account %s: %s failed: %s", order["id"], account_id,
                           "cancel" if "cancel" in change else "modify", exc)
    _wait_reflected(state, sent, timeout_s)
    return True


def send_cancel(ti, client, body: dict) -> None:
    """``order/cancelorder`` over the socket when there is one (REST when it provably did not leave)."""
    _send(ti, client, "cancel", body)


def send_modify(ti, client, body: dict) -> None:
    _send(ti, client, "modify", body)


def _send(ti, client, what: str, body: dict) -> None:
    if client is not None:
        try:
            getattr(ti, f"{what}_order_ws")(client, body)
            return
        except TradovateError as exc:
            if type(exc).__name__ != "NotSentError":
                raise
    getattr(ti, f"{what}_order_rest")(body)


def _wait_reflected(state, sent: List[dict], timeout_s: float) -> None:
    """Until the broker state shows the cancels and cuts (so the next upkeep reads them)."""
    def done(s) -> bool:
        for change in sent:
            order = change.get("cancel") or change["modify"]
            status = s.order_status(order["id"])
            if status in _FINAL or status is None:
                continue
            if "cancel" in change:
                return False
            rows = [o for o in s.working_orders(order["accountId"], order["contractId"]) if o["id"] == order["id"]]
            if rows and int(rows[0].get("orderQty") or 0) != change["qty"]:
                return False
        return True
    if sent and not state.wait_for(done, timeout_s):
        logger.warning("Broker state did not show %d exit-leg change(s) within %.1f s", len(sent), timeout_s)


# ---------------------------------------------------------------------------------------------
# After a lane's orders: wait until the broker reflects them

def wait_settled(conn, account_id: int, order_ids: Iterable[int], timeout_s: float,
                 poll_s: float = 0.01) -> bool:
    """Until every order is resting (Working/Suspended) or final and each fill is in the
    position.  Socket-fed when fresh; else polled over REST.  False on timeout."""
    ids = [i for i in order_ids if i is not None]
    if not ids:
        return True
    state = fresh_state(conn)
    if state is not None:
        return state.wait_for(lambda s: all(s.order_settled(i) for i in ids), timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            orders = {o.get("id"): o for o in conn.integration.list_orders(account_id) or []}
        except TradovateError as exc:
            logger.warning("Could not read the orders of account %s to wait for them: %s", account_id, exc)
            return False
        if all((orders.get(i) or {}).get("ordStatus") in _RESTING | _FINAL for i in ids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
