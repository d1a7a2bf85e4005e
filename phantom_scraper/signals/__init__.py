"""TradingView alert -> the Tradovate orders the trader means.  Pure: no I/O of its own.

::

    raw body --parse_signal--> Signal --SymbolResolver.resolve(signal.symbol)--> Contract
    (Signal, Contract, AccountTarget, net_pos) --plan_orders--> [OrderStep, ...]

``SignalError`` (bad alert, nothing sent; ``code``/``field``/``message``) and ``PlanError`` (no
order for this account; ``code``/``message``, ``nothing_to_do`` is not a failure) are the only
exceptions besides broker errors from the resolver's client.  See each module's docstring.
"""
from phantom_scraper.signals.model import AccountTarget, Bracket, Contract, OrderStep, PlanError, Signal, SignalError
from phantom_scraper.signals.parse import parse_signal
from phantom_scraper.signals.plan import (needs_position, plan_orders, reads_working_orders, round_to_tick, scaled,
                                          with_mode)
from phantom_scraper.signals.symbols import SymbolResolver, parse_symbol

__all__ = [
    "AccountTarget", "Bracket", "Contract", "OrderStep", "PlanError", "Signal", "SignalError",
    "SymbolResolver", "needs_position", "parse_signal", "parse_symbol", "plan_orders", "reads_working_orders",
    "round_to_tick", "scaled", "with_mode",
]
