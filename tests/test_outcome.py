"""The outcome classifier, table-driven: every exception and answer shape of both transports ->
not_sent / acked / rejected / unknown (httpx's ``test_httpcore_all_exceptions_mapped`` shape)."""
from __future__ import annotations

import asyncio
import http.client

import pytest
import requests
import urllib3.exceptions

from phantom_scraper.errors import (
    AuthError,
    BrokerError,
    CaptchaRequiredError,
    NotSentError,
    OrderRejectedError,
    OutcomeUnknownError,
    PenaltyError,
    RateLimitedError,
)
from phantom_scraper.tradovate.outcome import (
    REQUESTS_EXCEPTIONS,
    Attempt,
    IntentOutcome,
    Outcome,
    attempt_of,
    classify_requests_exception,
)
from phantom_scraper.tradovate.rest import RestClient
from phantom_scraper.tradovate.ws import TradovateWebSocket, _Pending

NOT_SENT, ACKED, REJECTED, UNKNOWN = Outcome.NOT_SENT, Outcome.ACKED, Outcome.REJECTED, Outcome.UNKNOWN


# -- REST: the transport library's exceptions ------------------------------------------------------

def test_every_requests_exception_is_in_the_table():
    classes = {c for c in vars(requests.exceptions).values()
               if isinstance(c, type) and issubclass(c, requests.exceptions.RequestException)}
    missing = sorted(c.__name__ for c in classes if c not in REQUESTS_EXCEPTIONS)
    assert not missing, f"requests exceptions without a decided outcome: {missing}"


def _refused():
    return urllib3.exceptions.NewConnectionError(None, "Connection refused")


