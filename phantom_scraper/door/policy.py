"""Who a request comes from, whether it may use the webhook, and the connection caps.

Shared by the door (gunicorn worker, before any thread) and the Flask route (defence in depth,
and the only check under ``python ultra_simple_server.py``).

``X-Forwarded-For`` is honoured only with ``TRUST_PROXY_HEADERS`` *and* when the connection comes
from a trusted proxy address (``TRUSTED_PROXY_CIDRS``; private ranges by default, where a
platform's proxy reaches the app): a client connecting straight to the app cannot forge its
source with the header.  The right-most entry is the address the proxy saw; entries to its left
came from the client.
"""
from __future__ import annotations

import ipaddress
from typing import Dict, Optional

from phantom_scraper.config import Settings

PRIVILEGED_RESERVE = 64  # connections above HTTP_MAX_CONNECTIONS kept for allow-list addresses


def normalize_ip(value: str) -> str:
    """The canonical text of an address (IPv4-mapped IPv6 as IPv4); unparsable text unchanged."""
    text = (value or "").strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


class SourcePolicy:
    def __init__(self, settings: Settings):
        self.allowlist_enabled = settings.ip_allowlist_enabled
        self.allowed = frozenset(normalize_ip(a) for a in settings.ip_allowlist)
        self.trust_proxy_headers = settings.trust_proxy_headers
        cidrs = [c.strip() for c in settings.trusted_proxy_cidrs if c.strip()]
        self._any_proxy = "*" in cidrs
        self._proxies = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs if c != "*")

    def is_trusted_proxy(self, peer: str) -> bool:
        """True when ``peer``'s ``X-Forwarded-For`` is believed (TRUST_PROXY_HEADERS on)."""
        if not self.trust_proxy_headers:
            return False
        if self._any_proxy:
            return True
        try:
            ip = ipaddress.ip_address(normalize_ip(peer))
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self._proxies)

    def source(self, peer: str, forwarded_for: Optional[str]) -> str:
        """The client's address: the proxy's right-most ``X-Forwarded-For`` entry, else the peer."""
        if forwarded_for and forwarded_for.strip() and self.is_trusted_proxy(peer):
            return normalize_ip(forwarded_for.split(",")[-1])
        return normalize_ip(peer)

    def webhook_allowed(self, source: str) -> bool:
        return not self.allowlist_enabled or normalize_ip(source) in self.allowed

    def is_privileged(self, source: str) -> bool:
        """Allow-list addresses (TradingView's by default) are exempt from the per-source cap and
        have a reserve above the total cap, whether or not the allow-list is enforced."""
        return normalize_ip(source) in self.allowed


class ConnectionCaps:
    """Open-connection counts, in total and per source address.  Not thread-safe: the caller
    holds its own lock around ``admit``/``release`` (bookkeeping only)."""

    def __init__(self, max_total: int, max_per_source: int, reserve: int = PRIVILEGED_RESERVE):
        self.max_total = max_total
        self.max_per_source = max_per_source
        self.reserve = reserve
        self.total = 0
        self.per_source: Dict[str, int] = {}

    def admit(self, key: Optional[str], privileged: bool) -> Optional[str]:
        """Count a new connection; returns None, or why it is refused ("total" / "source").
        ``key`` None: not counted per source (a trusted proxy carries many clients)."""
        if self.total >= self.max_total + (self.reserve if privileged else 0):
            return "total"
        if key is not None and not privileged and self.per_source.get(key, 0) >= self.max_per_source:
            return "source"
        self.total += 1
        if key is not None:
            self.per_source[key] = self.per_source.get(key, 0) + 1
        return None

    def release(self, key: Optional[str]) -> None:
        self.total -= 1
        if key is not None:
            left = self.per_source.get(key, 0) - 1
            if left > 0:
                self.per_source[key] = left
            else:
                self.per_source.pop(key, None)
