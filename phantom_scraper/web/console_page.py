"""The console's parts of the status page: account cards rendered from ``/api/accounts``' data
(positions with open P&L, working orders by role, the day's realized P&L and equity curve with
axes, and the buttons), the alert log, times in the trader's zone (UTC on hover), and the small
script that refreshes the page in place (the scroll position and an open form stay put)."""
from __future__ import annotations

import contextvars
import datetime as _dt
import html
import re
import zoneinfo
from typing import List, Optional

from phantom_scraper.ops.history_source import known_contract_name
from phantom_scraper.web import console
from phantom_scraper.web.accounts_api import ROLE_WORDS

_TZ: contextvars.ContextVar = contextvars.ContextVar("display_tz", default=_dt.timezone.utc)


def set_zone(name: Optional[str]) -> None:
    """The zone of this render (the request's thread); UTC when unknown."""
    try:
        _TZ.set(zoneinfo.ZoneInfo(name) if name else _dt.timezone.utc)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        _TZ.set(_dt.timezone.utc)


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _to_dt(value) -> Optional[_dt.datetime]:
    if value in (None, "", 0):
        return None
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(float(value), _dt.timezone.utc)
    try:
        parsed = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)


def when(value, short: bool = False) -> str:
    """A time in the display zone, the UTC time on hover (epoch seconds or an ISO string)."""
    at = _to_dt(value)
    if at is None:
        return "—"
    utc = at.astimezone(_dt.timezone.utc)
    local = at.astimezone(_TZ.get())
    shown = local.strftime("%H:%M:%S %Z" if short else "%Y-%m-%d %H:%M:%S %Z")
    return (f"<time datetime='{utc.strftime('%Y-%m-%dT%H:%M:%SZ')}' "
            f"title='{utc.strftime('%Y-%m-%d %H:%M:%S UTC')}'>{_e(shown)}</time>")


def money(value) -> str:
    if value is None:
        return "<span class='muted'>—</span>"
    v = float(value)
    return f"<span class='{'ok' if v > 0 else 'bad' if v < 0 else ''}'>{'+' if v > 0 else ''}{v:,.2f}</span>"


_CONTRACT_ID = re.compile(r"\bcontract (\d+)\b")
_REPEAT = re.compile(r"\b([\w ]+): \1\b")


def plain(text: Optional[str]) -> str:
    """Contract ids named (``contract 3000201`` -> ``MNQZ6``), the broker's verbs in words."""
    if not text:
        return ""
    def name(m):
        found = known_contract_name(int(m.group(1)))
        return m.group(0) if found == int(m.group(1)) else str(found)

    text = _CONTRACT_ID.sub(name, str(text))
    text = (text.replace("liquidateposition", "closed at market").replace("cancelorder", "order cancelled")
            .replace("kill_switch", "kill switch"))
    return _REPEAT.sub(r"\1", text)  # "kill switch: kill switch" -> "kill switch"


def equity_chart(points: List[List[float]], width: int = 320, height: int = 120) -> str:
    """Cumulative realized P&L of the day: a line with a zero line, the value axis (USD) and the
    time axis (display zone) labelled; nothing fetched from anywhere."""
    if not points:
        return ""
    series = [[points[0][0], 0.0]] + [list(p) for p in points]
    xs, ys = [p[0] for p in series], [p[1] for p in series]
    x0, x1 = min(xs), max(xs)
    lo, hi = min(ys + [0.0]), max(ys + [0.0])
    span_x, span_y = (x1 - x0) or 1.0, (hi - lo) or 1.0
    left, right, top, bottom = 58, 8, 8, 20
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / span_x * plot_w

    def py(y):
        return top + plot_h - (y - lo) / span_y * plot_h

    path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in series)
    colour = "#070" if ys[-1] >= 0 else "#b00"
    tz = _TZ.get()

    def hhmm(x):
        return _dt.datetime.fromtimestamp(x, _dt.timezone.utc).astimezone(tz).strftime("%H:%M")

    labels = []
    for value in sorted({hi, 0.0, lo}):
        labels.append(f"<text x='{left - 4}' y='{py(value) + 4:.1f}' text-anchor='end'>{value:+,.0f}</text>"
                      f"<line x1='{left - 2}' y1='{py(value):.1f}' x2='{left}' y2='{py(value):.1f}' stroke='#888'/>")
    zero = py(0.0)
    last = ys[-1]
    return (f"<svg class='equity' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
            f"xmlns='http://www.w3.org/2000/svg' role='img' aria-label='realized P&amp;L today, USD: {last:+,.2f}'>"
            f"<g font-size='10' fill='#555' font-family='system-ui,sans-serif'>"
            f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + plot_h}' stroke='#888'/>"
            f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' stroke='#888'/>"
            f"<line x1='{left}' y1='{zero:.1f}' x2='{left + plot_w}' y2='{zero:.1f}' stroke='#ccc' stroke-dasharray='3,3'/>"
            + "".join(labels) +
            f"<text x='{left}' y='{height - 5}' text-anchor='start'>{hhmm(x0)}</text>"
            f"<text x='{left + plot_w}' y='{height - 5}' text-anchor='end'>{hhmm(x1)}</text>"
            f"<text x='{left + plot_w / 2:.0f}' y='{height - 5}' text-anchor='middle'>USD, realized today</text></g>"
            f"<polyline fill='none' stroke='{colour}' stroke-width='1.8' points='{path}'/>"
            f"<circle cx='{px(series[-1][0]):.1f}' cy='{py(last):.1f}' r='2.5' fill='{colour}'/></svg>")


