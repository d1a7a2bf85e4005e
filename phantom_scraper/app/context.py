"""What the service's collaborators share: settings, the pool, the journal, the logins, the
recorders, the symbol resolver, the risk guard, breakeven, the coordinator and the life-cycle gate.

One object, built by :class:`~phantom_scraper.app.service.TradingService` and handed to each
collaborator (intake, signal run, admin, start-up); its fields are set during start-up and read at
call time, so a collaborator never imports the service.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

from phantom_scraper.app.gate import Gate
from phantom_scraper.app.logins import LoginBook
from phantom_scraper.app.startup_queue import StartupQueue
from phantom_scraper.config import Settings
from phantom_scraper.execution.executors import Workers
from phantom_scraper.journal.coordinator import Coordinator
from phantom_scraper.journal.journal import Journal
from phantom_scraper.risk.guard import RiskGuard
from phantom_scraper.signals import SymbolResolver
from phantom_scraper.tradovate.pool_api import ConnectionPool


@dataclass(eq=False)
class Context:
    settings: Settings
    pool: ConnectionPool
    journal: Optional[Journal] = None
    logins: LoginBook = field(default_factory=LoginBook)
    gate: Gate = field(default_factory=Gate)
    workers: Workers = field(default_factory=Workers)  # this service's lanes and executors (passed in, never global)
    recorders: Tuple = ()
    resolver: Optional[SymbolResolver] = None
    risk: Optional[RiskGuard] = None  # built at start-up (after the logins)
    risk_clock: Callable[[], float] = time.time  # the risk guard's clock (tests set a simulated one before start)
    breakeven: object = None  # BreakevenManager once started (order strategies with breakeven)
    drift: object = None  # DriftMonitor once started (execution/drift.py): lanes' expectations vs the broker
    # With the PostgreSQL journal: the login lease and hand-off between instances (None on SQLite).
    coordinator: Optional[Coordinator] = None
    # Webhooks that arrive while the logins are not ready yet (phantom_scraper/app/startup_queue.py)
    startup_queue: Optional[StartupQueue] = None
    fill_ledger: object = None  # FillLedger (journal/fills.py) once the journal is open
    housekeeping: object = None  # Housekeeping (app/housekeeping.py) once the logins are open

    def __post_init__(self):
        if self.startup_queue is None:
            self.startup_queue = StartupQueue(self.settings.pending_signal_max_age_s)
