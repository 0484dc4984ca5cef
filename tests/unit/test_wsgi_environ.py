"""The WSGI environ: request-target splitting, header keys, connection keys, proxy trust."""

from __future__ import annotations

import io
from typing import Any

import pytest

from hornbeam import __version__
from hornbeam.forwarded import ProxyTrust
from hornbeam.http1.events import Request
from hornbeam.logs import ErrorStream
from hornbeam.wsgi.environ import base_environ, connection_environ, request_environ
from hornbeam.wsgi.file_wrapper import FileWrapper

NO_TRUST = ProxyTrust([])


def make_request(
    target: bytes = b"/",
    headers: tuple[tuple[bytes, bytes], ...] = (),
    method: bytes = b"GET",
    http_version: str = "1.1",
) -> Request:
    return Request(
        method=method,
        target=target,
        http_version=http_version,
        headers=headers,
        keep_alive=True,
        expect_continue=False,
        content_length=None,
        chunked=False,
        upgrade=None,
    )


def tcp_environ(client: tuple[str, int] = ("192.0.2.10", 50123)) -> dict[str, Any]:
    return connection_environ(base_environ(multithread=True), client, ("127.0.0.1", 8000))


def environ_for(
    request: Request, trust: ProxyTrust = NO_TRUST, conn: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = io.BytesIO(b"")
    environ = request_environ(conn if conn is not None else tcp_environ(), request, body, trust)
    assert environ["wsgi.input"] is body
    return environ


# --- request-target -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/", "/", ""),
        (b"/a/b", "/a/b", ""),
        (b"/search?q=1&r=two", "/search", "q=1&r=two"),
        (b"/path?", "/path", ""),
        (b"/p?a=b?c", "/p", "a=b?c"),
        (b"/a%20b", "/a b", ""),
        (b"/a%2Fb", "/a/b", ""),
        (b"/caf%C3%A9", "/caf\u00c3\u00a9", ""),  # UTF-8 bytes as latin-1 characters (PEP 3333)
        (b"/%e9t%E9", "/\u00e9t\u00e9", ""),
        (b"/bad%zzescape%", "/bad%zzescape%", ""),
        (b"/q?x=%20y", "/q", "x=%20y"),  # the query string stays encoded
        (b"http://example.com/a/b?x=1", "/a/b", "x=1"),
        (b"https://example.com:8443/a%20b", "/a b", ""),
        (b"http://example.com", "/", ""),
        (b"http://example.com?x=1", "/", "x=1"),
        (b"*", "*", ""),
    ],
)
def test_path_info_and_query_string(target: bytes, path: str, query: str) -> None:
    environ = environ_for(make_request(target))
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == (path, query)
    assert environ["RAW_URI"] == target.decode("latin-1")


def test_request_keys() -> None:
    environ = environ_for(make_request(b"/caf%C3%A9?x=1", method=b"POST", http_version="1.0"))
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9"
    assert environ["QUERY_STRING"] == "x=1"
    assert environ["RAW_URI"] == "/caf%C3%A9?x=1"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert environ["SCRIPT_NAME"] == ""


# --- headers ------------------------------------------------------------------------------------


def test_headers_become_http_keys() -> None:
    environ = environ_for(
        make_request(
            headers=(
                (b"Host", b"example.com"),
                (b"user-agent", b"curl/8"),
                (b"X-Request-ID", b"abc"),
                (b"Accept-Language", b"caf\xe9"),
            )
        )
    )
    assert environ["HTTP_HOST"] == "example.com"
    assert environ["HTTP_USER_AGENT"] == "curl/8"
    assert environ["HTTP_X_REQUEST_ID"] == "abc"
    assert environ["HTTP_ACCEPT_LANGUAGE"] == "caf\u00e9"


def test_content_type_and_length_have_no_http_prefix() -> None:
    environ = environ_for(
        make_request(headers=((b"Content-Type", b"text/plain"), (b"content-length", b"12")))
    )
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "12"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ


def test_headers_with_underscores_are_dropped() -> None:
    environ = environ_for(
        make_request(
            headers=(
                (b"X-Forwarded-For", b"192.0.2.1"),
                (b"X_Forwarded_For", b"6.6.6.6"),
                (b"Content_Length", b"999"),
            )
        )
    )
    assert environ["HTTP_X_FORWARDED_FOR"] == "192.0.2.1"
    assert "CONTENT_LENGTH" not in environ


