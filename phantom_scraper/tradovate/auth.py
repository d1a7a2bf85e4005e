"""The access token of one Tradovate login: obtain, renew ahead of expiry, re-login on failure.

* ``auth/accesstokenrequest``: ``errorText`` or HTTP 401 -> ``AuthError`` naming the cause (never
  the password); a penalty ticket is waited out (up to ``penalty_max_wait_s``) and the request
  resent with ``p-ticket``; ``p-captcha`` -> ``CaptchaRequiredError``.
* ``auth/renewaccesstoken`` with the current token when within the renew margin of
  ``expirationTime`` (the margin is ``min(token_renew_margin_s, lifetime / 3)``, so short lifetimes
  work); a failed renewal falls back to a full login.  No lifetime is ever assumed.
* ``expirationTime`` is on the server's clock: it is moved onto the local clock with the offset
  measured from the answer's ``Date`` header (``RestClient.server_clock_offset_s``), so a local
  clock minutes off neither renews after expiry nor on every call.
* One refresh at a time (single-flight); listeners are told every new token.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, List, Optional

from phantom_scraper import events
from phantom_scraper.config import Credentials, Settings
from phantom_scraper.redact import register_secret, set_live_secrets
from phantom_scraper.errors import AuthError, BrokerError, CaptchaRequiredError, PenaltyError, RateLimitedError, TradovateError
from phantom_scraper.tradovate.rest import RestClient

logger = logging.getLogger(__name__)

# The Date header has a 1 s resolution: smaller offsets are measurement noise, not skew.
CLOCK_SKEW_MIN_S = 2.0


def parse_expiration(value: Any) -> Optional[float]:
    """ISO-8601 ``expirationTime`` -> epoch seconds (None when absent or unparseable)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # trim fractions longer than microseconds
        head, _, tail = text.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{tail[len(digits):]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    expires_at: Optional[float]  # epoch seconds, from expirationTime
    issued_at: float
    user_id: Optional[int] = None
    md_access_token: str = field(default="", repr=False)

    def renew_at(self, margin_s: float) -> Optional[float]:
        if self.expires_at is None:
            return None
        lifetime = max(0.0, self.expires_at - self.issued_at)
        return self.expires_at - min(margin_s, lifetime / 3.0)

    def is_due(self, margin_s: float, now: float) -> bool:
        at = self.renew_at(margin_s)
        return at is not None and now >= at

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class TokenKeeper:
    """Holds the current token of one login; safe from any thread."""

    MAX_PENALTY_ROUNDS = 2

    def __init__(self, credentials: Credentials, rest: RestClient, settings: Settings, stop: threading.Event):
        self._creds = credentials
        self._rest = rest
        self._settings = settings
        self._stop = stop
        # Guards _token and _inflight only; never held across a network call or a wait.
        self._lock = threading.Lock()
        self._token: Optional[Token] = None
        self._inflight: Optional[threading.Event] = None  # set when the running refresh ends
        self._listeners: List[Callable[[str], None]] = []
        # A password equal to the user name (the simulator's demo/demo) is no secret: blanking it
        # would blank the user name in every log line.
        if credentials.password != credentials.username:
            register_secret(credentials.password)
        register_secret(credentials.sec)

    @property
    def token(self) -> Optional[Token]:
        return self._token

    def add_listener(self, fn: Callable[[str], None]) -> None:
        self._listeners = self._listeners + [fn]  # copy-on-write

    # ------------------------------------------------------------------ public
    def login(self) -> str:
        return self._single_flight(force_login=True, stale=None)

    def ensure_token(self) -> str:
        """The current token, renewed (or re-obtained) first when it is due."""
        return self._single_flight(force_login=False, stale=None)

    def reauthenticate(self, stale_token: str) -> str:
        """After a 401 with ``stale_token``: log in again unless another thread already did."""
        return self._single_flight(force_login=True, stale=stale_token)

    # ------------------------------------------------------------------ single flight
    def _needs_refresh(self, force_login: bool, stale: Optional[str]) -> bool:
        tok = self._token
        if tok is None:
            return True
        if stale is not None:
            return tok.access_token == stale
        if force_login:
            return True
        return tok.is_due(self._settings.token_renew_margin_s, time.time())

    def _single_flight(self, force_login: bool, stale: Optional[str]) -> str:
        wait_bound = 2 * self._settings.rest_timeout_s + self._settings.penalty_max_wait_s + 1.0
        for _ in range(3):
            with self._lock:  # decide leader/follower; bookkeeping only
                if not self._needs_refresh(force_login, stale):
                    assert self._token is not None
                    return self._token.access_token
                leader = self._inflight is None
                if leader:
                    self._inflight = threading.Event()
                done = self._inflight
            if not leader:
                done.wait(wait_bound)
                force_login, stale = False, None  # a fresh token from the leader is good enough
                continue
            try:
                token = self._refresh(force_login)
            finally:
                with self._lock:  # release followers
                    self._inflight = None
                done.set()
            self._notify(token.access_token)
            return token.access_token
        raise AuthError("could not obtain an access token (concurrent refresh did not succeed)")

    def _refresh(self, force_login: bool) -> Token:
        current = self._token
        if not force_login and current is not None and not current.is_expired(time.time()):
            try:
                token = self._renew(current)
                self._set(token)
                logger.info("access token renewed for %s; expires in %.0f s", self._creds.username,
                            (token.expires_at or time.time()) - time.time())
                return token
            except TradovateError as exc:
                logger.warning("token renewal failed (%s); logging in again", exc)
        token = self._login()
        self._set(token)
        logger.info("logged in as %s; token expires in %.0f s", self._creds.username,
                    (token.expires_at or time.time()) - time.time())
        return token

    def _set(self, token: Token) -> None:
        set_live_secrets(self, token.access_token, token.md_access_token)  # log filter blanks them
        with self._lock:  # publish the new token
            self._token = token

    def _notify(self, access_token: str) -> None:
        for fn in self._listeners:
            try:
                fn(access_token)
            except Exception:  # noqa: BLE001 - a listener must not break authentication
                logger.exception("token listener failed")

    # ------------------------------------------------------------------ wire
    def _login_body(self) -> dict:
        c = self._creds
        body = {
            "name": c.username,
            "password": c.password,
            "appId": c.app_id,
            "appVersion": c.app_version,
            "cid": int(c.cid) if str(c.cid).isdigit() else c.cid,
            "sec": c.sec,
        }
        if c.device_id:
            body["deviceId"] = c.device_id
        return body

    def _login(self) -> Token:
        body = self._login_body()
        user = self._creds.username
        for _ in range(self.MAX_PENALTY_ROUNDS + 1):
            try:
                data = self._rest.send("POST", "auth/accesstokenrequest", body=body)
            except PenaltyError as exc:
                events.emit("penalty", what="login", wait_s=exc.retry_after_s, captcha=bool(exc.captcha))
                if exc.captcha:
                    raise CaptchaRequiredError(
                        f"login for {user!r} needs a captcha (penalty {exc.retry_after_s} s): wait and retry later",
                        exc.retry_after_s,
                    ) from exc
                self._wait_penalty(exc, "auth/accesstokenrequest")
                body = dict(body, **{"p-ticket": exc.p_ticket})
                continue
            except BrokerError as exc:
                if exc.status == 401:
                    events.emit("auth", login=user, error="credentials rejected (HTTP 401)")
                    raise AuthError(f"login refused for {user!r}: credentials rejected (HTTP 401)") from exc
                raise
            return self._token_from(data, f"login for {user!r}", self._rest.server_clock_offset_s)
        raise RateLimitedError(f"login for {user!r}: penalty tickets kept coming")

    def _renew(self, current: Token) -> Token:
        data = self._rest.send("GET", "auth/renewaccesstoken", token=current.access_token)
        return self._token_from(data, "token renewal", self._rest.server_clock_offset_s)

    def _wait_penalty(self, exc: PenaltyError, what: str) -> None:
        wait_s = exc.retry_after_s
        if wait_s is None or wait_s > self._settings.penalty_max_wait_s:
            raise RateLimitedError(f"{what}: penalty of {wait_s} s exceeds the wait limit", wait_s) from exc
        logger.warning("%s: penalty ticket, waiting %.1f s before resending with p-ticket", what, wait_s)
        if self._stop.wait(wait_s):
            raise RateLimitedError(f"{what}: shutting down during a penalty wait", wait_s) from exc

    @staticmethod
    def _token_from(data: Any, what: str, server_offset_s: Optional[float] = None) -> Token:
        if not isinstance(data, dict):
            raise AuthError(f"{what}: unexpected answer")
        if data.get("errorText"):
            raise AuthError(f"{what} refused: {data['errorText']}")
        access = data.get("accessToken")
        if not access:
            raise AuthError(f"{what}: no accessToken in the answer")
        expires_at = parse_expiration(data.get("expirationTime"))
        if expires_at is None:
            logger.warning("%s: no usable expirationTime; the token will be replaced on its first 401", what)
        elif server_offset_s is not None and abs(server_offset_s) >= CLOCK_SKEW_MIN_S:
            logger.warning("%s: the local clock is %.0f s %s the broker's; token expiry measured on the "
                           "broker's clock", what, abs(server_offset_s), "behind" if server_offset_s > 0 else "ahead of")
            expires_at -= server_offset_s  # the server's instant on the local clock
        return Token(
            access_token=access,
            expires_at=expires_at,
            issued_at=time.time(),
            user_id=data.get("userId"),
            md_access_token=data.get("mdAccessToken") or "",
        )
