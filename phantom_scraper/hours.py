"""Trading hours and the CME trading day, in the exchange's own time zone (``zoneinfo``).

``TRADING_HOURS`` holds one or more windows separated by ``;``::

    Mon-Fri 08:30-15:00 America/Chicago
    Mon,Wed,Fri 09:30-16:00 America/New_York; Sun 17:00-23:59 America/Chicago
    Sun-Thu 17:00-16:00 America/Chicago        (end before start: the window ends the next day)

Days are ``Mon Tue Wed Thu Fri Sat Sun`` (ranges with ``-``, lists with ``,``); the days name the
day each window *starts*.  Times are local wall-clock times in the named zone, so a window follows
daylight saving time.  The time-zone database comes from the system or, where there is none, from
the ``tzdata`` package (pinned in requirements.txt).

The trading day (what a daily loss limit resets on) starts at 17:00 America/Chicago, CME Globex's
session start: Monday 16:59 CT still belongs to Monday, 17:00 CT is already Tuesday.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SESSION_ZONE = ZoneInfo("America/Chicago")
SESSION_START = dt.time(17, 0)

_WINDOW_RE = re.compile(r"^\s*(?P<days>[A-Za-z,\-\s]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})"
                        r"\s+(?P<zone>[A-Za-z_+\-/0-9]+)\s*$")


class TradingHoursError(ValueError):
    """``TRADING_HOURS`` (or an override) cannot be read; the message says which part."""


def _parse_time(text: str, what: str) -> dt.time:
    hours, minutes = (int(p) for p in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes <= 59) or (hours == 24 and minutes):
        raise TradingHoursError(f"{what} {text!r} is not a time of day")
    return dt.time(23, 59, 59, 999999) if hours == 24 else dt.time(hours, minutes)


def _parse_days(text: str) -> Tuple[int, ...]:
    days = set()
    for part in text.replace(" ", "").lower().split(","):
        if not part:
            continue
        ends = part.split("-")
        if len(ends) > 2 or any(e[:3] not in DAYS or len(e) < 3 for e in ends):
            raise TradingHoursError(f"{part!r} is not a day or a day range (Mon-Fri, Sat, Mon,Wed)")
        first, last = DAYS.index(ends[0][:3]), DAYS.index(ends[-1][:3])
        index = first
        while True:
            days.add(index)
            if index == last:
                break
            index = (index + 1) % 7
    if not days:
        raise TradingHoursError("a window names no day")
    return tuple(sorted(days))


@dataclass(frozen=True)
class Window:
    days: Tuple[int, ...]  # weekday numbers (Mon = 0) the window starts on
    start: dt.time
    end: dt.time
    zone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def occurrences(self, around: dt.datetime) -> Iterator[Tuple[dt.datetime, dt.datetime]]:
        """(start, end) of every occurrence starting from eight days before to one day after ``around``."""
        tz = self.tz
        local = around.astimezone(tz).date()
        for offset in range(-8, 2):
            day = local + dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            start = dt.datetime.combine(day, self.start, tz)
            end_day = day if self.end > self.start else day + dt.timedelta(days=1)
            yield start, dt.datetime.combine(end_day, self.end, tz)


@dataclass(frozen=True)
class TradingHours:
    windows: Tuple[Window, ...]
    text: str = ""

    @classmethod
    def parse(cls, text: Optional[str]) -> Optional["TradingHours"]:
        """None for an empty text (no restriction); raises :class:`TradingHoursError`."""
        if text is None or not str(text).strip():
            return None
        windows: List[Window] = []
        for part in str(text).split(";"):
            if not part.strip():
                continue
            match = _WINDOW_RE.match(part)
            if not match:
                raise TradingHoursError(
                    f"{part.strip()!r} is not 'Days HH:MM-HH:MM Zone' (e.g. 'Mon-Fri 08:30-15:00 America/Chicago')")
            try:
                ZoneInfo(match["zone"])
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise TradingHoursError(f"unknown time zone {match['zone']!r}") from exc
            start = _parse_time(match["start"], "start")
            end = _parse_time(match["end"], "end")
            if start == end:
                raise TradingHoursError(f"{part.strip()!r}: the window is empty (start == end)")
            windows.append(Window(_parse_days(match["days"]), start, end, match["zone"]))
        if not windows:
            return None
        return cls(tuple(windows), str(text).strip())

    def _occurrences(self, now: float):
        around = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        for window in self.windows:
            for start, end in window.occurrences(around):
                yield start.timestamp(), end.timestamp()

    def is_open(self, now: float) -> bool:
        return any(start <= now < end for start, end in self._occurrences(now))

    def last_end(self, now: float) -> Optional[float]:
        """The latest window end at or before ``now`` (within the last week), or None."""
        ends = [end for start, end in self._occurrences(now) if end <= now]
        return max(ends) if ends else None

    def next_end(self, now: float) -> Optional[float]:
        """The end of the window open at ``now``, or None when closed."""
        ends = [end for start, end in self._occurrences(now) if start <= now < end]
        return max(ends) if ends else None

    def describe(self) -> str:
        return self.text


def trading_day(now: float) -> dt.date:
    """CME trade date of ``now`` (epoch seconds): the day after, from 17:00 America/Chicago on."""
    local = dt.datetime.fromtimestamp(now, SESSION_ZONE)
    return local.date() + dt.timedelta(days=1) if local.time() >= SESSION_START else local.date()


def next_session_start(now: float) -> float:
    """Epoch seconds of the first 17:00 America/Chicago strictly after ``now``."""
    local = dt.datetime.fromtimestamp(now, SESSION_ZONE)
    candidate = dt.datetime.combine(local.date(), SESSION_START, SESSION_ZONE)
    if candidate.timestamp() <= now:
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=1), SESSION_START, SESSION_ZONE)
    return candidate.timestamp()
