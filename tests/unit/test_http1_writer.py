"""The HTTP/1 response writer: status lines, header checks, body rules, chunks, Date, errors."""

from __future__ import annotations

import pytest

from hornbeam import __version__
from hornbeam.http1.writer import (
    DateHeader,
    HeaderChecker,
    HeaderError,
    body_allowed,
    encode_chunk,
    error_response,
    status_line,
)

# 2001-09-09 01:46:40 UTC
BILLENNIUM = 1_000_000_000


# --- status line --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "status", "expected"),
    [
        ("1.1", 200, b"HTTP/1.1 200 OK\r\n"),
        ("1.0", 404, b"HTTP/1.0 404 Not Found\r\n"),
        ("1.1", 101, b"HTTP/1.1 101 Switching Protocols\r\n"),
        ("1.1", 599, b"HTTP/1.1 599 Unknown\r\n"),
        ("1.1", 999, b"HTTP/1.1 999 Unknown\r\n"),
    ],
)
def test_status_line(version: str, status: int, expected: bytes) -> None:
    assert status_line(version, status) == expected


def test_status_line_is_cached_per_version_and_status() -> None:
    first = status_line("1.1", 418)
    assert status_line("1.1", 418) is first
    assert status_line("1.0", 418) == b"HTTP/1.0 418 I'm a Teapot\r\n"
    assert status_line("1.0", 418) is not first


@pytest.mark.parametrize("status", [-200, 0, 99, 1000, 20000])
def test_status_outside_three_digits_is_refused(status: int) -> None:
    with pytest.raises(HeaderError, match=f"status {status} is not a three-digit"):
        status_line("1.1", status)


# --- header checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "lowered"),
    [
        (b"Content-Type", "content-type"),
        (b"X-Request-ID", "x-request-id"),
        (b"x!#$%&'*+-.^_`|~9", "x!#$%&'*+-.^_`|~9"),
    ],
)
def test_valid_names_are_lowered(name: bytes, lowered: str) -> None:
    checker = HeaderChecker()
    assert checker.lower_name(name) == lowered
    assert checker.lower_name(name) == lowered  # again, from the cache


@pytest.mark.parametrize(
    "name",
    [b"", b"Bad Name", b"X-Evil\r\nSet-Cookie", b"X\nY", b"Nul\x00", b"Colon:", b"Caf\xe9", b"(x)"],
)
def test_names_that_are_not_tokens_are_refused(name: bytes) -> None:
    checker = HeaderChecker()
    with pytest.raises(HeaderError, match="is not a valid token"):
        checker.lower_name(name)
    # a refused name is refused every time, not remembered as valid
    with pytest.raises(HeaderError):
        checker.lower_name(name)


@pytest.mark.parametrize(
    "value", [b"a\r\nSet-Cookie: x=1", b"line\nbreak", b"carriage\rreturn", b"nul\x00byte", b"\n"]
)
def test_values_with_cr_lf_or_nul_are_refused(value: bytes) -> None:
    with pytest.raises(HeaderError, match="'X-Thing' contains CR, LF or NUL"):
        HeaderChecker.check_value(b"X-Thing", value)


@pytest.mark.parametrize("value", [b"", b"text/html; charset=utf-8", b"tab\there", b"caf\xe9"])
def test_ordinary_values_pass(value: bytes) -> None:
    HeaderChecker.check_value(b"X-Thing", value)


def test_name_cache_is_bounded_but_names_past_the_bound_are_still_checked() -> None:
    checker = HeaderChecker(cache_limit=3)
    names = [b"X-Name-%d" % n for n in range(10)]
    assert [checker.lower_name(n) for n in names] == [f"x-name-{n}" for n in range(10)]
    assert len(checker._names) == 3  # the cache itself is private; its size is the point here
    with pytest.raises(HeaderError):
        checker.lower_name(b"Not A Token")


