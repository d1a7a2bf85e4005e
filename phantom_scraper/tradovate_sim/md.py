"""The market-data socket (Tradovate's ``md`` host): ``md/subscribeQuote`` / ``md/unsubscribeQuote``.

Same framing, heartbeats, timeouts and ``authorize`` as the user socket (it is a :class:`.ws.WsServer`
on its own port; access and md tokens are both accepted), but only market-data requests are served:
anything else answers 404.  A subscription answers ``{"s":200,"i":..,"d":{}}``, then pushes the
current quote, then one quote per price change (``POST /control/price`` / ``Simulator.set_price``)::

    {"e":"md","d":{"quotes":[{"timestamp":"…Z","contractId":3000200,
      "entries":{"Bid":{"price":20999.75,"size":10},"Offer":{"price":21000.25,"size":10},
                 "Trade":{"price":21000.0,"size":1},"TotalTradeVolume":{"size":…}}}]}}

The body's ``symbol`` may be a contract name or id (docs/TRADOVATE.md, "Market data and cash balance").  Quote timestamps come from the
simulator clock.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Dict, Optional, Set

from .handlers import dumps, normalise_endpoint
from .timefmt import iso_z
from .ws import WsServer, _Session

log = logging.getLogger(__name__)

_SUBSCRIBE = "md/subscribequote"
_UNSUBSCRIBE = "md/unsubscribequote"


class MdServer(WsServer):
    def __init__(self, api, host: str, port: int):
        super().__init__(api, host, port)
        self._quotes: Dict[int, Set[_Session]] = {}  # contract id -> subscribed sessions (loop thread only)
        self._volume = itertools.count(1)

    # any thread
    def publish_quote(self, contract_id: int, price: float, at: float) -> None:
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._push, contract_id, price, at)
            except RuntimeError:  # loop closed while stopping
                pass

    def subscriber_count(self) -> int:
        return sum(len(v) for v in self._quotes.values())

    # loop thread
    def _quote(self, contract_id: int, price: float, at: float) -> dict:
        tick = self.api.exchange.catalog.contracts[contract_id].product.tick_size
        return {"timestamp": iso_z(at), "contractId": contract_id,
                "entries": {"Bid": {"price": round(price - tick, 6), "size": 10},
                            "Offer": {"price": round(price + tick, 6), "size": 10},
                            "Trade": {"price": price, "size": 1},
                            "TotalTradeVolume": {"size": next(self._volume)}}}

    def _push(self, contract_id: int, price: float, at: float) -> None:
        sessions = self._quotes.get(contract_id)
        if not sessions:
            return
        event = {"e": "md", "d": {"quotes": [self._quote(contract_id, price, at)]}}
        for s in list(sessions):
            s.outbox.append(event)
            self._schedule_flush(s)

    async def _request(self, s: _Session, req_id: int, endpoint: str, query: str, body: str) -> None:
        name = normalise_endpoint(endpoint)
        if name not in (_SUBSCRIBE, _UNSUBSCRIBE):
            await self._send(s, "a" + dumps([{"s": 404, "i": req_id, "d": f"Not found: {endpoint.strip()}"}]))
            return
        contract = self._contract(body)
        if contract is None:
            await self._send(s, "a" + dumps([{"s": 200, "i": req_id, "d": {"errorText": "Unknown symbol"}}]))
            return
        latency_ms = self.api.faults.response_latency_ms
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000.0)
        if name == _UNSUBSCRIBE:
            self._quotes.get(contract.id, set()).discard(s)
            await self._send(s, "a" + dumps([{"s": 200, "i": req_id, "d": {}}]))
            return
        self._quotes.setdefault(contract.id, set()).add(s)
        exchange = self.api.exchange
        current = {"e": "md", "d": {"quotes": [self._quote(contract.id, exchange.price(contract.id), exchange.clock())]}}
        await self._send(s, "a" + dumps([{"s": 200, "i": req_id, "d": {}}, current]))

    def _contract(self, body: str):
        try:
            data = json.loads(body) if body.strip() not in ("", "undefined", "null") else {}
        except ValueError:
            return None
        symbol = data.get("symbol") if isinstance(data, dict) else None
        exchange = self.api.exchange
        return exchange.catalog.find(str(symbol or "")) or exchange.contract_by_id(symbol)

    def _forget(self, s: _Session) -> None:
        super()._forget(s)
        for sessions in self._quotes.values():
            sessions.discard(s)
