"""Value types shared by the parser, the symbol resolver and the planner.

Everything here is immutable and free of I/O.  ``Signal`` is what one TradingView alert means;
``Contract`` is the dated Tradovate contract it trades; ``OrderStep`` is one request the executor
sends for one account.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

# What buy/sell mean (a recorder's ``signal_mode``; docs/PAYLOAD.md, "Signal modes"):
# "orders" = buy/sell the quantity; "side" = be long/short (TradersPost, PickMyTrade).
SIGNAL_MODES = ("orders", "side")
MAX_QTY_MODES = ("clip", "reject")  # an order above an account's max_qty: cut to it, or refused
# Normalised actions (see parse.py for the words that map to each).
ACTIONS = ("buy", "sell", "close", "close_long", "close_short", "reverse", "cancel", "target")
ORDER_TYPES = ("Market", "Limit", "Stop", "StopLimit")
BRACKET_KINDS = ("price", "ticks", "points", "percent", "dollars")
STEP_KINDS = ("placeorder", "placeoso", "startorderstrategy", "liquidateposition", "cancel_working",
              "wait_flat", "trim_legs", "interrupt_strategies")


class SignalError(ValueError):
    """The alert cannot be turned into orders; nothing was sent.

    ``code`` is machine-readable (``invalid_json``, ``missing_field``, ``empty_field``,
    ``invalid_field``, ``unsupported``, ``unsupported_format``, ``unknown_symbol``,
    ``expired_contract``), ``field`` names the offending field
    as the sender spelled it (or ``None`` for the body as a whole), ``message`` is for people.
    Messages never contain the webhook secret.
    """

    def __init__(self, code: str, field: Optional[str], message: str):
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message

    def to_dict(self) -> Dict[str, Any]:
        return {"code": self.code, "field": self.field, "message": self.message}


class PlanError(ValueError):
    """This signal produces no order for this account; ``code`` says why.

    Codes: ``nothing_to_do`` (already where the signal wants it: not a failure),
    ``exceeds_max_qty``, ``account_disabled``, ``invalid_account``, ``missing_reference_price``,
    ``invalid_bracket``, ``invalid_quantity``.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> Dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Bracket:
    """A take-profit or stop-loss: an absolute ``price`` or a distance in ``ticks``/``points``/
    ``percent`` (of the reference price) from the entry's reference price."""

    kind: str
    value: float


@dataclass(frozen=True)
class Target:
    """One take-profit of a scale-out: where (``distance``) and how much -- ``quantity`` contracts
    per signal unit (multiplied per account) or ``percent`` of the position; neither: an even share."""

    distance: Bracket
    quantity: Optional[int] = None
    percent: Optional[float] = None
    stop: Optional["StopPlan"] = None  # this target's own stop (PickMyTrade advance_tp_sl)


@dataclass(frozen=True)
class StopPlan:
    """The stop of an order strategy.  ``distance`` places it; ``trailing`` makes it follow the
    price ``trail`` behind (default: ``distance``), starting once the price is ``trigger`` in profit
    (None: at once), moving in steps of ``step`` (None: one tick).  Distances are Brackets."""

    distance: Bracket
    trailing: bool = False
    trail: Optional[Bracket] = None
    trigger: Optional[Bracket] = None
    step: Optional[Bracket] = None
    limit: Optional[float] = None  # stop-limit: the limit price (a plain bracket only, not a strategy)


@dataclass(frozen=True)
class Breakeven:
    """Move the stop to entry +/- ``offset`` once the price has gone ``trigger`` in profit
    (done by this server: Tradovate refuses breakeven inside a strategy)."""

    trigger: Bracket
    offset: Bracket


@dataclass(frozen=True)
class Exits:
    """Exit management that needs a Tradovate order strategy (several targets, sized targets,
    a trailing stop, breakeven)."""

    targets: Tuple[Target, ...] = ()
    stop: Optional[StopPlan] = None
    breakeven: Optional[Breakeven] = None


