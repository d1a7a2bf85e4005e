"""What a socket keeps for its requests: its connection state, the hand-shake that tells whether a
request left, a request in flight, and a batch of requests handed to the loop together
(``TradovateWebSocket.request_many``)."""
from __future__ import annotations

import concurrent.futures
import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any, List, Tuple

from phantom_scraper.errors import NotSentError, OutcomeUnknownError, TradovateError


class ConnState(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass
class _Attempt:
    """Hand-shake between a calling thread and the loop: did the request coroutine start?"""

    lock: threading.Lock = field(default_factory=threading.Lock)  # serialises started/abandoned only
    started: bool = False
    abandoned: bool = False


@dataclass
class _Pending:
    future: "concurrent.futures.Future[Any]"  # resolved by the loop thread, waited on by the caller
    endpoint: str
    sent_mono: float


class RequestBatch:
    """Requests handed to the socket's loop together (``request_many``): one future per request.

    ``result(i)`` waits for request ``i``'s ``d`` (or raises its ``TradovateError``); the loop
    fails a request with ``OutcomeUnknownError`` once its timeout has passed after the write, so the
    wait here is bounded by ``timeout`` plus a second for a loop that never ran the batch at all.
    """

    def __init__(self, ws: Any, items: List[Tuple[str, str, str]], timeout: float):
        self.ws = ws  # the TradovateWebSocket it was handed to
        self.items = items  # (endpoint, query, body_text)
        self.timeout = timeout
        self.futures: List["concurrent.futures.Future[Any]"] = [concurrent.futures.Future() for _ in items]
        self.attempt = _Attempt()
        self.deadline = time.monotonic() + timeout + 1.0

    def __len__(self) -> int:
        return len(self.items)

    def result(self, index: int) -> Any:
        fut = self.futures[index]
        try:
            return fut.result(timeout=max(0.0, self.deadline - time.monotonic()))
        except TradovateError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the loop did not answer in time
            with self.attempt.lock:  # claim: decide whether the batch may still start
                started = self.attempt.started
                self.attempt.abandoned = True
            endpoint = self.items[index][0]
            if not started:
                raise NotSentError(f"{self.ws.name}: socket loop did not run {endpoint}") from exc
            raise OutcomeUnknownError(f"{self.ws.name}: {endpoint} sent, no answer ({type(exc).__name__})") from exc

    def fail_unsent(self, error: TradovateError, start: int = 0) -> None:
        for fut in self.futures[start:]:
            if not fut.done():
                fut.set_exception(error)
