"""The endpoint table shared by REST and WebSocket, and the dispatcher that applies request faults.

A transport builds a :class:`Request`, calls :meth:`Api.dispatch` and turns the :class:`Reply` into
its own framing (HTTP response or ``a[{"s","i","d"}]``).  Endpoint names are matched
case-insensitively; ``undefined``/``null``/blank query or body count as empty.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs

from .exchange import ENTITY_TYPES, Exchange
from .faults import ORDER_ENDPOINTS, FaultSwitches

log = logging.getLogger(__name__)

EMPTY_MARKERS = ("", "undefined", "null")


@dataclass
class Request:
    transport: str  # "rest" | "websocket"
    endpoint: str
    query: str = ""
    body: str = ""
    token: Optional[str] = None  # REST bearer; WS: the token the socket authorized with
    user_id: Optional[int] = None  # WS: set by authorize
    session: Any = None  # WS session (user/syncrequest subscribes it)
    params: Dict[str, str] = field(default_factory=dict)
    json: Any = None


@dataclass
class Reply:
    status: int
    body: Any = None  # 2xx: JSON value; >= 400: text (429: no body)
    action: str = "send"  # "send" | "drop" (execute, never answer) | "close" (close before answering)


class BadRequest(Exception):
    pass


def normalise_endpoint(name: str) -> str:
    name = (name or "").strip().lstrip("/").lower()
    return name[3:] if name.startswith("v1/") else name


def parse_query(text: str) -> Dict[str, str]:
    text = (text or "").strip().lstrip("?")
    if text in EMPTY_MARKERS:
        return {}
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def parse_body(text: str) -> Any:
    text = (text or "").strip()
    if text in EMPTY_MARKERS:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadRequest("Invalid JSON body") from exc


def dumps(value: Any) -> str:
    """Compact JSON, as Tradovate sends it."""
    return json.dumps(value, separators=(",", ":"))


def server_error() -> Reply:
    return Reply(500, f"Internal Server Error, error id: {uuid.uuid4()}")


ROUTES: Dict[str, Tuple[Callable[["Api", Request], Any], bool]] = {}


def route(*names: str, auth: bool = True):
    def register(fn):
        for name in names:
            ROUTES[name.lower()] = (fn, auth)
        return fn
    return register


class Api:
    def __init__(self, exchange: Exchange, faults: FaultSwitches):
        self.exchange = exchange
        self.faults = faults
        self.config = exchange.config

    def dispatch(self, req: Request) -> Reply:
        name = normalise_endpoint(req.endpoint)
        entry = ROUTES.get(name)
        if entry is None:
            return Reply(404, f"Not found: {req.endpoint.strip()}")
        fn, needs_auth = entry
        try:
            req.params = parse_query(req.query)
            req.json = parse_body(req.body)
            if not isinstance(req.json, dict):
                raise BadRequest("The body must be a JSON object")
            early = self._pre_faults(name, req)
            if early is not None:
                return early
            if needs_auth and req.user_id is None:
                req.user_id = self.exchange.token_user(req.token)
                if req.user_id is None:
                    return Reply(401, "Access is denied")
            if self.config.live and name in ORDER_ENDPOINTS and not self.exchange.device_approved(req.token):
                return Reply(401, "Access is denied")
            result = fn(self, req)
        except BadRequest as exc:
            return Reply(400, str(exc))
        except Exception:  # one safety net: the client sees Tradovate's 500, the log has the trace
            log.exception("handler for %s failed", name)
            return server_error()
        if not self.config.contract_provider_tick_size and name.startswith("contract/"):
            result = _without_provider_tick(result)  # the Partner schema's Contract has no tick size
        reply = result if isinstance(result, Reply) else Reply(200, result)
        return self._post_faults(name, reply)

    def _pre_faults(self, name: str, req: Request) -> Optional[Reply]:
        f = self.faults
        ticket = req.json.pop("p-ticket", None) or req.params.pop("p-ticket", None)
        redeemed = False
        if ticket:
            outcome = f.redeem(str(ticket), self.config.enforce_penalty_time)
            if outcome == "early":
                return Reply(200, f.issue_penalty(captcha=name == "auth/accesstokenrequest"))
            redeemed = outcome == "ok"
        if not f.targets(name):
            return None
        if f.take("http_429_next"):
            return Reply(429)
        if not self.config.http_500_after_execute and f.take("http_500_next"):
            return server_error()
        if not redeemed and f.take("penalty_next"):
            return Reply(200, f.issue_penalty(captcha=name == "auth/accesstokenrequest"))
        return None

    def _post_faults(self, name: str, reply: Reply) -> Reply:
        f = self.faults
        if self.config.http_500_after_execute and f.targets(name) and f.take("http_500_next"):
            reply = server_error()
        if name in ORDER_ENDPOINTS:
            if f.take("close_after_next_orders"):
                reply.action = "close"
            elif f.take("no_answer_next_orders"):
                reply.action = "drop"
        if reply.action == "send" and f.take("blackhole_next_responses"):
            reply.action = "drop"
        return reply


# ---- helpers ------------------------------------------------------------------------------------
def _without_provider_tick(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_provider_tick(v) for k, v in value.items() if k != "providerTickSize"}
    if isinstance(value, list):
        return [_without_provider_tick(v) for v in value]
    return value


def _int_param(req: Request, name: str) -> int:
    try:
        return int(req.params[name])
    except (KeyError, ValueError) as exc:
        raise BadRequest(f"query parameter {name} is required (integer)") from exc


def _int_list(req: Request, name: str) -> List[int]:
    try:
        return [int(x) for x in req.params[name].split(",") if x.strip()]
    except (KeyError, ValueError) as exc:
        raise BadRequest(f"query parameter {name} is required (comma-separated integers)") from exc


def _arg(req: Request, name: str, default: Any = None) -> Any:
    """A value from the JSON body, else from the query string."""
    return req.json.get(name, req.params.get(name, default))


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _not_found(what: str) -> Reply:
    return Reply(404, f"Not found: {what}")


# ---- auth -----------------------------------------------------------------------------------------
@route("auth/accesstokenrequest", auth=False)
def access_token_request(api: Api, req: Request):
    status, payload = api.exchange.login(req.json)
    return Reply(status, payload if status == 200 else payload["errorText"])


@route("auth/renewaccesstoken", auth=False)
def renew_access_token(api: Api, req: Request):
    result = api.exchange.renew(req.token)
    return result if result is not None else Reply(401, "Access is denied")


# ---- users, accounts, generic entity reads ------------------------------------------------------------
@route("user/list")
def user_list(api: Api, req: Request):
    return [api.exchange.user_entity(req.user_id)]


@route("user/syncrequest")
def sync_request(api: Api, req: Request):
    mine = set(api.exchange.account_ids(req.user_id))
    accounts, users = req.json.get("accounts"), req.json.get("users")
    if accounts:
        wanted = {int(a) for a in accounts} & mine
    elif users:
        wanted = mine if req.user_id in {int(u) for u in users} else set()
    else:
        wanted = mine
    types = req.json.get("entityTypes")
    types = set(types) if types is not None else set(api.config.sync_default_entity_types)
    snapshot = api.exchange.sync_snapshot(req.user_id, wanted, types)
    if req.session is not None:
        req.session.subscribe(wanted, types)
    return snapshot


@route("account/find")
def account_find(api: Api, req: Request):
    found = api.exchange.find_account(req.user_id, req.params.get("name", ""))
    return found if found is not None else _not_found(req.params.get("name", ""))


def _entity_routes(etype: str) -> None:
    def list_(api: Api, req: Request):
        return api.exchange.list_entities(req.user_id, etype)

    def item(api: Api, req: Request):
        rows = api.exchange.list_entities(req.user_id, etype, ids=[_int_param(req, "id")])
        return rows[0] if rows else _not_found(f"{etype} {req.params.get('id')}")

    def items(api: Api, req: Request):
        return api.exchange.list_entities(req.user_id, etype, ids=_int_list(req, "ids"))

    def deps(api: Api, req: Request):
        return api.exchange.list_entities(req.user_id, etype, masters=[_int_param(req, "masterid")])

    def ldeps(api: Api, req: Request):
        return api.exchange.list_entities(req.user_id, etype, masters=_int_list(req, "masterids"))

    for op, fn in (("list", list_), ("item", item), ("items", items), ("deps", deps), ("ldeps", ldeps)):
        route(f"{etype}/{op}")(fn)


for _etype in ENTITY_TYPES:
    _entity_routes(_etype)


# ---- contracts and products -----------------------------------------------------------------------------
@route("contract/find")
def contract_find(api: Api, req: Request):
    contract = api.exchange.catalog.find(req.params.get("name", ""))
    if contract is not None:
        return contract.entity()
    if api.config.unknown_contract_find_status == 404:
        return _not_found(req.params.get("name", ""))
    return None


@route("contract/item")
def contract_item(api: Api, req: Request):
    contract = api.exchange.contract_by_id(_int_param(req, "id"))
    return contract.entity() if contract else _not_found(f"contract {req.params.get('id')}")


@route("contract/items")
def contract_items(api: Api, req: Request):
    catalog = api.exchange.catalog
    return [catalog.contracts[i].entity() for i in _int_list(req, "ids") if i in catalog.contracts]


@route("contract/suggest")
def contract_suggest(api: Api, req: Request):
    try:
        limit = int(req.params.get("l") or 10)
    except ValueError as exc:
        raise BadRequest("l must be an integer") from exc
    return [c.entity() for c in api.exchange.catalog.suggest(req.params.get("t", ""), limit)]


@route("contract/rollcontract")
def contract_roll(api: Api, req: Request):
    name = str(_arg(req, "name", ""))
    rolled = api.exchange.catalog.roll(name, _truthy(_arg(req, "forward", True)),
                                       _truthy(_arg(req, "ifExpired", False)))
    if rolled is None:
        return {"errorText": f"No maturity to roll to from {name!r}"}
    return {"contract": rolled.entity()}


@route("contract/deps")
def contract_deps(api: Api, req: Request):
    maturity = _int_param(req, "masterid")
    return [c.entity() for c in api.exchange.catalog.contracts.values() if c.maturity_id == maturity]


@route("contractmaturity/item")
def maturity_item(api: Api, req: Request):
    wanted = _int_param(req, "id")
    for c in api.exchange.catalog.contracts.values():
        if c.maturity_id == wanted:
            return c.maturity_entity(api.exchange.catalog.products[c.product.name][0])
    return _not_found(f"contractMaturity {wanted}")


@route("contractmaturity/deps")
def maturity_deps(api: Api, req: Request):
    product_id = _int_param(req, "masterid")
    catalog = api.exchange.catalog
    return [c.maturity_entity(product_id) for c in catalog.contracts.values()
            if catalog.products[c.product.name][0] == product_id]


@route("product/find")
def product_find(api: Api, req: Request):
    product = api.exchange.catalog.product_entity(req.params.get("name", ""))
    return product if product is not None else _not_found(req.params.get("name", ""))


@route("product/list")
def product_list(api: Api, req: Request):
    return [api.exchange.catalog.product_entity(name) for name in api.exchange.catalog.products]


@route("product/item")
def product_item(api: Api, req: Request):
    wanted = _int_param(req, "id")
    for name, (product_id, _) in api.exchange.catalog.products.items():
        if product_id == wanted:
            return api.exchange.catalog.product_entity(name)
    return _not_found(f"product {wanted}")


# ---- orders -----------------------------------------------------------------------------------------------
@route("order/placeorder")
def place_order(api: Api, req: Request):
    return api.exchange.place_order(req.user_id, req.json, req.transport)


@route("order/placeoso")
def place_oso(api: Api, req: Request):
    return api.exchange.place_oso(req.user_id, req.json, req.transport)


@route("order/placeoco")
def place_oco(api: Api, req: Request):
    return api.exchange.place_oco(req.user_id, req.json, req.transport)


@route("order/cancelorder")
def cancel_order(api: Api, req: Request):
    return api.exchange.cancel_order(req.user_id, req.json)


@route("order/modifyorder")
def modify_order(api: Api, req: Request):
    return api.exchange.modify_order(req.user_id, req.json)


@route("order/liquidateposition")
def liquidate_position(api: Api, req: Request):
    return api.exchange.liquidate(req.user_id, req.json, req.transport)


# ---- order strategies (strategies.py) ---------------------------------------------------------------------
@route("orderstrategy/startorderstrategy")
def start_order_strategy(api: Api, req: Request):
    return api.exchange.start_order_strategy(req.user_id, req.json, req.transport)


@route("orderstrategy/modifyorderstrategy")
def modify_order_strategy(api: Api, req: Request):
    return api.exchange.modify_order_strategy(req.user_id, req.json)


@route("orderstrategy/interruptorderstrategy")
def interrupt_order_strategy(api: Api, req: Request):
    return api.exchange.interrupt_order_strategy(req.user_id, req.json)
