"""The logins: each one authenticated, its accounts listed and registered with the pool; which login
holds an account; which accounts a recorder trades.

Logins are independent: one that cannot be opened (broker unreachable, wrong password) is kept in
``down`` with its reason while the others open; the service is ready when at least one is open
(``open`` raises only when none is).  A recorder's accounts on a login that is down are refused
``login_unavailable`` with the reason (:meth:`LoginBook.plan`); ``app/login_retry.py`` opens a down
login again with back-off (:meth:`LoginBook.open_one`) unless its error is final."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from phantom_scraper import events, redact
from phantom_scraper.app import recorders as recorders_mod
from phantom_scraper.errors import AuthError, CaptchaRequiredError, TradovateError, describe
from phantom_scraper.signals import AccountTarget
from phantom_scraper.tradovate.pool_api import Connection, ConnectionPool
from phantom_scraper.tradovate_integration import TradovateIntegration

logger = logging.getLogger(__name__)


@dataclass
class Login:
    config: recorders_mod.LoginConfig
    integration: TradovateIntegration
    accounts: Dict[str, dict]  # account name -> Tradovate account dict
    connection: Optional[Connection] = None


@dataclass(frozen=True)
class LoginDown:
    """A login that could not be opened: why, since when, and whether trying again can help."""
    error: str
    final: bool  # bad credentials or configuration: not retried (the operator fixes it and restarts)
    since: float  # time.time() of the first failure
    exc: Optional[BaseException] = None  # the last error (the start-up raises it when no login opened)
    wait_s: Optional[float] = None  # the broker said how long to wait (captcha penalty)

    def to_dict(self) -> dict:
        return {"state": "failed" if self.final else "down", "error": self.error, "retrying": not self.final,
                "since": round(self.since, 3)}


def is_final(exc: BaseException) -> bool:
    """Bad credentials and configuration errors are final; the broker unreachable, erroring or
    asking for a captcha wait is not (the service's start-up uses the same rule)."""
    if isinstance(exc, TradovateError):
        return isinstance(exc, AuthError) and not isinstance(exc, CaptchaRequiredError)
    return True


class LoginBook:
    """``by_name`` (login name -> :class:`Login`), ``by_account`` (account id -> its login) and ``down``
    (login name -> :class:`LoginDown`).  Written by the start-up thread and the login retrier under
    ``lock``; read by request threads (``plan`` takes a consistent view under the lock)."""

    def __init__(self):
        self.lock = threading.Lock()  # guards the three dicts (bookkeeping only: no I/O under it)
        self.by_name: Dict[str, Login] = {}
        self.by_account: Dict[int, Login] = {}
        self.down: Dict[str, LoginDown] = {}
        self.configs: Dict[str, recorders_mod.LoginConfig] = {}
        self.recorders: Tuple = ()

    def open(self, login_configs, recorders, pool: ConnectionPool, settings) -> None:
        """Open every login (``open_one``); one that fails is kept in ``down`` with its reason.
        Raises the error of a login when none opened (a transient one first: the start-up retries)."""
        redact.register_secret(*(r.token for r in recorders))
        redact.register_secret(*(c.credentials.password for c in login_configs.values()
                                 if c.credentials.password != c.credentials.username))  # sim's demo/demo is no secret
        redact.register_secret(*(c.credentials.sec for c in login_configs.values()))
        pool.configure(settings)
        self.configs, self.recorders = dict(login_configs), tuple(recorders)
        for name, cfg in login_configs.items():
            logger.info("Login %s (%s): %s", name, cfg.env, recorders_mod.describe_urls(cfg))
            try:
                self.open_one(name, pool, settings)
            except recorders_mod.ConfigError:
                raise  # a recorder linking an account its login does not have stops the start
            except Exception as exc:  # noqa: BLE001 - recorded; the other logins open on their own
                self.mark_down(name, exc)
        if not self.by_name:
            downs = list(self.down.values())
            raise next((d.exc for d in downs if not d.final), downs[0].exc)
        for line in recorders_mod.check_accounts(recorders, {n: lg.accounts for n, lg in self.by_name.items()},
                                                 settings.tradovate_env):
            logger.info("Accounts: %s", line)

    def open_one(self, name: str, pool: ConnectionPool, settings) -> Login:
        """Authenticate one login, list its active accounts, check the recorders' links to it (else
        ``recorders.ConfigError``), register its connection with the pool; then it is open."""
        cfg = self.configs[name]
        ti = TradovateIntegration(cfg.credentials, cfg.rest_url, cfg.ws_url, is_demo=cfg.is_demo, settings=settings)
        try:
            ti.authenticate()
            accounts = {a["name"]: a for a in ti.list_accounts() if _active(a)}
            for rec in self.recorders:  # every linked account must exist: fail loudly
                for link in rec.accounts or ():
                    if link.login == name and link.account not in accounts:
                        raise recorders_mod.ConfigError(
                            f"recorder {rec.name!r} links account {link.account!r}, which login {name!r} does not have")
        except BaseException:
            ti.close()
            raise
        login = Login(cfg, ti, accounts)
        login.connection = pool.register_login(
            ti, [a["id"] for a in accounts.values()], is_demo=cfg.is_demo,
            login_key=f"{cfg.credentials.username}@{cfg.env}", settings=settings)
        with self.lock:
            self.by_name[name] = login
            for acct in accounts.values():
                self.by_account[int(acct["id"])] = login
            was_down = self.down.pop(name, None)
        if was_down is not None:
            logger.warning("Login %s is open again (down since %s: %s)", name,
                           time.strftime("%H:%M:%S", time.gmtime(was_down.since)), was_down.error)
            events.emit("login_up", login=name, accounts=len(accounts))
        return login

    def mark_down(self, name: str, exc: BaseException) -> LoginDown:
        final, error = is_final(exc), describe(exc)
        wait_s = getattr(exc, "p_time_s", None) if isinstance(exc, CaptchaRequiredError) else None
        with self.lock:
            before = self.down.get(name)
            down = LoginDown(error, final, before.since if before else time.time(), exc, wait_s)
            self.down[name] = down
        if before is None or before.error != error or before.final != final:
            logger.error("Login %s unavailable (%s): %s", name, "not retried" if final else "retrying", error)
            events.emit("login_down", login=name, error=error, retrying=not final)
        return down

    def reset(self) -> None:
        """Forget a half-done start-up (before a retry or after a failure)."""
        with self.lock:
            logins = list(self.by_name.values())
            self.by_name.clear()
            self.by_account.clear()
            self.down.clear()
        for login in logins:
            if login.connection is not None:
                login.connection.close()
            login.integration.close()

    def plan(self, recorder: recorders_mod.Recorder) -> Tuple[List[tuple], List[tuple]]:
        """``(targets, unavailable)`` in one consistent view: the accounts a recorder trades on open
        logins (``targets_for``) and ``(account name, login, reason)`` for those on logins that are down."""
        with self.lock:
            targets = self._targets(recorder)
            unavailable = []
            if recorder.accounts is None:
                down = self.down.get(recorders_mod.DEFAULT_LOGIN)
                if down is not None:
                    unavailable.append(("*", recorders_mod.DEFAULT_LOGIN, down.error))
            for link in recorder.accounts or ():
                down = self.down.get(link.login)
                if link.enabled and down is not None:
                    unavailable.append((link.account, link.login, down.error))
        return targets, unavailable

    def status(self) -> Dict[str, dict]:
        """Per login: ``open`` with its account count, or ``down``/``failed`` with the reason."""
        with self.lock:
            out = {name: {"state": "open", "accounts": len(login.accounts)} for name, login in self.by_name.items()}
            out.update({name: down.to_dict() for name, down in self.down.items()})
        return out

    def first(self) -> Optional[Login]:
        return next(iter(self.by_name.values()), None)

    def integration_for_account(self, account_id: int) -> Optional[TradovateIntegration]:
        login = self.by_account.get(int(account_id))
        return login.integration if login else None

    def account_names(self) -> Dict[int, str]:
        with self.lock:
            return {int(a["id"]): name for login in self.by_name.values() for name, a in login.accounts.items()}

    def targets_for(self, recorder: recorders_mod.Recorder) -> List[tuple]:
        """``[(AccountTarget, Connection), ...]``: the accounts a recorder trades on open logins, with
        their multipliers (those on a login that is down: :meth:`plan`)."""
        with self.lock:
            return self._targets(recorder)

    def _targets(self, recorder: recorders_mod.Recorder) -> List[tuple]:
        targets = []
        if recorder.accounts is None:
            login = self.by_name.get(recorders_mod.DEFAULT_LOGIN)
            for name, acct in sorted(login.accounts.items()) if login is not None else ():
                if recorder.account_filter and name not in recorder.account_filter:
                    continue
                targets.append((AccountTarget(id=int(acct["id"]), name=name,
                                              subtract_exit_qty=recorder.subtract_exit_qty), login.connection))
            return targets
        for link in recorder.accounts:
            login = self.by_name.get(link.login)
            if not link.enabled or login is None:
                continue
            acct = login.accounts[link.account]
            targets.append((AccountTarget(id=int(acct["id"]), name=link.account, multiplier=link.multiplier,
                                          max_qty=link.max_qty, enabled=link.enabled, max_qty_mode=link.max_qty_mode,
                                          subtract_exit_qty=recorder.subtract_exit_qty), login.connection))
        return targets

    def manual_target(self, account_name: Optional[str]) -> Optional[tuple]:
        """The ``(AccountTarget, Connection)`` of a manual trade: the named account, or the first
        account of the first login."""
        with self.lock:
            logins = list(self.by_name.values())
        for login in logins:
            for acct_name, acct in sorted(login.accounts.items()):
                if account_name is None or acct_name == account_name:
                    return AccountTarget(id=int(acct["id"]), name=acct_name), login.connection
        return None


def rest_reachable(ti) -> bool:
    try:
        ti.list_accounts()
        return True
    except (TradovateError, AuthError):
        return False


def _active(account: dict) -> bool:
    return not account.get("closed") and account.get("active", True) is not False and not account.get("archived")
