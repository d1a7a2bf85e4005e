"""Simulator configuration: users, accounts and every behaviour docs/TRADOVATE.md lists as uncertain.

Defaults follow the strictest reading of docs/TRADOVATE.md ("Uncertain" list); each such item is a field
here so a test can select the other reading.  Time constants carry their unit in their name.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Optional, Tuple


@dataclass(frozen=True)
class UserSpec:
    """One login and the accounts it owns."""

    name: str = "demo"
    password: str = field(default="demo", repr=False)
    accounts: Tuple[str, ...] = ("DEMO0001", "DEMO0002")
    # If set, accesstokenrequest must carry this appId / cid / sec ("The app is not registered" otherwise).
    app_id: Optional[str] = None
    cid: Optional[str] = None
    sec: Optional[str] = field(default=None, repr=False)
    max_order_qty: Optional[int] = None  # per-account risk limit -> MaxOrderQtyLimitReached

    @classmethod
    def with_accounts(cls, name: str, password: str, count: int, prefix: str = "") -> "UserSpec":
        """A user with ``count`` accounts named ``<PREFIX>0001`` ... (e.g. a 50-account fan-out)."""
        prefix = prefix or name.upper()[:8]
        return cls(name=name, password=password,
                   accounts=tuple(f"{prefix}{i:04d}" for i in range(1, count + 1)))


# Every entityType of Tradovate's SyncMessage schema (docs/TRADOVATE.md, "WebSocket").
ALL_SYNC_ENTITY_TYPES = ("user", "userProperty", "property", "account", "accountRiskStatus", "marginSnapshot",
                         "userAccountAutoLiq", "cashBalance", "currency", "position", "fillPair", "order",
                         "contract", "contractMaturity", "product", "exchange", "spreadDefinition", "command",
                         "commandReport", "executionReport", "orderVersion", "fill", "fillFee", "orderStrategy",
                         "orderStrategyLink", "userPlugin", "annualReview", "userReadStatus", "userPromoCode",
                         "contractGroup", "orderStrategyType")
# The "retail" reading of Uncertain 11 (the default): a syncrequest without entityTypes receives
# everything, as every official Tradovate example client expects.
RETAIL_SYNC_ENTITY_TYPES = ALL_SYNC_ENTITY_TYPES


@dataclass(frozen=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 0  # REST + control; 0 = any free port
    ws_port: int = 0  # WebSocket; 0 = any free port
    md_port: int = 0  # market-data WebSocket (md/subscribeQuote); 0 = any free port
    users: Tuple[UserSpec, ...] = (UserSpec(),)
    today: Optional[dt.date] = None  # contract maturities are generated relative to this (None: today, UTC)

    # Tokens (docs/TRADOVATE.md "Tokens"; Uncertain 1: 80 vs 90 min -> 80 min)
    token_lifetime_s: float = 4800.0
    max_sessions_per_user: int = 0  # >0: the old "2 sessions" rule, a new login revokes the oldest token
    renew_revokes_old_token: bool = False
    close_ws_on_token_expiry: bool = True  # Uncertain 2: socket lives only for its token's lifetime
    # Uncertain 7: which token the md socket's authorize takes ("any": both; "md": mdAccessToken
    # only, as example-api-trading-strategy sends; "access": accessToken only, as example-api-js)
    md_socket_token: str = "any"
    bad_credentials_status: int = 200  # Uncertain 8: 200 + errorText (samples); 401 = conformance page

    # WebSocket (docs/TRADOVATE.md "WebSocket"; Uncertain 3-6)
    authorize_timeout_s: float = 5.0  # close a socket not authorized this long after 'o'
    ws_idle_timeout_s: float = 10.0  # close a socket with no client text frame (incl. []) for this long
    server_heartbeat_interval_s: float = 2.5  # 'h' when nothing else was sent for this long
    drop_mode: str = "abort"  # how idle/auth/expiry closes happen: "abort" (TCP drop, 1006) or "close" (1000)
    accept_quoted_token: bool = True  # Uncertain 6: accept '"<token>"' in authorize as well as the raw token
    max_ws_per_user: int = 50  # past this the OLDEST socket is closed and its token revoked ("Connection limits")
    ws_max_message_bytes: int = 16 * 1024 * 1024
    # Uncertain 11: entityTypes omitted -> everything (the official examples' reading); () selects the
    # Partner docs' strict reading (an empty subscription).
    sync_default_entity_types: Tuple[str, ...] = ALL_SYNC_ENTITY_TYPES

    # REST / orders (Uncertain 9, 13)
    include_success_reason: bool = False  # Uncertain 9: success results carry "failureReason":"Success"
    unknown_contract_find_status: int = 404  # Uncertain 13: contract/find of an unknown name -> 404 (or 200 null)
    unknown_symbol_reason: str = "InvalidContract"  # ISS-45 saw ("UnknownReason", "Access is denied")
    risk_reject_async: bool = True  # max-qty breach: orderId returned, then Rejected via events/order/item
    rest_no_answer_hold_s: float = 30.0  # REST no_answer fault: hold the connection this long, then drop it
    http_500_after_execute: bool = False  # http_500_next: False = not executed, True = executed then 500
    enforce_penalty_time: bool = True  # a p-ticket resent before p-time elapsed earns a new penalty

    # Market data (md socket): the seed of every product's simulated price path, the most elements one
    # md/getChart answers with (Tradovate caps a request's size; clients page with closestTimestamp)
    # and how many bars or ticks go in one `chart` packet.
    md_seed: int = 0
    md_max_chart_elements: int = 5000
    md_chart_packet_elements: int = 500
    # The history follows the getChart answer after this pause (a real server fetches it): the JS
    # tutorials start listening for chart packets only after a contract/find REST call that they make
    # once the answer is in, so history sent at once would pass them by.
    md_chart_history_delay_s: float = 0.25

    # Refusals Tradovate documents (or integrations report), off unless a test selects them
    live: bool = False  # play the live environment: order requests need an approved deviceId (else 401)
    approved_device_ids: Tuple[str, ...] = ()  # live: () = any non-empty deviceId is approved
    refuse_custom_tag50: bool = False  # a login without tag 50 enabled: "customTag50 is not enabled"
    # Order strategies: the unit Tradovate applies to profitTarget/stopLoss/autoTrail (not documented):
    # "points" (what the client sends) or "ticks" (the offsets are multiplied by the tick size)
    strategy_bracket_unit: str = "points"
    # orderStrategyLink labels: "ours" (entry, tp<n>, sl<n>) or "opaque" (labels that say nothing)
    strategy_link_labels: str = "ours"
    # contract entities carry providerTickSize (seen in Tradovate's examples; not in the Partner schema)
    contract_provider_tick_size: bool = True

    def replace(self, **changes) -> "SimConfig":
        return dataclasses.replace(self, **changes)
