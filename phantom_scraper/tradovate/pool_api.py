"""What the package needs from the WebSocket connection pool, and nothing more.

The pool itself lives in the top-level ``recorder_service`` module (its names are the seed's
documented ones).  Nothing under ``phantom_scraper/`` imports it: ``ultra_simple_server.create_app()``
(the composition root) builds the pool and hands it to :class:`~phantom_scraper.app.service.TradingService`,
which only knows these two interfaces.  Tests may hand in any object that has these methods.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Protocol


class Connection(Protocol):
    """One login's shared socket, as ``execution`` uses it to place orders and read the book."""

    integration: object  # the login's TradovateIntegration (token, REST calls, place_order_smart)
    # broker_state: optional BrokerState fed by the socket's sync stream (execution reads positions
    # from it while it is fresh, else over REST); a connection without one always reads over REST.

    def live_client(self):
        """The open WebSocket client, or None (then the order goes over REST at once)."""

    def ensure_connecting(self, **kwargs):
        """Start a connect in the background unless one is running; never blocks."""

    def record_order(self, transport: str, latency_ms: Optional[float]) -> None:
        """Count an order placed on this login (``websocket`` or ``rest``)."""

    def close(self) -> None:
        """Close the socket (idempotent)."""


class ConnectionPool(Protocol):
    """The pool as TradingService drives it: registration at start, the daemon, status, teardown."""

    def configure(self, settings) -> None:
        """Apply the settings the pool reads (connect bound) before any login registers."""

    def register_login(self, integration, subaccount_ids: Iterable[int], *, is_demo: bool,
                       login_key: str, settings) -> Connection:
        """Map the sub-accounts to the login's shared connection (created if new).  No I/O."""

    def warm_up(self) -> None:
        """Start every login's connect in the background (staggered)."""

    def start_daemon(self, interval_s: float, settle_hook: Callable[[], None]) -> None:
        """Start the keep-alive daemon (idempotent); ``settle_hook`` runs after each of its cycles."""

    def stop_daemon(self) -> None:
        """Stop and join the keep-alive daemon (idempotent)."""

    def reset(self) -> None:
        """Close and forget every connection."""

    def status(self) -> dict:
        """Per-account connection status (the ``connection_pool`` of the status JSON)."""

    def daemon_status(self) -> dict:
        """The keep-alive daemon's status; ``running`` is False when none runs."""

    def has_live_socket(self) -> bool:
        """True if any login's socket is open."""
