"""Random strategy-position alert sequences against the simulator (issue 12's property).

With and without brackets, arrival gaps of 0-50 ms and a broker answering in 0-60 ms, at one and
at three accounts (multipliers 1, 2, 3): after each quiet period every account holds exactly
target x multiplier, and the working exit legs of each kind cover exactly the open position (none
without brackets).  Each sequence ends with the price running through both bracket sides: the
legs then close the positions and never flip one.
"""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import recorder_service as rs
from phantom_scraper.tradovate_sim import Simulator, UserSpec
from tests.helpers import SIM_TEST_CONFIG
from tests.positions_support import Desk, target

BRACKETS = {"price": 21000, "tp_ticks": 40, "sl_ticks": 40}  # long: tp 21010 / sl 20990; short: mirrored

alerts = st.lists(
    st.tuples(st.sampled_from(["long", "short", "flat"]), st.integers(1, 3), st.integers(0, 50)),
    min_size=1, max_size=4)
bursts = st.lists(alerts, min_size=1, max_size=3)


@pytest.mark.parametrize("accounts", [1, 3])
def test_accounts_end_where_the_strategy_is(accounts, tmp_path, clean_pool):
    sim = Simulator(SIM_TEST_CONFIG.replace(
        users=(UserSpec.with_accounts("demo", "demo", accounts, prefix="DEMO"),), ws_idle_timeout_s=5.0)).start()
    desk = Desk(sim, tmp_path, multipliers=(1, 2, 3)[:accounts])
    try:
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
        @given(bursts=bursts, with_brackets=st.booleans(), latency_ms=st.integers(0, 60))
        def run(bursts, with_brackets, latency_ms):
            sim.faults.reset()
            sim.set_price("NQZ6", 21000)
            desk.send(target("flat", 0))  # a clean start: flat, no legs
            desk.quiet()
            sim.faults.update({"order_delay_ms": latency_ms / 2, "order_delay_jitter_ms": latency_ms / 2,
                               "response_latency_jitter_ms": latency_ms / 2})
            for burst in bursts:
                last = None
                for side, size, gap_ms in burst:
                    last = 0 if side == "flat" else (size if side == "long" else -size)
                    desk.send(target(side, size, BRACKETS if with_brackets else None), wait=False)
                    time.sleep(gap_ms / 1000.0)  # the arrival gap between alerts (not an assertion)
                desk.quiet()
                for t, _ in desk.targets:
                    held = desk.position(t.id)
                    assert held == last * t.multiplier, (t.name, held, last, burst)
                    cover = abs(held) if with_brackets else 0
                    assert desk.legs(t.id) == {"take_profit": cover, "stop": cover}, (t.name, held, burst)
            sim.faults.reset()
            for price in (21010, 20990):  # both bracket sides trade: legs close, never flip
                sim.set_price("NQZ6", price)
                desk.quiet()
            for t, _ in desk.targets:
                if with_brackets:
                    assert desk.position(t.id) == 0, (t.name, desk.position(t.id))
                assert desk.legs(t.id) == {"take_profit": 0, "stop": 0}

        run()
    finally:
        desk.close()
        rs.reset_pool()
        sim.stop()