def _price(value) -> str:
    if value is None:
        return "—"
    return f"{float(value):,.2f}".rstrip("0").rstrip(".") if float(value) % 1 else f"{float(value):,.0f}"


def account_card(a: dict, token: str) -> str:
    name = a["name"]
    locked = " <span class='badge bad'>LOCKED</span>" if a.get("locked") else ""
    pos_rows = "".join(
        f"<tr><td>{_e(p['contract'])}</td><td>{_e(p['side'])} {abs(int(p['qty']))} @ {_price(p.get('avg_price'))}</td>"
        f"<td>{_price(p.get('last_price'))}</td><td>{money(p.get('open_pnl'))}</td>"
        f"<td>{console.form('flatten', 'Flatten ' + str(p['contract']), account=name, contract_id=p.get('contract_id'), contract=p['contract'], css='danger small', token=token)}</td></tr>"
        for p in a.get("positions") or [])
    positions = (f"<div class='scroll'><table class='positions'><tr><th>contract</th><th>position @ avg price</th>"
                 f"<th>last</th><th>open P&amp;L</th><th></th></tr>{pos_rows}</table></div>"
                 if pos_rows else "<p class='empty flat'>flat: no open position</p>")
    order_rows = "".join(
        f"<tr><td><b>{_e(ROLE_WORDS.get(o.get('role'), o.get('role')))}</b></td><td>{_e(o.get('contract'))}</td>"
        f"<td>{_e(o.get('side'))} {_e(o.get('qty'))}</td><td>{_e(o.get('type'))}</td>"
        f"<td>{_price(o.get('price') if o.get('price') is not None else o.get('stop_price'))}</td>"
        f"<td>{_e(o.get('status'))}</td></tr>" for o in a.get("working_orders") or [])
    orders = (f"<div class='scroll'><table class='orders'><tr><th>role</th><th>contract</th><th>side, qty</th><th>type</th>"
              f"<th>price</th><th>status</th></tr>{order_rows}</table></div>"
              if order_rows else "<p class='empty'>no working orders</p>")
    day = a.get("history_day") or {}
    trades = int(day.get("trades") or 0)
    wins, losses = int(day.get("wins") or 0), int(day.get("losses") or 0)
    even = max(0, trades - wins - losses)
    trade_text = (f"{trades} closed trade{'s' if trades != 1 else ''}: {wins} won, {losses} lost"
                  + (f", {even} even" if even else "")) if trades else "no closed trade"
    locks = "".join(f"<p class='bad'>Locked: {_e(plain(lock.get('message') or lock.get('reason')))}"
                    f"{' — until ' + when(lock.get('until_utc')) if lock.get('until_utc') else ' — until you unlock it'}</p>"
                    for lock in a.get("locks") or [])
    buttons = [console.form("flatten", "Flatten account", account=name, css="danger", token=token),
               console.form("cancel", "Cancel working orders", account=name, token=token),
               console.form("kill", "Kill switch", account=name, css="danger", token=token)]
    if a.get("locked"):
        buttons.append(console.form("unlock", "Unlock", account=name, token=token))
    trading_day = a.get("trading_day") or day.get("trade_date") or "today"
    return (f"<section class='account' id='account-{_e(name)}'><h3>{_e(name)}{locked}</h3>{locks}"
            f"<p class='pnl'>Realized ({_e(trading_day)}): <b>{money(a.get('realized_pnl'))}</b>"
            f" · open P&amp;L <b>{money(a.get('open_pnl'))}</b> · {_e(trade_text)}</p>"
            f"{equity_chart(a.get('equity') or [])}"
            f"<h4>Open positions</h4>{positions}<h4>Working orders</h4>{orders}"
            f"<div class='actions'>{''.join(buttons)}</div></section>")


