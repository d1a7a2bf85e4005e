"""The ``/control`` HTTP endpoint: faults, book of record, positions, prices, lifecycle actions.

For tests and benchmarks in another process.  No authentication: bind the simulator to loopback.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from .handlers import Reply, parse_query

log = logging.getLogger(__name__)


def handle_control(sim: Any, method: str, path: str, query: str, raw: bytes, conn: Any = None) -> Reply:
    path = path.rstrip("/").lower()
    try:
        body = json.loads(raw.decode() or "{}") if raw.strip() else {}
    except ValueError:
        return Reply(400, "Invalid JSON body")
    if not isinstance(body, dict):
        return Reply(400, "The body must be a JSON object")
    try:
        if path == "/faults":
            if method == "POST":
                sim.faults.update(body)
            return Reply(200, sim.faults.to_dict())
        if path == "/orders":
            return Reply(200, sim.orders())
        if path == "/positions":
            return Reply(200, sim.exchange.position_rows())
        if path == "/cash-balances":
            return Reply(200, sim.cash_balances())
        if path == "/clock":
            if method == "POST":
                if body.get("time") is not None:
                    sim.clock.freeze(float(body["time"]))
                if body.get("advance_s") is not None:
                    sim.clock.advance(float(body["advance_s"]))
                if body.get("frozen") is False:
                    sim.clock.unfreeze()
            return Reply(200, sim.clock.to_dict())
        if path == "/price":
            args = {**parse_query(query), **body}
            symbol = args.get("symbol") or args.get("contractId")
            if method == "POST":
                return Reply(200, sim.set_price(symbol, float(args["price"])))
            return Reply(200, sim.get_price(symbol))
        if method != "POST":
            return Reply(404, f"Not found: /control{path}")
        if path == "/reset":
            sim.reset()
            return Reply(200, {"ok": True})
        if path == "/close-all-sockets":
            return Reply(200, {"closed": sim.close_all_sockets(exclude=conn)})
        if path == "/expire-tokens":
            return Reply(200, {"expired": sim.expire_all_tokens()})
        if path == "/shutdown":
            count = sim.send_shutdown(body.get("reasonCode", "Maintenance"), body.get("reason", ""))
            return Reply(200, {"sent": count})
    except (KeyError, ValueError, TypeError) as exc:
        return Reply(400, f"Bad control request: {exc}")
    return Reply(404, f"Not found: /control{path}")
