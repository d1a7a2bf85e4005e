"""A wire-compatible Tradovate simulator (REST + WebSocket) with latency and fault injection.

    from phantom_scraper.tradovate_sim import Simulator, SimConfig
    with Simulator(SimConfig(ws_idle_timeout_s=1)) as sim:
        sim.rest_url, sim.ws_url, sim.control_url, sim.orders(), sim.faults

Modules: config (SimConfig, UserSpec), catalog (contracts), exchange + orders (state of record),
handlers (endpoint table shared by both transports), rest, ws, faults, control, simulator, __main__.
"""
from .config import RETAIL_SYNC_ENTITY_TYPES, SimConfig, UserSpec
from .faults import FaultSwitches
from .simulator import Simulator

__all__ = ["Simulator", "SimConfig", "UserSpec", "FaultSwitches", "RETAIL_SYNC_ENTITY_TYPES"]