def accounts_html(accounts: List[dict], token: str) -> str:
    if not accounts:
        return ""
    everyone = (f"<div class='actions all'>{console.form('kill', 'Kill switch: all accounts', account='all', css='danger', token=token)}"
                f"{console.form('unlock', 'Unlock all accounts', account='all', token=token)}</div>")
    return everyone + "<div class='cards'>" + "".join(account_card(a, token) for a in accounts) + "</div>"


def alerts_html(alerts: List[dict]) -> str:
    """The alert log, newest first: refused ones in red with the reason."""
    if not alerts:
        return "<p class='empty' id='no-alerts'>No webhook request yet.</p>"
    rows = []
    for a in alerts:
        refused = a.get("outcome") == "refused"
        if refused:
            why = " ".join(x for x in (a.get("error_code"), f"({a['error_field']})" if a.get("error_field") else "") if x)
            detail = f"<span class='bad'>refused {_e(a.get('http_status'))}: {_e(why)}</span> {_e(a.get('error_message') or a.get('note') or '')}"
        elif a.get("outcome") == "duplicate":
            detail = "<span class='muted'>duplicate: already received, nothing placed</span>"
        else:
            detail = f"<span class='ok'>accepted</span> signal {_e(str(a.get('signal_id') or '')[:8])} {_e(a.get('status') or '')}"
        body = a.get("body")
        body_html = (f"<details><summary>body ({_e(a.get('body_bytes'))} bytes{', cut' if a.get('body_truncated') else ''})</summary>"
                     f"<pre>{_e(body)}</pre></details>") if body else f"<span class='muted'>{_e(a.get('note') or 'no body')}</span>"
        rows.append(f"<tr class='{'refused' if refused else ''}'><td>{when(a.get('at'))}</td><td>{_e(a.get('source'))}</td>"
                    f"<td><code>{_e(a.get('route'))}</code></td><td>{detail}</td><td>{body_html}</td></tr>")
    return ("<div class='scroll'><table id='alerts'><tr><th>received</th><th>from</th><th>route</th><th>outcome</th>"
            "<th>what was sent</th></tr>" + "".join(rows) + "</table></div>")


# Refreshes the live part of the page in place every 5 s: the window keeps its scroll position,
# and nothing is replaced while a details element is open or a button has the focus.
REFRESH_SCRIPT = """<script>
(function(){
  function busy(){var a=document.activeElement;return (a&&(a.tagName==='BUTTON'||a.tagName==='INPUT'))||document.querySelector('#live details[open]');}
  setInterval(function(){
    if(document.hidden||busy())return;
    fetch(location.pathname,{credentials:'same-origin',cache:'no-store'}).then(function(r){return r.ok?r.text():null;}).then(function(t){
      if(!t)return;var doc=new DOMParser().parseFromString(t,'text/html');var fresh=doc.getElementById('live');
      var old=document.getElementById('live');if(fresh&&old&&!busy()){old.replaceWith(fresh);}
    }).catch(function(){});
  },5000);
})();
</script>"""

CSS = """
.muted{color:#777} .badge{font-size:.75em;padding:.1em .4em;border:1px solid currentColor;border-radius:3px}
.cards{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.account{border:1px solid #ccc;border-radius:6px;padding:.3em 1em .8em;flex:1 1 24em;max-width:44em;min-width:0}
.account h3{margin:.3em 0} .account h4{margin:.6em 0 .2em} svg.equity{display:block;margin:.3em 0;max-width:100%;height:auto}
.scroll{overflow-x:auto;max-width:100%} form.act{display:inline;margin:0}
.actions{margin:.6em 0} .actions button{margin:.2em .4em .2em 0}
button{font-size:.9em;padding:.35em .8em;border-radius:4px;border:1px solid #888;background:#f6f6f6;cursor:pointer}
button.danger{background:#b00;color:#fff;border-color:#900} button.small{font-size:.8em;padding:.2em .5em}
tr.refused td{background:#fff6f6} pre{white-space:pre-wrap;word-break:break-all;max-width:40em;margin:.2em 0}
@media (max-width:600px){body{margin:.6em} td,th{padding:.2em .35em;font-size:.8em} h1{font-size:1.4em}
 .account{flex-basis:100%;padding:.3em .6em .6em} table{display:block;overflow-x:auto;max-width:100%}}
"""
