"""The HTML status page at ``GET /``: what needs attention (unknown order outcomes, risk locks) at
the top in colour, then per account the open positions, working orders and bracket legs, the last
trading day's realized P&L with a small inline SVG equity curve, limits; the History (P&L per
account and day); the pool and daemon; recent signals.  Rendered on the server from the same data
as the JSON routes (which never hold a secret), refreshing itself every 5 s; no JavaScript, nothing
fetched from anywhere."""
from __future__ import annotations

import html
import json
from typing import Iterable, Optional

from phantom_scraper.ops.history import equity_svg
from phantom_scraper.web import console_page


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _when(epoch) -> str:
    return console_page.when(epoch)


def _summary(signal: dict):
    """The stored outcome: a list of account outcomes, or a dict with an error/message."""
    raw = signal.get("summary")
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return []
    return data if isinstance(data, (list, dict)) else []


def _outcome_text(o: dict) -> str:
    return (f"{_e(o.get('account_name'))}: {_e(o.get('status') or o.get('state'))}"
            + (f" via {_e(o.get('transport'))}" if o.get("transport") else "")
            + (f" in {float(o['latency_ms']):.1f} ms" if o.get("latency_ms") is not None else "")
            + (f" — {_e(o.get('error'))}" if o.get("error") else ""))


def _signal_detail(signal: dict) -> str:
    summary = _summary(signal)
    if isinstance(summary, dict):
        err = summary.get("error")
        if isinstance(err, dict):
            return f"<span class='bad'>{_e(err.get('code'))}</span>: {_e(err.get('message'))}"
        return _e(err or summary.get("message") or "")
    if summary:
        return "; ".join(_outcome_text(o) for o in summary if isinstance(o, dict))
    intents = signal.get("intents") or []  # still executing: what the journal knows so far
    if intents:
        return "; ".join(_outcome_text(i) for i in intents)
    if signal.get("duplicate_of"):
        return f"duplicate of {_e(str(signal['duplicate_of'])[:8])}…, nothing placed"
    return "—"


def _strategies_html(status: dict) -> str:
    """Open order strategies per account (``status["order_strategies"]``), or nothing."""
    by_account = status.get("order_strategies") or {}
    rows = []
    for account in sorted(by_account):
        for st in by_account[account]:
            legs = "; ".join(
                f"{b.get('qty')}× tp {b.get('profitTarget', '—')} sl {b.get('stopLoss', '—')}"
                + (" trailing" if b.get("trailingStop") or b.get("autoTrail") else "") for b in st.get("brackets", []))
            rows.append(f"<tr><td>{_e(account)}</td><td>{_e(st.get('symbol'))}</td><td>{_e(st.get('side'))}</td>"
                        f"<td>{_e(st.get('strategy_id'))}</td><td>{_e(legs)}</td>"
                        f"<td>{_e(st.get('breakeven') or '—')}</td><td>{_when(st.get('since'))}</td></tr>")
    if not rows:
        return ""
    return ("<h2>Open order strategies</h2><table class='strategies'><tr><th>account</th><th>symbol</th>"
            "<th>side</th><th>strategy id</th><th>brackets (points from the entry)</th><th>breakeven</th>"
            "<th>since</th></tr>" + "".join(rows) + "</table>")


def _money(value) -> str:
    if value is None:
        return "—"
    v = float(value)
    return f"<span class='{'ok' if v > 0 else 'bad' if v < 0 else ''}'>{'+' if v > 0 else ''}{v:,.2f}</span>"


