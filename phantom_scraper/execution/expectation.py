"""Where each (account, contract) should be, and which of its orders are still in doubt.

Kept in memory by execution (one :data:`BOOK` per process), fed by the lanes:

* **in doubt**: a placement whose outcome is not known yet -- ``sending`` (its frame may be at the
  broker) or ``unknown`` (searched, not found yet).  Its signed size counts towards the account's
  exposure for the risk guard's position rules until the order is found or settled.
* **expected position**: the strategy's last stated target when a signal states one (``flat``,
  ``close``, a sentiment with ``position_size``, ``reverse``), otherwise the position the lane
  expected after its last job (the broker's position then, plus what that job placed).  The drift
  monitor compares it with the broker; a late execution is squared towards it.

The lock guards the dicts only (no I/O under it).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

Key = Tuple[int, int]  # (account id, contract id)


@dataclass
class Expectation:
    account_id: int
    contract_id: int
    position: int
    why: str
    at: float = field(default_factory=time.time)
    stated: bool = False  # the strategy stated it (a target), rather than inferred after a job
    recorder: Optional[str] = None
    multiplier: float = 1.0
    contract_name: Optional[str] = None
    account_name: Optional[str] = None


class ExpectationBook:
    def __init__(self):
        self._lock = threading.Lock()  # guards the three dicts
        self._doubt: Dict[str, Tuple[Key, int]] = {}  # clOrdId -> (key, signed qty)
        self._expected: Dict[Key, Expectation] = {}
        self._late: List[dict] = []  # late executions squared (for the status page / attention list)

    # -- orders in doubt --------------------------------------------------------------------------
    def in_doubt(self, cl_ord_id: str, account_id: int, contract_id: int, delta: Optional[int]) -> None:
        if not delta:
            return
        with self._lock:
            self._doubt[cl_ord_id] = ((int(account_id), int(contract_id)), int(delta))

    def resolved(self, cl_ord_id: str) -> Optional[Tuple[Key, int]]:
        with self._lock:
            return self._doubt.pop(cl_ord_id, None)

    def doubt(self, account_id: int, contract_id: int) -> Tuple[int, int]:
        """(long, short) contracts of orders in doubt in this account and contract."""
        key = (int(account_id), int(contract_id))
        long = short = 0
        with self._lock:
            for k, delta in self._doubt.values():
                if k == key:
                    if delta > 0:
                        long += delta
                    else:
                        short -= delta
        return long, short

    def doubtful_ids(self, account_id: int, contract_id: int) -> List[str]:
        key = (int(account_id), int(contract_id))
        with self._lock:
            return [cl for cl, (k, _d) in self._doubt.items() if k == key]

    # -- expectations -----------------------------------------------------------------------------
    def expect(self, account_id: int, contract_id: int, position: int, why: str, *, stated: bool = False,
               **about) -> None:
        key = (int(account_id), int(contract_id))
        with self._lock:
            old = self._expected.get(key)
            if old is not None and not stated and old.stated and old.position == position:
                return
            extra = {k: v for k, v in about.items() if v is not None}
            if old is not None:
                for name in ("recorder", "multiplier", "contract_name", "account_name"):
                    extra.setdefault(name, getattr(old, name))
            self._expected[key] = Expectation(int(account_id), int(contract_id), int(position), why,
                                              stated=stated, **extra)

    def expected(self, account_id: int, contract_id: int) -> Optional[Expectation]:
        with self._lock:
            return self._expected.get((int(account_id), int(contract_id)))

    def all(self) -> List[Expectation]:
        with self._lock:
            return list(self._expected.values())

    def forget(self, account_id: Optional[int] = None) -> None:
        with self._lock:
            if account_id is None:
                self._expected.clear()
                self._doubt.clear()
            else:
                for key in [k for k in self._expected if k[0] == account_id]:
                    self._expected.pop(key, None)

    def note_late(self, item: dict) -> None:
        with self._lock:
            self._late.append(item)
            del self._late[:-50]

    def late(self) -> List[dict]:
        with self._lock:
            return list(self._late)


BOOK = ExpectationBook()  # read as expectation.BOOK at call time (tests may swap it)
