"""Flatten at the close, until it is done; what counts as a flatten that happened.

At the end of each trading window (``FLATTEN_AT_CLOSE``; at start when the window ended while the
process was down) every account with a position or a working order is flattened through the lock
barrier (``barrier.run_barrier``, on a worker: drain the account's lanes, flatten in bounded rounds
until the broker shows it flat).  The window's mark (``risk_marks.flatten_at_close``) is set only
once the account is flat with no working order: a barrier that ends with the account not flat is
run again after a back-off (1, 2, 4 ... up to ``flatten_retry_s``; never sooner than a penalty's
``wait N s``, twice the back-off after a 429), each failure logged at ERROR, journaled and notified
(``risk_flatten``).

The guard's contract for a flatten (``RiskGuard._flatten``): a liquidation counts as done only when
the broker accepted it (``accepted``); anything else is a failure that names what is still open.
"""
from __future__ import annotations

import logging
import re
from typing import Dict, Iterable, Optional, Set

from phantom_scraper import events
from phantom_scraper.risk.status import iso

log = logging.getLogger(__name__)


def accepted(text: str) -> bool:
    """Did the broker take a liquidation (or was there nothing to do)?  ``RiskActions.flatten``
    answers with the outcome's status first (``acked``, ``skipped``; ``rejected``, ``not_sent``,
    ``unknown``, ``error`` are not accepted: the position may still be open)."""
    return text.startswith(("acked", "skipped"))


def rate_limited(error: str) -> bool:
    low = error.lower()
    return "429" in low or "rate limit" in low or "penalty" in low


def retry_after(errors: Iterable[str]) -> Optional[float]:
    """A ``wait N s`` the broker asked for (penalty ticket), from the failures' texts."""
    found = [float(m) for e in errors for m in re.findall(r"wait ([0-9.]+) s", e)]
    return max(found) if found else None


def flatten_once(g, account_id: int, why: str, retry_in_s: Optional[float] = None) -> dict:
    """Cancel working orders and close every position of guard ``g``'s account, once (the lock
    barrier's round; never on the watcher thread).

    The result is honest: ``flattened`` holds the liquidations the broker accepted (or found
    nothing to do for), ``failed`` the contracts still open because their liquidation was not
    accepted (refused, rate limited, no answer), ``still_open`` their positions.  Each failure
    is logged, journaled and on the event bus (``risk_flatten``: a notification); the caller
    retries (the barrier in bounded rounds, a lock every ``flatten_retry_s``, the close with back-off)."""
    now = g.clock()
    with g._lock:
        g._last_flatten[account_id] = now
    if g.broker is None or g.actions is None:
        return {"error": "no broker state"}
    name = g._accounts.get(account_id)
    positions = {c: n for c, (n, _p) in g.broker.positions(account_id).items() if n}
    orders = [o for o in g.broker.working_orders(account_id) if o.get("contractId") not in positions]
    result = {"flattened": [], "failed": [], "cancelled": [], "errors": [], "still_open": {}, "rate_limited": False}
    for contract_id in sorted(positions):
        try:
            text = str(g.actions.flatten(account_id, contract_id, why))
            error = None if accepted(text) else text
        except Exception as exc:
            text, error = None, f"{type(exc).__name__}: {exc}"
        if error is None:
            result["flattened"].append({"contract_id": contract_id, "net_pos": positions[contract_id], "result": text})
            g._event("flatten", account_id, "liquidateposition", f"contract {contract_id} ({positions[contract_id]:+d}): {text}; {why}")
            continue
        result["failed"].append({"contract_id": contract_id, "net_pos": positions[contract_id], "error": error})
        result["still_open"][str(contract_id)] = positions[contract_id]
        result["errors"].append(f"flatten {contract_id}: {error}")
        result["rate_limited"] = result["rate_limited"] or rate_limited(error)
        log.error("Risk flatten of %s contract %s (%+d) FAILED: %s; still open, retried%s", name, contract_id,
                  positions[contract_id], error, f" in {retry_in_s:.1f} s" if retry_in_s is not None else "")
        g._event("error", account_id, "flatten_failed", f"contract {contract_id} ({positions[contract_id]:+d}) "
                                                            f"still open: {error}; {why}")
    for order in orders:
        try:
            g.actions.cancel(account_id, int(order["id"]))
            result["cancelled"].append(order["id"])
            g._event("cancel", account_id, "cancelorder", f"order {order['id']}; {why}")
        except Exception as exc:
            result["errors"].append(f"cancel {order.get('id')}: {exc}")
            log.warning("Risk cancel of order %s failed: %s", order.get("id"), exc)
    if result["failed"]:
        events.emit("risk_flatten", account=name, why=why, error="; ".join(f["error"] for f in result["failed"]),
                    still_open=", ".join(f"{c} ({n:+d})" for c, n in result["still_open"].items()),
                    retry_in_s=None if retry_in_s is None else round(retry_in_s, 1))
    log.warning("Risk flatten %s: %d liquidation(s) accepted, %d FAILED%s, %d order(s) cancelled (%s)", name,
                len(result["flattened"]), len(result["failed"]),
                f" (still open: {result['still_open']})" if result["failed"] else "", len(result["cancelled"]), why)
    return result


