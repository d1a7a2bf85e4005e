"""The console's buttons (the page is ``GET /``: web/read_routes.py, web/status_page.py): HTML forms
posting to ``POST /console/<action>``.  The buttons need the admin token (HTTP Basic: the browser
sends the login it holds) always, in ``sim`` mode on loopback too, where the page itself is open.

Form posts (``application/x-www-form-urlencoded``) carry a per-session CSRF token: a random value
kept in the signed session cookie (``SameSite=Strict``, ``HttpOnly``) and written into each form of
the page; the server compares the two in constant time.  The same origin checks as the JSON admin
routes apply on top (``web/csrf.py``: no foreign ``Origin``, no ``Sec-Fetch-Site: cross-site``).
The JSON API keeps its own rules (JSON bodies only); these routes take only forms.

Destructive actions (kill switch, flatten, cancel) answer first with a confirmation page; the
second post (``confirm=yes``) acts and shows the result in plain words.  Unlock acts at once.
"""
from __future__ import annotations

import hmac
import html
import logging
import secrets
from flask import Flask, Response, request, session

from phantom_scraper.web.admin_auth import admin_required
from phantom_scraper.web.csrf import cross_site_refusal

logger = logging.getLogger(__name__)

ACTIONS = ("kill", "unlock", "flatten", "cancel")
DESTRUCTIVE = frozenset({"kill", "flatten", "cancel"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def csrf_token() -> str:
    """This session's token (made on first use; kept in the signed session cookie)."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return token


def form(action: str, label: str, *, account: str, contract_id=None, contract: str = "",
         css: str = "", token: str) -> str:
    """One button: a form posting to ``/console/<action>`` with the session's token."""
    extra = (f"<input type='hidden' name='contract_id' value='{_e(contract_id)}'>"
             f"<input type='hidden' name='contract' value='{_e(contract)}'>") if contract_id is not None else ""
    data_contract = f" data-contract='{_e(contract)}'" if contract else ""
    return (f"<form class='act' method='post' action='/console/{_e(action)}'>"
            f"<input type='hidden' name='csrf_token' value='{_e(token)}'>"
            f"<input type='hidden' name='account' value='{_e(account)}'>{extra}"
            f"<button type='submit' class='{_e(css)}' data-action='{_e(action)}' data-account='{_e(account)}'"
            f"{data_contract}>{_e(label)}</button></form>")


def _what(action: str, account: str, contract: str) -> str:
    who = "every account" if account == "all" else account
    return {
        "kill": f"Kill switch on {who}: lock it (no new entries until you unlock it), cancel its working "
                f"orders and close its positions at market",
        "flatten": (f"Close the {contract} position of {account} at market" if contract else
                    f"Flatten {account}: cancel its working orders and close every position at market"),
        "cancel": f"Cancel every working order of {account} (positions stay open)",
        "unlock": f"Unlock {who}",
    }[action]


_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:40em}"
          "button{font-size:1em;padding:.5em 1em;margin:.3em .5em .3em 0;border-radius:4px;border:1px solid #888;"
          "cursor:pointer}.danger{background:#b00;color:#fff;border-color:#900}.ok{color:#070}.bad{color:#b00}"
          ".box{border:2px solid #c70;background:#fff4e0;padding:.8em 1em}")


def _page(title: str, body: str, status: int = 200) -> Response:
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>{body}"
            f"<p><a href='/' id='back'>Back to the console</a></p></body></html>")
    return Response(page, status=status, mimetype="text/html",
                    headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def refused(why: str, status: int = 403) -> Response:
    return _page("Refused", f"<h1 class='bad'>Refused: nothing was done</h1><p id='result'>{_e(why)}</p>", status)


def register(app: Flask, runtime, *, trust_forwarded_host: bool = False) -> None:
    """Add ``POST /console/<action>`` to ``app``; ``runtime`` holds the service and the account
    view.  The session cookie (the CSRF token) is signed with a key made per process: after a
    restart the page asks to be reloaded."""
    app.secret_key = secrets.token_bytes(32)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Strict")
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_NAME", "console")

    @app.post("/console/<action>")
    @admin_required
    def console_action(action: str):
        if action not in ACTIONS:
            return refused(f"no action named {action!r}", 404)
        why = cross_site_refusal(trust_forwarded_host)
        if why is not None:
            logger.warning("Console %s refused: %s", action, why)
            return refused(why)
        if (request.mimetype or "").lower() not in FORM_TYPES:
            return refused("the console's actions take its own forms only (the JSON API is under /api/)", 415)
        expected, given = session.get("csrf"), request.form.get("csrf_token", "")
        if not expected or not hmac.compare_digest(str(expected).encode(), given.encode()):
            logger.warning("Console %s refused: missing or wrong CSRF token", action)
            return refused("this form is stale or did not come from this console (CSRF token missing or "
                           "wrong); reload the console and try again")
        account = (request.form.get("account") or "").strip()
        if not account:
            return refused("no account given", 400)
        contract = (request.form.get("contract") or "").strip()
        raw_contract = (request.form.get("contract_id") or "").strip()
        try:
            contract_id = int(raw_contract) if raw_contract else None
        except ValueError:
            return refused("contract_id must be a number", 400)
        if action in DESTRUCTIVE and request.form.get("confirm") != "yes":
            return _confirm(action, account, contract, contract_id)
        actions = runtime.service.console  # app/console_actions.py
        if action == "kill":
            result = actions.kill(account)
        elif action == "unlock":
            result = actions.unlock(account)
        elif action == "flatten":
            result = actions.flatten(account, contract_id)
        else:
            result = actions.cancel_working(account)
        runtime.account_view.invalidate()  # the page's cached broker view is stale now
        logger.info("Console %s %s%s: %s", action, account, f" {contract}" if contract else "", result["message"])
        css = "ok" if result.get("ok") else "bad"
        return _page("Done" if result.get("ok") else "Failed",
                     f"<h1 class='{css}'>{'Done' if result.get('ok') else 'Not done'}</h1>"
                     f"<p>{_e(_what(action, account, contract))}.</p>"
                     f"<p id='result' class='{css}'>{_e(result['message'])}</p>")

    def _confirm(action: str, account: str, contract: str, contract_id) -> Response:
        token = csrf_token()
        extra = (f"<input type='hidden' name='contract_id' value='{_e(contract_id)}'>"
                 f"<input type='hidden' name='contract' value='{_e(contract)}'>") if contract_id is not None else ""
        label = {"kill": "Yes, lock and flatten", "flatten": "Yes, flatten", "cancel": "Yes, cancel the orders"}[action]
        body = (f"<h1>Are you sure?</h1><div class='box'><p id='question'>{_e(_what(action, account, contract))}.</p>"
                f"<form method='post' action='/console/{_e(action)}'>"
                f"<input type='hidden' name='csrf_token' value='{_e(token)}'>"
                f"<input type='hidden' name='account' value='{_e(account)}'>{extra}"
                f"<input type='hidden' name='confirm' value='yes'>"
                f"<button type='submit' class='danger' id='confirm'>{_e(label)}</button>"
                f"<a href='/'>No, go back</a></form></div>")
        return _page("Confirm", body)
