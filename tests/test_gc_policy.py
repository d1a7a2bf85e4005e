"""gc_policy: full collections only while nothing is in flight; the heap frozen between them."""
from __future__ import annotations

import gc
import weakref

from phantom_scraper.app import gc_policy


class Cycle:
    def __init__(self):
        self.me = self


def test_a_full_collection_runs_only_when_idle_and_reclaims_cycles_made_before_the_freeze():
    busy = [True]

    def idle():
        return not busy[0]

    gc_policy.start(idle, interval_s=3600)  # (the timer never fires here: passes are run by hand)
    try:
        assert gc.get_freeze_count() > 0  # start-up's objects are out of the automatic collections
        cycle = Cycle()
        gone = weakref.ref(cycle)
        gc.freeze()  # the cycle is now in the permanent generation ...
        del cycle  # ... and garbage that no automatic collection walks
        gc.collect()
        assert gone() is not None
        assert not gc_policy.collect_if_idle()  # a signal in flight: no pass
        assert gone() is not None
        busy[0] = False
        assert gc_policy.collect_if_idle()  # idle: unfreeze, collect, refreeze
        assert gone() is None
        assert gc.get_freeze_count() > 0 and gc_policy.stats["last_pause_ms"] is not None
        assert gc_policy.pause_stats()["last_idle_pass_objects"] >= gc.get_freeze_count() // 2
    finally:
        gc_policy.stop(idle)
    if not gc_policy._users:  # (no service of another test still running in this process)
        assert gc.get_freeze_count() == 0  # the last user returns everything to the collector


def test_freeze_now_only_while_the_collector_runs():
    def idle():
        return True

    if not gc_policy._users:
        gc.unfreeze()
        gc_policy.freeze_now()  # no service running: nothing is frozen
        assert gc.get_freeze_count() == 0
    gc_policy.start(idle, interval_s=3600)
    try:
        gc.unfreeze()
        gc_policy.freeze_now()
        assert gc.get_freeze_count() > 0
    finally:
        gc_policy.stop(idle)
