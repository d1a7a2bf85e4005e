"""Test support for the Postgres journal backend: a private schema per test on the server named
by ``TEST_DATABASE_URL`` (``.ci/run`` starts one with ``.ci/pg_cluster.sh``)."""
from __future__ import annotations

import contextlib
import os
import uuid
from typing import Iterator
from urllib.parse import quote

import pytest

SKIP_REASON = ("Postgres journal backend not tested: TEST_DATABASE_URL is not set "
               "(.ci/run sets it; start a private server with "
               "`eval \"$(.ci/pg_cluster.sh start /tmp/pg)\"`)")


def database_url() -> str:
    """TEST_DATABASE_URL, or skip the calling test with the reason."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        pytest.skip(SKIP_REASON)
    return url


def with_search_path(url: str, schema: str) -> str:
    option = quote(f"-c search_path={schema}", safe="")
    return f"{url}{'&' if '?' in url else '?'}options={option}"


@contextlib.contextmanager
def private_schema(url: str) -> Iterator[str]:
    """A fresh, empty schema; yields ``url`` pointing at it (search_path); dropped afterwards."""
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
