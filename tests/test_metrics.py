"""``GET /metrics``: Prometheus text read back with prometheus_client's own parser."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from phantom_scraper import events
from tests.helpers import ADMIN_HEADERS, BUY, post, wait_for, ws_ready


def scrape(client) -> dict:
    """{(sample name, frozenset(labels)): value} from /metrics."""
    r = client.get("/metrics", headers=ADMIN_HEADERS)
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def test_metrics_after_signals(make_server_app, sim):
    app = make_server_app()
    ws_ready(app)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401

    first = post(client, BUY).get_json()
    assert first["status"] == "acked"
    assert post(client, BUY).get_json()["duplicate"] is True
    assert post(client, '{"action":"buy","ticker":"ZZZ1!","quantity":1}').status_code == 400  # never journaled as a signal

    journal = app.extensions["runtime"].service.journal
    stray = f"ps-{first['signal_id']}-10001-7"  # an order whose outcome stayed unknown
    journal.create_intent(first["signal_id"], 10001, "DEMO0001", 7, "placeorder", {"action": "Buy"}, stray,
                          state="sending")
    journal.set_intent_state(stray, "unknown", error="test")
    events.emit("risk", account="DEMO0002", locked=True, reason="daily loss")
    events.emit("lane_handover", seconds=0.0015)  # (execution/handover.py)

    m = scrape(client)
    assert value(m, "phantom_signals_total", status="acked") == 1
    assert value(m, "phantom_signals_total", status="duplicate") == 1
    assert value(m, "phantom_orders_total", outcome="acked", transport="websocket") == 2
    for hop in ("send_to_ack", "received_to_ack", "received_to_send"):
        assert value(m, "phantom_order_latency_seconds_count", hop=hop, transport="websocket") == 2, hop
    assert value(m, "phantom_order_latency_seconds_bucket", hop="received_to_ack", transport="websocket", le="+Inf") == 2
    assert value(m, "phantom_journal_write_seconds_count") >= 3
    assert value(m, "phantom_socket_connected", login="demo@sim") == 1
    assert value(m, "phantom_socket_reconnects_total", login="demo@sim") == 0
    assert value(m, "phantom_token_expires_in_seconds", login="demo@sim") > 0
    assert value(m, "phantom_unknown_intents_open") == 1
    assert value(m, "phantom_risk_locked", account="DEMO0002") == 1
    assert value(m, "phantom_lane_handover_seconds_bucket", le="0.001") == 0
    assert value(m, "phantom_lane_handover_seconds_bucket", le="0.002") == 1
    # the two signals found their lane idle: no hand-over of the server's own
    lanes = client.get("/api/websocket-status", headers=ADMIN_HEADERS).get_json()["lanes"]
    assert lanes["handover"] == {"count": 0} and lanes["busy_lanes"] == {}

    sim.close_all_sockets()  # a drop: counted, then reconnected by the daemon
    wait_for(lambda: (value(scrape(client), "phantom_socket_reconnects_total", login="demo@sim") or 0) >= 1)
    assert value(scrape(client), "phantom_socket_drops_total", login="demo@sim") >= 1


def test_metrics_subscription_ends_with_the_app(make_server_app, sim):
    app = make_server_app()
    runtime = app.extensions["runtime"]
    runtime.shutdown(5)
    events.emit("risk", account="X", locked=True)
    samples = scrape(app.test_client())
    assert value(samples, "phantom_risk_locked", account="X") is None