@dataclass(frozen=True)
class Signal:
    action: str  # one of ACTIONS
    symbol: str  # as sent, trimmed (resolve with SymbolResolver)
    quantity: Optional[int] = None  # None: not sent (entries then default to 1)
    order_type: str = "Market"  # one of ORDER_TYPES
    limit_price: Optional[float] = None
    stop_price: Optional[float] = None
    price: Optional[float] = None  # the signal price ({{close}}): reference for distance brackets
    take_profit: Optional[Bracket] = None
    stop_loss: Optional[Bracket] = None
    stop_loss_limit: Optional[float] = None  # a stop-limit stop loss: its limit price (bracket only)
    exits: Optional[Exits] = None  # set instead of take_profit/stop_loss when a strategy is needed
    close_percent: Optional[float] = None  # exits: percent of the position (None: quantity or all)
    flatten_first: bool = False  # entries: flatten any position (either side) before entering
    flatten_opposite: bool = False  # entries: flatten an opposite position first, then the full quantity
    sentiment: Optional[str] = None  # "long" | "short" | "flat" after normalisation
    target_position: Optional[int] = None  # signed, strategy-position mode only
    time_in_force: Optional[str] = None  # "Day" | "GTC" | "IOC" | "FOK"
    signal_id: Optional[str] = None  # explicit ``id`` only
    time: Optional[str] = None
    test: bool = False
    mode: str = "orders"  # one of SIGNAL_MODES: set from the recorder (``with_mode``), never from the body
    add: bool = False  # side mode: a same-side signal adds (TradersPost ``add``, PickMyTrade duplicate_position_allow)
    # Parts of the body that were understood but not used (e.g. PickMyTrade's multiple_accounts): the answer's "warnings"
    warnings: Tuple[str, ...] = field(default=(), compare=False)
    secret: Optional[str] = field(default=None, repr=False, compare=False)
    payload: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False, hash=False)

    @property
    def is_entry(self) -> bool:
        return self.action in ("buy", "sell")


@dataclass(frozen=True)
class Contract:
    """A dated, tradable Tradovate contract (``NQZ6``)."""

    id: int
    name: str
    root: str
    tick_size: float
    point_value: Optional[float] = None


@dataclass(frozen=True)
class AccountTarget:
    """One Tradovate account a signal is copied to."""

    id: int
    name: str  # accountSpec
    # Contracts per signal unit; a fraction (1.5) is allowed: each order's quantity is rounded to the
    # nearest whole contract, half up, and is at least 1 (``plan.scaled``).
    multiplier: Union[int, float] = 1
    max_qty: Optional[int] = None
    max_qty_mode: str = "clip"  # one of MAX_QTY_MODES
    enabled: bool = True
    # TradersPost's "subtract exit quantity": on a reversal TradingView's order size is close +
    # open, so the entry is the signal quantity minus the quantity closed.  False: the signal
    # quantity is the entry size.
    subtract_exit_qty: bool = True


@dataclass(frozen=True)
class OrderStep:
    """One request for the executor, in order.  ``body`` is a Tradovate request body without
    ``clOrdId`` (the executor assigns one per step).  ``cancel_working``, ``wait_flat`` and
    ``trim_legs`` are executor instructions whose body is ``{accountId, contractId, symbol}``
    (``trim_legs`` also ``cover``: the working exit legs are cut to cover at most that many)."""

    kind: str  # one of STEP_KINDS
    body: Dict[str, Any] = field(hash=False)
    reason: str = ""  # short human description for logs and the status page
    # Not sent: what this server manages itself (startorderstrategy: {"breakeven": {...}}).
    meta: Dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def step_delta(step) -> Optional[int]:
    """Signed position change a placement step may make (None: an unknown size, or not a Buy/Sell
    placement; an exit to flat is handled apart by its callers).  ``startorderstrategy`` carries the
    entry's size inside its ``params`` string."""
    body = step.body or {}
    qty = body.get("orderQty")
    if step.kind == "startorderstrategy":
        try:
            qty = json.loads(body.get("params") or "{}").get("entryVersion", {}).get("orderQty")
        except (TypeError, ValueError, AttributeError):
            qty = None
    if body.get("action") not in ("Buy", "Sell") or isinstance(qty, bool) or not isinstance(qty, int):
        return None
    return qty if body["action"] == "Buy" else -qty
