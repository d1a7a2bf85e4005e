"""The console in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium) against a real server on 127.0.0.1: log in, see a refused alert in the log, flatten an
account with a position (confirming), see it flat; a form posted from another site is refused."""
from __future__ import annotations

import os
import shutil
import threading

import pytest

from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET
from tests.helpers import ADMIN_HEADERS, BUY, post, wait_for, ws_ready

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)")


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _text(driver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def _screenshot(driver, path: str, width: int, max_height: int) -> None:
    driver.set_window_size(width, 1000)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height) + 120, max_height))
    driver.save_screenshot(path)


def _serve_html(body: bytes):
    """Another site: a page on its own port (reached as http://localhost:<port>/)."""
    from werkzeug.serving import make_server

    def app(_environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [body]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-evil-site", daemon=True)
    thread.start()
    return server, thread


def test_console_log_in_see_the_refused_alert_flatten_and_see_it_flat(make_server_app, serve_app, sim, browser):
    app = make_server_app(status_open_in_sim=False, status_cache_s=0.0, md_url=sim.md_url)
    base = serve_app(app)
    ws_ready(app)
    client = app.test_client()
    sim.set_price("MNQZ6", 21000.0)
    assert post(client, BUY).status_code == 200  # DEMO0001 and DEMO0002: a round trip, +20 USD each
    sim.set_price("MNQZ6", 21010.0)
    assert post(client, '{"action":"sell","ticker":"MNQ1!","quantity":1}').status_code == 200
    sim.set_price("MNQZ6", 21000.0)
    r = post(client, '{"action":"buy","ticker":"MNQ1!","quantity":1,"price":21000,'
                     '"takeProfit":{"ticks":200},"stopLoss":{"ticks":200}}')  # long 1 with both legs working
    assert r.status_code == 200, r.get_data(as_text=True)
    sim.set_price("MNQZ6", 21004.5)
    assert post(client, '{"action":"buy","ticker":"ZZZ1!","quantity":1}').status_code == 400
    assert post(client, "buy MNQ now please").status_code == 400
    # a lock without flattening (the JSON API): shown on the card, the position stays
    r = client.post("/api/kill-switch", json={"accounts": ["DEMO0002"], "flatten": False}, headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.get_data(as_text=True)

    def holds(name):
        body = client.get("/api/accounts", headers=ADMIN_HEADERS).get_json()
        acct = next(a for a in body["accounts"] if a["name"] == name)
        return acct["positions"] and acct["positions"][0]["qty"]

    wait_for(lambda: holds("DEMO0001") and holds("DEMO0002"), what="both accounts long")

    browser.get(base + "/")
    assert "Realized" not in browser.page_source  # 401: no page without the login
    logged_in = base.replace("http://", f"http://trader:{ADMIN}@")
    browser.get(logged_in + "/")
    wait_for(lambda: "Alert log" in browser.page_source, what="the console after logging in")
    alerts = _text(browser, "#alerts")
    assert "refused 400: unknown_symbol" in alerts and "ZZZ1!" in browser.page_source
    assert SECRET not in browser.page_source and ADMIN not in browser.page_source
    card = _text(browser, "#account-DEMO0001")
    assert "MNQZ6" in card and "long 1" in card and "+20.00" in card and "1 closed trade: 1 won, 0 lost" in card
    assert "take-profit" in card and "stop-loss" in card  # the bracket's legs by role, not by id
    assert "LOCKED" in _text(browser, "#account-DEMO0002")
    wait_for(lambda: (browser.refresh() or "21,004.5" in _text(browser, "#account-DEMO0001")),
             what="the position priced at the last quote")
    if os.environ.get("CONSOLE_SCREENSHOTS"):  # for a person to look at: CONSOLE_SCREENSHOTS=docs
        folder = os.environ["CONSOLE_SCREENSHOTS"]
        _screenshot(browser, os.path.join(folder, "console-1400.png"), 1400, 2400)
        _screenshot(browser, os.path.join(folder, "console-390.png"), 390, 1500)  # a phone: the top
        browser.set_window_size(1400, 1000)

    # flatten DEMO0001: the button, the confirmation, the result, then flat on the console
    browser.find_element(By.CSS_SELECTOR, "#account-DEMO0001 button[data-action='flatten']:not([data-contract])").click()
    wait_for(lambda: browser.find_elements(By.ID, "confirm"), what="the confirmation page")
    assert "Flatten DEMO0001" in _text(browser, "#question")
    assert holds("DEMO0001")  # nothing done before the confirmation
    browser.find_element(By.ID, "confirm").click()
    wait_for(lambda: browser.find_elements(By.ID, "result"), what="the result page")
    assert "DEMO0001: 1 position(s) closed" in _text(browser, "#result"), _text(browser, "body")
    browser.find_element(By.ID, "back").click()
    wait_for(lambda: (browser.refresh() or "flat: no open position" in _text(browser, "#account-DEMO0001")),
             what="DEMO0001 flat on the console")
    assert holds("DEMO0001") is None or not holds("DEMO0001")
    assert holds("DEMO0002") == 1  # the other account untouched

    # another site's form posting to the same action (the browser holds the login) is refused
    target = base + "/console/flatten"
    evil = (f"<!doctype html><form id='f' method='post' action='{target}'>"
            f"<input type='hidden' name='account' value='DEMO0002'><input type='hidden' name='confirm' value='yes'>"
            f"<input type='hidden' name='csrf_token' value='guess'></form>"
            f"<script>document.getElementById('f').submit()</script>").encode()
    server, thread = _serve_html(evil)
    try:
        browser.get(f"http://localhost:{server.server_port}/")
        wait_for(lambda: browser.current_url.startswith(target) and browser.find_elements(By.ID, "result"),
                 what="the forged post's answer")
        assert "Refused: nothing was done" in _text(browser, "body")
        assert "cross-site" in _text(browser, "#result")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert holds("DEMO0002") == 1