def _attention_html(view: dict) -> str:
    parts = []
    unknown = view.get("attention") or []
    if unknown:
        rows = "".join(f"<tr><td>{_e(u.get('account'))}</td><td><code>{_e(u.get('cl_ord_id'))}</code></td>"
                       f"<td>{_e(u.get('kind'))}</td><td>{_when(u.get('since'))}</td><td>{_e(u.get('error'))}</td></tr>"
                       for u in unknown)
        parts.append(
            f"<div class='alarm' id='attention'><b>{len(unknown)} order(s) with an UNKNOWN outcome</b>: each may or may "
            "not be at the broker. Check the account in Tradovate before sending anything again; they settle by "
            "clOrdId when the broker shows them.<table><tr><th>account</th><th>clOrdId</th><th>kind</th><th>since</th>"
            f"<th>error</th></tr>{rows}</table></div>")
    locks = [lock for a in view.get("accounts") or [] for lock in a.get("locks") or []]
    if locks:
        seen, items = set(), []
        for lock in locks:
            if lock.get("account") not in seen:
                seen.add(lock.get("account"))
                items.append(f"<li>{_e(lock.get('account'))}: {_e(console_page.plain(lock.get('reason')) or 'locked')} "
                             f"(since {_when(lock.get('at'))})</li>")
        parts.append(f"<div class='warn' id='locks'><b>Risk locks</b><ul>{''.join(items)}</ul></div>")
    for err in view.get("errors") or []:
        parts.append(f"<div class='warn'>{_e(err)}</div>")
    return "".join(parts)


def _accounts_html(view: dict, risk: Optional[dict] = None) -> str:
    risk_open = {r.get("account_name"): r.get("open_pnl") for r in (risk or {}).get("accounts") or []}
    cards = []
    for a in view.get("accounts") or []:
        if a.get("open_pnl") is None:
            a = dict(a, open_pnl=risk_open.get(a["account"]))  # the risk guard prices positions from quotes
        today = a.get("today") or {}
        pos = "".join(f"<tr><td>{_e(p['contract'])}</td><td>{_e(p['net_pos'])}</td><td>{_e(p.get('avg_price'))}</td></tr>"
                      for p in a.get("positions") or [])
        pos_html = (f"<table><tr><th>contract</th><th>net qty</th><th>avg price</th></tr>{pos}</table>"
                    if pos else "<p class='empty'>flat</p>")
        work = "".join(
            f"<tr><td>{_e(o.get('order_id'))}</td><td>{_e(o.get('contract'))}</td><td>{_e(o.get('action'))}</td>"
            f"<td>{_e(o.get('qty'))}</td><td>{_e(o.get('type'))}</td>"
            f"<td>{_e(o.get('price') if o.get('price') is not None else o.get('stop_price'))}</td>"
            f"<td>{_e(o.get('status'))}</td><td>{'leg of ' + _e(o['leg_of']) if o.get('leg_of') else ''}</td></tr>"
            for o in a.get("working") or [])
        work_html = (f"<table><tr><th>order</th><th>contract</th><th>side</th><th>qty</th><th>type</th><th>price</th>"
                     f"<th>status</th><th>bracket</th></tr>{work}</table>" if work else "<p class='empty'>no working orders</p>")
        limits = a.get("limits") or {}
        limit_text = ", ".join(f"{k.replace('_', ' ')} {_e(v)}" for k, v in limits.items() if v is not None) or "none set"
        locked = " <span class='bad'>LOCKED</span>" if a.get("locks") else ""
        cards.append(
            f"<div class='account' id='account-{_e(a['account'])}'><h3>{_e(a['account'])}{locked}</h3>"
            f"<p>Realized ({_e(today.get('trade_date') or 'today')}): <b>{_money(today.get('realized_pnl') if today else 0)}</b>"
            f" · trades {_e(today.get('trades', 0))} (won {_e(today.get('wins', 0))}, lost {_e(today.get('losses', 0))})"
            f" · open P&amp;L {_money(a.get('open_pnl'))} · limits: {limit_text}</p>"
            f"{equity_svg(today.get('equity') or [])}"
            f"<h4>Open positions</h4>{pos_html}<h4>Working orders and bracket legs</h4>{work_html}</div>")
    return "".join(cards)


