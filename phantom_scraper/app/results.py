"""What the service answers: a webhook result, the unavailable error, and how outcomes are summarised."""
from __future__ import annotations

import enum
from dataclasses import dataclass

from phantom_scraper.execution.model import AccountStatus
from phantom_scraper.signals import SignalError

MANUAL_RECORDER = "manual"


class SignalStatus(enum.StrEnum):
    """A signal's status in the journal and in its answer (equal to its string)."""

    RECEIVED = "received"  # journaled, not finished (a crash here is settled at the next start)
    DUPLICATE = "duplicate"  # recorded as a duplicate of another signal; never executed
    PENDING = "pending"  # handed to the login owner (several instances)
    EXECUTING = "executing"  # answered 202: still running
    ACKED = "acked"  # every account acked (or had nothing to do, the others acked)
    PARTIAL = "partial"  # some accounts acked, others not
    UNKNOWN = "unknown"  # an order's outcome is unknown (searched, settled in the background)
    FAILED = "failed"  # no account acked
    REJECTED = "rejected"  # the alert was refused (bad input, unknown symbol)
    SKIPPED = "skipped"  # nothing to do on any account
    VALIDATED = "validated"  # test mode
    INTERRUPTED = "interrupted"  # a restart came before any order was sent: nothing sent
    ERROR = "error"  # a bug, reported


class ServiceUnavailable(Exception):
    """Not ready (starting, stopping, or the broker could not be reached at start)."""


@dataclass
class WebhookResult:
    http_status: int
    body: dict


def signal_error(exc: SignalError, signal=None) -> dict:
    field = exc.field
    if signal is not None and field == "symbol" and isinstance(signal.payload, dict):
        # the resolver does not know how the sender spelled the field: ticker or symbol
        field = next((k for k in signal.payload if k.lower() in ("ticker", "symbol")), field)
    return {"success": False, "error": {"code": exc.code, "field": field, "message": exc.message}}


_TRANSPORT_WORDS = {"websocket": "WebSocket", "rest": "REST"}  # "via WebSocket": the check in WEBSOCKET_FAST_EXECUTION.md


def accounts_brief(outcomes, limit: int = 5) -> str:
    """`` [DEMO1 acked #123 via WebSocket, ...]`` for the signal's log line (the first ``limit``)."""
    if not outcomes:
        return ""
    parts = [f"{o.account_name} {o.status}" + (f" #{o.order_id}" if o.order_id is not None else "")
             + (f" via {_TRANSPORT_WORDS.get(o.transport, o.transport)}" if o.transport else "")
             for o in outcomes[:limit]]
    more = f", +{len(outcomes) - limit} more" if len(outcomes) > limit else ""
    return " [" + ", ".join(parts) + more + "]"


def summary_status(outcomes) -> SignalStatus:
    """A signal's status from its accounts' outcomes."""
    statuses = {o.status for o in outcomes}
    if not statuses:
        return SignalStatus.SKIPPED
    if AccountStatus.ACKED in statuses and statuses <= {AccountStatus.ACKED, AccountStatus.SKIPPED}:
        return SignalStatus.ACKED  # every account reached the goal: placed, or nothing to do there
    if statuses <= {AccountStatus.VALIDATED}:
        return SignalStatus.VALIDATED
    if AccountStatus.UNKNOWN in statuses:
        return SignalStatus.UNKNOWN
    if AccountStatus.ACKED in statuses:
        return SignalStatus.PARTIAL
    if statuses <= {AccountStatus.SKIPPED}:
        return SignalStatus.SKIPPED
    return SignalStatus.FAILED


def outcomes_body(signal_id, contract, signal, outcomes) -> dict:
    status = summary_status(outcomes)
    return {
        # unknown is neither: null until settlement says (the accounts carry "unknown" too)
        "success": None if status == "unknown" else status in ("acked", "validated", "skipped"),
        "signal_id": signal_id,
        "status": status,
        "test": bool(signal.test),
        "contract": contract.name,
        # The planned order bodies only in test mode (that is what a test is for); else the outcome.
        "accounts": [o.to_dict() if signal.test else o.summary() for o in outcomes],
        **({"warnings": list(signal.warnings)} if signal.warnings else {}),  # parts of the body not used
    }
