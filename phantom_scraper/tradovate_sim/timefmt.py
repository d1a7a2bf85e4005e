"""Wire formats for time: ISO-8601 with milliseconds and a Z, and Tradovate's tradeDate object."""
from __future__ import annotations

import datetime as dt
import time
from typing import Optional


def iso_z(epoch: Optional[float] = None) -> str:
    stamp = dt.datetime.fromtimestamp(time.time() if epoch is None else epoch, dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def trade_date(epoch: Optional[float] = None) -> dict:
    day = dt.datetime.fromtimestamp(time.time() if epoch is None else epoch, dt.timezone.utc).date()
    return {"year": day.year, "month": day.month, "day": day.day}
