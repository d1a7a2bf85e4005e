"""Risk rules as pure functions: what an order plan may do to an account, and when the day is over.

No I/O and no clock of its own: the guard (``guard.py``) passes the broker's numbers and the time.

Entries and exits.  A plan's placement steps are walked from the account's current net position:
a step that moves the position towards zero is an exit, the part that moves it away from zero
(a new position, an add, the far side of a flip) is an entry.  Every rule limits entries only:
an exit is never refused, and a flip on a locked account is cut down to its exit.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from phantom_scraper.hours import TradingHours
from phantom_scraper.signals.model import step_delta

# Refusal codes (webhook answer, journal, status).
LOCKED = "locked"
RATE_LIMITED = "rate_limited"
OUTSIDE_HOURS = "outside_trading_hours"
MAX_POSITION = "max_position"
CLIPPED = "clipped"
PNL_UNKNOWN = "pnl_unknown"  # a P&L rule could not be applied: a figure it needs is not known

# Lock reasons.
DAILY_LOSS = "daily_loss_limit"
PROFIT_TARGET = "daily_profit_target"
TRAILING_DRAWDOWN = "trailing_drawdown"
KILL_SWITCH = "kill_switch"


@dataclass(frozen=True)
class RiskLimits:
    """One account's limits (None: no limit).  Defaults from the environment, overridden per
    account in the recorders file (``"risk": {"<account name>": {...}}``)."""

    max_position: Optional[int] = None
    trading_hours: Optional[TradingHours] = None
    flatten_at_close: bool = False
    daily_loss_limit: Optional[float] = None  # USD, positive: lock at P&L <= -limit
    daily_profit_target: Optional[float] = None  # USD: lock at P&L >= target
    trailing_drawdown: Optional[float] = None  # USD below the day's peak P&L

    def replace(self, **changes) -> "RiskLimits":
        return dataclasses.replace(self, **changes)

    @property
    def watches_pnl(self) -> bool:
        return any(v is not None for v in (self.daily_loss_limit, self.daily_profit_target, self.trailing_drawdown))

    def to_dict(self) -> dict:
        return {"max_position": self.max_position,
                "trading_hours": self.trading_hours.describe() if self.trading_hours else None,
                "flatten_at_close": self.flatten_at_close, "daily_loss_limit": self.daily_loss_limit,
                "daily_profit_target": self.daily_profit_target, "trailing_drawdown": self.trailing_drawdown}


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str



def _with_qty(step, qty: int):
    return dataclasses.replace(step, body={**step.body, "orderQty": qty})


def apply_entry_rules(steps: Sequence, net_pos: int, *, refuse: Optional[Refusal] = None,
                      max_position: Optional[int] = None,
                      pending: Tuple[int, int] = (0, 0)) -> Tuple[list, List[Refusal]]:
    """Cut a plan down to what the rules allow.  -> (steps kept, refusals/clips to report).

    ``refuse``: every entry is refused with it (locked, outside hours, rate limited) — exits stay.
    ``max_position``: an entry is reduced so that the exposure stays <= it: |net position| plus
    ``pending`` = (long, short) contracts of working entry orders and orders still in doubt, on the
    side the entry adds to.
    Steps that are not placements (cancel_working, wait_flat) are kept as they are; a step left with
    nothing to do is dropped, as is a ``wait_flat`` with nothing after it.
    """
    kept, notes = [], []
    pos = net_pos
    for step in steps:
        if step.kind == "liquidateposition":
            kept.append(step)
            pos = 0
            continue
        if step.kind in ("cancel_working", "wait_flat", "trim_legs", "interrupt_strategies"):
            kept.append(step)
            continue
        delta = step_delta(step)
        if delta is None:  # a placement whose size we cannot read: an entry unless proven otherwise
            if refuse is not None:
                notes.append(refuse)
                continue
            kept.append(step)
            continue
        exit_part = min(abs(delta), abs(pos)) if (pos > 0 > delta or pos < 0 < delta) else 0
        entry_part = abs(delta) - exit_part
        allowed_entry = entry_part
        if refuse is not None and entry_part:
            allowed_entry = 0
            notes.append(refuse)
        if max_position is not None and allowed_entry:
            waiting = pending[0] if delta > 0 else pending[1]
            room = max(0, max_position - (0 if exit_part else abs(pos)) - waiting)
            if allowed_entry > room and step.kind == "startorderstrategy":  # legs sized to the entry
                notes.append(Refusal(MAX_POSITION, f"order strategy entry of {entry_part} refused: it cannot be "
                                                   f"clipped to {room} (RISK_MAX_POSITION {max_position})"))
                continue
            if allowed_entry > room:
                if room:
                    notes.append(Refusal(CLIPPED, f"entry of {entry_part} reduced to {room}: the position "
                                                  f"may not exceed {max_position} (RISK_MAX_POSITION)"))
                else:
                    held = "the position" + (f" with {waiting} working or in doubt" if waiting else "")
                    notes.append(Refusal(MAX_POSITION, f"entry of {entry_part} refused: {held} is "
                                                       f"already at the maximum of {max_position}"))
                allowed_entry = room
        qty = exit_part + allowed_entry
        if qty <= 0 or (step.kind == "startorderstrategy" and qty != abs(delta)):  # never a cut strategy
            continue
        kept.append(step if qty == abs(delta) else _with_qty(step, qty))
        pos = pos + (qty if delta > 0 else -qty)
    while kept and kept[-1].kind == "wait_flat":
        kept.pop()
    return kept, notes


_PROBE = Refusal("probe", "probe")


def has_entry(steps: Sequence, net_pos: int) -> bool:
    """Does the plan open a position or add to one anywhere?"""
    return bool(apply_entry_rules(steps, net_pos, refuse=_PROBE)[1])


def pnl_breach(limits: RiskLimits, total_pnl: float, peak_pnl: float) -> Optional[Tuple[str, str]]:
    """(reason, message) when the day's P&L breaks a limit, else None."""
    if limits.daily_loss_limit is not None and total_pnl <= -abs(limits.daily_loss_limit):
        return DAILY_LOSS, f"daily P&L {total_pnl:.2f} USD reached the loss limit of -{abs(limits.daily_loss_limit):.2f}"
    if limits.daily_profit_target is not None and total_pnl >= limits.daily_profit_target:
        return PROFIT_TARGET, f"daily P&L {total_pnl:.2f} USD reached the profit target of {limits.daily_profit_target:.2f}"
    if limits.trailing_drawdown is not None and peak_pnl - total_pnl >= abs(limits.trailing_drawdown):
        return TRAILING_DRAWDOWN, (f"daily P&L {total_pnl:.2f} USD is {peak_pnl - total_pnl:.2f} below the day's peak "
                                   f"{peak_pnl:.2f} (trailing drawdown {abs(limits.trailing_drawdown):.2f})")
    return None


