"""``md/getChart``: request parsing and the ``charts`` packets (bars or ticks) it streams.

Request body (docs/TRADOVATE.md, "Market data and cash balance")::

    {"symbol": "NQZ6" | 3000201 | "@NQ",
     "chartDescription": {"underlyingType": "MinuteBar"|"Tick"|"DailyBar", "elementSize": 15,
                          "elementSizeUnit": "UnderlyingUnits", "withHistogram": false},
     "timeRange": {"closestTimestamp": "…Z", "asFarAsTimestamp": "…Z", "asMuchAsElements": 66}}

History is every element with closestTimestamp >= timestamp >= asFarAsTimestamp (closestTimestamp
defaults to now), newest ``asMuchAsElements`` of them (at most ``SimConfig.md_max_chart_elements``),
sent oldest first in packets, then ``{"id": .., "eoh": true}``; after that each trade updates the
chart (the current bar again, or the new tick).  Bar packets: ``{"id", "td", "bars": [...]}``; tick
packets: ``{"id", "s", "td", "bp", "bt", "ts", "tks": [{"t", "p", "s", "b", "a", "bs", "as", "id"}]}``
with prices in ticks relative to ``bp`` and times in ms relative to ``bt``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import List, Optional, Union

from .catalog import Contract
from .market import Market
from .pricepath import session_bounds, td_int, trade_date_of, unit

KINDS = ("MinuteBar", "Tick", "DailyBar")
TIME_RANGE_KEYS = ("closestTimestamp", "closestTickId", "asFarAsTimestamp", "asMuchAsElements")


@dataclass(frozen=True)
class ChartSpec:
    contract: Contract
    kind: str
    size: int  # minutes per bar (MinuteBar); 1 otherwise
    newest: Optional[float]  # closestTimestamp (epoch s) or None = now
    oldest: float  # asFarAsTimestamp (epoch s) or -inf
    limit: int


def parse_time(value) -> Optional[float]:
    if value is None:
        return None
    text = str(value).strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    stamp = dt.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def parse_request(body: dict, contract: Optional[Contract], max_elements: int) -> Union[ChartSpec, str]:
    """A :class:`ChartSpec`, or the ``errorText`` to answer with."""
    if contract is None:
        return "Unknown symbol"
    desc = body.get("chartDescription")
    if not isinstance(desc, dict):
        return "chartDescription is required"
    kind = desc.get("underlyingType")
    if kind not in KINDS:
        return f"Unsupported underlyingType {kind!r} (the simulator serves {', '.join(KINDS)})"
    unit_name = desc.get("elementSizeUnit") or "UnderlyingUnits"
    if unit_name != "UnderlyingUnits":
        return f"Unsupported elementSizeUnit {unit_name!r} (the simulator serves UnderlyingUnits)"
    try:
        size = int(desc.get("elementSize") or 1)
    except (TypeError, ValueError):
        return "elementSize must be a positive integer"
    if size < 1:
        return "elementSize must be a positive integer"
    time_range = body.get("timeRange")
    if not isinstance(time_range, dict) or not any(k in time_range for k in TIME_RANGE_KEYS):
        return f"timeRange needs at least one of {', '.join(TIME_RANGE_KEYS)}"
    try:
        newest = parse_time(time_range.get("closestTimestamp"))
        oldest = parse_time(time_range.get("asFarAsTimestamp"))
        wanted = time_range.get("asMuchAsElements")
        limit = max_elements if wanted is None else max(0, min(int(wanted), max_elements))
    except (TypeError, ValueError):
        return "timeRange: malformed timestamp or element count"
    return ChartSpec(contract, kind, size if kind == "MinuteBar" else 1, newest,
                     float("-inf") if oldest is None else oldest, limit)


def _bar_packets(chart_id: int, rows, per_packet: int) -> List[dict]:
    rows = list(reversed(rows))  # oldest first
    return [{"id": chart_id, "td": td_int(rows[i + per_packet - 1 if i + per_packet <= len(rows) else -1][0]),
             "bars": [bar for _, bar in rows[i:i + per_packet]]}
            for i in range(0, len(rows), per_packet)]


def tick_packet(chart_id: int, contract: Contract, ticks: List[dict], source: str, seed: int) -> dict:
    """One packet of ``ticks`` (oldest first): prices in ticks from ``bp``, times in ms from ``bt``."""
    ts = contract.product.tick_size
    bp = int(round(ticks[0]["price"] / ts))
    bt = int(round(ticks[0]["t"] * 1000))
    tks = []
    for tick in ticks:
        p = int(round(tick["price"] / ts)) - bp
        tks.append({"t": int(round(tick["t"] * 1000)) - bt, "p": p, "s": tick["size"], "b": p - 1, "a": p + 1,
                    "bs": 1 + int(unit(seed, tick["id"], 1) * 40), "as": 1 + int(unit(seed, tick["id"], 2) * 40),
                    "id": tick["id"]})
    return {"id": chart_id, "s": source, "td": td_int(trade_date_of(ticks[-1]["t"])), "bp": bp, "bt": bt,
            "ts": ts, "tks": tks}


def history(market: Market, spec: ChartSpec, chart_id: int, per_packet: int) -> List[dict]:
    """The history packets (without the end-of-history marker)."""
    newest = market.clock() if spec.newest is None else spec.newest
    if spec.kind == "Tick":
        ticks = list(reversed(market.ticks_back(spec.contract, newest, spec.oldest, spec.limit)))
        return [tick_packet(chart_id, spec.contract, ticks[i:i + per_packet], "db", market.seed)
                for i in range(0, len(ticks), per_packet)]
    rows = market.bars_back(spec.contract, spec.kind, spec.size, newest, spec.oldest, spec.limit)
    return _bar_packets(chart_id, rows, per_packet)


def live_packet(market: Market, spec: ChartSpec, chart_id: int, at: float) -> Optional[dict]:
    """After a trade at ``at``: the updated current bar, or the new tick."""
    if spec.kind == "Tick":
        tick = market.last_trade_tick(spec.contract)
        return tick_packet(chart_id, spec.contract, [tick], "rt", market.seed) if tick else None
    day = trade_date_of(at)
    if spec.kind == "DailyBar":
        opens, closes = session_bounds(day)
        stamp = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()
        bar = market.bar(spec.contract, opens, closes, at, timestamp=stamp)
    else:
        span = 60.0 * spec.size
        start = (at // span) * span
        bar = market.bar(spec.contract, start, start + span, at)
    return {"id": chart_id, "td": td_int(day), "bars": [bar]} if bar else None
