"""server/front.py without a server: when a request is whole enough for a thread, the settings
that bound it, and the gthread internals it extends (a gunicorn release that renames them fails
here before any server misbehaves)."""

from __future__ import annotations

import inspect

import pytest
from gunicorn.workers.gthread import TConn, ThreadWorker

from server.config import ConfigError, Settings, from_env
from server.front import FrontLimits, FrontWorker, request_end
from server.serve import _front_worker

END = {"max_head": 1024, "max_body": 100}


def test_a_head_is_whole_at_its_blank_line() -> None:
    head = b"GET /dcap HTTP/1.1\r\nHost: x\r\n\r\n"
    for cut in range(len(head)):
        assert request_end(head[:cut], **END) is None
    assert request_end(head, **END) == len(head)
    assert request_end(head + b"GET /tm HTTP/1.1\r\n", **END) == len(head)  # a pipelined one follows
    assert request_end(b"\r\n" + head, **END) == len(head) + 2  # leading blank lines are skipped
    assert request_end(b"GET / HTTP/1.0\n\n", **END) == 16


def test_a_body_of_announced_length_is_read_too_up_to_the_limit() -> None:
    head = b"POST /mup/1 HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 10\r\n\r\n"
    assert request_end(head, **END) is None
    assert request_end(head + b"0123456789", **END) == len(head) + 10
    big = b"POST /x HTTP/1.1\r\nContent-Length: 101\r\n\r\n"
    assert request_end(big, **END) == len(big)  # the app refuses it (413) without waiting for it


@pytest.mark.parametrize("field", [b"Transfer-Encoding: chunked", b"Expect: 100-continue",
                                   b"Content-Length: x", b"Content-Length: 1\r\nContent-Length: 1"])
def test_what_a_thread_reads_itself_or_the_parser_refuses_goes_at_the_head(field: bytes) -> None:
    head = b"POST /x HTTP/1.1\r\n" + field + b"\r\n\r\n"
    assert request_end(head, **END) == len(head)


def test_an_endless_head_goes_to_the_parser_at_the_limit() -> None:
    assert request_end(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 100, **END) is None
    endless = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200
    assert request_end(endless, **END) == len(endless)


def test_the_settings_reach_the_worker() -> None:
    s = from_env({"DERFLEX_TLS_HANDSHAKE_TIMEOUT_SECONDS": "3", "DERFLEX_REQUEST_HEAD_TIMEOUT_SECONDS": "4",
                  "DERFLEX_MAX_PENDING_PER_ADDRESS": "0", "DERFLEX_PROXY_MODE": "true"})
    worker = _front_worker(s)
    assert issubclass(worker, FrontWorker)
    assert worker.limits == FrontLimits(handshake_timeout=3.0, head_timeout=4.0, io_timeout=4.0,
                                        max_pending_per_address=0, exempt_addresses=("127.0.0.1", "::1"),
                                        max_body_prefetch=s.max_body_bytes)
    assert _front_worker(Settings()).limits.exempt_addresses == ()  # only proxies are exempt


@pytest.mark.parametrize("changes", [{"max_connections": 10}, {"max_connections": 100_000},
                                     {"max_pending_per_address": -1}, {"keepalive_seconds": 4000},
                                     {"tls_handshake_timeout_seconds": 0}, {"request_head_timeout_seconds": 301}])
def test_limits_out_of_range_are_refused(changes: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match=next(iter(changes))):
        Settings(**changes)


def test_the_gthread_internals_front_extends_are_there() -> None:
    for name in ("accept", "enqueue_req", "murder_pending", "murder_keepalived", "on_client_socket_readable",
                 "finish_request", "handle"):
        assert callable(getattr(ThreadWorker, name)), name
    assert "enqueue_req(conn)" in inspect.getsource(ThreadWorker.on_client_socket_readable)
    assert "self.enqueue_req(conn)" in inspect.getsource(ThreadWorker.finish_request)
    assert "conn.sock.setblocking(True)" in inspect.getsource(ThreadWorker.handle)
    init = inspect.getsource(TConn.init)
    assert "if self.initialized:" in init and "self.parser is None" in init
    assert "not conn.initialized and not conn.data_ready" in inspect.getsource(ThreadWorker.handle)
    assert "self.murder_pending()" in inspect.getsource(ThreadWorker.run)
