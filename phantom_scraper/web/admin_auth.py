"""The admin check for status and admin routes: ``@admin_required`` (flaskr's ``login_required``
shape).

A request is admitted with the admin token given as

* HTTP Basic, any user name, the token as the password (a browser prompts for it), or
* ``Authorization: Bearer <token>`` or ``X-Admin-Token: <token>`` (scripts, Prometheus).

Compared in constant time.  Wrong credentials are counted per source address (the proxy-aware
client address of ``door/policy.py``) and per network (its /24 for IPv4, /64 for IPv6: one host
has many addresses there): past ``admin_max_failures`` within ``admin_failure_window_s`` from the
address, or twice that from its network, the source gets 429 until the window has passed (right
credentials included, so guessing cannot continue behind a lucky hit).

``@admin_required(open_in_sim=True)`` marks a read-only status route that stays open in ``sim``
mode to a client on the loopback address (paper trading on one's own machine).  A request that a
reverse proxy relayed (it carries ``X-Forwarded-For``, ``Forwarded`` or ``X-Real-IP``) is not
local, whatever the proxy's own address.

The app factory installs an :class:`AdminGate` as ``app.extensions["admin_gate"]``.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hmac
import ipaddress
import logging
import threading
import time
from collections import deque
from typing import Callable, Deque, Dict, Optional

from flask import current_app, request

logger = logging.getLogger(__name__)

REALM = "phantom-scraper"


NETWORK_FACTOR = 2  # a network's budget: this many addresses' worth of failures
_FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def network_of(source: str) -> Optional[str]:
    """The /24 (IPv4) or /64 (IPv6) holding ``source``, as text; None for a non-address."""
    try:
        ip = ipaddress.ip_address(source)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class FailureLimiter:
    """Wrong-credential attempts per source address, and per network, within a sliding window."""

    def __init__(self, max_failures: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 max_sources: int = 10_000, network_factor: int = NETWORK_FACTOR):
        self.max_failures = max_failures
        self.max_network_failures = max_failures * max(1, network_factor)
        self.window_s = window_s
        self._clock = clock
        self._max_sources = max_sources
        self._lock = threading.Lock()  # guards _failures
        self._failures: Dict[str, Deque[float]] = {}

    def _keys(self, source: str):
        """(key, limit) pairs one failure of ``source`` counts against."""
        keys = [(source, self.max_failures)]
        net = network_of(source)
        if net is not None:
            keys.append(("net:" + net, self.max_network_failures))
        return keys

    def _trim(self, source: str, now: float) -> Deque[float]:
        times = self._failures.get(source)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[source]
        return times

    def blocked_for_s(self, source: str) -> float:
        """Seconds this source must still wait (0: not blocked)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key, limit in self._keys(source):
                times = self._trim(key, now)
                if len(times) >= limit:
                    wait = max(wait, self.window_s - (now - times[-limit]))
        return max(0.0, wait)

    def failed(self, source: str) -> None:
        now = self._clock()
        with self._lock:
            for key, limit in self._keys(source):
                if key not in self._failures and len(self._failures) >= self._max_sources:
                    # Bounded memory under a spray from many addresses: forget the stalest source.
                    self._failures.pop(next(iter(self._failures)))
                self._failures.setdefault(key, deque(maxlen=limit)).append(now)


def given_token(headers) -> Optional[str]:
    """The token a request carries (Bearer, X-Admin-Token, or Basic's password), or None."""
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        _user, sep, password = decoded.partition(":")
        return password if sep else None
    token = headers.get("X-Admin-Token")
    return token if token else None


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class AdminGate:
    """Decides whether a request may see an admin route; see the module docstring."""

    def __init__(self, admin_token: Optional[str], *, sim_open: bool, limiter: FailureLimiter,
                 client_ip: Callable[[], str], error: Callable[..., object]):
        self._expected = admin_token.encode("utf-8") if admin_token else None
        self.sim_open = sim_open
        self.limiter = limiter
        self._client_ip = client_ip
        self._error = error

    def _is_local(self) -> bool:
        """A client on this machine: the proxy-aware client address is loopback and no reverse
        proxy relayed the request (a local proxy's connection comes from loopback too)."""
        if any(request.headers.get(name) for name in _FORWARDING_HEADERS):
            return False
        return is_loopback(self._client_ip()) and is_loopback(request.remote_addr or "")

    def check(self, open_in_sim: bool):
        """None when admitted, else the refusal response."""
        if open_in_sim and self.sim_open and self._is_local():
            return None
        if self._expected is None:
            return self._error(403, "admin_disabled", "set ADMIN_TOKEN to enable this route")
        source = self._client_ip()
        wait_s = self.limiter.blocked_for_s(source)
        if wait_s > 0:
            response = self._error(429, "too_many_attempts",
                                   "too many wrong admin credentials from this address; try later")
            response.headers["Retry-After"] = str(int(wait_s) + 1)
            return response
        given = given_token(request.headers)
        if given is not None and hmac.compare_digest(given.encode("utf-8"), self._expected):
            return None
        if given is not None:  # a missing credential (the browser's first try) is not a failure
            self.limiter.failed(source)
            logger.warning("Wrong admin credentials from %s on %s", source, request.path)
        response = self._error(401, "unauthorized", "missing or wrong admin token")
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
        return response


def admin_required(view=None, *, open_in_sim: bool = False):
    """Decorator for a route that needs the admin token (usable bare or with arguments)."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapped(**kwargs):
            refused = current_app.extensions["admin_gate"].check(open_in_sim)
            if refused is not None:
                return refused
            return fn(**kwargs)
        return wrapped

    return decorate(view) if view is not None else decorate
