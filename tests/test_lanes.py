"""Lanes: one job at a time per key, in reservation order; keys independent; cancel frees the lane."""
from __future__ import annotations

import concurrent.futures
import threading

from phantom_scraper.execution.lanes import Lanes

WAIT_S = 10.0


def make():
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    return Lanes(lambda: pool), pool


def test_jobs_run_in_reservation_order_even_when_submitted_out_of_order():
    lanes, pool = make()
    ran = []
    first, second, third = (lanes.reserve(("acct", "NQ")) for _ in range(3))
    f3 = third.submit(lambda: ran.append(3))
    f2 = second.submit(lambda: ran.append(2))
    assert ran == []  # the first place has no job yet: nobody may overtake it
    f1 = first.submit(lambda: ran.append(1))
    for f in (f1, f2, f3):
        f.result(WAIT_S)
    assert ran == [1, 2, 3] and lanes.depth() == {}
    pool.shutdown()


def test_one_job_at_a_time_per_key_and_keys_in_parallel():
    lanes, pool = make()
    gate = threading.Event()
    inside = []
    lock = threading.Lock()  # serialises appends to inside

    def job(tag):
        with lock:
            inside.append(tag)
        gate.wait(WAIT_S)
        return tag

    a1 = lanes.background(("a", "NQ"), lambda: job("a1"))
    a2 = lanes.background(("a", "NQ"), lambda: job("a2"))
    b1 = lanes.background(("b", "NQ"), lambda: job("b1"))
    other_product = lanes.background(("a", "ES"), lambda: job("a-es"))
    deadline = threading.Event()
    for _ in range(500):
        with lock:
            if len(inside) == 3:
                break
        deadline.wait(0.01)
    with lock:
        assert sorted(inside) == ["a-es", "a1", "b1"]  # a2 waits behind a1; the others run
    gate.set()
    assert [f.result(WAIT_S) for f in (a1, a2, b1, other_product)] == ["a1", "a2", "b1", "a-es"]
    pool.shutdown()


def test_cancel_frees_the_lane_and_inline_runs_in_the_caller():
    lanes, pool = make()
    dropped = lanes.reserve(("a", "NQ"))
    nxt = lanes.reserve(("a", "NQ"))
    done = nxt.submit(lambda: threading.current_thread().name, inline=True)
    assert not done.done()
    dropped.cancel()  # e.g. the symbol did not resolve: the next alert may go
    assert done.result(WAIT_S)
    caller = threading.current_thread().name
    assert lanes.reserve(("c", "NQ")).submit(lambda: threading.current_thread().name, inline=True).result() == caller
    pool.shutdown()


def test_a_failing_job_does_not_block_its_lane():
    lanes, pool = make()
    bad = lanes.background(("a", "NQ"), lambda: 1 / 0)
    good = lanes.background(("a", "NQ"), lambda: "ok")
    assert isinstance(bad.exception(WAIT_S), ZeroDivisionError) and good.result(WAIT_S) == "ok"
    pool.shutdown()


def test_a_job_that_ran_is_let_go_so_its_ticket_is_freed_without_a_garbage_collection():
    """A lane job closes over its own ticket (AccountLanes' lane_job does): ticket.job -> job ->
    ticket was a reference cycle per account and signal, freed only by a full collection, which the
    server runs rarely while signals flow (its heap grew ~11 MB per 1,000 five-account signals)."""
    import gc
    import weakref

    class Held:  # what a job holds (the signal, the account's outcome...)
        pass

    lanes, pool = make()
    gc.disable()
    try:
        refs = []
        for inline in (True, False):
            held = Held()
            refs.append(weakref.ref(held))
            ticket = lanes.reserve(("acct", "NQ"))

            def job(ticket=ticket, held=held):
                return None
            ticket.submit(job, inline=inline).result(WAIT_S)
            del ticket, job, held
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()
        pool.shutdown()
