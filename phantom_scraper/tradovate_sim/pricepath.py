"""A deterministic, seeded price path per product, and CME Globex trading sessions.

The path is generated, never downloaded: a sum of smoothly interpolated hashed noise at several time
scales (3 minutes .. 4 weeks), amplitude ∝ √scale, so it wanders like a random walk with the product's
daily volatility.  It is a pure function of (seed, product, time), so any time range can be computed
without simulating what came before, and the same seed always gives the same bars.

Sessions follow CME Globex's weekly schedule in America/Chicago time: Sunday 17:00 to Friday 16:00
with a daily break 16:00-17:00.  A session belongs to the trade date it closes on (Monday's opens
Sunday 17:00); exchange holidays are not modelled.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Iterator, List, Tuple
from zoneinfo import ZoneInfo

CME_TZ = ZoneInfo("America/Chicago")
_M64 = (1 << 64) - 1
MINUTES_PER_DAY = 1380  # trading minutes in one Globex session
_SCALES = (3, 15, 60, 240, 1380, 6900, 27600)  # minutes


def mix64(x: int) -> int:
    """splitmix64 finaliser: a well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def unit(seed: int, *keys: int) -> float:
    """A deterministic number in [0, 1) for (seed, keys)."""
    h = seed & _M64
    for k in keys:
        h = mix64(h ^ (k & _M64))
    return (h >> 11) / float(1 << 53)


def name_seed(seed: int, name: str) -> int:
    h = mix64(seed & _M64)
    for ch in name.encode():
        h = mix64(h ^ ch)
    return h


class PricePath:
    """``offset(t)``: the path's displacement (price units) at epoch second ``t``; only differences matter."""

    def __init__(self, seed: int, name: str, level: float, daily_vol: float):
        self._seed = name_seed(seed, name)
        day_amp = level * daily_vol
        self._octaves = [(scale * 60.0, day_amp * math.sqrt(scale / MINUTES_PER_DAY), self._seed + i)
                         for i, scale in enumerate(_SCALES)]

    def offset(self, t: float) -> float:
        total = 0.0
        for span, amp, key in self._octaves:
            x = t / span
            i = math.floor(x)
            f = x - i
            f = f * f * (3.0 - 2.0 * f)  # smoothstep
            a = unit(key, i) * 2.0 - 1.0
            b = unit(key, i + 1) * 2.0 - 1.0
            total += amp * (a + (b - a) * f)
        return total


def trade_date_of(t: float) -> dt.date:
    """CME trade date of epoch second ``t`` (from 17:00 Chicago the next day's)."""
    local = dt.datetime.fromtimestamp(t, CME_TZ)
    day = local.date() + dt.timedelta(days=1) if local.hour >= 17 else local.date()
    while day.weekday() >= 5:  # a Saturday/Sunday date belongs to Monday's session
        day += dt.timedelta(days=1)
    return day


def session_bounds(day: dt.date) -> Tuple[float, float]:
    """(open, close) epoch seconds of trade date ``day`` (a weekday)."""
    prev = day - dt.timedelta(days=1)  # Monday's session opens Sunday 17:00
    opens = dt.datetime(prev.year, prev.month, prev.day, 17, 0, tzinfo=CME_TZ).timestamp()
    closes = dt.datetime(day.year, day.month, day.day, 16, 0, tzinfo=CME_TZ).timestamp()
    return opens, closes


def sessions(t0: float, t1: float) -> Iterator[Tuple[dt.date, float, float]]:
    """Sessions overlapping [t0, t1], oldest first: (trade date, open, close)."""
    day = trade_date_of(t0)
    while True:
        opens, closes = session_bounds(day)
        if opens > t1:
            return
        if closes > t0:
            yield day, opens, closes
        day += dt.timedelta(days=1)
        while day.weekday() >= 5:
            day += dt.timedelta(days=1)


def sessions_back(t1: float) -> Iterator[Tuple[dt.date, float, float]]:
    """Sessions that opened at or before ``t1``, newest first (endless)."""
    day = trade_date_of(t1)
    while True:
        opens, closes = session_bounds(day)
        if opens <= t1:
            yield day, opens, closes
        day -= dt.timedelta(days=1)
        while day.weekday() >= 5:
            day -= dt.timedelta(days=1)


def is_open(t: float) -> bool:
    opens, closes = session_bounds(trade_date_of(t))
    return opens <= t < closes


def td_int(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def minute_volume(seed: int, minute: int) -> int:
    """Contracts traded in one path minute (deterministic)."""
    u = unit(seed, minute, 7)
    return 5 + int(u * u * 120)


def sample_times(start: float, end: float, step: float) -> List[float]:
    """Sample instants in [start, end): start, start+step, ... (at least ``start`` when start < end)."""
    if end <= start:
        return []
    count = max(1, int(math.ceil((end - start) / step)))
    return [start + k * step for k in range(count)]
