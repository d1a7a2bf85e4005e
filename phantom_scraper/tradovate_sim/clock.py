"""The simulator's clock for market events: fills, quotes, cash balances and the book of record.

It follows real time unless a test pins it (``freeze(epoch)``) or moves it (``advance(s)``); tokens
and socket timeouts keep real time.  Thread-safe.
"""
from __future__ import annotations

import threading
import time
from typing import Optional


class SimClock:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the two fields below
        self._frozen: Optional[float] = None
        self._offset = 0.0

    def now(self) -> float:
        with self._lock:
            return self._frozen if self._frozen is not None else time.time() + self._offset

    __call__ = now

    def freeze(self, epoch: Optional[float] = None) -> float:
        with self._lock:
            self._frozen = (time.time() + self._offset) if epoch is None else float(epoch)
            return self._frozen

    def advance(self, seconds: float) -> float:
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
                return self._frozen
            self._offset += seconds
            return time.time() + self._offset

    def unfreeze(self) -> None:
        """Back to moving time, continuing from the frozen instant."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - time.time()
                self._frozen = None

    def to_dict(self) -> dict:
        with self._lock:
            frozen = self._frozen
        return {"time": self.now(), "frozen": frozen is not None}
