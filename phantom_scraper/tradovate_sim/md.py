"""The market-data socket (Tradovate's ``md`` host): quotes, the book (DOM) and charts.

Same framing, heartbeats, timeouts and ``authorize`` as the user socket (it is a :class:`.ws.WsServer`
on its own port; access and md tokens are both accepted unless ``SimConfig.md_socket_token`` names one), but only market-data requests are served:
anything else answers 404.  Served (docs/TRADOVATE.md, "Market data and cash balance"):

- ``md/subscribeQuote`` / ``md/unsubscribeQuote`` ``{"symbol": name|id|"@ROOT"}``: ``{"s":200,"i":..,"d":{}}``,
  the current quote, then one quote per price change::

    {"e":"md","d":{"quotes":[{"timestamp":"…Z","contractId":3000201,"entries":{
       "Bid":{"price":20999.75,"size":12},"Offer":{"price":21000.25,"size":7},"Trade":{"price":21000.0,"size":1},
       "TotalTradeVolume":{"size":…},"OpenInterest":{"size":…},"OpeningPrice":{"price":…},
       "HighPrice":{"price":…},"LowPrice":{"price":…},"SettlementPrice":{"price":…}}}]}}

- ``md/subscribeDOM`` / ``md/unsubscribeDOM``: the same, with ``{"e":"md","d":{"doms":[{"contractId",
  "timestamp","bids":[{"price","size"}…],"offers":[…]}]}}`` (ten levels a side, best first).
- ``md/getChart`` / ``md/cancelChart``: see :mod:`.charts`; the answer is ``{"historicalId": n,
  "realtimeId": n}`` (one id: every packet of the chart, history and live, carries it; either name
  cancels it); the history follows ``SimConfig.md_chart_history_delay_s`` later.

Prices, sessions and history come from :class:`.market.Market`; times from the simulator clock.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Dict, Optional, Set, Tuple

from . import charts
from .handlers import dumps, normalise_endpoint
from .ws import WsServer, _Session

log = logging.getLogger(__name__)

_QUOTE = ("md/subscribequote", "md/unsubscribequote")
_DOM = ("md/subscribedom", "md/unsubscribedom")
_CHART = ("md/getchart", "md/cancelchart")
_SERVED = _QUOTE + _DOM + _CHART


class MdServer(WsServer):
    def __init__(self, api, host: str, port: int):
        super().__init__(api, host, port)
        # all three touched on the loop thread only
        self._quotes: Dict[int, Set[_Session]] = {}  # contract id -> subscribed sessions
        self._doms: Dict[int, Set[_Session]] = {}
        self._charts: Dict[int, Tuple[_Session, charts.ChartSpec]] = {}  # chart id -> (session, spec)
        self._chart_ids = itertools.count(1)

    def _token_user(self, token: str) -> Optional[int]:
        """``SimConfig.md_socket_token``: "md" or "access" accept only that kind of token."""
        wanted = self.config.md_socket_token
        if wanted in ("md", "access") and self.api.exchange.token_kind(token) != wanted:
            return None
        return super()._token_user(token)

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
    def _market(self):
        return self.api.exchange.market

    def _quote(self, contract_id: int, price: float, at: float) -> dict:
        contract = self.api.exchange.catalog.contracts[contract_id]
        return self._market().quote(contract, price, at)

    def _dom(self, contract_id: int, price: float, at: float) -> dict:
        contract = self.api.exchange.catalog.contracts[contract_id]
        return self._market().dom(contract, price, at)

    def _enqueue(self, s: _Session, event: dict) -> None:
        s.outbox.append(event)
        self._schedule_flush(s)

    def _push(self, contract_id: int, price: float, at: float) -> None:
        try:
            quote_sessions = self._quotes.get(contract_id)
            if quote_sessions:
                event = {"e": "md", "d": {"quotes": [self._quote(contract_id, price, at)]}}
                for s in list(quote_sessions):
                    self._enqueue(s, event)
            dom_sessions = self._doms.get(contract_id)
            if dom_sessions:
                event = {"e": "md", "d": {"doms": [self._dom(contract_id, price, at)]}}
                for s in list(dom_sessions):
                    self._enqueue(s, event)
            for chart_id, (s, spec) in list(self._charts.items()):
                if spec.contract.id == contract_id:
                    packet = charts.live_packet(self._market(), spec, chart_id, at)
                    if packet is not None:
                        self._enqueue(s, {"e": "chart", "d": {"charts": [packet]}})
        except Exception:  # one bad update must not stop the loop's callbacks
            log.exception("market-data push failed for contract %s", contract_id)

    async def _reply(self, s: _Session, req_id: int, d, *events: dict) -> None:
        await self._send(s, "a" + dumps([{"s": 200, "i": req_id, "d": d}, *events]))

    async def _request(self, s: _Session, req_id: int, endpoint: str, query: str, body: str) -> None:
        name = normalise_endpoint(endpoint)
        if name not in _SERVED:
            await self._send(s, "a" + dumps([{"s": 404, "i": req_id, "d": f"Not found: {endpoint.strip()}"}]))
            return
        data = self._body(body)
        latency_ms = self.api.faults.response_latency_ms
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000.0)
        if name in _CHART:
            await self._chart_request(s, req_id, name, data)
            return
        contract = self._contract(data.get("symbol"))
        if contract is None:
            await self._reply(s, req_id, {"errorText": "Unknown symbol"})
            return
        subs = self._quotes if name in _QUOTE else self._doms
        if name.startswith("md/unsubscribe"):
            subs.get(contract.id, set()).discard(s)
            await self._reply(s, req_id, {})
            return
        subs.setdefault(contract.id, set()).add(s)
        exchange = self.api.exchange
        price, at = exchange.price(contract.id), exchange.clock()
        loop = asyncio.get_running_loop()
        if name in _QUOTE:  # the first quote of a contract may compute a session of history
            current = {"quotes": [await loop.run_in_executor(None, self._quote, contract.id, price, at)]}
        else:
            current = {"doms": [self._dom(contract.id, price, at)]}
        await self._reply(s, req_id, {}, {"e": "md", "d": current})

    async def _chart_request(self, s: _Session, req_id: int, name: str, data: dict) -> None:
        if name == "md/cancelchart":
            chart_id = data.get("subscriptionId")
            entry = self._charts.get(chart_id) if isinstance(chart_id, int) else None
            if entry is not None and entry[0] is s:
                del self._charts[chart_id]
            await self._reply(s, req_id, {})
            return
        cfg = self.config
        spec = charts.parse_request(data, self._contract(data.get("symbol")), cfg.md_max_chart_elements)
        if isinstance(spec, str):
            await self._reply(s, req_id, {"errorText": spec})
            return
        chart_id = next(self._chart_ids)
        loop = asyncio.get_running_loop()
        # history can be thousands of generated bars: computed off the loop thread
        packets = await loop.run_in_executor(None, charts.history, self._market(), spec, chart_id,
                                             cfg.md_chart_packet_elements)
        await self._reply(s, req_id, {"historicalId": chart_id, "realtimeId": chart_id})
        if cfg.md_chart_history_delay_s > 0:
            await asyncio.sleep(cfg.md_chart_history_delay_s)
        for packet in packets:
            await self._send(s, "a" + dumps([{"e": "chart", "d": {"charts": [packet]}}]))
        await self._send(s, "a" + dumps([{"e": "chart", "d": {"charts": [{"id": chart_id, "eoh": True}]}}]))
        if not s.dropped:
            self._charts[chart_id] = (s, spec)  # live updates from here on

    @staticmethod
    def _body(body: str) -> dict:
        try:
            data = json.loads(body) if body.strip() not in ("", "undefined", "null") else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _contract(self, symbol) -> Optional[object]:
        exchange = self.api.exchange
        return exchange.catalog.resolve(str(symbol or "")) or exchange.contract_by_id(symbol)

    def _forget(self, s: _Session) -> None:
        super()._forget(s)
        for subs in (self._quotes, self._doms):
            for sessions in subs.values():
                sessions.discard(s)
        for chart_id in [c for c, (owner, _) in self._charts.items() if owner is s]:
            del self._charts[chart_id]
