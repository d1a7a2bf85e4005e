"""The read-only admin routes: ``GET /api/signals`` (the journal's signals and the alert log),
``GET /api/accounts`` (per account: positions with open P&L, working orders by role, the trading
day's realized P&L, locks), ``GET /api/history`` (JSON or CSV), ``GET /metrics`` and the console
page ``GET /`` (its buttons post to web/console.py's routes).

Registered by the app factory (``register(app, runtime, error)``); ``runtime`` is the app's
per-process state (the service, the settings, the alert log, the account view, the metrics).
"""
from __future__ import annotations

import json

from flask import Flask, Response, request

from phantom_scraper import redact
from phantom_scraper.app.results import ServiceUnavailable
from phantom_scraper.ops.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from phantom_scraper.web import console
from phantom_scraper.web.admin_auth import admin_required
from phantom_scraper.web.alert_log import OUTCOMES as ALERT_OUTCOMES


def _json(body: dict) -> Response:
    return Response(json.dumps(body, indent=2, default=str) + "\n", mimetype="application/json")


def accounts_data(runtime):
    """(``/api/accounts``' list, the cached broker view it was built from); 503 until ready."""
    from phantom_scraper.web import accounts_api

    svc = runtime.service
    if svc.journal is None or svc.state != "ready":
        raise ServiceUnavailable(f"service is {svc.state}")
    view = runtime.account_view.get(svc, dict(runtime.metrics.locks))
    risk = svc.risk
    return accounts_api.build(view, risk.status() if risk is not None else None,
                              risk.last_price if risk is not None else (lambda _c: None)), view


def register(app: Flask, runtime, error) -> None:
    """Add the routes to ``app``; ``error(status, code, message)`` is the app's error answer."""

    @app.get("/api/signals")
    @admin_required
    def api_signals():
        """The journal's recent signals and the alert log (every webhook request, refused ones
        included); ``?status=refused`` (or ``accepted``, ``duplicate``; a journal status such as
        ``failed`` for the signals) filters both."""
        limit = min(max(request.args.get("limit", 50, type=int) or 50, 1), 500)
        wanted = (request.args.get("status") or "").strip().lower() or None
        runtime.service.settle_writes()  # the outcomes of signals already answered are in the journal
        journal = runtime.service.journal
        signals = journal.recent_signals(limit if wanted is None else 500) if journal is not None else []
        if wanted is not None:
            signals = [s for s in signals if s.get("status") == wanted][:limit]
        alerts = runtime.alert_log.entries(limit, outcome=wanted if wanted in ALERT_OUTCOMES else None) \
            if wanted is None or wanted in ALERT_OUTCOMES else []
        body = {"success": True, "signals": signals, "alerts": alerts}
        return _json(body)

    @app.get("/api/accounts")
    @admin_required
    def api_accounts():
        """Per account: positions with open P&L, working orders with their role, the trading day's
        realized P&L, open P&L and locks (the status page renders the same data)."""
        accounts, view = accounts_data(runtime)
        body = redact.scrub_values({"success": True, "accounts": accounts, "errors": view.get("errors") or []})
        return _json(body)

    @app.get("/api/history")
    @admin_required
    def api_history():
        from phantom_scraper.ops.history import to_csv
        from phantom_scraper.ops.history_source import gather, parse_time

        try:
            start = parse_time(request.args.get("from"))
            end = parse_time(request.args.get("to"), end_of_day=True)
        except ValueError as exc:
            return error(400, "invalid_parameter", str(exc))
        fmt = (request.args.get("format") or "json").lower()
        if fmt not in ("json", "csv"):
            return error(400, "invalid_parameter", "format must be json or csv")
        runtime.service.settle_writes()
        data = gather(runtime.service, start, end, request.args.get("account") or None)
        if fmt == "csv":
            view = "signals" if request.args.get("view") == "signals" else "days"
            return Response(to_csv(data, view, runtime.settings.display_tz), mimetype="text/csv",
                            headers={"Content-Disposition": f"attachment; filename=history-{view}.csv"})
        body = redact.scrub_values({"success": True, **data})
        return _json(body)

    @app.get("/metrics")
    @admin_required
    def metrics():
        runtime.service.settle_writes()  # (a finished signal's counters are updated with its journal write)
        return Response(runtime.metrics.render(), mimetype=None, content_type=METRICS_CONTENT_TYPE)

    @app.get("/")
    @admin_required(open_in_sim=True)
    def status_page():
        from phantom_scraper.web.status_page import render

        svc = runtime.service
        svc.settle_writes()
        journal = svc.journal
        ready = journal is not None and svc.state == "ready"
        recent = journal.recent_signals(20) if ready else []
        accounts, view = accounts_data(runtime) if ready else (None, {})
        page = render(redact.scrub_values(svc.status()), redact.scrub_values(recent), redact.scrub_values(view),
                      accounts=redact.scrub_values(accounts) if accounts is not None else None,
                      alerts=runtime.alert_log.entries(30), token=console.csrf_token(), tz=runtime.settings.display_tz)
        return Response(page, mimetype="text/html", headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})
