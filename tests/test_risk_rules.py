"""Risk rules and trading hours as pure functions (no broker, no clock of their own)."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from phantom_scraper.hours import TradingHours, TradingHoursError, next_session_start, trading_day
from phantom_scraper.risk.rules import (CLIPPED, MAX_POSITION, RiskLimits, Refusal, SignalRateLimiter,
                                        apply_entry_rules, has_entry, pnl_breach)
from phantom_scraper.signals import OrderStep

CT = ZoneInfo("America/Chicago")
NY = ZoneInfo("America/New_York")


def at(y, mo, d, h, mi=0, tz=CT):
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()


# -- trading hours ---------------------------------------------------------------------------------

def test_weekday_window_in_its_own_zone():
    hours = TradingHours.parse("Mon-Fri 08:30-15:00 America/Chicago")
    assert hours.is_open(at(2026, 11, 24, 8, 30))  # Tuesday
    assert hours.is_open(at(2026, 11, 24, 14, 59))
    assert not hours.is_open(at(2026, 11, 24, 15, 0))
    assert not hours.is_open(at(2026, 11, 24, 8, 29))
    assert not hours.is_open(at(2026, 11, 28, 10, 0))  # Saturday
    assert hours.is_open(at(2026, 11, 24, 10, 0, NY))  # 09:00 Chicago
    assert hours.last_end(at(2026, 11, 24, 16, 0)) == at(2026, 11, 24, 15, 0)
    assert hours.next_end(at(2026, 11, 24, 10, 0)) == at(2026, 11, 24, 15, 0)
    assert hours.next_end(at(2026, 11, 24, 16, 0)) is None


def test_several_windows_lists_and_overnight():
    hours = TradingHours.parse("Mon,Wed 09:30-10:00 America/New_York; Sun-Thu 17:00-16:00 America/Chicago")
    assert hours.is_open(at(2026, 11, 23, 9, 45, NY))  # Monday, first window (and the overnight one)
    assert hours.is_open(at(2026, 11, 29, 18, 0))  # Sunday evening
    assert hours.is_open(at(2026, 11, 30, 3, 0))  # Monday night, in Sunday's overnight window
    assert not hours.is_open(at(2026, 11, 30, 16, 30))  # Monday 16:30: the daily break
    assert not hours.is_open(at(2026, 11, 28, 12, 0))  # Saturday
    assert hours.last_end(at(2026, 11, 30, 16, 30)) == at(2026, 11, 30, 16, 0)


def test_window_follows_daylight_saving():
    hours = TradingHours.parse("Mon-Fri 08:30-15:00 America/Chicago")
    summer, winter = at(2026, 7, 7, 8, 30), at(2026, 12, 8, 8, 30)
    assert hours.is_open(summer) and hours.is_open(winter)
    assert dt.datetime.fromtimestamp(summer, dt.timezone.utc).hour == 13
    assert dt.datetime.fromtimestamp(winter, dt.timezone.utc).hour == 14


@pytest.mark.parametrize("text", ["Mon-Fri 8:30 America/Chicago", "Funday 08:30-15:00 America/Chicago",
                                  "Mon-Fri 08:30-15:00 Mars/Olympus", "Mon 25:00-26:00 UTC",
                                  "Mon 10:00-10:00 UTC"])
def test_bad_trading_hours_are_named(text):
    with pytest.raises(TradingHoursError):
        TradingHours.parse(text)


def test_empty_trading_hours_mean_no_restriction():
    assert TradingHours.parse("") is None and TradingHours.parse(None) is None


def test_trading_day_and_session_start_at_17_chicago():
    assert trading_day(at(2026, 11, 23, 16, 59)) == dt.date(2026, 11, 23)
    assert trading_day(at(2026, 11, 23, 17, 0)) == dt.date(2026, 11, 24)
    assert next_session_start(at(2026, 11, 23, 12, 0)) == at(2026, 11, 23, 17, 0)
    assert next_session_start(at(2026, 11, 23, 17, 0)) == at(2026, 11, 24, 17, 0)


# -- entries and exits ----------------------------------------------------------------------------

def order(action, qty, kind="placeorder"):
    return OrderStep(kind, {"action": action, "orderQty": qty, "symbol": "NQZ6", "orderType": "Market"})


def qtys(steps):
    return [(s.kind, s.body.get("orderQty")) for s in steps]


def test_max_position_clips_an_entry_to_the_room_left():
    kept, notes = apply_entry_rules([order("Buy", 3)], 0, max_position=2)
    assert qtys(kept) == [("placeorder", 2)] and notes[0].code == CLIPPED
    kept, notes = apply_entry_rules([order("Buy", 3)], 1, max_position=2)
    assert qtys(kept) == [("placeorder", 1)]
    kept, notes = apply_entry_rules([order("Buy", 1)], 2, max_position=2)
    assert kept == [] and notes[0].code == MAX_POSITION
    kept, notes = apply_entry_rules([order("Sell", 5)], 2, max_position=2)  # flip: exit 2 + entry 2
    assert qtys(kept) == [("placeorder", 4)]
    kept, notes = apply_entry_rules([order("Sell", 2)], 2, max_position=1)  # a pure exit is never cut
    assert qtys(kept) == [("placeorder", 2)] and notes == []


def test_a_refusal_keeps_exits_and_cuts_flips_to_their_exit():
    locked = Refusal("locked", "locked")
    kept, notes = apply_entry_rules([order("Buy", 1)], 0, refuse=locked)
    assert kept == [] and notes == [locked]
    kept, notes = apply_entry_rules([order("Sell", 3)], 2, refuse=locked)
    assert qtys(kept) == [("placeorder", 2)]
    reverse = [OrderStep("liquidateposition", {"accountId": 1, "contractId": 2}),
               OrderStep("wait_flat", {"accountId": 1, "contractId": 2}), order("Sell", 2)]
    kept, _ = apply_entry_rules(reverse, 2, refuse=locked)
    assert [s.kind for s in kept] == ["liquidateposition"]
    assert not has_entry([order("Sell", 1)], 1) and has_entry([order("Sell", 2)], 1)
    assert has_entry([order("Buy", 1, "placeoso")], 0)


def test_pnl_limits():
    limits = RiskLimits(daily_loss_limit=500, daily_profit_target=1000, trailing_drawdown=300)
    assert pnl_breach(limits, -299.0, 0.0) is None
    assert pnl_breach(limits, -300.0, 0.0)[0] == "trailing_drawdown"  # the day's peak starts at 0
    assert pnl_breach(limits.replace(trailing_drawdown=None), -499.0, 0.0) is None
    assert pnl_breach(limits, -500.0, 0.0)[0] == "daily_loss_limit"
    assert pnl_breach(limits, 1000.0, 1000.0)[0] == "daily_profit_target"
    assert pnl_breach(limits, 600.0, 900.0)[0] == "trailing_drawdown"
    assert pnl_breach(RiskLimits(), -1e9, 0.0) is None


def test_rate_limiter_counts_signals_not_accounts():
    limiter = SignalRateLimiter(window_s=60)
    granted = [limiter.acquire("rec", f"s{i}", 5, 1000.0 + i) for i in range(20)]
    assert granted.count(True) == 5
    assert limiter.acquire("rec", "s0", 5, 1030.0)  # the same signal's other account shares its slot
    assert limiter.acquire("other", "x", 5, 1030.0)
    assert limiter.acquire("rec", "late", 5, 1061.0)  # the window slid
