"""The front door's pieces without a server: request framing, source resolution, caps."""
from __future__ import annotations

import pytest

from phantom_scraper.config import Settings
from phantom_scraper.door import framing
from phantom_scraper.door.policy import ConnectionCaps, SourcePolicy, normalize_ip
from phantom_scraper.door.worker import canned_response


def head(raw: bytes):
    return framing.parse_head(bytearray(raw))


def test_head_incomplete_then_complete():
    assert head(b"POST /webhook/abc HTTP/1.1\r\nHost: x\r\n") is None
    h = head(b"\r\nPOST /webhook/abc?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n"
             b"X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nExpect: 100-Continue\r\n\r\n{")
    assert (h.start, h.method, h.target, h.content_length, h.chunked) == (2, "POST", "/webhook/abc?x=1", 12, False)
    assert h.expect_continue and h.forwarded_for == "1.1.1.1,2.2.2.2"
    assert h.is_webhook() and h.end == len(b"\r\nPOST /webhook/abc?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n"
                                          b"X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n"
                                          b"Expect: 100-Continue\r\n\r\n")


@pytest.mark.parametrize("target,webhook", [("/webhook", True), ("/webhook/t", True), ("/%77ebhook/t", True),
                                            ("http://host/webhook/t", True), ("/webhooks", False), ("/", False),
                                            ("/health", False)])
def test_webhook_paths(target, webhook):
    assert head(f"GET {target} HTTP/1.1\r\n\r\n".encode()).is_webhook() is webhook


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",  # smuggling
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nno colon\r\n\r\n",
])
def test_ambiguous_or_malformed_heads_are_refused(raw):
    with pytest.raises(framing.FramingError) as info:
        head(raw)
    assert info.value.status == 400


def test_head_too_large():
    with pytest.raises(framing.FramingError) as info:
        head(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 5000)
    assert info.value.status == 431


def test_content_length_body_end_and_limit():
    raw = bytearray(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc")
    h = framing.parse_head(raw)
    assert framing.request_end(h, raw, 100, None) is None
    raw += b"deGET"  # the start of a pipelined request stays in the buffer
    assert framing.request_end(h, raw, 100, None) == len(raw) - 3
    with pytest.raises(framing.FramingError) as info:
        framing.request_end(h, raw, 4, None)
    assert info.value.status == 413


def test_chunked_body_resumes_and_limits():
    raw = bytearray(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    h = framing.parse_head(raw)
    scan = framing.ChunkedScan(h.end)
    pieces = [b"4;ext=1\r\nWi", b"ki\r\n5\r\npedia\r\n", b"0\r\n", b"Trailer: x\r\n", b"\r\n"]
    ends = []
    for piece in pieces:
        raw += piece
        ends.append(framing.request_end(h, raw, 100, scan))
    assert ends[:-1] == [None] * 4 and ends[-1] == len(raw)
    assert scan.size == 9  # each chunk counted once although the scan was resumed
    with pytest.raises(framing.FramingError) as info:
        framing.request_end(h, raw, 8, framing.ChunkedScan(h.end))
    assert info.value.status == 413
    for bad in (b"zz\r\n", b"+4\r\nWiki\r\n", b"4\r\nWikiXX"):
        buf = bytearray(raw[:h.end] + bad)
        with pytest.raises(framing.FramingError):
            framing.request_end(h, buf, 100, framing.ChunkedScan(h.end))


def test_sources_and_trusted_proxies():
    plain = SourcePolicy(Settings(ip_allowlist_enabled=True, ip_allowlist=("52.89.214.238",)))
    # TRUST_PROXY_HEADERS off: the header never counts
    assert plain.source("10.0.0.5", "52.89.214.238") == "10.0.0.5"
    assert not plain.webhook_allowed("10.0.0.5") and plain.webhook_allowed("::ffff:52.89.214.238")
    proxied = SourcePolicy(Settings(ip_allowlist_enabled=True, ip_allowlist=("52.89.214.238",),
                                    trust_proxy_headers=True))
    assert proxied.source("10.0.0.5", "1.2.3.4, 52.89.214.238") == "52.89.214.238"  # right-most
    assert proxied.source("10.0.0.5", "52.89.214.238, 1.2.3.4") == "1.2.3.4"  # left entries are forgeable
    assert proxied.source("10.0.0.5", None) == "10.0.0.5"
    # a client connecting straight from a public address is no proxy: its header is ignored
    assert proxied.source("203.0.113.7", "52.89.214.238") == "203.0.113.7"
    narrow = SourcePolicy(Settings(trust_proxy_headers=True, trusted_proxy_cidrs=("10.1.0.0/16",)))
    assert narrow.is_trusted_proxy("10.1.2.3") and not narrow.is_trusted_proxy("10.2.0.1")
    assert not narrow.is_trusted_proxy("not an address")
    anyone = SourcePolicy(Settings(trust_proxy_headers=True, trusted_proxy_cidrs=("*",)))
    assert anyone.source("203.0.113.7", "52.89.214.238") == "52.89.214.238"
    assert normalize_ip("[::1]") == "::1" and normalize_ip(" 127.0.0.1 ") == "127.0.0.1"
    assert SourcePolicy(Settings()).is_privileged("52.89.214.238")  # TradingView's, allow-list off


def test_trusted_proxy_cidrs_from_env():
    s = Settings.from_env({"TRUSTED_PROXY_CIDRS": "10.0.0.0/8, *", "HTTP_HEADER_TIMEOUT_S": "2.5",
                           "HTTP_MAX_CONNECTIONS_PER_SOURCE": "7"})
    assert s.trusted_proxy_cidrs == ("10.0.0.0/8", "*")
    assert s.http_header_timeout_s == 2.5 and s.http_max_connections_per_source == 7


def test_connection_caps():
    caps = ConnectionCaps(max_total=3, max_per_source=2, reserve=1)
    assert caps.admit("a", False) is None and caps.admit("a", False) is None
    assert caps.admit("a", False) == "source"
    assert caps.admit(None, False) is None  # behind a proxy: counted in total only
    assert caps.admit("b", False) == "total"
    assert caps.admit("tv", True) is None  # the reserve
    assert caps.admit("tv", True) == "total"
    caps.release("a")
    assert caps.admit("b", False) == "total"  # the reserve is not for everyone
    caps.release("tv")
    assert caps.admit("b", False) is None
    for key in ("a", None, "b"):
        caps.release(key)
    assert caps.total == 0 and caps.per_source == {}


def test_canned_response_is_complete_json():
    raw = canned_response(403, "forbidden_source", "no")
    head_part, body = raw.split(b"\r\n\r\n", 1)
    assert head_part.startswith(b"HTTP/1.1 403 Forbidden\r\n") and b"Connection: close" in head_part
    assert f"Content-Length: {len(body)}".encode() in head_part
    assert b'"code": "forbidden_source"' in body