def breach_since_unlock(limits: RiskLimits, total_pnl: float, peak_since: float,
                        base: float) -> Optional[Tuple[str, str]]:
    """After an operator lifted a daily lock at P&L ``base``: only a *new* breach counts, measured
    from ``base`` by the configured amounts (a new low ``loss limit`` below it, a further gain of the
    profit target above it, a drawdown from the highest P&L since the unlock)."""
    at = f"the P&L when the lock was lifted ({base:.2f})"
    if limits.daily_loss_limit is not None and total_pnl <= base - abs(limits.daily_loss_limit):
        return DAILY_LOSS, (f"daily P&L {total_pnl:.2f} USD fell {abs(limits.daily_loss_limit):.2f} (the loss limit) "
                            f"below {at}")
    if limits.daily_profit_target is not None and total_pnl >= base + limits.daily_profit_target:
        return PROFIT_TARGET, (f"daily P&L {total_pnl:.2f} USD rose {limits.daily_profit_target:.2f} (the profit target) "
                               f"above {at}")
    if limits.trailing_drawdown is not None and peak_since - total_pnl >= abs(limits.trailing_drawdown):
        return TRAILING_DRAWDOWN, (f"daily P&L {total_pnl:.2f} USD is {peak_since - total_pnl:.2f} below its peak "
                                   f"{peak_since:.2f} since the unlock (trailing drawdown {abs(limits.trailing_drawdown):.2f})")
    return None


def relock_note(limits: RiskLimits, base: Optional[float]) -> str:
    """What lifting a daily lock at P&L ``base`` means, in words (the unlock's answer and log)."""
    if base is None:
        return ("relocks only on a new breach, measured from the P&L once it is known again "
                "(not on the figures that locked it)")
    parts = []
    if limits.daily_loss_limit is not None:
        parts.append(f"P&L at or below {base - abs(limits.daily_loss_limit):.2f}")
    if limits.daily_profit_target is not None:
        parts.append(f"at or above {base + limits.daily_profit_target:.2f}")
    if limits.trailing_drawdown is not None:
        parts.append(f"{abs(limits.trailing_drawdown):.2f} below the highest P&L since the unlock")
    return (f"the P&L when the lock was lifted is {base:.2f}: the same figures do not lock again today; it relocks "
            f"only on a new breach ({'; '.join(parts)})")


class SignalRateLimiter:
    """Entry signals per minute per recorder, as a sliding 60 s window.

    A signal takes a slot the first time one of its accounts needs it for an entry (every account of
    that signal then shares the slot); exits never take one.  Held in memory: after a restart the
    window starts empty (at most one extra minute's worth).
    """

    def __init__(self, window_s: float = 60.0):
        self.window_s = window_s
        self._lock = threading.Lock()  # guards _slots
        self._slots: Dict[str, Deque[Tuple[float, str]]] = {}

    def acquire(self, recorder: str, signal_id: str, limit: Optional[int], now: float) -> bool:
        if limit is None:
            return True
        with self._lock:
            slots = self._slots.setdefault(recorder, deque())
            while slots and slots[0][0] <= now - self.window_s:
                slots.popleft()
            if any(sid == signal_id for _t, sid in slots):
                return True
            if len(slots) >= limit:
                return False
            slots.append((now, signal_id))
            return True

    def count(self, recorder: str, now: float) -> int:
        with self._lock:
            return sum(1 for t, _ in self._slots.get(recorder, ()) if t > now - self.window_s)
