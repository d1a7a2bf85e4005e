"""The alert log: every request to a webhook route, accepted or refused.

A trader asking "TradingView says it fired: what did the server get?" finds here each request's
time, source address, route, HTTP status, error code and field, the body (secrets redacted,
truncated to ``body_limit`` bytes) and the signal id when one was made -- malformed, unsupported,
oversized and wrong-secret requests included, which the journal never sees.

Off the hot path: the request thread only appends the raw pieces (the body sliced to a little more
than the limit) to a bounded queue; the ``alert-log`` thread (or a reader, whichever comes first)
parses the answer, redacts, truncates and files them.  Retention is bounded by count
(``max_entries``) and age (``max_age_s``).  Kept in the worker's memory: a restart starts it empty
(accepted signals stay in the journal).  Each entry is kept as a tuple of its fields with one shared
string for the values that repeat (source, route, outcome, codes): 572 bytes for a 233-byte alert,
against 991 as a dict (``tests/test_console.py``); the log holds up to ``max_entries`` of them.
"""
from __future__ import annotations

import itertools
import json
import logging
import sys
import threading
import time
from collections import deque
from typing import Callable, Deque, List, Optional

from phantom_scraper import redact

logger = logging.getLogger(__name__)

OUTCOMES = ("accepted", "refused", "duplicate")
# A secret straddling the cut is still matched whole by redaction before the final truncation.
_SLACK = 256
# an entry's fields, in the order its tuple keeps them (``entries`` gives them as dicts)
FIELDS = ("id", "at", "source", "route", "method", "http_status", "outcome", "signal_id", "status",
          "error_code", "error_field", "error_message", "body", "body_bytes", "body_truncated", "note")
_AT, _OUTCOME = FIELDS.index("at"), FIELDS.index("outcome")


def _shared(value):
    """One string object for a value that repeats from request to request."""
    return sys.intern(value) if type(value) is str else value


class AlertLog:
    def __init__(self, *, max_entries: int = 10_000, max_age_s: float = 7 * 86400, body_limit: int = 4096,
                 clock: Callable[[], float] = time.time):
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.body_limit = body_limit
        self._clock = clock
        self._seq = itertools.count(1)
        # deque.append is atomic: the request thread takes no lock
        self._pending: Deque[tuple] = deque(maxlen=max_entries)
        self._lock = threading.Lock()  # guards _entries and the draining of _pending
        self._entries: Deque[tuple] = deque(maxlen=max_entries)  # FIELDS, in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._thread_lock = threading.Lock()  # guards _thread

    # -- the request thread ------------------------------------------------------------------------
    def record(self, *, source: str, route: str, method: str, status: int, body: Optional[bytes],
               answer: Optional[bytes], note: Optional[str] = None) -> None:
        """Called once per webhook request, after its answer is built: O(1), no parsing."""
        raw = None if body is None else (bytes(body[: self.body_limit + _SLACK]), len(body))
        self._pending.append((next(self._seq), self._clock(), source, route, method, int(status), raw,
                              (answer or b"")[:4096], note))
        self._ensure_thread()
        if not self._wake.is_set():
            self._wake.set()

    # -- readers -----------------------------------------------------------------------------------
    def entries(self, limit: int = 50, outcome: Optional[str] = None) -> List[dict]:
        """Newest first; ``outcome``: ``accepted``, ``refused`` or ``duplicate``."""
        self._drain()
        with self._lock:
            rows = list(self._entries)
        rows.reverse()
        if outcome:
            rows = [r for r in rows if r[_OUTCOME] == outcome]
        return [dict(zip(FIELDS, r)) for r in rows[: max(0, limit)]]

    def __len__(self) -> int:
        self._drain()
        with self._lock:
            return len(self._entries)

    # -- filing ------------------------------------------------------------------------------------
    def _drain(self) -> None:
        with self._lock:
            while True:
                try:
                    item = self._pending.popleft()
                except IndexError:
                    break
                try:
                    self._entries.append(self._file(*item))
                except Exception:  # noqa: BLE001 - one bad entry never stops the log
                    logger.exception("alert log: could not file a request")
            horizon = self._clock() - self.max_age_s
            while self._entries and self._entries[0][_AT] < horizon:
                self._entries.popleft()

    def _file(self, seq, at, source, route, method, status, raw, answer, note) -> tuple:
        parsed = {}
        if answer:
            try:
                parsed = json.loads(answer)
            except ValueError:
                parsed = {}
        if not isinstance(parsed, dict):
            parsed = {}
        error = parsed.get("error") if isinstance(parsed.get("error"), dict) else {}
        signal_id = parsed.get("signal_id")
        if parsed.get("duplicate"):
            outcome = "duplicate"
        elif status < 400 and signal_id:
            outcome = "accepted"
        else:
            outcome = "refused"
        body, size, truncated = None, 0, False
        if raw is not None:
            data, size = raw
            text = redact.redact(data.decode("utf-8", errors="replace"))
            encoded = text.encode("utf-8")
            truncated = size > self.body_limit or len(encoded) > self.body_limit
            body = encoded[: self.body_limit].decode("utf-8", errors="ignore") if truncated else text
        message = redact.redact(str(error.get("message"))) if error.get("message") else None
        return (seq, at, _shared(source), _shared(redact.redact(route)), _shared(method), status, outcome, signal_id,
                _shared(parsed.get("status")), _shared(error.get("code")), _shared(error.get("field")),
                _shared(message), body, size, truncated, _shared(note))

    # -- the thread --------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alert-log", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(5.0)
            self._wake.clear()
            time.sleep(0.05)  # a burst of requests is filed in one pass (this thread only)
            self._drain()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(2.0)