def test_repeated_headers_are_joined() -> None:
    environ = environ_for(
        make_request(
            headers=(
                (b"Accept", b"text/html"),
                (b"Cookie", b"a=1"),
                (b"accept", b"application/json"),
                (b"Cookie", b"b=2"),
                (b"X-Forwarded-For", b"192.0.2.1"),
                (b"cookie", b"c=3"),
                (b"x-forwarded-for", b"198.51.100.2"),
            )
        )
    )
    assert environ["HTTP_ACCEPT"] == "text/html,application/json"
    assert environ["HTTP_COOKIE"] == "a=1; b=2; c=3"
    assert environ["HTTP_X_FORWARDED_FOR"] == "192.0.2.1,198.51.100.2"


def test_requests_on_one_connection_do_not_share_keys() -> None:
    conn = tcp_environ()
    first = environ_for(make_request(headers=((b"Cookie", b"a=1"),)), conn=conn)
    second = environ_for(make_request(b"/two", headers=((b"Cookie", b"b=2"),)), conn=conn)
    assert first["HTTP_COOKIE"] == "a=1"
    assert second["HTTP_COOKIE"] == "b=2"
    assert first["PATH_INFO"] == "/"
    assert "HTTP_COOKIE" not in conn and "PATH_INFO" not in conn


# --- base and connection keys -------------------------------------------------------------------


def test_base_environ() -> None:
    base = base_environ(multithread=False)
    assert base["wsgi.version"] == (1, 0)
    assert base["wsgi.url_scheme"] == "http"
    assert isinstance(base["wsgi.errors"], ErrorStream)
    assert base["wsgi.multithread"] is False
    assert base["wsgi.multiprocess"] is True
    assert base["wsgi.run_once"] is False
    assert base["wsgi.input_terminated"] is True
    assert base["wsgi.file_wrapper"] is FileWrapper
    assert base["SERVER_SOFTWARE"] == f"hornbeam/{__version__}"
    assert base_environ(multithread=True)["wsgi.multithread"] is True


def test_connection_environ_tcp() -> None:
    base = base_environ(multithread=True)
    environ = connection_environ(base, ("2001:db8::5", 40000), ("::1", 8443))
    assert environ["REMOTE_ADDR"] == "2001:db8::5"
    assert environ["REMOTE_PORT"] == "40000"
    assert environ["SERVER_NAME"] == "::1"
    assert environ["SERVER_PORT"] == "8443"
    assert "REMOTE_ADDR" not in base


def test_connection_environ_unix_socket() -> None:
    environ = connection_environ(base_environ(multithread=True), None, None)
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("", "0")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("localhost", "0")


# --- proxy trust --------------------------------------------------------------------------------

FORWARDED_HEADERS = ((b"X-Forwarded-For", b"203.0.113.9"), (b"X-Forwarded-Proto", b"https"))


def test_forwarded_headers_applied_for_a_trusted_peer() -> None:
    trust = ProxyTrust(["192.0.2.0/24"])
    environ = environ_for(make_request(headers=FORWARDED_HEADERS), trust)
    assert environ["REMOTE_ADDR"] == "203.0.113.9"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["REMOTE_PORT"] == "50123"


@pytest.mark.parametrize(
    ("allow", "conn"),
    [
        (["127.0.0.1"], tcp_environ(("192.0.2.10", 50123))),
        ([], tcp_environ(("192.0.2.10", 50123))),
        (["127.0.0.1"], connection_environ(base_environ(multithread=True), None, None)),
    ],
    ids=["untrusted-peer", "trust-disabled", "unix-socket"],
)
def test_forwarded_headers_ignored_otherwise(allow: list[str], conn: dict[str, Any]) -> None:
    environ = environ_for(make_request(headers=FORWARDED_HEADERS), ProxyTrust(allow), conn)
    assert environ["REMOTE_ADDR"] == conn["REMOTE_ADDR"]
    assert environ["wsgi.url_scheme"] == "http"
    # passed to the app untouched, but not believed
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.9"
    assert environ["HTTP_X_FORWARDED_PROTO"] == "https"
