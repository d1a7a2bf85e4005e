"""``/health``: readiness from figures already in memory, in constant time.

``/health`` is public and polled: it must cost nothing that grows with the journal and take no
lock a webhook needs.  So it reads

* the journal's health (``journal.health``: set by every transaction, no query, no journal lock;
  see ``journal/health.py``),
* the keep-alive daemon's flag and whether the pool has a live socket (a dict copy),
* at most one REST probe per ``REST_PROBE_TTL_S`` when no socket is live, made by one caller
  while the others use the last answer (never a call per request).

The journal's counts are not read here (they were a scan of both tables under the journal lock);
the last figure the final writer computed is shown when there is one.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Tuple

REST_PROBE_TTL_S = 5.0


class HealthCheck:
    def __init__(self, service, *, clock: Callable[[], float] = time.monotonic):
        self._service = service
        self._clock = clock
        self._lock = threading.Lock()  # guards the probe's cached answer (bookkeeping only)
        self._rest_ok: Optional[bool] = None
        self._rest_at = float("-inf")
        self._probing = False

    def check(self) -> Tuple[bool, dict]:
        svc = self._service
        state = svc.state
        checks = {"service": state}
        journal = svc.journal
        journal_ok = False
        if journal is not None:
            health = journal.health
            journal_ok = health.available and not journal.closed
            if not journal_ok:
                checks["journal_error"] = health.gone or health.error or "journal closed"
            counts = health.counts
            if counts is not None:
                checks["pending_intents"] = counts.get("pending_intents")
        checks["journal"] = journal_ok
        checks["daemon_alive"] = bool(svc.pool.daemon_status().get("running"))
        broker_ok = False
        login = next(iter(list(svc.logins.values())), None)
        if login is not None:
            broker_ok = svc.pool.has_live_socket() or self._rest_reachable(login.integration)
        checks["broker_reachable"] = broker_ok
        down = {name: d for name, d in svc.logins_status().items() if d["state"] != "open"}
        if down:  # ready with at least one login open; the others are named here
            checks["logins_down"] = {name: d["error"] for name, d in down.items()}
        if svc.coordinator is not None and not svc.coordinator.is_owner:
            # A standby has no socket and no daemon by design; it is healthy when it can journal.
            checks["role"] = "standby"
            return state == "ready" and journal_ok, checks
        ready = state == "ready" and journal_ok and checks["daemon_alive"] and broker_ok
        return ready, checks

    def _rest_reachable(self, integration) -> bool:
        now = self._clock()
        with self._lock:
            fresh = now - self._rest_at < REST_PROBE_TTL_S
            if fresh or self._probing:
                return bool(self._rest_ok)
            self._probing = True
        ok = False
        try:
            integration.list_accounts()  # bounded by the REST timeout
            ok = True
        except Exception:  # noqa: BLE001 - any failure means "not reachable now"
            ok = False
        finally:
            with self._lock:
                self._rest_ok, self._rest_at, self._probing = ok, self._clock(), False
        return ok
