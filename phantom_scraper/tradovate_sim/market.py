"""Market data derived from one price history per contract: bars, ticks, quotes and the book (DOM).

A contract's history has two parts.  Up to its *anchor* (the first moment anything asked about the
contract's market, or the first price change) prices follow the product's seeded path
(:mod:`.pricepath`), shifted so the path meets the contract's price at the anchor.  After the anchor
the market moves only through trades: every price change (``Simulator.set_price``) is a trade of one
contract at the new price.  Bars, tick charts, the quote's session open/high/low/volume and the
settlement (the previous session's close) are all computed from that one history, so they agree.

Thread-safe: one lock guards the anchors and trades; price history is computed outside it.
"""
from __future__ import annotations

import bisect
import datetime as dt
import functools
import threading
from array import array
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from .catalog import Catalog, Contract, round_to_tick
from .pricepath import (PricePath, minute_volume, name_seed, sample_times, session_bounds, sessions,
                        sessions_back, td_int, trade_date_of, unit)
from .timefmt import iso_z

TICK_SPACING_S = 15.0  # one historical path tick every 15 s of session time
DOM_LEVELS = 10
_TRADE_TICK_IDS = 2_000_000_000  # trade ticks are numbered from here (path ticks: epoch // 15)


class _History:
    """Anchor and trades of one contract (guarded by Market._lock)."""

    def __init__(self, t: float, price: float):
        self.anchor_t = t
        self.anchor_p = price
        # trade times (ascending) and prices: flat arrays, which the garbage collector never walks
        # (a list of floats is walked entry by entry at every full collection, and grows all day)
        self.times = array("d")
        self.prices = array("d")


