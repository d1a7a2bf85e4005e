"""The order intent: its states, the one table of allowed transitions, and its ``clOrdId``.

Order intent states (enforced; anything else raises :class:`InvalidTransitionError`)::

    received ──► sending ──► acked                     (final)
       │            ├──────► rejected                  (final: the broker refused, or provably
       │            │                                   not sent: nothing at the broker)
       │            ├──────► skipped                   (final: answered "nothing to do" -- a
       │            │                                   liquidation of a position already flat)
       │            └──────► unknown ──► reconciled    (final: found at the broker by clOrdId)
       │                        ├──────► acked         (final: the late answer arrived)
       │                        └──────► not_placed ──► reconciled   (nothing found within the
       │                                                settle period; still adopted if it
       │                                                turns up later)
       ├──► rejected   (refused before sending: plan or validation error)
       └──► skipped    (deliberately not sent: test mode, nothing to do)     (final)

Once an intent may have executed (``unknown``) it can never become ``rejected``, and there is no
way back to ``sending``: nothing is ever resent.  A start-up reconciler moves a ``sending`` intent
whose owner is gone to ``unknown`` first, then on.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, Optional, Sequence, Tuple

from phantom_scraper.journal.errors import DuplicateIntentError, InvalidTransitionError, UnknownRecordError

# -- intent states -------------------------------------------------------------------------------
RECEIVED = "received"
SENDING = "sending"
ACKED = "acked"
REJECTED = "rejected"
UNKNOWN = "unknown"
RECONCILED = "reconciled"
NOT_PLACED = "not_placed"
SKIPPED = "skipped"

# new state -> the states it may be reached from
_ALLOWED_FROM: Dict[str, Tuple[str, ...]] = {
    SENDING: (RECEIVED,),
    ACKED: (SENDING, UNKNOWN),
    REJECTED: (RECEIVED, SENDING),  # never from UNKNOWN: it may have executed
    UNKNOWN: (SENDING,),
    RECONCILED: (UNKNOWN, NOT_PLACED),
    NOT_PLACED: (UNKNOWN,),
    SKIPPED: (RECEIVED, SENDING),  # from sending: the broker found nothing to do (no order)
}
INTENT_STATES = (RECEIVED, SENDING, ACKED, REJECTED, UNKNOWN, RECONCILED, NOT_PLACED, SKIPPED)
FINAL_STATES = frozenset({ACKED, REJECTED, RECONCILED, SKIPPED})
PENDING_STATES = (SENDING, UNKNOWN)
# Changes into these states may be committed without waiting for the disk (Postgres: asynchronous
# commit): if a database crash loses one, the intent is back in ``sending``/``unknown``, which
# start-up reconciles by clOrdId.  The intent itself (and ``sending``) is always durable first.
RECOVERABLE_STATES = frozenset({ACKED, REJECTED, RECONCILED, SKIPPED, UNKNOWN})

# Signal statuses.  The journal sets ``received`` and ``duplicate``; the executor sets the rest
# with set_signal_status (suggested: executing, done, partial, failed, rejected, skipped).
SIGNAL_RECEIVED = "received"
SIGNAL_DUPLICATE = "duplicate"

_CL_ORD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SAFE_CHARS_RE = re.compile(r"[^A-Za-z0-9_-]")


def make_cl_ord_id(signal_id: str, account_id: int, step: int) -> str:
    """The ``clOrdId`` of one order of one signal on one account: deterministic, so every attempt
    (WebSocket, REST fallback, resend after a fruitless search) reuses it.

    ``ps-<signal_id>-<account_id>-<step>``, at most 64 characters of ``[A-Za-z0-9_-]``; a signal
    id that would not fit (too long or odd characters) is replaced by a hash of itself.
    """
    account_id = int(account_id)
    step = int(step)
    if account_id < 0 or step < 0:
        raise ValueError("account_id and step must be >= 0")
    sid = str(signal_id)
    tail = f"-{account_id}-{step}"
    if _SAFE_CHARS_RE.search(sid) or len("ps-") + len(sid) + len(tail) > 64 or not sid:
        sid = "h" + hashlib.sha256(sid.encode("utf-8")).hexdigest()[:32]
    return f"ps-{sid}{tail}"


def _state_update(cl_ord_id: str, state: str, fields: Dict[str, Any], now: float) -> Tuple[str, tuple]:
    """The guarded UPDATE moving one intent to ``state``: it changes nothing unless the intent is
    in a state the transition is allowed from.  Fields that are None keep their stored value."""
    allowed_from = _ALLOWED_FROM.get(state)
    if allowed_from is None:
        raise InvalidTransitionError(f"unknown intent state {state!r}")
    reconciled = True if state == RECONCILED else fields.get("reconciled")
    marks = ",".join("?" * len(allowed_from))
    sql = ("UPDATE order_intents SET state = ?, broker_order_id = COALESCE(?, broker_order_id), "
           "transport = COALESCE(?, transport), latency_ms = COALESCE(?, latency_ms), "
           "error = COALESCE(?, error), reconciled = COALESCE(?, reconciled), "
           f"updated_at = ? WHERE cl_ord_id = ? AND state IN ({marks})")
    params = (state, fields.get("broker_order_id"), fields.get("transport"), fields.get("latency_ms"),
              fields.get("error"), None if reconciled is None else int(bool(reconciled)), now, cl_ord_id,
              *allowed_from)
    return sql, params


# A first delivery that gave up its id to a retry keeps its record under this key (ids are
# stripped text: none starts with a newline).
RETIRED_KEY_PREFIX = "\nretired "
_NOT_SENT_STATES = frozenset({NOT_PLACED, RECEIVED})


def provably_not_sent(status: Optional[str], intents: Sequence[Tuple[str, Optional[str]]]) -> bool:
    """True when a finished signal placed nothing for certain: interrupted by a restart before any
    order, or every one of its orders settled ``not_placed``, not sent (``rejected`` "not sent: ..."),
    or never sent (``received``).  A signal still running (``received``) never qualifies: its
    other accounts may not have their intents yet."""
    if status in (None, SIGNAL_RECEIVED, SIGNAL_DUPLICATE):
        return False
    if not intents:
        return status == "interrupted"
    return all(state in _NOT_SENT_STATES or (state == REJECTED and (error or "").startswith("not sent"))
               for state, error in intents)


_INTENT_COLUMNS = ("signal_id, account_id, account_name, step, kind, cl_ord_id, request_json, state, created_at, "
                   "updated_at, owner")
INSERT_INTENT = f"INSERT INTO order_intents ({_INTENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
_INSERT_ONE_INTENT = (f"INSERT INTO order_intents ({_INTENT_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
                      "WHERE EXISTS (SELECT 1 FROM signals WHERE id = ? AND duplicate_of IS NULL) RETURNING id")


def insert_one(db: Any, signal_id: str, values: tuple) -> int:
    """One order's intent (``values`` in ``INSERT_INTENT``'s order) in ONE statement, its own atomic
    transaction, committed durably: the signal's check (it exists and is not a duplicate) is the
    INSERT's WHERE.  Each statement is a trip into the database that lets other threads run (SQLite
    releases the GIL; PostgreSQL is a round trip), and on a busy server each trip can cost a thread
    switch: this is every order's path (was BEGIN, SELECT, INSERT, COMMIT).  Same errors as
    ``Journal.create_intent``."""

    def insert(conn: Any) -> list:
        try:
            return conn.execute(_INSERT_ONE_INTENT, values + (signal_id,)).fetchall()
        except db.IntegrityError as exc:
            raise DuplicateIntentError(f"clOrdId {values[5]} is already journalled") from exc

    rows = db.run(insert, durable=True)
    if rows:
        return int(rows[0][0])
    found = db.run_read(lambda conn: conn.execute("SELECT duplicate_of FROM signals WHERE id = ?",
                                                  (signal_id,)).fetchall())
    if found and found[0][0] is not None:
        raise ValueError(f"signal {signal_id} is a duplicate; it must not be executed")
    raise UnknownRecordError(f"no signal {signal_id}")
