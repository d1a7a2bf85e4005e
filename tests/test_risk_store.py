"""The risk guard's durable state on both journal backends (Postgres with TEST_DATABASE_URL)."""
from __future__ import annotations

from phantom_scraper.journal.journal import Journal
from phantom_scraper.risk.store import RiskStore


def test_locks_peaks_marks_and_events_survive_a_new_connection(journal_target):
    journal = Journal(journal_target)
    store = RiskStore(journal)
    first = store.add_lock(10001, "DEMO0001", "daily_loss_limit", "P&L -600", 100.0, 200.0, True)
    second = store.add_lock(10002, "DEMO0002", "kill_switch", "kill switch (api)", 150.0, None, False)
    assert second > first
    store.save_day(10001, "2026-11-24", 500.0, 500.0)
    store.save_day(10001, "2026-11-24", 300.0, 300.0)  # a lower value never lowers the peak
    store.set_mark(10001, "flatten_at_close", 1.0)
    store.set_mark(10001, "flatten_at_close", 2.0)
    store.record_event("lock", account_id=10001, account_name="DEMO0001", code="daily_loss_limit", message="m")
    journal.close()

    journal = Journal(journal_target)
    try:
        store = RiskStore(journal)
        locks = store.active_locks(120.0)
        assert set(locks) == {10001, 10002}
        assert locks[10001]["reason"] == "daily_loss_limit" and locks[10001]["flatten"] == 1
        assert locks[10002]["until"] is None and locks[10002]["flatten"] == 0
        assert set(store.active_locks(250.0)) == {10002}  # the daily lock ended at its session start
        assert store.peak(10001, "2026-11-24") == 500.0 and store.peak(10001, "2026-11-25") is None
        assert store.mark(10001, "flatten_at_close") == 2.0 and store.mark(10002, "flatten_at_close") is None
        assert store.unlock(10002, "operator", 260.0) == 1
        assert store.active_locks(260.0) == {}
        events = store.recent_events()
        assert events[0]["kind"] == "lock" and events[0]["account_name"] == "DEMO0001"
    finally:
        journal.close()
