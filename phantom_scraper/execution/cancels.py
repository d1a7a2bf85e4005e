"""Cancel until nothing is working: the ``cancel`` alert, the lock barrier and ``close`` leftovers.

A cancel of an OSO entry takes its brackets with it at the broker; an OCO leg goes when its partner
fills; an order can fill between the read and the cancel.  So a one-pass "list, cancel each" meets
``TooLate`` on orders that are already gone and stops there, leaving the rest working.  Here::

    repeat (bounded): read the working orders -> cancel each one not yet asked
                      -> wait until the broker shows them gone
    until nothing is working (done) or the rounds run out (reported, with what is left)

A ``TooLate`` (or any "already done") answer to a cancel is success for that order: it is no longer
working, which is all a cancel wants.  Cancels are not placements: repeating one can never open a
position, so they may be re-sent; each order is asked at most once per round.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from phantom_scraper.errors import OrderRejectedError, TradovateError
from phantom_scraper.execution import exit_legs

logger = logging.getLogger(__name__)

MAX_ROUNDS = 5
_GONE_REASONS = frozenset({"TooLate"})


@dataclass
class CancelReport:
    cancelled: List[int] = field(default_factory=list)  # orders this call's cancels (or the broker) ended
    still_working: List[int] = field(default_factory=list)  # non-empty: the rounds ran out
    errors: List[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.still_working


def already_gone(exc: BaseException) -> bool:
    """A cancel answered "too late" / "already ..." : the order is no longer working."""
    if isinstance(exc, OrderRejectedError):
        if exc.failure_reason in _GONE_REASONS:
            return True
        text = (exc.failure_text or "").lower()
        return "already" in text or "not working" in text or "filled" in text or "canceled" in text
    return False


def cancel_until_none_working(conn, account_id: int, contract_id: int, timeout_s: float,
                              read_working: Callable[[], List[dict]],
                              keep: Optional[Callable[[dict], bool]] = None,
                              rounds: int = MAX_ROUNDS) -> CancelReport:
    """Cancel every working order of the account in the contract until none is left.

    ``read_working()`` returns the live orders now (socket-fed state when fresh, else a read);
    ``keep(order)`` true leaves an order alone (not used by a plain cancel)."""
    report = CancelReport()
    ti = conn.integration
    for _round in range(max(1, rounds)):
        working = [o for o in read_working() if keep is None or not keep(o)]
        if not working:
            report.still_working = []
            return report
        asked = []
        for order in working:
            order_id = order["id"]
            try:
                exit_legs.send_cancel(ti, conn.live_client(), {"orderId": order_id, "isAutomated": True})
            except TradovateError as exc:
                if not already_gone(exc):
                    report.errors.append(f"cancel {order_id}: {exc}")
                    logger.warning("Cancel of order %s (account %s) failed: %s", order_id, account_id, exc)
                    continue
                logger.info("Cancel of order %s (account %s): already gone (%s)", order_id, account_id, exc)
            asked.append(order_id)
            if order_id not in report.cancelled:
                report.cancelled.append(order_id)
        _wait_gone(conn, asked, timeout_s)
        report.still_working = [o["id"] for o in working]
    left = [o["id"] for o in read_working() if keep is None or not keep(o)]
    report.still_working = left
    if left:
        logger.error("Account %s contract %s: orders %s still working after %d cancel rounds", account_id,
                     contract_id, left, rounds)
    return report


def _wait_gone(conn, order_ids: List[int], timeout_s: float) -> None:
    if not order_ids:
        return
    state = exit_legs.fresh_state(conn)
    if state is not None:
        state.wait_for(lambda s: all(s.order_status(i) not in exit_legs.WORKING for i in order_ids), timeout_s)
        return
    time.sleep(min(0.05, timeout_s))  # REST: the next round re-reads the book