class Market:
    def __init__(self, catalog: Catalog, clock: Callable[[], float], seed: int,
                 price_of: Callable[[int], float]):
        self.catalog = catalog
        self.clock = clock
        self.seed = seed
        self._price_of = price_of  # the exchange's current price (takes the exchange's lock)
        self._paths = {p.name: PricePath(seed, p.name, p.base_price, p.daily_vol)
                       for _, p in catalog.products.values()}
        self._lock = threading.Lock()
        self._hist: Dict[int, _History] = {}

    # ---- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._hist.clear()

    def _history(self, contract_id: int) -> _History:
        with self._lock:
            hist = self._hist.get(contract_id)
        if hist is not None:
            return hist
        price, now = self._price_of(contract_id), self.clock()  # not under our lock
        with self._lock:
            return self._hist.setdefault(contract_id, _History(now, price))

    def trade(self, contract_id: int, old_price: float, new_price: float, at: float) -> None:
        """A price change is a trade at the new price (anchoring the history first at the old one)."""
        with self._lock:
            hist = self._hist.setdefault(contract_id, _History(at, old_price))
            if hist.times and at < hist.times[-1]:
                at = hist.times[-1]  # the clock was moved back: keep trades in order
            hist.times.append(at)
            hist.prices.append(new_price)

    def _snapshot(self, contract_id: int) -> Tuple[float, float, List[float], List[float]]:
        hist = self._history(contract_id)
        with self._lock:
            return hist.anchor_t, hist.anchor_p, list(hist.times), list(hist.prices)

    # ---- prices -------------------------------------------------------------------------------
    def _path_price(self, contract: Contract, anchor_t: float, anchor_p: float, t: float) -> float:
        path = self._paths[contract.product.name]
        tick = contract.product.tick_size
        return max(tick, round_to_tick(anchor_p + path.offset(t) - path.offset(anchor_t), tick))

    @functools.lru_cache(maxsize=8192)
    def _path_agg(self, contract: Contract, anchor_t: float, anchor_p: float, start: float, end: float,
                  step: float) -> Optional[tuple]:
        """(open, high, low, close, volume, up volume, down volume, up ticks, down ticks) of the path's
        session time in [start, end), sampled every ``step`` s; None when no session time is in it."""
        prices: List[float] = []
        volume = up_vol = down_vol = up_ticks = down_ticks = 0
        nseed = name_seed(self.seed, contract.name)
        for _, opens, closes in sessions(start, end):
            for t in sample_times(max(start, opens), min(end, closes), step):
                price = self._path_price(contract, anchor_t, anchor_p, t)
                vol = max(1, int(minute_volume(nseed, int(t // 60)) * step / 60.0))
                if prices and price > prices[-1]:
                    up_vol, up_ticks = up_vol + vol, up_ticks + 1
                elif prices and price < prices[-1]:
                    down_vol, down_ticks = down_vol + vol, down_ticks + 1
                else:
                    up_vol += vol // 2
                    down_vol += vol - vol // 2
                volume += vol
                prices.append(price)
        if not prices:
            return None
        return prices[0], max(prices), min(prices), prices[-1], volume, up_vol, down_vol, up_ticks, down_ticks

    def bar(self, contract: Contract, start: float, end: float, now: float, snap=None,
            timestamp: Optional[float] = None) -> Optional[dict]:
        """The OHLC bar of [start, end) as of ``now``, or None if nothing traded in it."""
        anchor_t, anchor_p, times, prices = snap or self._snapshot(contract.id)
        span = end - start
        step = span / 600.0 if span > 36000 else max(10.0, span / 30.0)  # <= ~600 / ~30 samples a bar
        path_end = min(end, anchor_t, now)
        agg = self._path_agg(contract, anchor_t, anchor_p, start, path_end, step) if path_end > start else None
        lo = bisect.bisect_left(times, start)
        hi = min(bisect.bisect_right(times, now), bisect.bisect_left(times, end))
        if start <= anchor_t < end and anchor_t <= now:  # the anchor is the path's last price
            if agg is None:
                agg = (anchor_p, anchor_p, anchor_p, anchor_p, 1, 1, 0, 0, 0)
            else:
                agg = (agg[0], max(agg[1], anchor_p), min(agg[2], anchor_p), anchor_p) + agg[4:]
        if agg is None and lo >= hi:
            return None
        if agg is not None:
            o, h, low, c, vol, up_vol, down_vol, up_ticks, down_ticks = agg
        else:
            o = h = low = prices[lo]
            vol = up_vol = down_vol = up_ticks = down_ticks = 0
            c = prices[lo - 1] if lo > 0 else anchor_p  # for the first trade's direction
        for k in range(lo, hi):  # trades of one contract each
            price = prices[k]
            if price > c:
                up_vol, up_ticks = up_vol + 1, up_ticks + 1
            elif price < c:
                down_vol, down_ticks = down_vol + 1, down_ticks + 1
            else:
                up_vol += 1
            h, low, c, vol = max(h, price), min(low, price), price, vol + 1
        return {"timestamp": iso_z(start if timestamp is None else timestamp), "open": o, "high": h,
                "low": low, "close": c, "upVolume": up_vol, "downVolume": down_vol, "upTicks": up_ticks,
                "downTicks": down_ticks, "bidVolume": down_vol + (up_vol // 4),
                "offerVolume": up_vol - (up_vol // 4)}

    # ---- bar series -------------------------------------------------------------------------------
    def minute_bar_starts(self, span: float, newest: float) -> Iterator[float]:
        """Start times of span-second bars holding session time, newest first, at or before ``newest``."""
        seen = set()
        for _, opens, closes in sessions_back(newest):
            top = min(closes - 1e-6, newest)
            c = (top // span) * span
            while c + span > opens:
                if c not in seen:
                    seen.add(c)
                    yield c
                c -= span
            if len(seen) > 4096:
                seen = {c for c in seen if c < opens + span}

    def bars_back(self, contract: Contract, kind: str, size: int, newest: float, oldest: float,
                  limit: int) -> List[Tuple[dt.date, dict]]:
        """Up to ``limit`` bars (trade date, bar) with timestamp in [oldest, newest], newest first."""
        now = self.clock()
        newest = min(newest, now)
        snap = self._snapshot(contract.id)
        out: List[Tuple[dt.date, dict]] = []
        if kind == "DailyBar":
            for day, opens, closes in sessions_back(newest):
                stamp = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()
                if len(out) >= limit or stamp < oldest or opens < oldest - 86400 * 4:
                    break
                if stamp > newest:
                    continue
                bar = self.bar(contract, opens, closes, now, snap, timestamp=stamp)
                if bar is not None:
                    out.append((day, bar))
            return out
        span = 60.0 * size
        for start in self.minute_bar_starts(span, newest):
            if len(out) >= limit or start < oldest:
                break
            bar = self.bar(contract, start, start + span, now, snap)
            if bar is not None:
                out.append((trade_date_of(start), bar))
        return out

    def ticks_back(self, contract: Contract, newest: float, oldest: float, limit: int) -> List[dict]:
        """Up to ``limit`` ticks {t (epoch s), price, size, id}, newest first."""
        now = self.clock()
        newest = min(newest, now)
        anchor_t, anchor_p, times, prices = self._snapshot(contract.id)
        out: List[dict] = []
        hi = bisect.bisect_right(times, newest)
        for k in range(hi - 1, -1, -1):
            if len(out) >= limit or times[k] < oldest:
                return out
            out.append({"t": times[k], "price": prices[k], "size": 1, "id": _TRADE_TICK_IDS + k})
        top = min(newest, anchor_t)
        nseed = name_seed(self.seed, contract.name)
        for _, opens, closes in sessions_back(top):
            t = (min(top, closes - 1e-6) // TICK_SPACING_S) * TICK_SPACING_S
            while t >= opens:
                if len(out) >= limit or t < oldest:
                    return out
                out.append({"t": t, "price": self._path_price(contract, anchor_t, anchor_p, t),
                            "size": 1 + int(unit(nseed, int(t), 3) * 9), "id": int(t // TICK_SPACING_S)})
                t -= TICK_SPACING_S
            if opens < oldest:
                return out
        return out

    def last_trade_tick(self, contract: Contract) -> Optional[dict]:
        _, _, times, prices = self._snapshot(contract.id)
        if not times:
            return None
        k = len(times) - 1
        return {"t": times[k], "price": prices[k], "size": 1, "id": _TRADE_TICK_IDS + k}

    # ---- quote and book ---------------------------------------------------------------------------
    def session_bar(self, contract: Contract, at: float) -> Tuple[Optional[dict], Optional[dict]]:
        """(this session's daily bar so far, the previous session's daily bar)."""
        snap = self._snapshot(contract.id)
        day = trade_date_of(at)
        opens, closes = session_bounds(day)
        current = self.bar(contract, opens, closes, at, snap)
        previous = None
        for _, p_open, p_close in sessions_back(opens - 1):
            previous = self.bar(contract, p_open, p_close, at, snap)
            break
        return current, previous

    def book(self, contract: Contract, price: float, at: float) -> Tuple[List[dict], List[dict]]:
        """(bids, offers), best first: DOM_LEVELS levels each side one tick around ``price``."""
        tick = contract.product.tick_size
        nseed = name_seed(self.seed, contract.name)
        minute = int(at // 60)

        def level(k: int, side: int) -> dict:
            px = round_to_tick(price + side * k * tick, tick)
            size = 1 + int(unit(nseed, int(round(px / tick)), minute, side) * (8 + 6 * k))
            return {"price": px, "size": size}

        bids = [level(k, -1) for k in range(1, DOM_LEVELS + 1) if price - k * tick > 0]
        offers = [level(k, 1) for k in range(1, DOM_LEVELS + 1)]
        return bids, offers

    def quote(self, contract: Contract, price: float, at: float) -> dict:
        """A quote with every entry of Tradovate's quote type."""
        bids, offers = self.book(contract, price, at)
        current, previous = self.session_bar(contract, at)
        entries = {"Bid": bids[0] if bids else {"price": price, "size": 1}, "Offer": offers[0],
                   "Trade": {"price": price, "size": 1}}
        if current is not None:
            entries.update({"OpeningPrice": {"price": current["open"]},
                            "HighPrice": {"price": max(current["high"], price)},
                            "LowPrice": {"price": min(current["low"], price)},
                            "TotalTradeVolume": {"size": current["upVolume"] + current["downVolume"]}})
        else:  # between sessions: the session to come has no prices yet
            entries.update({"OpeningPrice": {"price": price}, "HighPrice": {"price": price},
                            "LowPrice": {"price": price}, "TotalTradeVolume": {"size": 0}})
        settle = previous["close"] if previous is not None else price
        entries["SettlementPrice"] = {"price": settle}
        day = trade_date_of(at)
        oi = 20_000 + int(unit(name_seed(self.seed, contract.name), td_int(day)) * 400_000)
        entries["OpenInterest"] = {"size": oi}
        return {"timestamp": iso_z(at), "contractId": contract.id, "entries": entries}

    def dom(self, contract: Contract, price: float, at: float) -> dict:
        bids, offers = self.book(contract, price, at)
        return {"contractId": contract.id, "timestamp": iso_z(at), "bids": bids, "offers": offers}
