"""The SQLite schema, one entry per version (applied in order by ``journal.sqlite``; Postgres's own
DDL for the same versions is in ``journal.postgres``)."""
from __future__ import annotations

from typing import Dict

SCHEMA_VERSION = 3

# SQLite schema, one entry per version (applied in order by journal_sqlite; Postgres's own DDL
# for the same versions is in journal_postgres).
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS signals (
    id            TEXT PRIMARY KEY,
    recorder      TEXT NOT NULL,
    dedupe_key    TEXT,              -- the sender's explicit signal id, NULL when it sent none
    payload_hash  TEXT NOT NULL,
    payload_json  TEXT NOT NULL,     -- secrets removed
    received_at   REAL NOT NULL,     -- epoch seconds
    status        TEXT NOT NULL,
    summary       TEXT,
    duplicate_of  TEXT               -- set on rows recorded as duplicates (never executed)
);
-- The backstop for "an explicit id is executed once per recorder, ever".
CREATE UNIQUE INDEX IF NOT EXISTS signals_recorder_dedupe_key
    ON signals (recorder, dedupe_key) WHERE dedupe_key IS NOT NULL AND duplicate_of IS NULL;
CREATE INDEX IF NOT EXISTS signals_recorder_hash ON signals (recorder, payload_hash, received_at);
CREATE INDEX IF NOT EXISTS signals_received_at ON signals (received_at);
CREATE INDEX IF NOT EXISTS signals_status ON signals (status);

CREATE TABLE IF NOT EXISTS order_intents (
    id               INTEGER PRIMARY KEY,
    signal_id        TEXT NOT NULL REFERENCES signals (id),
    account_id       INTEGER NOT NULL,
    account_name     TEXT,
    step             INTEGER NOT NULL,
    kind             TEXT NOT NULL,   -- placeorder / placeoso / liquidateposition / cancel ...
    cl_ord_id        TEXT NOT NULL UNIQUE,
    request_json     TEXT NOT NULL,
    state            TEXT NOT NULL,
    broker_order_id  INTEGER,
    transport        TEXT,
    latency_ms       REAL,
    reconciled       INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS order_intents_signal ON order_intents (signal_id, step);
CREATE INDEX IF NOT EXISTS order_intents_state ON order_intents (state);
"""
# v2: the owner lease (see the module docstring)
_SCHEMA_V2 = """
ALTER TABLE order_intents ADD COLUMN owner TEXT;
CREATE TABLE IF NOT EXISTS owners (
    id            TEXT PRIMARY KEY,
    pid           INTEGER,
    host          TEXT,
    started_at    REAL NOT NULL,
    heartbeat_at  REAL NOT NULL,
    released      INTEGER NOT NULL DEFAULT 0
);
"""
# v3: retention (journal/retention.py) deletes signals older than the retained window; the explicit
# ids among them stay here, compact, so "an explicit id is executed once per recorder, ever" holds.
_SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS signal_keys (
    recorder      TEXT NOT NULL,
    dedupe_key    TEXT NOT NULL,
    signal_id     TEXT NOT NULL,
    PRIMARY KEY (recorder, dedupe_key)
);
"""
SQLITE_MIGRATIONS: Dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}
