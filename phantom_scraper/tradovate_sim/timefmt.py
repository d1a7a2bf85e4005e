"""Wire formats for time: ISO-8601 with milliseconds and a Z, and Tradovate's tradeDate object."""
from __future__ import annotations

import datetime as dt
import time
from typing import Optional, Tuple


def iso_z(epoch: Optional[float] = None) -> str:
    stamp = dt.datetime.fromtimestamp(time.time() if epoch is None else epoch, dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def trade_day(epoch: Optional[float] = None) -> Tuple[int, int, int]:
    """The trade date as ``(year, month, day)``: how a stored report or fill keeps it (daybook.py)."""
    day = dt.datetime.fromtimestamp(time.time() if epoch is None else epoch, dt.timezone.utc).date()
    return (day.year, day.month, day.day)


def date_object(day: Tuple[int, int, int]) -> dict:
    """Tradovate's ``tradeDate`` object from ``(year, month, day)``."""
    return {"year": day[0], "month": day[1], "day": day[2]}


def trade_date(epoch: Optional[float] = None) -> dict:
    return date_object(trade_day(epoch))
