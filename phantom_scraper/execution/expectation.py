"""Where each (account, contract) should be, and which of its orders are still in doubt.

Kept in memory by execution (one book per service: ``executors.Workers.book``), fed by the lanes:

* **in doubt**: a placement whose outcome is not known yet -- ``sending`` (its frame may be at the
  broker) or ``unknown`` (searched, not found yet).  Its signed size counts towards the account's
  exposure for the risk guard's position rules until the order is answered, found or settled.
* **expected position** of a lane (per account and contract): the broker's position when the lane
  last planned (the head of the lane, where the signal's target -- ``position_size`` with a
  sentiment, ``flat``, ``close``, ``reverse`` -- or its order was turned into steps, clipped by the
  risk guard), plus what the lane's own orders have filled since (entries, bracket legs, the
  guard's flattens), plus the signed size of the last job's orders still in doubt.  So after a
  ``target``/``close`` signal it is the strategy's stated target, after a plain order the position
  the lane expected after it.  A fill from an order the lane does not know (a trade made by hand at
  the broker, an order whose outcome was unknown surfacing after a later job) is a difference: the
  drift monitor (:mod:`.drift`) reports it and, for a late unknown, squares it.

The lock guards the dicts only (no I/O under it).
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

Key = Tuple[int, int]  # (account id, contract id)
INTERNAL_RECORDERS = frozenset({"risk", "steering", "manual", ""})
_MAX_OWN = 400  # the newest of a lane's own broker order ids kept (older ones have long filled)


@dataclass
class Expectation:
    account_id: int
    contract_id: int
    root: str
    base: int  # the broker's position when the lane last planned
    fill_mark: int  # the highest fill id the broker state held then
    plan_seq: int  # when (in doubt-record order) the lane last planned
    # the lane's own broker orders (all jobs; ("strategy", id) for an order strategy), oldest first
    own_ids: Dict[Any, None] = field(default_factory=dict)
    last_ids: List[int] = field(default_factory=list)  # the last job's orders (settled before judging)
    doubt_ids: List[str] = field(default_factory=list)  # the last job's clOrdIds still in doubt then
    surfaced: Dict[str, int] = field(default_factory=dict)  # earlier jobs' doubts found since: clOrdId -> size
    conn: Any = None
    contract: Any = None
    contract_name: Optional[str] = None
    account_name: Optional[str] = None
    recorder: str = ""
    leader: Optional[int] = None
    multiplier: int = 1
    at: float = field(default_factory=time.time)


class ExpectationBook:
    def __init__(self):
        self._lock = threading.Lock()  # guards the dicts and the counter
        self._seq = itertools.count(1)
        self._doubt: Dict[str, Tuple[Key, int, int]] = {}  # clOrdId -> (key, signed qty, seq)
        self._expected: Dict[Key, Expectation] = {}
        self._late: List[dict] = []  # late executions squared (status page, attention list)

    # -- orders in doubt --------------------------------------------------------------------------
    def in_doubt(self, cl_ord_id: str, account_id: int, contract_id: int, delta: Optional[int]) -> None:
        with self._lock:
            self._doubt[cl_ord_id] = ((int(account_id), int(contract_id)), int(delta or 0), next(self._seq))

    def resolved(self, cl_ord_id: str, order_id: Optional[int] = None) -> None:
        """Answered, found (``order_id``: its fills are the lane's own from now on) or settled."""
        with self._lock:
            entry = self._doubt.pop(cl_ord_id, None)
            if entry is None or order_id is None:
                return
            exp = self._expected.get(entry[0])
            if exp is None:
                return
            if cl_ord_id in exp.doubt_ids:
                exp.own_ids[int(order_id)] = None
            elif entry[1] and entry[2] < exp.plan_seq:  # found after a later job planned: a late execution
                exp.surfaced[cl_ord_id] = entry[1]

    def doubt(self, account_id: int, contract_id: int) -> Tuple[int, int]:
        """(long, short) contracts of orders in doubt in this account and contract."""
        key = (int(account_id), int(contract_id))
        long = short = 0
        with self._lock:
            for k, delta, _seq in self._doubt.values():
                if k == key:
                    if delta > 0:
                        long += delta
                    else:
                        short -= delta
        return long, short

    # -- the lane's expectation -------------------------------------------------------------------
    def mark(self) -> int:
        with self._lock:
            return next(self._seq)

    def job_done(self, run, target, conn, outcome) -> None:
        """The lane's job for ``target`` ended: its expectation from the plan-time position, its
        own orders and what is still in doubt."""
        base = getattr(outcome, "base_position", None)
        if run.signal.test:
            return
        key = (int(target.id), int(run.contract.id))
        if base is None:  # planned without a fresh socket-fed state: nothing to judge until the next job
            with self._lock:
                self._expected.pop(key, None)
            return
        with self._lock:
            old = self._expected.get(key)
            own = old.own_ids if old is not None else {}  # (kept in place: no copy per job)
            own.update((int(i), None) for i in outcome.order_ids if i is not None)
            if outcome.order_id is not None and any(p.get("kind") == "startorderstrategy" for p in outcome.planned):
                own[("strategy", int(outcome.order_id))] = None  # its orders (legs made later) are found through it
            if len(own) > _MAX_OWN:
                own = dict.fromkeys(list(own)[-_MAX_OWN // 2:])
            doubt = [cl for cl in outcome.cl_ord_ids if cl in self._doubt]
            recorder, leader = run.recorder, run.leader
            if recorder in INTERNAL_RECORDERS and old is not None:
                recorder, leader = old.recorder, old.leader
            self._expected[key] = Expectation(
                key[0], key[1], run.contract.root, int(base), int(outcome.fill_mark or 0), int(outcome.plan_seq or 0),
                own_ids=own, last_ids=[i for i in outcome.order_ids if i is not None], doubt_ids=doubt, conn=conn,
                contract=run.contract, contract_name=run.contract.name, account_name=target.name, recorder=recorder,
                leader=leader, multiplier=int(getattr(target, "multiplier", 1) or 1))

    def expected_now(self, exp: Expectation, state) -> int:
        """The expectation with the lane's own fills since it planned and its last job's doubts."""
        with self._lock:
            own = list(exp.own_ids)
        spent: List[Any] = []
        fills = state.filled_since(own, exp.fill_mark, spent)
        with self._lock:
            # final, with no fill since the mark (which only grows): never counted again.  Without
            # this the list (and the drift check's time under the state's lock) grew with every order
            # the lane placed since the process started, up to _MAX_OWN.
            for order_id in spent:
                exp.own_ids.pop(order_id, None)
            doubt = sum(self._doubt[cl][1] for cl in exp.doubt_ids if cl in self._doubt)
        return exp.base + fills + doubt

    def overtaken_doubt(self, exp: Expectation, difference: int) -> List[str]:
        """clOrdIds of the lane from a job before the one the expectation is from that are still in
        doubt, or were found at the broker after that job planned (late executions), and whose side
        agrees with ``difference`` (actual - expected): what can explain it."""
        key = (exp.account_id, exp.contract_id)
        with self._lock:
            found = {cl: d for cl, (k, d, seq) in self._doubt.items()
                     if k == key and d and seq < exp.plan_seq and cl not in exp.doubt_ids}
            found.update(exp.surfaced)
        return sorted(cl for cl, d in found.items() if d and (d > 0) == (difference > 0))

    def squared(self, exp: Expectation, cl_ord_ids) -> None:
        """The late executions ``cl_ord_ids`` have been squared (the correction was sent)."""
        with self._lock:
            for cl in cl_ord_ids:
                exp.surfaced.pop(cl, None)
                self._doubt.pop(cl, None)

    def expected(self, account_id: int, contract_id: int) -> Optional[Expectation]:
        with self._lock:
            return self._expected.get((int(account_id), int(contract_id)))

    def all(self) -> List[Expectation]:
        with self._lock:
            return list(self._expected.values())

    def forget(self) -> None:
        with self._lock:
            self._expected.clear()
            self._doubt.clear()
            self._late.clear()

    def note_late(self, item: dict) -> None:
        with self._lock:
            self._late.append(item)
            del self._late[:-50]

    def late(self) -> List[dict]:
        with self._lock:
            return list(self._late)
