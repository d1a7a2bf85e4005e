"""Shared pytest fixtures (the helpers they use, and the tests' constants, are in tests/helpers.py)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings as hypothesis_settings

# CI machines are small and shared: no per-example deadline, no "too slow" health check.
hypothesis_settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
hypothesis_settings.load_profile("ci")

import os

# Pin the simulator's calendar (inherited by subprocesses too) so the dated symbols the tests
# use (NQZ6, ESZ6, ...) never expire under the suite.
os.environ.setdefault("TRADOVATE_SIM_TODAY", "2026-11-25")

from phantom_scraper.app.service import TradingService  # noqa: E402  (after the calendar pin above)
from phantom_scraper.tradovate_sim import Simulator  # noqa: E402
from tests.helpers import FAST, SIM_TEST_CONFIG, ConnectProbe, Logins, rs, server_settings  # noqa: E402


EXIT_WATCHDOG_S = 120


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """After the last test pytest-timeout guards nothing: a thread the interpreter joins at exit
    (a non-daemon thread, an executor's workers) could hang the run for ever.  If the process is
    still alive EXIT_WATCHDOG_S later, print every thread's stack and exit non-zero instead."""
    import faulthandler
    import sys

    faulthandler.dump_traceback_later(EXIT_WATCHDOG_S, exit=True, file=sys.__stderr__)


@pytest.fixture(autouse=True)
def fresh_lanes(monkeypatch):
    """Each test starts with no (account, product) lane history: the simulators of different tests
    reuse account ids, and a lane's 'previous orders' from a stopped simulator would otherwise be
    waited for (or make the next signal take the general path) in the next test.  A service owns
    its own workers; this is for the bare module functions (``execute_trade_simple`` without a
    service), whose shared set starts afresh."""
    from phantom_scraper.execution import executors

    monkeypatch.setattr(executors, "_shared", None)


@pytest.fixture
def sim():
    """A running Tradovate simulator on 127.0.0.1 (both ports ephemeral), stopped after the test."""
    simulator = Simulator(SIM_TEST_CONFIG).start()
    try:
        yield simulator
    finally:
        simulator.stop()


# -- the server (ultra_simple_server) against the simulator -------------------------------------

@pytest.fixture
def make_server_app(sim, tmp_path):
    """``make_server_app(boot=True, **settings_overrides) -> Flask app`` on the ``sim`` fixture;
    every app made is shut down (service, pool, daemon) after the test."""
    from ultra_simple_server import create_app

    apps = []

    def make(boot=True, **overrides):
        overrides.setdefault("database_path", str(tmp_path / f"journal{len(apps)}.sqlite3"))
        app = create_app(server_settings(sim, tmp_path, **overrides), boot_on_first_request=boot)
        apps.append(app)
        if boot:
            app.extensions["runtime"].boot(wait=True)
            assert app.extensions["runtime"].service.state == "ready", app.extensions["runtime"].service.start_error
        return app

    try:
        yield make
    finally:
        for app in reversed(apps):
            app.extensions["runtime"].shutdown(timeout_s=5.0)


# -- pool / pipeline fixtures (tests/test_pool.py, test_pipeline.py, test_recovery.py) ------------

@pytest.fixture
def clean_pool():
    """Leaves recorder_service as found: daemon stopped, pool emptied, connect bound back to 2."""
    import recorder_service

    recorder_service.stop_websocket_keepalive_daemon()
    recorder_service.reset_pool()
    try:
        yield recorder_service
    finally:
        recorder_service.stop_websocket_keepalive_daemon()
        recorder_service.reset_pool()
        recorder_service.set_max_concurrent_connects(2)


@pytest.fixture
def probe():
    return ConnectProbe()


@pytest.fixture
def logins_for(clean_pool, probe):
    made = []

    def _make(sim, settings=FAST) -> Logins:
        logins = Logins(sim, probe, settings)
        made.append(logins)
        return logins

    yield _make
    rs.reset_pool()
    for logins in made:
        logins.close()


@pytest.fixture
def services(clean_pool):
    made = []

    def _make(settings):
        svc = TradingService(settings, pool=rs.WebSocketPool())
        made.append(svc)
        svc.start()
        assert svc.state == "ready", svc.start_error
        return svc

    yield _make
    for svc in made:
        svc.stop()


@pytest.fixture
def servers():
    """A list to append ``helpers.ServerProcess``es to; each is killed after the test."""
    made = []
    yield made
    for srv in made:
        srv.kill()


@pytest.fixture
def make_multi_sim():
    """``make_multi_sim(users, **cfg)``: a simulator with the given ``UserSpec``s, stopped after."""
    sims = []

    def _make(users, **cfg):
        simulator = Simulator(SIM_TEST_CONFIG.replace(users=tuple(users), **cfg)).start()
        sims.append(simulator)
        return simulator

    yield _make
    for simulator in sims:
        simulator.stop()


@pytest.fixture
def serve_app():
    """``serve_app(app) -> base URL``: the app on a real werkzeug server on 127.0.0.1 (free port),
    in a thread; shut down after the test."""
    import threading

    from werkzeug.serving import make_server

    servers = []

    def serve(app):
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    try:
        yield serve
    finally:
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(5)


# -- journal backends (tests/test_journal.py and everything that takes ``journal_target``) --------

@pytest.fixture(params=["sqlite", "postgres"])
def journal_target(request, tmp_path):
    """What ``Journal(...)`` opens, once per backend: an SQLite path in a fresh directory, or a
    private schema on the ``TEST_DATABASE_URL`` server (skipped, with the reason, when unset)."""
    if request.param == "sqlite":
        yield str(tmp_path / "sub" / "dir" / "journal.sqlite3")
        return
    from tests.pg_support import database_url, private_schema

    with private_schema(database_url()) as url:
        yield url
