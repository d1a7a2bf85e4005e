"""A desk for the position tests: one login on the simulator, its pooled socket, accounts with
multipliers, and signals sent the way the service sends them (lane places taken at arrival)."""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Dict, List, Optional

import recorder_service as rs
from phantom_scraper.execution import dispatch as execution, executors
from phantom_scraper.config import Credentials, Settings
from phantom_scraper.journal.journal import Journal
from phantom_scraper.signals import AccountTarget, SymbolResolver, parse_signal
from phantom_scraper.signals.symbols import parse_symbol
from phantom_scraper.tradovate_integration import TradovateIntegration
from tests.helpers import WAIT_S, wait_for

FAST = Settings(heartbeat_interval_s=0.2, ws_connect_timeout_s=5.0, order_ack_timeout_s=3.0,
                reconcile_window_s=2.0, reconcile_poll_interval_s=0.05, rest_timeout_s=5.0,
                reconnect_backoff_initial_s=0.05, reconnect_backoff_max_s=0.5, keepalive_interval_s=0.2)


class Desk:
    def __init__(self, sim, tmp_path, multipliers=(1,), settings: Settings = FAST, **target_options):
        self.sim, self.settings = sim, settings
        self.ti = TradovateIntegration(Credentials(username="demo", password="demo"), sim.rest_url, sim.ws_url,
                                       is_demo=True, settings=settings)
        self.ti.authenticate()
        accounts = self.ti.list_accounts()
        self.conn = rs.register_login(self.ti, [a["id"] for a in accounts], is_demo=True, login_key="demo@sim",
                                      settings=settings)
        self.conn.connect_blocking(WAIT_S)
        assert self.conn.broker_state.wait_fresh(WAIT_S)
        self.targets = [(AccountTarget(id=int(a["id"]), name=a["name"], multiplier=m, **target_options), self.conn)
                        for a, m in zip(accounts, multipliers)]
        self.journal = Journal(str(tmp_path / f"positions-{id(self)}.sqlite3"))
        self.resolver = SymbolResolver(self.ti, trading_date=os.environ.get("TRADOVATE_SIM_TODAY"))
        self._threads: List[threading.Thread] = []
        self.outcomes: Dict[str, list] = {}
        self._n = 0
        self._lock = threading.Lock()  # serialises self.outcomes / self._n

    def close(self):
        for t in self._threads:
            t.join(WAIT_S)
        rs.reset_pool()
        self.ti.close()
        self.journal.close()

    # ------------------------------------------------------------------ sending
    def send(self, payload: dict, planner=None, wait: bool = True) -> str:
        """Record the signal and take its lane places now (arrival), then run it in a thread."""
        signal = parse_signal(json.dumps(payload).encode())
        with self._lock:
            self._n += 1
            n = self._n
        signal_id, duplicate, _ = self.journal.record_signal("test", signal.payload, f"s{n}",
                                                             json.dumps(payload, sort_keys=True), 0)
        assert not duplicate
        tickets = execution.reserve_lanes([t.id for t, _ in self.targets], parse_symbol(signal.symbol)[0])

        def run():
            contract = self.resolver.resolve(signal.symbol)
            kwargs = {"planner": planner} if planner is not None else {}
            outcomes = execution.execute_trade_simple(signal, contract, self.targets, journal=self.journal,
                                                      signal_id=signal_id, settings=self.settings,
                                                      tickets=tickets, **kwargs)
            with self._lock:
                self.outcomes[signal_id] = outcomes

        thread = threading.Thread(target=run, name=f"send-{n}", daemon=True)
        thread.start()
        self._threads.append(thread)
        if wait:
            thread.join(WAIT_S)
        return signal_id

    def quiet(self, hold_s: float = 0.15) -> None:
        """Every sent signal finished, no lane busy, and nothing changed at the broker for ``hold_s``."""
        for t in self._threads:
            t.join(WAIT_S)
        last = [None]
        stable_since = [time.monotonic()]

        def still():
            snap = (json.dumps(sorted(self.sim.positions().items())), len(self.sim.orders()),
                    json.dumps(self.legs_all(), sort_keys=True), executors.shared().lanes.lanes.depth())
            now = time.monotonic()
            if snap != last[0]:
                last[0], stable_since[0] = snap, now
                return False
            return not snap[3] and now - stable_since[0] >= hold_s
        wait_for(still, what="a quiet broker")

    # ------------------------------------------------------------------ the broker's truth
    def contract_id(self, symbol: str = "NQZ6") -> int:
        return self.sim.exchange.catalog.find(symbol).id

    def position(self, account_id: int, symbol: str = "NQZ6") -> int:
        return self.sim.positions().get((account_id, symbol), 0)

    def legs(self, account_id: int, symbol: str = "NQZ6") -> Dict[str, int]:
        """Working exit-leg quantity by kind (take_profit / stop) at the simulator."""
        ex = self.sim.exchange
        cid = self.contract_id(symbol)
        out = {"take_profit": 0, "stop": 0}
        with ex._lock:
            for oid, info in ex._info.items():
                order = ex._entities["order"][oid]
                if info.account_id != account_id or info.contract_id != cid or order["ordStatus"] != "Working":
                    continue
                if order.get("parentId") is None and order.get("ocoId") is None:
                    continue
                out["take_profit" if info.order_type == "Limit" else "stop"] += info.qty
        return out

    def legs_all(self) -> dict:
        return {t.id: self.legs(t.id) for t, _ in self.targets}

    def price(self, symbol: str = "NQZ6") -> float:
        return self.sim.get_price(symbol)["price"]


def target(side: str, size: int, brackets: Optional[dict] = None, **extra) -> dict:
    payload = {"ticker": "NQ1!", "sentiment": side, "position_size": size, **extra}
    if brackets and side != "flat":
        payload.update(brackets)
    return payload