def _history_html(view: dict) -> str:
    days = view.get("days") or []
    if not days:
        return "<p class='empty'>No fills yet.</p>"
    rows = "".join(f"<tr><td>{_e(d['trade_date'])}</td><td>{_e(d['account'])}</td><td>{_money(d['realized_pnl'])}</td>"
                   f"<td>{_e(d['trades'])}</td><td>{_e(d['wins'])}</td><td>{_e(d['losses'])}</td></tr>" for d in days)
    return ("<table id='history'><tr><th>trading day</th><th>account</th><th>realized P&amp;L</th><th>trades</th>"
            f"<th>won</th><th>lost</th></tr>{rows}</table>"
            "<p class='empty'>Export: <a href='/api/history?format=csv'>CSV per day</a> · "
            "<a href='/api/history?format=csv&amp;view=signals'>CSV per signal</a> · "
            "<a href='/api/history'>JSON</a></p>")


def _settlement_html(status: dict) -> str:
    """From the service status: DUPLICATE alarms, orders settled not_placed, a start-up retrying."""
    att = status.get("orders_needing_attention") or {}
    parts = []
    dups = att.get("duplicates") or []
    if dups:
        items = "".join(f"<li>intent <code>{_e(d.get('intent_id'))}</code> has broker orders "
                        f"{_e(', '.join(str(i) for i in d.get('order_ids') or []))} ({_e(d.get('why'))})</li>"
                        for d in dups)
        parts.append(f"<div class='alarm' id='duplicates'><b>DUPLICATE</b>: a second broker order for one "
                     f"intent (this should never happen; check the account in Tradovate)<ul>{items}</ul></div>")
    drift = att.get("drift") or []
    if drift:
        items = "".join(f"<li>{_e(d.get('account'))} {_e(d.get('contract'))}: at {_e(d.get('actual'))}, expected "
                        f"{_e(d.get('expected'))} since {_e(d.get('since'))} ({_e(d.get('compared_with'))})</li>"
                        for d in drift)
        parts.append(f"<div class='alarm' id='drift'><b>DRIFT</b>: {len(drift)} account(s) not where the strategy "
                     f"and the risk guard put them (DRIFT_ACTION decides whether the server brings them back)"
                     f"<ul>{items}</ul></div>")
    placed = att.get("not_placed") or []
    if placed:
        items = "".join(f"<li>{_e(i.get('account_name'))}: <code>{_e(i.get('cl_ord_id'))}</code> — {_e(i.get('error'))}</li>"
                        for i in placed)
        parts.append(f"<div class='warn' id='not-placed'><b>{len(placed)} order(s) settled NOT PLACED</b>: their "
                     f"outcome was unknown and the broker never showed them; they were not resent (adopted if they "
                     f"still turn up)<ul>{items}</ul></div>")
    if status.get("start_error"):
        parts.append(f"<div class='warn' id='start-error'>start-up retrying with back-off: "
                     f"{_e(status.get('start_error'))}</div>")
    return "".join(parts)


def _risk_html(risk: Optional[dict]) -> str:
    """The risk guard: each account's day (P&L, peak, limits) and lock, then recent refusals/locks."""
    if not risk:
        return ""
    rows = []
    for a in risk.get("accounts") or []:
        lock = a.get("lock")
        limits = a.get("limits") or {}
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in limits.items() if v not in (None, False))
        lock_html = (f"<span class='bad'>locked: {_e(console_page.plain(lock.get('reason')))}</span> — "
                     f"{_e(console_page.plain(lock.get('message')))}"
                     f" (until {_e(lock.get('until_utc') or 'unlocked by an operator')})") if lock else "<span class='ok'>open</span>"
        rows.append(f"<tr><td>{_e(a.get('account_name'))}</td><td>{_e(a.get('trading_day'))}</td>"
                    f"<td>{_money(a.get('realized_pnl'))}</td><td>{_money(a.get('open_pnl'))}</td>"
                    f"<td>{_money(a.get('total_pnl'))}</td><td>{_money(a.get('peak_pnl'))}</td>"
                    f"<td>{_e(shown or 'none')}</td><td>{lock_html}</td></tr>")
    events = "".join(
        f"<li>{_when(e.get('at'))} {_e(e.get('account_name') or '')} <b>{_e(e.get('kind'))}</b> "
        f"{_e(console_page.plain(e.get('code') or ''))}: {_e(console_page.plain(e.get('message')))}</li>"
        for e in (risk.get("recent_events") or [])[:10])
    md = risk.get("market_data") or {}
    feed = (f" · market data: <b class='{'ok' if md.get('connected') else 'bad'}'>"
            f"{'connected' if md.get('connected') else 'not connected'}</b>" if md else "")
    return (f"<h2>Risk guard (trading day {_e(risk.get('trading_day'))}, next session {console_page.when(risk.get('next_session_start_utc'))}){feed}</h2>"
            "<table class='risk'><tr><th>account</th><th>trading day</th><th>realized P&amp;L</th><th>open P&amp;L</th>"
            "<th>day P&amp;L</th><th>peak</th><th>limits</th><th>lock</th></tr>" + "".join(rows) + "</table>"
            + (f"<ul class='risk-events'>{events}</ul>" if events else ""))


