"""The logins: each one authenticated, its accounts listed and registered with the pool; which login
holds an account; which accounts a recorder trades."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

from phantom_scraper import redact
from phantom_scraper.app import recorders as recorders_mod
from phantom_scraper.errors import AuthError, TradovateError
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


class LoginBook:
    """``by_name`` (login name -> :class:`Login`) and ``by_account`` (account id -> its login).
    Written only by the start-up thread (``open``/``reset``); read by request threads."""

    def __init__(self):
        self.by_name: Dict[str, Login] = {}
        self.by_account: Dict[int, Login] = {}

    def open(self, login_configs, recorders, pool: ConnectionPool, settings) -> None:
        """Authenticate every login, list its active accounts, register its connection with the pool;
        every account a recorder links must exist (else ``recorders.ConfigError``)."""
        redact.register_secret(*(r.token for r in recorders))
        redact.register_secret(*(c.credentials.password for c in login_configs.values()
                                 if c.credentials.password != c.credentials.username))  # sim's demo/demo is no secret
        redact.register_secret(*(c.credentials.sec for c in login_configs.values()))
        pool.configure(settings)
        for name, cfg in login_configs.items():
            logger.info("Login %s (%s): %s", name, cfg.env, recorders_mod.describe_urls(cfg))
            ti = TradovateIntegration(cfg.credentials, cfg.rest_url, cfg.ws_url, is_demo=cfg.is_demo, settings=settings)
            ti.authenticate()
            accounts = {a["name"]: a for a in ti.list_accounts() if _active(a)}
            login = Login(cfg, ti, accounts)
            self.by_name[name] = login
            for acct in accounts.values():
                self.by_account[int(acct["id"])] = login
            login.connection = pool.register_login(
                ti, [a["id"] for a in accounts.values()], is_demo=cfg.is_demo,
                login_key=f"{cfg.credentials.username}@{cfg.env}", settings=settings)
        for rec in recorders:  # every linked account must exist: fail loudly at start
            for link in rec.accounts or ():
                if link.account not in self.by_name[link.login].accounts:
                    raise recorders_mod.ConfigError(
                        f"recorder {rec.name!r} links account {link.account!r}, which login {link.login!r} does not have")
        for line in recorders_mod.check_accounts(recorders, {n: lg.accounts for n, lg in self.by_name.items()},
                                                 settings.tradovate_env):
            logger.info("Accounts: %s", line)

    def reset(self) -> None:
        """Forget a half-done start-up (before a retry or after a failure)."""
        for login in self.by_name.values():
            if login.connection is not None:
                login.connection.close()
            login.integration.close()
        self.by_name.clear()
        self.by_account.clear()

    def first(self) -> Optional[Login]:
        return next(iter(self.by_name.values()), None)

    def integration_for_account(self, account_id: int) -> Optional[TradovateIntegration]:
        login = self.by_account.get(int(account_id))
        return login.integration if login else None

    def account_names(self) -> Dict[int, str]:
        return {int(a["id"]): name for login in self.by_name.values() for name, a in login.accounts.items()}

    def targets_for(self, recorder: recorders_mod.Recorder) -> List[tuple]:
        """``[(AccountTarget, Connection), ...]``: the accounts a recorder trades, with their multipliers."""
        targets = []
        if recorder.accounts is None:
            login = self.by_name[recorders_mod.DEFAULT_LOGIN]
            for name, acct in sorted(login.accounts.items()):
                if recorder.account_filter and name not in recorder.account_filter:
                    continue
                targets.append((AccountTarget(id=int(acct["id"]), name=name,
                                              subtract_exit_qty=recorder.subtract_exit_qty), login.connection))
            return targets
        for link in recorder.accounts:
            if not link.enabled:
                continue
            login = self.by_name[link.login]
            acct = login.accounts[link.account]
            targets.append((AccountTarget(id=int(acct["id"]), name=link.account, multiplier=link.multiplier,
                                          max_qty=link.max_qty, enabled=link.enabled, max_qty_mode=link.max_qty_mode,
                                          subtract_exit_qty=recorder.subtract_exit_qty), login.connection))
        return targets

    def manual_target(self, account_name: Optional[str]) -> Optional[tuple]:
        """The ``(AccountTarget, Connection)`` of a manual trade: the named account, or the first
        account of the first login."""
        for login in self.by_name.values():
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
