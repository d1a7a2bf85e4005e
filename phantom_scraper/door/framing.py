"""Where an HTTP/1.1 request's head and body end, read from a buffer in the poller (no I/O).

Only enough of HTTP to know when a request is complete (Content-Length or chunked framing) and
what the door decides on (method, target, ``X-Forwarded-For``, ``Expect``).  gunicorn's own parser
reads the same bytes again in the worker thread and does the strict validation; anything framed
ambiguously here (both Content-Length and Transfer-Encoding, two different lengths, an unknown
coding) is refused, because the door and the parser must never disagree on where a request ends.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote, urlsplit

MAX_HEAD_BYTES = 32 * 1024  # request line + headers (gunicorn's own limits are smaller per line)
_MAX_CHUNK_LINE_BYTES = 1024
_MAX_TRAILER_BYTES = 8 * 1024
_HEX = re.compile(rb"^[0-9A-Fa-f]{1,16}$")


class FramingError(ValueError):
    """The request cannot be framed; answer ``status`` and close."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Head:
    start: int  # index of the request line (leading empty lines skipped)
    end: int  # index just past the blank line that ends the head
    method: str
    target: str
    content_length: Optional[int]
    chunked: bool
    expect_continue: bool
    forwarded_for: Optional[str]

    @property
    def path(self) -> str:
        """The target's path, normalised for the door's routing decision: percent-decoded, runs
        of slashes merged, dot segments resolved.  An origin-form target is never read as a URL
        (``urlsplit("//webhook/x")`` would take ``webhook`` for a host)."""
        target = self.target
        if target.startswith("/"):
            raw = target.split("?", 1)[0].split("#", 1)[0]
        else:  # absolute-form (``http://host/path``) or ``*``
            try:
                raw = urlsplit(target).path
            except ValueError:
                raw = target
        return normalise_path(unquote(raw))

    def is_webhook(self) -> bool:
        """Conservative: anything the app could route to a webhook (case aside) counts."""
        path = self.path.lower()
        return path == "/webhook" or path.startswith("/webhook/")


def normalise_path(path: str) -> str:
    """``//a/./b/../c`` -> ``/a/c`` (never above the root); empty -> ``/``."""
    out = []
    for segment in path.replace("\\", "/").split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    tail = "/" if path.endswith("/") and out else ""
    return "/" + "/".join(out) + tail


def _bad(message: str) -> FramingError:
    return FramingError(400, "bad_request", message)


def parse_head(buf: bytearray) -> Optional[Head]:
    """The request head at the start of ``buf``, or None while it is incomplete."""
    start = 0
    while buf.startswith(b"\r\n", start):  # RFC 9112 2.2: ignore empty lines before a request
        start += 2
    end = buf.find(b"\r\n\r\n", start, start + MAX_HEAD_BYTES + 4)
    if end < 0:
        if len(buf) - start > MAX_HEAD_BYTES:
            raise FramingError(431, "headers_too_large", "request headers too large")
        return None
    lines = bytes(buf[start:end]).split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].startswith(b"HTTP/"):
        raise _bad("malformed request line")
    lengths, codings, forwarded = set(), [], []
    expect = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name:
            raise _bad("malformed header line")
        key = name.strip().lower()
        value = value.strip()
        if key == b"content-length":
            if not value.isdigit():
                raise _bad("invalid Content-Length")
            lengths.add(int(value))
        elif key == b"transfer-encoding":
            codings.extend(c.strip().lower() for c in value.split(b",") if c.strip())
        elif key == b"expect":
            expect = value.lower() == b"100-continue"
        elif key == b"x-forwarded-for":
            forwarded.append(value.decode("latin-1"))
    if len(lengths) > 1:
        raise _bad("conflicting Content-Length headers")
    chunked = False
    if codings:
        if lengths or codings != [b"chunked"]:
            raise _bad("unsupported Transfer-Encoding")
        chunked = True
    return Head(start=start, end=end + 4, method=parts[0].decode("latin-1"),
                target=parts[1].decode("latin-1"), content_length=lengths.pop() if lengths else None,
                chunked=chunked, expect_continue=expect,
                forwarded_for=",".join(forwarded) if forwarded else None)


class ChunkedScan:
    """Finds the end of a chunked body incrementally (resumes at the first unfinished chunk)."""

    def __init__(self, start: int):
        self.pos = start  # start of the next chunk-size line
        self.size = 0  # decoded bytes in the finished chunks

    def end(self, buf: bytearray, max_body_bytes: int) -> Optional[int]:
        while True:
            nl = buf.find(b"\r\n", self.pos, self.pos + _MAX_CHUNK_LINE_BYTES)
            if nl < 0:
                if len(buf) - self.pos > _MAX_CHUNK_LINE_BYTES:
                    raise _bad("chunk size line too long")
                return None
            size_text = bytes(buf[self.pos:nl]).split(b";", 1)[0].strip()
            if not _HEX.match(size_text):
                raise _bad("invalid chunk size")
            size = int(size_text, 16)
            if size == 0:  # last chunk, then optional trailers and an empty line
                done = buf.find(b"\r\n\r\n", nl)
                if done < 0:
                    if len(buf) - nl > _MAX_TRAILER_BYTES:
                        raise _bad("trailers too long")
                    return None
                return done + 4
            if self.size + size > max_body_bytes:
                raise body_too_large(max_body_bytes)
            data_end = nl + 2 + size
            if len(buf) < data_end + 2:
                return None
            if buf[data_end:data_end + 2] != b"\r\n":
                raise _bad("chunk not followed by CRLF")
            self.size += size
            self.pos = data_end + 2


def body_too_large(max_body_bytes: int) -> FramingError:
    return FramingError(413, "body_too_large", f"the body exceeds {max_body_bytes} bytes")


def request_end(head: Head, buf: bytearray, max_body_bytes: int, scan: Optional[ChunkedScan]) -> Optional[int]:
    """Index just past the request's body in ``buf``, or None while the body is incomplete."""
    if head.chunked:
        return scan.end(buf, max_body_bytes)
    length = head.content_length or 0
    if length > max_body_bytes:
        raise body_too_large(max_body_bytes)
    end = head.end + length
    return end if len(buf) >= end else None