def _status_word(signal: dict):
    """(css class, words) of a signal's outcome: an ``acked`` signal whose other accounts were only
    skipped (a benign no-op, e.g. nothing to close) is not shown as a failure."""
    status = signal.get("status")
    if status == "partial":
        summary = _summary(signal)
        others = {o.get("status") for o in summary if isinstance(o, dict)} - {"acked"} if isinstance(summary, list) else set()
        if others and others <= {"skipped"}:
            return "ok", "acked (some accounts had nothing to do)"
    if status in ("acked", "validated"):
        return "ok", status
    if status in ("failed", "unknown", "error", "rejected", "partial"):
        return "bad", status
    return "", status


def render(status: dict, signals: Iterable[dict], view: Optional[dict] = None, *,
           accounts: Optional[list] = None, alerts: Optional[list] = None, token: str = "",
           tz: Optional[str] = None) -> str:
    """The page; ``accounts`` is ``/api/accounts``' data (with the buttons, ``token`` being the
    session's CSRF token), ``alerts`` the alert log, ``tz`` the display zone (``DISPLAY_TZ``)."""
    console_page.set_zone(tz)
    view = view or {}
    pool = status.get("connection_pool", {})
    daemon = status.get("keepalive_daemon", {})
    rows = []
    for sub_id, c in sorted(pool.get("connections", {}).items()):
        state_class = "ok" if c.get("ws_connected") else "bad"
        rows.append(
            f"<tr><td>{_e(sub_id)}</td><td>{_e(c.get('login'))}</td>"
            f"<td class='{state_class}'>{_e(c.get('state'))}</td><td>{'demo' if c.get('is_demo') else 'LIVE'}</td>"
            f"<td>{_when(c.get('connected_since'))}</td><td>{_e(c.get('seconds_since_heartbeat'))}</td>"
            f"<td>{_e(c.get('reconnect_count'))}</td><td>{_e(c.get('orders_via_websocket'))}</td>"
            f"<td>{_e(c.get('orders_via_rest'))}</td><td>{_e(c.get('last_order_latency_ms'))}</td>"
            f"<td>{_e(c.get('token_expires_in_s'))}</td><td>{_e(c.get('last_error') or '')}</td></tr>")
    pool_html = (
        "<table><tr><th>sub-account</th><th>login</th><th>state</th><th>env</th><th>connected since</th>"
        "<th>s since heartbeat</th><th>reconnects</th><th>orders via WebSocket</th><th>orders via REST</th>"
        "<th>last latency ms</th><th>token expires in s</th><th>last error</th></tr>" + "".join(rows) + "</table>"
        if rows else "<p class='empty'>No connection yet: the pool fills when the server has logged in.</p>")
    sig_rows = []
    for s in signals:
        payload = s.get("payload") or {}
        status_class, status_words = _status_word(s)
        qty = payload.get("quantity", payload.get("qty", payload.get("contracts")))
        sig_rows.append(
            f"<tr><td>{_when(s.get('received_at'))}</td><td>{_e(s.get('recorder'))}</td>"
            f"<td>{_e(payload.get('action') or payload.get('order'))}</td>"
            f"<td>{_e(payload.get('ticker') or payload.get('symbol'))}</td><td>{_e(qty)}</td>"
            f"<td class='{status_class}'>{_e(status_words)}</td><td>{_signal_detail(s)}</td></tr>")
    signals_html = (
        "<table class='signals'><tr><th>received</th><th>recorder</th><th>action</th><th>symbol</th><th>qty</th>"
        "<th>status</th><th>accounts (transport, latency) or error</th></tr>" + "".join(sig_rows) + "</table>"
        if sig_rows else "<p class='empty' id='no-signals'>No signals yet. Send a webhook and it appears here.</p>")
    errors = [f"<li>{_e(sub_id)} ({_e(c.get('login'))}): {_e(c.get('last_error'))}</li>"
              for sub_id, c in sorted(pool.get("connections", {}).items()) if c.get("last_error")]
    if daemon.get("last_error"):
        errors.append(f"<li>keep-alive daemon: {_e(daemon.get('last_error'))}</li>")
    errors_html = ("<h2>Errors</h2><ul class='bad'>" + "".join(errors) + "</ul>") if errors else ""
    daemon_state = "running" if daemon.get("running") else "stopped"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="5"></noscript>
