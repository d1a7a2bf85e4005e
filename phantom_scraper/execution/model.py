"""What execution hands around: an account's outcome, the batched final states, the step kinds."""
from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, List, Optional

from phantom_scraper.errors import describe  # noqa: F401  (the execution modules import it from here)
from phantom_scraper.journal.journal import JournalError

logger = logging.getLogger(__name__)

_PLACEMENT_KINDS = {"placeorder", "placeoso", "liquidateposition", "startorderstrategy"}
RETRY_STEP_OFFSET = 100  # step numbers (clOrdIds) of a signal's second run after InvalidContract



@dataclass(frozen=True)
class SignalRun:
    """One validated signal on its way through execution: what every account of it shares.

    Built once per signal (``dispatch.SignalRun.of`` / the app's signal run) and handed to the lanes,
    the fan-out batch and each account's placements instead of long argument lists.  ``planner`` is
    the order planner with the risk guard's rules (called at the head of each lane, from the broker
    state at that moment); ``needs_position(signal)`` says whether the plan reads the position first.
    ``step_offset``: ``RETRY_STEP_OFFSET`` on the one re-run after ``InvalidContract`` (new clOrdIds).
    ``received``: ``time.monotonic()`` at receipt (how fresh the signal still is).
    ``workers``: the owner's :class:`~phantom_scraper.execution.executors.Workers` (lanes, executors)."""

    signal: Any
    contract: Any
    signal_id: str
    journal: Any
    settings: Any
    planner: Callable
    needs_position: Callable
    step_offset: int = 0
    received: Optional[float] = None
    recorder: str = ""  # whose signal (the drift monitor compares a recorder's accounts)
    leader: Optional[int] = None  # the recorder's first account (its followers are compared with it)
    workers: Any = None  # executors.Workers: the lanes and executors this run uses (its owner's)

    def but(self, **changes) -> "SignalRun":
        return replace(self, **changes)


class AccountStatus(enum.StrEnum):
    """What happened on one account for one signal (``AccountOutcome.status``; equal to its string)."""

    ACKED = "acked"  # the broker took every order
    REJECTED = "rejected"  # refused (by the broker, the plan or the risk guard): nothing executed
    NOT_SENT = "not_sent"  # provably never reached the broker
    UNKNOWN = "unknown"  # may have executed: searched by clOrdId, settled in the background, never resent
    ERROR = "error"  # a read, a cancel or the journal failed before the order left
    SKIPPED = "skipped"  # nothing to do (already there, test mode)
    VALIDATED = "validated"  # test mode: planned, not sent


@dataclass
class AccountOutcome:
    """What happened on one account for one signal (returned to the webhook and journaled)."""

    account_id: int
    account_name: str
    status: str  # an AccountStatus
    order_id: Optional[int] = None  # the last order placed (the entry of a reverse)
    order_ids: List[int] = field(default_factory=list)
    cl_ord_ids: List[str] = field(default_factory=list)
    transport: Optional[str] = None
    latency_ms: Optional[float] = None
    reconciled: bool = False
    error: Optional[str] = None
    planned: List[dict] = field(default_factory=list)
    risk: List[dict] = field(default_factory=list)  # the risk guard's refusals/clips ({code, message})
    cancelled: List[int] = field(default_factory=list)  # orders a cancel step ended (cancel, close, lock)
    # Where the lane planned from (the expectation book's job_done): the broker's position at the head of
    # the lane (None: not known), the highest fill id then, and the plan's place in doubt order.
    base_position: Optional[int] = None
    fill_mark: int = 0
    plan_seq: int = 0
    warnings: List[str] = field(default_factory=list)  # the plan's notes: max_qty clips, brackets raised to a tick

    @classmethod
    def begin(cls, target) -> "AccountOutcome":
        """The outcome of one account's job as it starts: acked until something says otherwise."""
        return cls(target.id, target.name, AccountStatus.ACKED.value)

    def stamp_latency(self, started: float) -> None:
        """The job's latency from ``started`` (``time.perf_counter()``), unless a placement set it."""
        if self.latency_ms is None:
            self.latency_ms = round((time.perf_counter() - started) * 1000, 3)
    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """The journaled form (no order bodies): what /api/signals and the status page show."""
        return {"account_id": self.account_id, "account_name": self.account_name, "status": self.status,
                "order_id": self.order_id, "order_ids": list(self.order_ids), "cl_ord_ids": list(self.cl_ord_ids),
                "transport": self.transport, "latency_ms": self.latency_ms, "reconciled": self.reconciled,
                "error": self.error, **({"risk": list(self.risk)} if self.risk else {}),
                **({"cancelled": list(self.cancelled)} if self.cancelled else {}),
                **({"warnings": list(self.warnings)} if self.warnings else {})}


class BatchedStates:
    """Collects the final state of single-step intents and commits them in one transaction.

    Used only for orders that are the last external action of their account for this signal, so
    "each state is committed before the next external action" still holds; if the process dies
    before the states are written, those intents are still ``sending`` and start-up reconciles them
    by clOrdId.  ``flush()`` writes them now; ``take()`` hands them to the caller, which writes them
    after the webhook's answer together with the signal's status (``final_writes``).  Everything
    else a placement asks of its journal goes to the journal itself.
    """

    def __init__(self, journal):
        self.journal = journal
        self._lock = threading.Lock()  # serialises appends from the account threads
        self._updates: List[tuple] = []

    def __getattr__(self, name):  # create_intent, write, ...: the journal's own
        if name == "journal":  # (not yet set)
            raise AttributeError(name)
        return getattr(self.journal, name)

    def set_intent_state(self, cl_ord_id, state, **fields) -> None:
        if state == "unknown":  # committed at once: an unknown is on disk before it is searched
            self.journal.set_intent_state(cl_ord_id, state, **fields)
            return
        with self._lock:
            self._updates.append((cl_ord_id, state, fields))

    def take(self) -> List[tuple]:
        with self._lock:
            updates, self._updates = self._updates, []
        return updates

    def flush(self) -> None:
        updates = self.take()
        if updates:
            try:
                self.journal.set_intent_states(updates)
            except JournalError as exc:
                logger.error("Could not journal %d order outcome(s): %s (start-up reconciles them)",
                             len(updates), describe(exc))
