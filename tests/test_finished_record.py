"""The compact record of orders the broker state dropped (tradovate/finished_record.py)."""
from __future__ import annotations

from phantom_scraper.tradovate.finished_record import FinishedRecord


def test_orders_answer_the_same_before_and_after_they_are_folded():
    record = FinishedRecord(kept=1000, fold_at=4)
    for oid in (30, 10, 20):  # not in id order: orders finish in any order
        assert record.put(oid, "Filled", (oid + 1, 1, oid + 2, -2)) == []
    assert record._segments == [] and len(record) == 3
    before = {oid: (record.status(oid), record.fills(oid), oid in record) for oid in (10, 20, 30, 40)}
    record.put(40, "Canceled")  # the fourth folds all four into one segment, sorted by id
    assert record._recent == {} and list(record._segments[0].ids) == [10, 20, 30, 40]
    after = {oid: (record.status(oid), record.fills(oid), oid in record) for oid in (10, 20, 30, 40)}
    assert after == {**before, 40: ("Canceled", (), True)}
    assert record.status(15) is None and record.fills(15) == () and 15 not in record
    assert 20 in record.frozen() and 15 not in record.frozen()


def test_an_order_put_again_the_same_is_left_alone_and_a_changed_one_answers_its_newest():
    record = FinishedRecord(kept=1000, fold_at=2)
    record.put(1, "Filled", (5, 1))
    record.put(2, "Filled", (6, 1))  # folded
    record.put(1, "Filled", (5, 1))  # a snapshot brought it back: nothing new
    assert record._recent == {} and len(record) == 2
    record.put(1, "Canceled")  # (never for a real final status; the record still answers the newest)
    assert record.status(1) == "Canceled" and record.fills(1) == (5, 1)
    record.put(2, "Filled", (6, 1, 7, 1))
    assert record.status(2) == "Filled" and record.fills(2) == (6, 1, 7, 1)


def test_over_its_bound_the_oldest_segments_are_forgotten_and_named():
    record = FinishedRecord(kept=20, fold_at=100)  # (folds every kept // 10 = 2)
    forgotten = []
    for oid in range(1, 22):
        forgotten += record.put(oid, "Filled")
    assert forgotten == [1, 2, 3, 4]  # the 21st: two whole segments go, down to 9/10 of kept
    assert len(record) == 17 and all(oid in record for oid in range(5, 22))
    assert not any(oid in record for oid in forgotten)
    # an id put again after it was folded is not named when its old segment goes
    record = FinishedRecord(kept=10, fold_at=1)
    for oid, status in ((1, "Filled"), (2, "Filled"), (1, "Canceled")):
        record.put(oid, status)
    gone = []
    for oid in range(3, 11):
        gone += record.put(oid, "Filled")
    assert gone == [2] and record.status(1) == "Canceled" and len(record) == 9


def test_odd_ids_and_statuses_are_kept_unfolded():
    record = FinishedRecord(kept=1000, fold_at=2)
    record.put("abc", "Filled")
    record.put(1 << 70, "Filled")
    record.put(3, ["not", "hashable"])
    record.put(4, None)
    assert record.status("abc") == "Filled" and record.status(1 << 70) == "Filled"
    assert record.status(3) == ["not", "hashable"] and 4 in record and record.status(4) is None
    assert ["x"] not in record and record.status(["x"]) is None
    assert set(record._odd) == {"abc", 1 << 70, 3} and record._recent == {}
    # a fill the arrays cannot hold keeps its order out of them too (the fold must never fail
    # under the state's lock: the order was already taken out of the state)
    record.put(5, "Filled", (1 << 64, 1))
    record.put(6, "Filled", (60, 1))  # folds
    assert record.fills(5) == (1 << 64, 1) and record.fills(6) == (60, 1) and 5 in record._odd
    record.put(3, "Filled")  # an odd entry put again, foldable now: it answers the newest
    assert record.status(3) == "Filled" and 3 not in record._odd


def test_segments_merge_up_to_their_bound_and_the_newer_entry_wins():
    record = FinishedRecord(kept=1000, fold_at=2, merge_max=8)
    for oid in (8, 1, 7, 2, 6, 3):
        record.put(oid, "Filled", (oid * 10, 1))
    record.put(1, "Canceled", ())  # put again, changed: the newer segment holds it
    record.put(5, "Filled", (50, 1))
    # folds of 2: [2] -> [2, 2] = [4]; [4, 2]; [4, 2, 2] = [4, 4] = [8 entries, 7 ids]: the older 1 is gone
    assert [len(s) for s in record._segments] == [7] and len(record) == 7
    assert list(record._segments[0].ids) == [1, 2, 3, 5, 6, 7, 8]
    for oid in (9, 4, 10, 11):
        record.put(oid, "Filled", (oid * 10, -1))
    assert [len(s) for s in record._segments] == [7, 4] and len(record) == 11  # (7 + 4 is over 8)
    assert record.status(1) == "Canceled" and record.fills(1) == ()
    assert [record.fills(oid) for oid in (2, 6, 8, 4, 11)] == [(20, 1), (60, 1), (80, 1), (40, -1), (110, -1)]
    assert all(oid in record for oid in range(1, 12)) and 12 not in record
