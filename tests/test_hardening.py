"""Hardening (issue 15): deeply nested bodies are a 400, never a 500; the redaction registry keeps
only live tokens and does no sorting per log line."""
from __future__ import annotations

import gc
import logging

import pytest

from phantom_scraper import redact
from phantom_scraper.journal import journal
from tests.helpers import post


@pytest.mark.parametrize("depth", [600, 750, 900])
@pytest.mark.parametrize("opener,closer,inner", [('{"a":', "}", "1"), ("[", "]", "1")])
def test_deeply_nested_body_is_invalid_json_not_500(make_server_app, sim, depth, opener, closer, inner):
    # Before: these passed json.loads and then blew the recursion limit in strip_secrets (500).
    client = make_server_app().test_client()
    body = '{"action":"buy","ticker":"MNQ1!","quantity":1,"x":' + opener * depth + inner + closer * depth + "}"
    r = post(client, body)
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.get_json()["error"]["code"] == "invalid_json"
    assert sim.orders() == []


def test_moderate_nesting_still_accepted(make_server_app, sim):
    client = make_server_app().test_client()
    body = '{"action":"buy","ticker":"MNQ1!","quantity":1,"x":' + '{"a":' * 20 + "1" + "}" * 20 + "}"
    assert post(client, body).status_code == 200


def test_strip_secrets_is_iterative_with_a_depth_cap():
    deep = {"v": 1}
    for _ in range(5000):
        deep = {"k": deep, "password": "p"}
    with pytest.raises(getattr(journal, "NestingTooDeep", ())):
        journal.strip_secrets(deep)  # before: RecursionError
    value = {"a": [{"token": "t", "b": ({"webhook_secret": "s", "keep": [1, 2, {"ApiKey": "k"}]},)}], "n": None}
    assert journal.strip_secrets(value) == {"a": [{"b": [{"keep": [1, 2, {}]}]}], "n": None}
    nested = {"x": 1}
    for _ in range(45):
        nested = {"k": [nested], "secret": "s"}
    stripped = journal.strip_secrets(nested)
    for _ in range(45):
        assert set(stripped) == {"k"}
        stripped = stripped["k"][0]
    assert stripped == {"x": 1}


class _Owner:
    """Stands in for a login's token holder."""


def test_registry_keeps_only_live_tokens():
    owner = _Owner()
    redact.register_secret("static-webhook-secret-123")
    gc.collect()  # token holders of earlier tests leave the registry now, not during the count
    base = redact.registered_count()
    for n in range(3000):
        redact.set_live_secrets(owner, f"access-{n:06d}-xxxxxxxx", f"md-{n:06d}-yyyyyyyy")
    assert redact.registered_count() == base + 4  # current and previous pair, not 6,000
    line = "tokens access-002999-xxxxxxxx access-002998-xxxxxxxx md-002999-yyyyyyyy static-webhook-secret-123"
    assert redact.scrub(line) == "tokens *** *** *** ***"
    assert "access-000001-xxxxxxxx" in redact.scrub("access-000001-xxxxxxxx")  # long dead: not kept
    del owner
    gc.collect()
    assert redact.scrub("access-002999-xxxxxxxx") == "access-002999-xxxxxxxx"  # its owner is gone


def test_scrub_sorts_nothing_per_line(monkeypatch):
    redact.register_secret("another-static-secret-456")

    def no_sorting(*_a, **_k):
        raise AssertionError("sorted() on the log path")

    monkeypatch.setattr(redact, "sorted", no_sorting, raising=False)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "value %s", ("another-static-secret-456",), None)
    redact.RedactingFilter().filter(record)
    assert record.getMessage() == "value ***"


def test_an_owner_collected_while_the_registry_lock_is_held_does_not_deadlock():
    """A garbage collection inside register_secret's critical section runs the finalizer of a
    collected token holder (_forget) on the same thread: it must not wait for the lock forever."""
    import threading

    owner = _Owner()
    redact.set_live_secrets(owner, "live-token-abcdef-123456")
    key = id(owner)

    def collect_under_the_lock():
        with redact._LOCK:  # what register_secret holds when a collection happens inside it
            redact._forget(key)

    worker = threading.Thread(target=collect_under_the_lock, daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "deadlock: _forget waited for the lock its own thread holds"
    assert redact.scrub("live-token-abcdef-123456") == "live-token-abcdef-123456"
