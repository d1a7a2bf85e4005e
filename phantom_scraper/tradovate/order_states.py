"""The one table of Tradovate order states (``OrderStatus``), by what a caller needs to know."""

RESTING_STATES = frozenset({"Working", "Suspended"})  # accepted, waiting at the broker
PENDING_STATES = frozenset({"PendingNew", "PendingReplace", "PendingCancel"})  # a request of ours in flight
WORKING_STATES = RESTING_STATES | PENDING_STATES  # not final: it may still fill
CANCELLABLE_STATES = WORKING_STATES - {"PendingCancel"}  # what a cancel (or a modify) can still act on
MODIFIABLE_STATES = RESTING_STATES | {"PendingNew"}  # what a stop move (breakeven) may modify
DONE_STATES = frozenset({"Filled", "Canceled", "Rejected", "Expired", "Completed"})
