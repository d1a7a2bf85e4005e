"""What the service answers: a webhook result, the unavailable error, and how outcomes are summarised."""
from __future__ import annotations

from dataclasses import dataclass

from phantom_scraper.signals import SignalError

MANUAL_RECORDER = "manual"


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


def accounts_brief(outcomes, limit: int = 5) -> str:
    """`` [DEMO1 acked #123 websocket, ...]`` for the signal's log line (the first ``limit``)."""
    if not outcomes:
        return ""
    parts = [f"{o.account_name} {o.status}" + (f" #{o.order_id}" if o.order_id is not None else "")
             + (f" {o.transport}" if o.transport else "") for o in outcomes[:limit]]
    more = f", +{len(outcomes) - limit} more" if len(outcomes) > limit else ""
    return " [" + ", ".join(parts) + more + "]"


def summary_status(outcomes) -> str:
    statuses = {o.status for o in outcomes}
    if not statuses:
        return "skipped"
    if statuses <= {"acked"}:
        return "acked"
    if statuses <= {"validated"}:
        return "validated"
    if "unknown" in statuses:
        return "unknown"
    if statuses & {"acked"}:
        return "partial"
    if statuses <= {"skipped"}:
        return "skipped"
    return "failed"


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
    }
