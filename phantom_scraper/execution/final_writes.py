"""After the answer: what finished signals leave in the journal, coalesced into one transaction.

A signal's orders are decided and sent with their intents committed first (``sending``); what is
left once the broker has answered -- each order's final state (``acked``/``rejected``, order id,
latency) and the signal's status and summary -- is not needed to keep the exactly-once promise
(an intent left ``sending`` by a crash is reconciled by clOrdId at the next start, and the
signal's status is recomputed from its intents).  So it is written here, off the answer's path:

* one thread takes finished signals from a queue, waits ``linger_s`` (the webhook's answer leaves
  first instead of competing with this for the interpreter), then writes everything queued by then
  -- every signal's intent states and status -- in ONE transaction (``Journal.finish_signals``);
* each signal's ``after`` step (its INFO line, the in-flight count) runs once its write is done,
  so a shutdown that waits for in-flight signals also waits for their journal writes.

Under load the queue holds several signals by the time the thread wakes, so N signals cost one
commit instead of 2N.  ``submit`` never blocks; once the writer is stopped it writes in the
caller's thread.

A batch the journal refuses (disk full, database down) is kept and written again -- with the
next batch, or alone after 0.5, 1, 2 ... 5 s -- until it lands: an acked order must not stay
``sending`` until the next restart.  Each signal's ``after`` step still runs at once (its answer
and in-flight count do not wait for the disk).  ``final_write_failed`` / ``final_write_landed``
events count them (``phantom_final_writes`` in /metrics); one ERROR line per outage, one line
when they land.  At ``stop`` what still cannot be written is left ``sending`` for the next start's
reconciliation (logged).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, List, Optional, Sequence, Set, Tuple

from phantom_scraper import events

logger = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0

# (signal_id, status, summary, [(cl_ord_id, state, fields), ...]) -- or None: nothing to write
FinalWrite = Optional[Tuple[str, str, Optional[str], Sequence[tuple]]]
Build = Callable[[], FinalWrite]
After = Callable[[], None]

_STOP = object()


class FinalWriter:
    def __init__(self, journal, *, linger_s: float = 0.02, name: str = "final-writes",
                 after_batch: Optional[Callable[[], None]] = None):
        self.journal = journal
        self.after_batch = after_batch  # called once a batch is written (between signals)
        self.linger_s = linger_s
        self.name = name
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _thread, _stopped and the two counters
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        self._submitted = 0  # signals queued so far ...
        self._written = 0  # ... and those whose write (and after-step) is done
        self._progress = threading.Condition(self._lock)
        self._kick = threading.Event()  # a reader is waiting: no linger
        self.batches = 0  # transactions written (a figure for tests and the status JSON)
        self.signals = 0
        # Writes the journal refused, written again until they land (only the writer thread, or a
        # caller once stopped, touches them; _retry_lock guards the list for pending_cl_ord_ids).
        self._retry: List[tuple] = []
        self._retry_lock = threading.Lock()
        self._retry_delay = RETRY_FIRST_S
        self.retried = 0  # writes that landed after failing at least once

    def submit(self, build: Build, after: After) -> None:
        """Queue one finished signal: ``build()`` (in the writer thread) says what to write,
        ``after()`` runs once it is written."""
        with self._lock:
            stopped = self._stopped
            self._submitted += 1
            if not stopped and self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        if stopped:
            self._write([(build, after)])
            return
        self._queue.put((build, after))

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until everything submitted before this call is written (read-your-writes for the
        routes that show signals, history and metrics); the writer skips its linger meanwhile.
        -> False if that took longer than ``timeout_s``."""
        with self._lock:
            target = self._submitted
            if self._written >= target:
                return True
        self._kick.set()
        with self._lock:
            return self._progress.wait_for(lambda: self._written >= target, timeout_s)

    def pending_cl_ord_ids(self) -> Set[str]:
        """The clOrdIds whose final state waits to be written again (settlement leaves them alone)."""
        with self._retry_lock:
            return {change[0] for write in self._retry for change in write[3]}

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then end the thread; later submits write in the caller's thread."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._stop_deadline = time.monotonic() + timeout_s * 0.8
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout_s)

    def _finish_retries(self) -> None:
        """At stop: a few more tries within the stop's time, then leave the rest to the next start."""
        deadline = getattr(self, "_stop_deadline", time.monotonic())
        while self._retry and time.monotonic() < deadline:
            time.sleep(min(self._retry_delay, max(0.0, deadline - time.monotonic())))
            self._write([])
        if self._retry:
            logger.error("Stopping with %d finished signal(s) whose outcome the journal did not take; their "
                         "orders stay 'sending' and are reconciled by clOrdId at the next start", len(self._retry))

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._retry_delay if self._retry else None)
            except queue.Empty:  # refused writes are waiting: try them again
                self._write([])
                continue
            if item is _STOP:
                self._write(self._drain())
                self._finish_retries()
                return
            if self.linger_s > 0 and not self._kick.is_set():  # (no lock held) the answer leaves
                self._kick.wait(self.linger_s)  # first, and later signals join this transaction
            self._kick.clear()
            items = [item] + self._drain()
            stop = _STOP in items
            self._write([i for i in items if i is not _STOP])
            if stop:
                self._write(self._drain())
                self._finish_retries()
                return

    def _drain(self) -> List[tuple]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _write(self, items: List[tuple]) -> None:
        if not items and not self._retry:
            return
        with self._retry_lock:
            retrying, self._retry = self._retry, []
        writes = list(retrying)
        for build, _after in items:
            try:
                write = build()
            except Exception:  # noqa: BLE001 - one signal's bug must not lose the others' writes
                logger.exception("Could not build a finished signal's journal write")
                continue
            if write is not None:
                writes.append(write)
        try:
            if writes:
                self.journal.finish_signals(writes)
                self.batches += 1
                self.signals += len(writes)
        except Exception as exc:  # noqa: BLE001 - kept and written again until it lands
            fresh = len(writes) - len(retrying)
            with self._retry_lock:
                self._retry = writes + self._retry
            if not retrying:
                logger.error("Could not journal the outcome of %d signal(s): %s; written again every few "
                             "seconds until the journal takes it", len(writes), exc)
            else:
                self._retry_delay = min(RETRY_MAX_S, self._retry_delay * 2)
            if fresh:
                events.emit("final_write_failed", count=fresh)
        else:
            if retrying:
                self.retried += len(retrying)
                self._retry_delay = RETRY_FIRST_S
                logger.warning("The outcome of %d finished signal(s) is journaled after all (written again once "
                               "the journal was back)", len(retrying))
                events.emit("final_write_landed", count=len(retrying))
        for _build, after in items:
            try:
                after()
            except Exception:  # noqa: BLE001
                logger.exception("A finished signal's after-step failed")
        with self._lock:
            self._written += len(items)
            self._progress.notify_all()
        if self.after_batch is not None:
            try:
                self.after_batch()
            except Exception:  # noqa: BLE001
                logger.exception("after_batch failed")


__all__ = ("FinalWriter",)
