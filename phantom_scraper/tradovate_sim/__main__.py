"""``python -m phantom_scraper.tradovate_sim --port PORT``: run the simulator until SIGINT/SIGTERM.

Prints three lines once ready: ``REST <base url>``, ``WS <websocket url>`` and ``MD <market-data url>``.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .config import SimConfig, UserSpec
from .daybook import freeze_process
from .simulator import Simulator


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phantom_scraper.tradovate_sim",
                                     description="Wire-compatible Tradovate simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="REST/control port (0 = any free port)")
    parser.add_argument("--ws-port", type=int, default=0, help="WebSocket port (0 = any free port)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added before every response")
    parser.add_argument("--connect-latency-ms", type=float, default=0.0, help="added per new connection")
    parser.add_argument("--token-lifetime-s", type=float, default=SimConfig.token_lifetime_s)
    parser.add_argument("--ws-idle-timeout-s", type=float, default=SimConfig.ws_idle_timeout_s)
    parser.add_argument("--authorize-timeout-s", type=float, default=SimConfig.authorize_timeout_s)
    parser.add_argument("--user", default="demo")
    parser.add_argument("--password", default="demo")
    parser.add_argument("--accounts", type=int, default=0,
                        help="number of accounts for the user (default: DEMO0001, DEMO0002)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    user = (UserSpec.with_accounts(args.user, args.password, args.accounts) if args.accounts
            else UserSpec(name=args.user, password=args.password))
    config = SimConfig(host=args.host, port=args.port, ws_port=args.ws_port, users=(user,),
                       token_lifetime_s=args.token_lifetime_s, ws_idle_timeout_s=args.ws_idle_timeout_s,
                       authorize_timeout_s=args.authorize_timeout_s)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sim = Simulator(config).start()
    sim.faults.response_latency_ms = args.latency_ms
    sim.faults.connect_latency_ms = args.connect_latency_ms
    freeze_process()  # its own process: the day's containers are never walked by the collector
    try:
        print(f"REST {sim.rest_url}", flush=True)
        print(f"WS {sim.ws_url}", flush=True)
        print(f"MD {sim.md_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
