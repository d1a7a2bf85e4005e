"""The lock barrier: what every lock (kill switch, loss / profit / drawdown lock, flatten at close)
does to an account's lanes once the lock is set.

The lock itself is set first, in memory and journaled, so from that moment every job that reaches
the head of one of the account's lanes is planned against it: queued entries are refused
``locked`` (exits pass).  Then, on a worker (never the guard's watcher thread)::

    drain   every (account, product) lane of the account lets its in-flight job finish (its
            answer, its unknown search) and its queued jobs reach the head (refused); the broker
            state then shows what they left
    repeat  close each position (a journaled ``close`` of recorder ``risk`` per contract:
            ``liquidateposition``, which also cancels that contract's orders), cancel the orders
            of the other contracts, wait until the broker shows it
    until   the broker shows the account flat with nothing working -- or the rounds / the time
            run out: the result says what is still pending, logged at ERROR and notified

A liquidation can only reduce a position, so repeating one is never an added risk.  The result
(``flattened``, ``cancelled``, ``pending``, ``rounds``, ``errors``) is the kill switch's answer.
"""
from __future__ import annotations

import logging
import time

from phantom_scraper import events
from typing import Dict, List

from phantom_scraper.tradovate.broker_state import CANCELLABLE_STATES

log = logging.getLogger(__name__)

MAX_ROUNDS = 4


def run_barrier(guard, account_id: int, why: str, result: dict) -> None:
    """Drain the account's lanes, then flatten until flat with nothing working (bounded)."""
    settings = guard.settings
    ack_s = float(getattr(settings, "order_ack_timeout_s", 5.0))
    deadline = time.monotonic() + max(10.0, 4 * ack_s)
    result.setdefault("flattened", [])
    result.setdefault("cancelled", [])
    result.setdefault("errors", [])
    drain = getattr(guard.actions, "drain", None)
    if drain is not None:
        try:
            if not drain(account_id, max(1.0, deadline - time.monotonic())):
                log.warning("Lock barrier %s: in-flight work still running after the drain wait; flattening anyway",
                            guard.account_name(account_id))
        except Exception as exc:  # noqa: BLE001 - the flatten must still happen
            log.exception("Lock barrier %s: drain failed", guard.account_name(account_id))
            result["errors"].append(f"drain: {exc}")
    rounds = 0
    while True:
        positions, orders = _left(guard, account_id)
        if not positions and not orders:
            result["flat"] = True
            result.pop("pending", None)
            break
        if rounds >= MAX_ROUNDS or time.monotonic() >= deadline:
            result["flat"] = False
            result["pending"] = {"positions": [{"contract_id": c, "net_pos": n} for c, n in sorted(positions.items())],
                                 "working_orders": [o["id"] for o in orders]}
            log.error("Lock barrier %s: still not flat after %d round(s): positions %s, working orders %s (%s)",
                      guard.account_name(account_id), rounds, positions, [o["id"] for o in orders], why)
            guard._event("error", account_id, "flatten_incomplete",
                         f"still holding {positions} with {len(orders)} working order(s) after {rounds} round(s)")
            events.emit("risk_flatten", account=guard.account_name(account_id), why=why,
                        error=f"not flat with nothing working after {rounds} round(s)",
                        still_open={"positions": positions, "working_orders": [o["id"] for o in orders]},
                        retry_in_s=getattr(guard.risk, "flatten_retry_s", None))
            break
        rounds += 1
        one = guard._flatten(account_id, why)  # each position closed, other contracts' orders cancelled
        for key in ("flattened", "cancelled", "errors"):
            result[key].extend(one.get(key) or [])
        if one.get("error"):
            result["errors"].append(one["error"])
        _wait_flat(guard, account_id, min(ack_s, max(0.0, deadline - time.monotonic())))
    result["rounds"] = rounds
    log.warning("Lock barrier %s: %s after %d round(s), %d flatten(s) (%s)", guard.account_name(account_id),
                "flat, nothing working" if result.get("flat") else "NOT flat", rounds, len(result["flattened"]), why)


def _left(guard, account_id: int):
    if guard.broker is None:
        return {}, []
    positions: Dict[int, int] = {c: n for c, (n, _p) in guard.broker.positions(account_id).items() if n}
    orders: List[dict] = [o for o in guard.broker.working_orders(account_id)
                          if o.get("ordStatus") in CANCELLABLE_STATES]
    return positions, orders


def _wait_flat(guard, account_id: int, timeout_s: float) -> None:
    """Until the broker state shows the account flat with nothing working, or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        positions, orders = _left(guard, account_id)
        if not positions and not orders:
            return
        guard._stop.wait(0.02)
