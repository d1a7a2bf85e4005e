"""The embeddable simulator: exchange state + REST server + WebSocket server + faults."""
from __future__ import annotations

import logging
import threading
from typing import Any, Dict, List, Optional, Tuple

from .config import SimConfig
from .control import handle_control
from .exchange import Exchange
from .faults import FaultSwitches
from . import cash_routes  # noqa: F401  (registers cashBalance/getcashbalancesnapshot)
from .handlers import Api
from .md import MdServer
from .rest import RestServer
from .ws import WsServer

log = logging.getLogger(__name__)


class Simulator:
    """A wire-compatible Tradovate on loopback.  ``start()`` returns self; ``stop()`` is idempotent."""

    def __init__(self, config: Optional[SimConfig] = None, **overrides: Any):
        config = config or SimConfig()
        self.config = config.replace(**overrides) if overrides else config
        self.exchange = Exchange(self.config)
        self.faults = FaultSwitches(actions={
            "close_all_sockets": self.close_all_sockets,
            "expire_all_tokens": self.expire_all_tokens,
            "send_shutdown": self.send_shutdown,
        })
        self.exchange.faults = self.faults  # (the fill path reads oco_cancel_delay_ms)
        self.api = Api(self.exchange, self.faults)
        # Serialises start()/stop() so a double stop (test teardown + atexit) is harmless.
        self._lifecycle_lock = threading.Lock()
        self._rest: Optional[RestServer] = None
        self._ws: Optional[WsServer] = None
        self._md: Optional[MdServer] = None
        self._stopped = False

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> "Simulator":
        with self._lifecycle_lock:
            if self._rest is not None or self._stopped:
                raise RuntimeError("a Simulator can be started once")
            ws = WsServer(self.api, self.config.host, self.config.ws_port)
            ws.start()
            md = MdServer(self.api, self.config.host, self.config.md_port)
            try:
                md.start()
                rest = RestServer((self.config.host, self.config.port), self.api,
                                  lambda *args: handle_control(self, *args))
            except Exception:
                ws.stop()
                md.stop()
                raise
            rest.start()
            self.exchange.add_listener(ws.publish)
            self.exchange.add_quote_listener(md.publish_quote)
            self._ws, self._rest, self._md = ws, rest, md
        log.info("Tradovate simulator listening: REST %s, WS %s", self.rest_url, self.ws_url)
        return self

    def stop(self) -> None:
        with self._lifecycle_lock:
            ws, rest, md = self._ws, self._rest, self._md
            self._stopped = True
        if ws is not None:
            ws.stop()
        if md is not None:
            md.stop()
        if rest is not None:
            rest.stop()

    def __enter__(self) -> "Simulator":
        return self.start() if self._rest is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- URLs ---------------------------------------------------------------------------------
    def _host(self) -> str:
        return "127.0.0.1" if self.config.host in ("", "0.0.0.0") else self.config.host

    @property
    def rest_port(self) -> int:
        if self._rest is None:
            raise RuntimeError("the simulator is not started")
        return self._rest.server_address[1]

    @property
    def ws_port(self) -> int:
        if self._ws is None:
            raise RuntimeError("the simulator is not started")
        return self._ws.port

    @property
    def rest_url(self) -> str:
        return f"http://{self._host()}:{self.rest_port}/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._host()}:{self.ws_port}/v1/websocket"

    @property
    def md_url(self) -> str:
        """The market-data socket (``md/subscribeQuote``), on its own port."""
        if self._md is None:
            raise RuntimeError("the simulator is not started")
        return f"ws://{self._host()}:{self._md.port}/v1/websocket"

    @property
    def clock(self):
        """The market clock (:class:`.clock.SimClock`): ``freeze``, ``advance``, ``unfreeze``."""
        return self.exchange.clock

    def cash_balances(self) -> List[dict]:
        """Every account's cashBalance entity with its ``accountSpec`` and current ``openPnL``."""
        return self.exchange.cash_balance_rows()

    @property
    def control_url(self) -> str:
        return f"http://{self._host()}:{self.rest_port}/control"

    # ---- inspection and control -----------------------------------------------------------------
    def orders(self) -> List[dict]:
        """The book of record: every order received, in arrival order (see docs/DESIGN.md)."""
        return self.exchange.book()

    def positions(self) -> Dict[Tuple[int, str], int]:
        return self.exchange.positions()

    def account_id(self, name: str) -> int:
        return self.exchange._accounts_by_name[name.upper()]

    def _contract(self, symbol: Any):
        contract = self.exchange.catalog.find(str(symbol)) or self.exchange.contract_by_id(symbol)
        if contract is None:
            raise ValueError(f"unknown contract {symbol!r}")
        return contract

    def set_price(self, symbol: Any, price: float) -> dict:
        """Move a contract's price (name or id); crossed Working orders fill."""
        contract = self._contract(symbol)
        return {"contractId": contract.id, "symbol": contract.name,
                "price": self.exchange.set_price(contract.id, float(price))}

    def get_price(self, symbol: Any) -> dict:
        contract = self._contract(symbol)
        return {"contractId": contract.id, "symbol": contract.name,
                "price": self.exchange.price(contract.id)}

    def delist(self, symbol: Any) -> str:
        """Make a contract untradable from now on: its orders are refused as InvalidContract
        (an expired month the client has not rolled away from)."""
        contract = self._contract(symbol)
        self.exchange.catalog.delisted.add(contract.name)
        return contract.name

    def reset(self) -> None:
        """Fault switches to defaults; orders, positions and the book forgotten."""
        self.faults.reset()
        self.exchange.reset()

    def close_all_sockets(self, exclude: Any = None) -> int:
        count = (self._ws.close_all() if self._ws else 0) + (self._md.close_all() if self._md else 0)
        return count + (self._rest.close_all(exclude) if self._rest else 0)

    def expire_all_tokens(self) -> int:
        return self.exchange.expire_all_tokens()

    def send_shutdown(self, reason_code: str = "Maintenance", reason: str = "") -> int:
        return self._ws.send_shutdown(reason_code, reason) if self._ws else 0

    def ws_session_count(self) -> int:
        return self._ws.session_count() if self._ws else 0
