"""final_writes.FinalWriter: finished signals' journal writes after the answer, coalesced."""
from __future__ import annotations

import threading

from phantom_scraper.execution.final_writes import FinalWriter
from tests.helpers import wait_for


class RecordingJournal:
    def __init__(self, fail: bool = False):
        self.transactions = []
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def finish_signals(self, items):
        self.entered.set()
        self.gate.wait(5)
        if self.fail:
            raise RuntimeError("database is locked")
        self.transactions.append(list(items))


def _item(sid, log, status="acked"):
    return (lambda: (sid, status, None, [(f"cl-{sid}", "acked", {})]), lambda: log.append(sid))


def test_signals_queued_while_it_writes_share_one_transaction_and_after_runs_once_written():
    journal = RecordingJournal()
    journal.gate.clear()  # the first write blocks: everything submitted meanwhile queues up
    writer = FinalWriter(journal, linger_s=0.0)
    done = []
    writer.submit(*_item("s0", done))
    assert journal.entered.wait(5)  # the writer is inside the first transaction
    for n in range(1, 6):
        writer.submit(*_item(f"s{n}", done))
    assert done == []  # nothing is reported done before its write
    journal.gate.set()
    wait_for(lambda: len(done) == 6, what="every after-step")
    assert [[i[0] for i in t] for t in journal.transactions] == [["s0"], ["s1", "s2", "s3", "s4", "s5"]]
    assert journal.transactions[1][0][3] == [("cl-s1", "acked", {})]
    writer.stop()


def test_stop_writes_what_is_queued_and_later_signals_are_written_in_the_callers_thread():
    journal = RecordingJournal()
    writer = FinalWriter(journal, linger_s=0.05)
    done = []
    writer.submit(*_item("a", done))
    writer.stop()
    assert done == ["a"] and [i[0] for t in journal.transactions for i in t] == ["a"]
    writer.submit(*_item("b", done))  # stopped: written here, at once
    assert done == ["a", "b"] and journal.transactions[-1][0][0] == "b"


def test_a_failed_write_or_a_broken_build_still_ends_every_signal():
    journal = RecordingJournal(fail=True)
    writer = FinalWriter(journal, linger_s=0.0)
    done = []

    def broken():
        raise ValueError("bug")

    writer.submit(broken, lambda: done.append("broken"))
    writer.submit(*_item("x", done))
    wait_for(lambda: sorted(done) == ["broken", "x"], what="both after-steps despite the failures")
    writer.stop()


def test_after_each_batch_the_hook_runs_once_the_signals_are_written():
    journal = RecordingJournal()
    seen = []
    writer = FinalWriter(journal, linger_s=0.0, after_batch=lambda: seen.append(len(journal.transactions)))
    done = []
    writer.submit(*_item("a", done))
    wait_for(lambda: seen, what="the after-batch hook")
    assert seen[0] == 1 and done == ["a"]  # (gc_policy.freeze_now: between signals, not inside one)
    writer.stop()
