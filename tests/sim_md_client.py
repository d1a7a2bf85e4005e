"""A bare Tradovate socket client for the simulator's market-data tests (it imports only the simulator).

It speaks the wire protocol as the official example clients do: waits for ``o``, authorizes, sends
``endpoint\\nid\\nquery\\nbody`` frames and collects every ``a[...]`` message in arrival order.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Callable, List, Optional

import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

WAIT_S = 20.0  # generous: the suite runs on a loaded 2-core machine


def login(sim, name: str = "demo", password: str = "demo") -> dict:
    return requests.post(f"{sim.rest_url}/auth/accesstokenrequest", json={"name": name, "password": password},
                         timeout=10).json()


def rest_get(sim, token: str, path: str, **params):
    return requests.get(f"{sim.rest_url}/{path}", params=params, timeout=10,
                        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})


class Socket:
    """One socket: ``send`` a request, ``wait`` for messages.  A reader thread appends every message to
    ``seen`` as it arrives (and sends the client heartbeat), so ``mark()`` tells which messages had
    arrived at a given moment -- what a client's listener added at that moment would have missed."""

    def __init__(self, url: str, token: str, raw_token_body: Optional[str] = None):
        self.ws = connect(url, open_timeout=10, close_timeout=0.5, max_size=64 * 1024 * 1024)
        self.seen: List[dict] = []
        self._cond = threading.Condition()
        self._read = 0
        self._closed = False
        assert self.ws.recv(timeout=WAIT_S) == "o"
        self._reader = threading.Thread(target=self._pump, name="sim-md-client", daemon=True)
        self._reader.start()
        self.ws.send(f"authorize\n0\n\n{raw_token_body if raw_token_body is not None else token}")
        auth = self.wait(lambda m: m.get("i") == 0 and "e" not in m)
        assert auth.get("s") == 200, auth

    def send(self, endpoint: str, req_id: int, body=None, query: str = "") -> None:
        text = body if isinstance(body, str) else ("" if body is None else json.dumps(body))
        self.ws.send(f"{endpoint}\n{req_id}\n{query}\n{text}")

    def _pump(self) -> None:
        last_beat = time.monotonic()
        while not self._closed:
            if time.monotonic() - last_beat > 2.0:  # client heartbeat, as every official client sends
                try:
                    self.ws.send("[]")
                except ConnectionClosed:
                    break
                last_beat = time.monotonic()
            try:
                raw = self.ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            except ConnectionClosed:
                break
            if raw[:1] == "a":
                with self._cond:
                    self.seen.extend(json.loads(raw[1:]))
                    self._cond.notify_all()

    def mark(self) -> int:
        """How many messages have arrived so far."""
        with self._cond:
            return len(self.seen)

    def wait(self, pred: Callable[[dict], bool], timeout: float = WAIT_S) -> dict:
        """The first message not yet returned by ``wait`` that matches ``pred`` (earlier ones stay in ``seen``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for k in range(self._read, len(self.seen)):
                    if pred(self.seen[k]):
                        self._read = k + 1
                        return self.seen[k]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching message within {timeout}s; last: {self.seen[-3:]}")
                self._cond.wait(min(left, 0.5))

    def request(self, endpoint: str, req_id: int, body=None, query: str = "") -> dict:
        self.send(endpoint, req_id, body, query)
        return self.wait(lambda m: m.get("i") == req_id and "e" not in m)

    def barrier(self, req_id: int) -> None:
        """A harmless request, answered after every update the server had queued before reading it
        (a price change's pushes are queued before ``set_price`` returns): once it is answered,
        everything such a change would have sent has arrived."""
        assert self.request("md/unsubscribeQuote", req_id, {"symbol": "ESZ6"})["s"] == 200

    def close(self) -> None:
        self._closed = True
        self.ws.close()
        self._reader.join(timeout=WAIT_S)

    def __enter__(self) -> "Socket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def chart_packets(sock: Socket, chart_id: int, until_eoh: bool = True, timeout: float = WAIT_S) -> List[dict]:
    """Every ``charts`` packet of ``chart_id`` up to and including its end-of-history marker."""
    out: List[dict] = []
    while True:
        event = sock.wait(lambda m: m.get("e") == "chart"
                          and any(c.get("id") == chart_id for c in m["d"]["charts"]), timeout)
        for packet in event["d"]["charts"]:
            if packet.get("id") == chart_id:
                out.append(packet)
        if not until_eoh or out[-1].get("eoh"):
            return out