REQUESTS_CASES = [
    # never connected
    (requests.exceptions.ConnectionError(_refused()), NOT_SENT),
    (requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", _refused())), NOT_SENT),
    (requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(
        None, "/", urllib3.exceptions.ConnectTimeoutError(None, "connect timed out"))), NOT_SENT),
    (requests.exceptions.ConnectTimeout("connect timed out"), NOT_SENT),
    (requests.exceptions.SSLError("handshake failure"), NOT_SENT),
    (requests.exceptions.ProxyError(urllib3.exceptions.MaxRetryError(None, "/", _refused())), NOT_SENT),
    (requests.exceptions.InvalidURL("bad"), NOT_SENT),
    (requests.exceptions.MissingSchema("bad"), NOT_SENT),
    (requests.exceptions.InvalidSchema("bad"), NOT_SENT),
    (requests.exceptions.InvalidHeader("bad"), NOT_SENT),
    (requests.exceptions.InvalidProxyURL("bad"), NOT_SENT),
    (requests.exceptions.URLRequired("bad"), NOT_SENT),
    (requests.exceptions.InvalidJSONError("body not serialisable"), NOT_SENT),
    # a connection existed: the request may have executed
    (requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(104, "reset"))), UNKNOWN),
    (requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", http.client.RemoteDisconnected("closed"))), UNKNOWN),
    (requests.exceptions.ConnectionError("no detail"), UNKNOWN),
    (requests.exceptions.ProxyError("proxy dropped the answer"), UNKNOWN),
    (requests.exceptions.ReadTimeout("read timed out"), UNKNOWN),
    (requests.exceptions.Timeout("timed out"), UNKNOWN),
    (requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"), UNKNOWN),
    (requests.exceptions.ContentDecodingError("bad gzip"), UNKNOWN),
    (requests.exceptions.StreamConsumedError(), UNKNOWN),
    (requests.exceptions.JSONDecodeError("x", "doc", 0), UNKNOWN),
    (requests.exceptions.HTTPError("500"), UNKNOWN),
    (requests.exceptions.TooManyRedirects("loop"), UNKNOWN),
    (requests.exceptions.RetryError("retries"), UNKNOWN),
    (requests.exceptions.UnrewindableBodyError("redirect"), UNKNOWN),
    (requests.exceptions.RequestException("anything"), UNKNOWN),
    # leaked from below requests: ambiguous
    (urllib3.exceptions.ProtocolError("leaked"), UNKNOWN),
    (ConnectionResetError(104, "reset"), UNKNOWN),
]


@pytest.mark.parametrize("exc, expected", REQUESTS_CASES, ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_requests_exception_outcome(exc, expected):
    assert classify_requests_exception(exc) is expected


def test_every_requests_exception_class_has_a_table_case():
    covered = {type(exc) for exc, _ in REQUESTS_CASES}
    assert set(REQUESTS_EXCEPTIONS) <= covered


@pytest.mark.parametrize("exc, expected", REQUESTS_CASES[:6] + REQUESTS_CASES[13:16] + REQUESTS_CASES[20:21])
def test_rest_client_turns_each_library_error_into_the_same_outcome(monkeypatch, exc, expected):
    client = RestClient("http://127.0.0.1:9/v1")

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(client.session, "request", boom)
    attempt = attempt_of("rest", lambda: client.send("POST", "order/placeorder", token="t", body={}))
    assert attempt.outcome is expected


# -- REST: answers --------------------------------------------------------------------------------

def _response(status, body=b"", headers=None):
    resp = requests.Response()
    resp.status_code = status
    resp._content = body
    resp.headers.update(headers or {})
    return resp


REST_ANSWERS = [
    (200, b'{"orderId": 7}', ACKED, False),
    (200, b'{"commandId": 9}', ACKED, False),
    (200, b'{"orderId": 7, "failureReason": "Success"}', ACKED, False),
    (200, b'{"failureReason": "UnknownReason", "failureText": "Market closed"}', REJECTED, False),
    (200, b'{"violations": [{"constraint": "MaxOrderQty"}]}', REJECTED, False),
    (200, b'{"errorText": "Access is denied"}', REJECTED, False),
    (200, b'{}', UNKNOWN, False),
    (200, b'', UNKNOWN, False),
    (200, b'not json', UNKNOWN, False),
    (200, b'[1, 2]', UNKNOWN, False),
    (200, b'{"p-ticket": "t", "p-time": 3}', NOT_SENT, True),
    (200, b'{"p-ticket": "t", "p-time": 3, "p-captcha": true}', NOT_SENT, True),
    (429, b'', NOT_SENT, True),
    (401, b'Access is denied', NOT_SENT, False),
    (400, b'Bad request', REJECTED, False),
    (403, b'Forbidden', REJECTED, False),
    (404, b'Not found', REJECTED, False),
    (500, b'Internal Server Error, error id: x', UNKNOWN, False),
    (502, b'Bad gateway', UNKNOWN, False),
    (503, b'', UNKNOWN, False),
    (504, b'', UNKNOWN, False),
]


@pytest.mark.parametrize("status, body, expected, rate_limited", REST_ANSWERS)
def test_rest_answer_outcome(status, body, expected, rate_limited):
    resp = _response(status, body)
    attempt = attempt_of("rest", lambda: RestClient._translate("order/placeorder", True, resp))
    assert (attempt.outcome, attempt.rate_limited, attempt.transport) == (expected, rate_limited, "rest")
    if expected is ACKED:
        assert attempt.answer


# -- WebSocket: what ws_client raises, and the answers it resolves --------------------------------

WS_ERRORS = [
    (NotSentError("socket is closing; order/placeorder not sent"), NOT_SENT, False),  # frame never written
    (NotSentError("socket loop did not run order/placeorder"), NOT_SENT, False),
    (OutcomeUnknownError("no answer to order/placeorder #3 within 5 s"), UNKNOWN, False),  # timeout
    (OutcomeUnknownError("socket closed (dead socket) before the answer"), UNKNOWN, False),  # closed waiting
    (OutcomeUnknownError("order/placeorder #3 written, then ConnectionClosedError"), UNKNOWN, False),
    (RateLimitedError("rate limited (s=429)"), NOT_SENT, True),
    (PenaltyError("penalty", p_ticket="t", retry_after_s=3.0), NOT_SENT, True),
    (PenaltyError("penalty", p_ticket="t", retry_after_s=3.0, captcha=True), NOT_SENT, True),
    (BrokerError("s=401 Access is denied", status=401), NOT_SENT, False),
    (AuthError("token refused again"), NOT_SENT, False),
    (CaptchaRequiredError("captcha"), NOT_SENT, False),
    (BrokerError("s=400 bad", status=400), REJECTED, False),
    (BrokerError("s=404 no such endpoint", status=404), REJECTED, False),
    (BrokerError("s=500 Internal Server Error", status=500), UNKNOWN, False),
    (BrokerError("s=503", status=503), UNKNOWN, False),
    (BrokerError("no status"), UNKNOWN, False),
    (OrderRejectedError("Rejected", "Market closed"), REJECTED, False),
    (RuntimeError("a bug after the frame left"), UNKNOWN, False),
    (asyncio.CancelledError(), UNKNOWN, False),
]


@pytest.mark.parametrize("exc, expected, rate_limited", WS_ERRORS, ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_websocket_error_outcome(exc, expected, rate_limited):
    def send():
        raise exc

    attempt = attempt_of("websocket", send)
    assert (attempt.outcome, attempt.rate_limited) == (expected, rate_limited)


WS_ANSWERS = [
    ({"s": 200, "i": 1, "d": {"orderId": 5}}, ACKED, False),
    ({"s": 200, "i": 1, "d": '{"orderId": 5}'}, ACKED, False),  # d as a JSON-encoded string
    ({"s": 200, "i": 1, "d": {"failureReason": "AccountClosed", "failureText": "x"}}, REJECTED, False),
    ({"s": 200, "i": 1, "d": {"errorText": "Access is denied"}}, REJECTED, False),
    ({"s": 200, "i": 1, "d": {}}, UNKNOWN, False),
    ({"s": 200, "i": 1}, UNKNOWN, False),
    ({"s": 200, "i": 1, "d": {"p-ticket": "t", "p-time": 2}}, NOT_SENT, True),
    ({"s": 429, "i": 1}, NOT_SENT, True),
    ({"s": 401, "i": 1, "d": "Access is denied"}, NOT_SENT, False),
    ({"s": 400, "i": 1, "d": "Bad request"}, REJECTED, False),
    ({"s": 404, "i": 1, "d": "Not found"}, REJECTED, False),
    ({"s": 500, "i": 1, "d": "Internal Server Error"}, UNKNOWN, False),
]


@pytest.mark.parametrize("msg, expected, rate_limited", WS_ANSWERS)
def test_websocket_answer_outcome(msg, expected, rate_limited):
    """The answer goes through ws_client's own resolution (as on a live socket), then the classifier."""
    loop = asyncio.new_event_loop()
    try:
        ws = TradovateWebSocket("ws://127.0.0.1:9/v1/websocket", "token")
        ws._loop = loop
        fut = loop.create_future()
        ws._pending[1] = _Pending(fut, "order/placeorder", 0.0)
        ws._resolve(msg)
        attempt = attempt_of("websocket", fut.result)
        for task in asyncio.all_tasks(loop):  # an s=401 starts the socket's close: not run here
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    finally:
        loop.close()
    assert (attempt.outcome, attempt.rate_limited, attempt.transport) == (expected, rate_limited, "websocket")


# -- one intent across attempts ---------------------------------------------------------------------

@pytest.mark.parametrize("later", [NOT_SENT, REJECTED, UNKNOWN])
def test_after_a_possible_execution_every_later_outcome_is_at_best_unknown(later):
    intent = IntentOutcome()
    assert intent.record(Attempt(UNKNOWN, "websocket")).outcome is UNKNOWN
    assert intent.record(Attempt(later, "rest")).outcome is UNKNOWN


def test_not_sent_leaves_the_intent_free_to_try_rest():
    intent = IntentOutcome()
    assert intent.record(Attempt(NOT_SENT, "websocket")).outcome is NOT_SENT
    assert not intent.may_have_executed
    assert intent.record(Attempt(ACKED, "rest")).outcome is ACKED
