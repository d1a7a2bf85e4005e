"""What a repeated signal id is told (the intake's duplicate answer).

A signal id that arrives again is a duplicate unless its first delivery provably placed nothing
(then the journal records it as a new signal and it executes: ``Journal.record_signal(...,
retry_not_sent=True)``).  For a duplicate, the answer says what the first delivery did:

* its orders (some or all) placed, or its outcome final: ``success`` true, ``duplicate`` true, as before;
* still in doubt (an order ``unknown`` or ``sending``, or the signal still running): ``success``
  null and ``status`` ``unknown`` -- never "success" for a signal that may not have been placed.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple

logger = logging.getLogger(__name__)

_IN_DOUBT_INTENTS = frozenset({"sending", "unknown"})
_IN_DOUBT_SIGNALS = frozenset({"received", "unknown"})


def first_delivery(journal, signal_id: str) -> Tuple[Optional[bool], str]:
    """``(success, status)`` for the answer to a repeat of ``signal_id``."""
    try:
        signal = journal.get_signal(signal_id)
    except Exception as exc:  # noqa: BLE001 - the answer must not fail on this read
        logger.warning("Duplicate of %s: its state is unreadable (%s)", signal_id, exc)
        return None, "unknown"
    if signal is None:
        return None, "unknown"
    states = {i["state"] for i in signal.get("intents") or ()}
    if states & _IN_DOUBT_INTENTS or signal.get("status") in _IN_DOUBT_SIGNALS:
        return None, "unknown"
    return True, str(signal.get("status") or "")