<title>phantom-scraper console</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border:1px solid #ccc;padding:.3em .6em;font-size:.9em;text-align:left}} th{{background:#f3f3f3}}
.ok{{color:#070;font-weight:600}} .bad{{color:#b00;font-weight:600}} .empty{{color:#666;font-style:italic}}
.alarm{{background:#fde8e8;border:2px solid #b00;color:#700;padding:.6em 1em;margin:.5em 0}}
.warn{{background:#fff4e0;border:2px solid #c70;color:#630;padding:.6em 1em;margin:.5em 0}}
.account{{display:inline-block;vertical-align:top;border:1px solid #ccc;padding:.3em 1em;margin:0 1em 1em 0}}
.account h3{{margin:.3em 0}} .account h4{{margin:.6em 0 .2em}} svg.equity{{display:block;margin:.3em 0}}
{console_page.CSS}
</style></head><body>
<h1>phantom-scraper</h1>
<div id="live">
{_attention_html(view)}
{_settlement_html(status)}
<p>Environment: <b id="env">{_e(status.get('environment'))}</b> · service: <b id="service-state">{_e(status.get('service_state'))}</b>
 · WebSocket orders: <b>{'on' if status.get('websocket_orders_enabled') else 'off'}</b>
 · keep-alive daemon: <b id="daemon-state" class="{'ok' if daemon.get('running') else 'bad'}">{daemon_state}</b>
 (cycles {_e(daemon.get('cycles'))})</p>
<h2>Accounts</h2>
{(console_page.accounts_html(accounts, token) if accounts is not None else _accounts_html(view, status.get("risk")))
 or "<p class='empty'>No account yet: they appear when the server has logged in.</p>"}
<h2>Alert log <small class="muted">(every webhook request, refused ones included; newest first)</small></h2>
{console_page.alerts_html(alerts or [])}
<h2>History</h2>
{_history_html(view)}
<h2>Connection pool ({_e(pool.get('sockets', 0))} socket(s) for {_e(pool.get('size', 0))} account(s))</h2>
{pool_html}
{errors_html}
{_strategies_html(status)}
{_risk_html(status.get("risk"))}
<h2>Recent signals</h2>
{signals_html}
<p class="empty">Refreshes every 5 s. Times in {_e(tz or 'UTC')} (UTC on hover). JSON: <a href="/api/accounts">/api/accounts</a> ·
 <a href="/api/signals">/api/signals</a> · <a href="/api/websocket-status">/api/websocket-status</a> · <a href="/health">/health</a></p>
</div>
{console_page.REFRESH_SCRIPT}
</body></html>
"""
