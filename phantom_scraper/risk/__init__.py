"""Account-level risk guard: position caps, signal rates, trading hours, daily P&L limits, kill switch.

Modules: ``hours`` (TRADING_HOURS, CME trading day), ``rules`` (pure entry/exit and P&L rules),
``limits`` (environment defaults + per-account overrides), ``store`` (locks, peaks and events in the
journal's SQLite file), ``marketdata`` (``md/subscribeQuote`` feed), ``guard`` (RiskGuard).
"""