@pytest.mark.parametrize(
    "status",
    ["200", "OK 200", "2OO OK", "200 OK\r\nX-Injected: 1", "200 OK\n", "200\0OK", b"200 OK"],
)
def test_bad_wsgi_status_lines_are_refused_even_after_good_ones(status: object) -> None:
    checker = HeaderChecker(cache_limit=3)
    for good in ("200 OK", "404 Not Found", "201 Created", "204 No Content"):
        checker.status_code(good)  # the fourth is past the cache's bound
    with pytest.raises(HeaderError):
        checker.status_code(status)


def test_wsgi_status_code_is_read_from_the_line() -> None:
    checker = HeaderChecker()
    assert [checker.status_code(s) for s in ("200 OK", "418 I'm a teapot", "200 OK")] == [
        200,
        418,
        200,
    ]


# --- body rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "method", "allowed"),
    [
        (100, b"GET", False),
        (101, b"GET", False),
        (103, b"GET", False),
        (199, b"POST", False),
        (200, b"GET", True),
        (201, b"POST", True),
        (204, b"GET", False),
        (204, b"DELETE", False),
        (206, b"GET", True),
        (304, b"GET", False),
        (302, b"GET", True),
        (404, b"GET", True),
        (500, b"POST", True),
        (200, b"HEAD", False),
        (404, b"HEAD", False),
        (500, b"HEAD", False),
    ],
)
def test_body_allowed(status: int, method: bytes, allowed: bool) -> None:
    assert body_allowed(status, method) is allowed


# --- chunks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"x", b"1\r\nx\r\n"),
        (b"hello", b"5\r\nhello\r\n"),
        (b"a" * 255, b"ff\r\n" + b"a" * 255 + b"\r\n"),
        (b"\r\n" * 8, b"10\r\n" + b"\r\n" * 8 + b"\r\n"),
    ],
)
def test_encode_chunk(data: bytes, expected: bytes) -> None:
    assert encode_chunk(data) == expected


# --- Date ---------------------------------------------------------------------------------------


def test_date_header_starts_with_a_current_date() -> None:
    line = DateHeader().line
    assert line.startswith(b"Date: ")
    assert line.endswith(b" GMT\r\n")
    assert b"1970" not in line


def test_date_header_is_rebuilt_only_when_the_second_changes() -> None:
    date = DateHeader()
    date.refresh(BILLENNIUM + 0.1)
    first = date.line
    assert first == b"Date: Sun, 09 Sep 2001 01:46:40 GMT\r\n"
    date.refresh(BILLENNIUM + 0.9)
    assert date.line is first
    date.refresh(BILLENNIUM + 1.0)
    assert date.line == b"Date: Sun, 09 Sep 2001 01:46:41 GMT\r\n"
    second = date.line
    date.refresh(BILLENNIUM + 1.5)
    assert date.line is second


# --- server error responses ---------------------------------------------------------------------


def split_response(data: bytes) -> tuple[bytes, dict[str, str], bytes]:
    head, separator, body = data.partition(b"\r\n\r\n")
    assert separator
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(": ")
        assert name.lower() not in fields, f"duplicate {name}"
        fields[name.lower()] = value
    return status.encode("latin-1"), fields, body


def test_error_response_is_short_plain_text_that_closes() -> None:
    date = DateHeader()
    date.refresh(BILLENNIUM)
    data = error_response(400, "malformed request line", date)
    status, fields, body = split_response(data)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert fields == {
        "server": f"hornbeam/{__version__}",
        "date": "Sun, 09 Sep 2001 01:46:40 GMT",
        "content-type": "text/plain; charset=utf-8",
        "content-length": str(len(body)),
        "connection": "close",
    }
    assert body == b"Bad Request\nmalformed request line\n"
    assert len(data) < 300


def test_error_response_counts_bytes_not_characters() -> None:
    data = error_response(500, "caf\u00e9 \u2603", DateHeader(), http_version="1.0")
    status, fields, body = split_response(data)
    assert status == b"HTTP/1.0 500 Internal Server Error"
    assert body == "Internal Server Error\ncaf\u00e9 \u2603\n".encode()
    assert int(fields["content-length"]) == len(body)
