"""Account-level risk guard: position caps, signal rates, trading hours, daily P&L limits, kill switch.

Modules: ``hours`` (TRADING_HOURS, CME trading day), ``rules`` (pure entry/exit and P&L rules),
``limits`` (environment defaults + per-account overrides), ``store`` (locks, peaks and events in the
journal's database), ``pnl`` (one account's P&L with its sources and ages), ``unlocks`` (an operator's
unlock base, pnl_unknown reports), ``closing`` (flatten at close until done), ``status``,
``guard`` (RiskGuard); the quote feed is ``tradovate.marketdata``.
"""
