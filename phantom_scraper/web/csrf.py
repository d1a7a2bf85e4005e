"""Cross-site request forgery: what a state-changing admin route refuses (``@same_origin_json``).

HTTP Basic credentials are cached by the browser and sent with any request to this origin, so a
page elsewhere could submit a form to an admin route that places or flattens orders.  A browser
form can only send ``application/x-www-form-urlencoded``, ``multipart/form-data`` or
``text/plain`` without a CORS preflight (which this server never grants), so:

* the body must be ``application/json`` (the documented format) -> else 415;
* a request whose ``Origin`` is not this server's own (``null`` included) -> 403;
* a request marked ``Sec-Fetch-Site: cross-site`` by the browser -> 403.

Scripts (curl, Prometheus, the tests) send no ``Origin`` and no ``Sec-Fetch-Site``; they pass with
a JSON body.  The console's HTML forms (their own CSRF token) can reuse :func:`cross_site_refusal`
for the origin checks.
"""
from __future__ import annotations

import functools
import logging
from typing import Callable, Iterable, Optional
from urllib.parse import urlsplit

from flask import current_app, request

logger = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)


def _hostport(value: str) -> str:
    return (value or "").strip().lower().rstrip(".")


def origin_allowed(origin: str, own_hosts: Iterable[str]) -> bool:
    """True when ``origin`` (an ``Origin`` header's value) names one of ``own_hosts`` (``host[:port]``)."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    netloc = _hostport(parts.netloc)
    default = {"http": ":80", "https": ":443"}[parts.scheme]
    candidates = {_hostport(h) for h in own_hosts if h}
    return netloc in candidates or (netloc + default) in candidates or \
        any(c.endswith(default) and c[:-len(default)] == netloc for c in candidates)


def own_hosts(trust_forwarded_host: bool = False) -> list:
    """``host[:port]`` this request was addressed to (``Host``; with a trusted proxy also
    ``X-Forwarded-Host``, the name the browser used)."""
    hosts = [request.host]
    if trust_forwarded_host:
        forwarded = request.headers.get("X-Forwarded-Host", "")
        hosts.extend(h.strip() for h in forwarded.split(",") if h.strip())
    return hosts


def cross_site_refusal(trust_forwarded_host: bool = False) -> Optional[str]:
    """Why this request looks cross-site (a message), or None: ``Sec-Fetch-Site: cross-site``, or
    an ``Origin`` that is not this server's."""
    if request.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site":
        return "cross-site request refused (Sec-Fetch-Site: cross-site)"
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, own_hosts(trust_forwarded_host)):
        return "cross-site request refused (Origin is not this server)"
    return None


def refusal(error: Callable[..., object], trust_forwarded_host: bool = False,
            content_types: Iterable[str] = JSON_TYPES):
    """The refusal response for a state-changing request that is cross-site or not JSON, or None."""
    why = cross_site_refusal(trust_forwarded_host)
    if why is not None:
        logger.warning("Refused %s %s: %s", request.method, request.path, why)
        return error(403, "cross_site_request", why + "; nothing was done")
    if (request.mimetype or "").lower() not in tuple(content_types):
        return error(415, "unsupported_media_type",
                     "this route takes an application/json body; nothing was done")
    return None


def same_origin_json(view):
    """Decorator for a state-changing route: see the module docstring.  Uses the app's error
    mapper and proxy setting from ``app.extensions["csrf"]`` (``{"error": fn, "trust_forwarded_host": bool}``)."""
    @functools.wraps(view)
    def wrapped(**kwargs):
        cfg = current_app.extensions["csrf"]
        refused = refusal(cfg["error"], cfg.get("trust_forwarded_host", False))
        if refused is not None:
            return refused
        return view(**kwargs)

    return wrapped