class CloseFlattener:
    """The guard's flatten at close (watcher thread only)."""

    def __init__(self, guard):
        self.guard = guard
        self._marks: Dict[int, float] = {}  # account -> the last window end done
        self._closing: Dict[int, dict] = {}  # account -> the flatten at close under way

    def _failed(self, account_id: int, closing: dict, result: dict, now: float) -> None:
        """The barrier ended with the account not flat: back off, then flatten again."""
        g = self.guard
        failures = closing["failures"] = closing["failures"] + 1
        backoff = min(g.risk.flatten_retry_s, max(1.0, g.risk.check_interval_s) * 2 ** (failures - 1))
        errors = [str(e) for e in result.get("errors") or ()]
        if any(rate_limited(e) for e in errors):  # the broker said back off: never sooner than it asked
            backoff = max(backoff, retry_after(errors) or 2 * backoff)
        closing["next_at"] = now + backoff
        still = (result.get("pending") or {}).get("positions") or result.get("error") or "unknown"
        name = g._accounts.get(account_id)
        log.error("Risk flatten at close for %s NOT done (attempt %d): still open %s; retried in %.1f s (%s)",
                  name, closing["attempts"], still, backoff, "; ".join(errors) or "no error reported")
        g._event("error", account_id, "flatten_at_close", f"attempt {closing['attempts']} left {still} open; "
                                                           f"retried in {backoff:.1f} s")

    def check(self, account_id: int, now: float, open_contracts: Set[int]) -> None:
        """Flatten at the end of each trading window, until it is done: the window's mark is set
        only once the account is flat with no working order; a failed liquidation is retried with
        back-off (longer after a 429 or penalty), each failure notified."""
        g = self.guard
        limits = g.limits_for(account_id)
        hours = limits.trading_hours
        if not (limits.flatten_at_close and hours is not None):
            return
        end = hours.last_end(now)
        if end is None:
            return
        mark = self._marks.get(account_id)
        if mark is None:
            mark = g.store.mark(account_id, "flatten_at_close") or 0.0
        if mark >= end:
            self._marks[account_id] = mark
            return
        working = g.broker.working_orders(account_id) if g.broker is not None else []
        closing = self._closing.get(account_id)
        if closing is not None and closing["end"] != end:
            closing = None
        if (open_contracts or working) and not hours.is_open(now):
            if closing is None:
                late = account_id not in self._marks and now - end > max(5.0, 3 * g.risk.check_interval_s)
                why = (f"trading window ended at {iso(end)} while the process was down: flattened at start" if late
                       else f"trading window ended at {iso(end)} (FLATTEN_AT_CLOSE)")
                closing = self._closing[account_id] = {"end": end, "why": why, "attempts": 0, "failures": 0, "next_at": now}
                log.warning("Risk flatten at close for %s: %s", g._accounts.get(account_id), why)
                g._event("flatten_at_close", account_id, "flatten_at_close", why)
            run = closing.get("run")
            if run is not None:
                done, result = run
                if not done.is_set():
                    return  # the lock barrier is draining the lanes / flattening (on a worker)
                closing["run"] = None
                if not result.get("flat"):
                    self._failed(account_id, closing, result, now)
                    return
            if now < closing["next_at"]:
                return  # a back-off runs
            closing["attempts"] += 1
            closing["run"] = g.request_flatten(account_id, closing["why"] if closing["attempts"] == 1 else
                                               f"{closing['why']}; attempt {closing['attempts']}")
            return
        if closing is not None:
            if open_contracts or working:
                log.error("Risk flatten at close for %s NOT done by the next window's start (%d attempt(s)): "
                          "still open %s", g._accounts.get(account_id), closing["attempts"], sorted(open_contracts))
                g._event("error", account_id, "flatten_at_close", f"not done by the next window's start after "
                                                                      f"{closing['attempts']} attempt(s)")
            else:
                log.warning("Risk flatten at close for %s done (%d attempt(s))", g._accounts.get(account_id),
                            closing["attempts"])
                g._event("flatten_at_close", account_id, "flat", f"flat after {closing['attempts']} attempt(s)")
            self._closing.pop(account_id, None)
        g.store.set_mark(account_id, "flatten_at_close", end)
        self._marks[account_id] = end
