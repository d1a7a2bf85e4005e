"""What operating features cost per call: ``python -m bench.ops_overhead``.

* the log redaction filter per line after 3,000 token renewals (the registry keeps live tokens
  only, precompiled), and
* ``events.emit`` with no subscriber and with the metrics and notifier subscribed (what the order
  path pays for its one-line emits).
"""
from __future__ import annotations

import timeit

from phantom_scraper import events, redact
from phantom_scraper.ops.metrics import Metrics
from phantom_scraper.ops.notify import Notifier

N = 20000


class _Holder:
    """Stands in for a login's token holder."""


class _Outcome:
    status, transport, latency_ms, account_name, planned, cl_ord_ids = "acked", "websocket", 3.0, "A", [], []


def per_call_us(fn) -> float:
    return timeit.timeit(fn, number=N) / N * 1e6


def main() -> None:
    holder = _Holder()
    for i in range(3000):
        redact.set_live_secrets(holder, f"access-token-{i:06d}-xxxxxxxxxxxxxxxx", f"md-token-{i:06d}-yyyyyyyy")
    redact.register_secret("webhook-secret-123456", "admin-token-abcdef")
    line = "Order ps-abc-10001-0 account DEMO0001 placed via WebSocket orderId=123 latency_ms=4.2"
    print(f"redact per log line after 3000 renewals: {per_call_us(lambda: redact.redact(line)):.1f} us "
          f"({redact.registered_count()} secrets registered)")
    print(f"emit, no subscriber: {per_call_us(lambda: events.emit('journal_write', seconds=0.001)):.2f} us")
    metrics = Metrics().start()
    notifier = Notifier(["json://127.0.0.1:9/x"], sender_factory=lambda _u: (lambda _t, _b: True),
                        coalesce_s=60, min_interval_s=60).start()
    try:
        outcomes = [_Outcome()] * 13
        print(f"emit 'journal_write', metrics + notifier: "
              f"{per_call_us(lambda: events.emit('journal_write', seconds=0.001)):.2f} us")
        print(f"emit 'signal' for a 13-account fan-out, metrics + notifier: "
              f"{per_call_us(lambda: events.emit('signal', signal_id='s', status='acked', contract=None, outcomes=outcomes)):.1f} us")
    finally:
        notifier.stop()
        metrics.stop()


if __name__ == "__main__":
    main()
