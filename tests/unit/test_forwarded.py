"""Proxy trust: which peers are believed, and what X-Forwarded-* / Forwarded then change."""

from __future__ import annotations

from typing import Any

import pytest

from hornbeam.forwarded import ProxyTrust

# --- which peers are trusted --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "address", "trusted"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "127.0.0.2", False),
        (["10.0.0.0/8"], "10.20.30.40", True),
        (["10.0.0.0/8"], "11.0.0.1", False),
        (["192.168.1.7/24"], "192.168.1.200", True),  # host bits in the CIDR are tolerated
        (["::1"], "::1", True),
        (["::1"], "127.0.0.1", False),
        (["2001:db8::/32"], "2001:db8:1:2::3", True),
        (["2001:db8::/32"], "2001:db9::1", False),
        ([" 127.0.0.1 ", "", "10.0.0.1"], "10.0.0.1", True),
        (["127.0.0.1"], "not-an-address", False),
        (["127.0.0.1"], "", False),
        (["*"], "203.0.113.9", True),
        (["*"], "", True),
        ([], "127.0.0.1", False),
    ],
)
def test_trusts(allow: list[str], address: str, trusted: bool) -> None:
    trust = ProxyTrust(allow)
    assert trust.trusts(address) is trusted
    assert trust.trusts(address) is trusted  # the cached answer is the same


def test_enabled_only_with_entries() -> None:
    assert ProxyTrust(["127.0.0.1"]).enabled
    assert ProxyTrust(["*"]).enabled
    assert not ProxyTrust([]).enabled
    assert not ProxyTrust(["", "  "]).enabled


# --- X-Forwarded-For / -Proto -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "xff", "client"),
    [
        (["127.0.0.1"], "203.0.113.5", "203.0.113.5"),
        # the nearest hop is not trusted: it is the client, whatever it claims before it
        (["127.0.0.1"], "1.1.1.1, 203.0.113.5", "203.0.113.5"),
        # trusted hops are walked back over
        (["10.0.0.0/8"], "1.1.1.1, 203.0.113.5, 10.0.0.2, 10.0.0.1", "203.0.113.5"),
        (["10.0.0.0/8", "::1"], "2001:db8::7,::1", "2001:db8::7"),
        # every hop trusted: the farthest is the best answer
        (["10.0.0.0/8"], "10.0.0.3, 10.0.0.2", "10.0.0.3"),
        (["10.0.0.0/8"], " , 203.0.113.5 ,, ", "203.0.113.5"),
    ],
)
def test_x_forwarded_for(allow: list[str], xff: str, client: str) -> None:
    assert ProxyTrust(allow).client_and_scheme({"x-forwarded-for": xff}) == (client, None)


@pytest.mark.parametrize(
    ("headers", "scheme"),
    [
        ({"x-forwarded-proto": "https"}, "https"),
        ({"x-forwarded-proto": "HTTPS"}, "https"),
        ({"x-forwarded-proto": "http"}, "http"),
        ({"x-forwarded-proto": "http, https"}, "https"),
        ({"x-forwarded-scheme": "https"}, "https"),
        ({"x-forwarded-proto": "ftp"}, None),
        ({"x-forwarded-proto": "javascript"}, None),
        ({"x-forwarded-proto": ""}, None),
    ],
)
def test_x_forwarded_proto(headers: dict[str, str], scheme: str | None) -> None:
    assert ProxyTrust(["127.0.0.1"]).client_and_scheme(headers) == (None, scheme)


# --- Forwarded (RFC 7239) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("for=192.0.2.60;proto=https;by=203.0.113.43", ("192.0.2.60", "https")),
        ("For=192.0.2.60; Proto=HTTP", ("192.0.2.60", "http")),
        ('for="192.0.2.60:8080"', ("192.0.2.60", None)),
        ('for="[::1]:80"', ("::1", None)),
        ('for="[2001:db8:cafe::17]:4711";proto=https', ("2001:db8:cafe::17", "https")),
        ('for="[2001:db8::1]"', ("2001:db8::1", None)),
        # the last element is the one our proxy added
        ("for=198.51.100.1, for=192.0.2.43;proto=https", ("192.0.2.43", "https")),
        ("proto=https", (None, "https")),
        ("for=192.0.2.60;proto=gopher", ("192.0.2.60", None)),
        ("for=;proto=", (None, None)),
    ],
)
def test_forwarded_header(forwarded: str, expected: tuple[str | None, str | None]) -> None:
    assert ProxyTrust(["127.0.0.1"]).client_and_scheme({"forwarded": forwarded}) == expected


def test_forwarded_wins_over_x_forwarded() -> None:
    headers = {
        "forwarded": "for=192.0.2.1;proto=https",
        "x-forwarded-for": "198.51.100.9",
        "x-forwarded-proto": "http",
    }
    assert ProxyTrust(["127.0.0.1"]).client_and_scheme(headers) == ("192.0.2.1", "https")


def test_x_forwarded_fills_what_forwarded_lacks() -> None:
    headers = {"forwarded": "by=203.0.113.43", "x-forwarded-for": "198.51.100.9"}
    headers["x-forwarded-proto"] = "https"
    assert ProxyTrust(["127.0.0.1"]).client_and_scheme(headers) == ("198.51.100.9", "https")


# --- environ ------------------------------------------------------------------------------------


def environ_with(**headers: str) -> dict[str, Any]:
    environ: dict[str, Any] = {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http"}
    environ.update(headers)
    return environ


def test_apply_to_environ_sets_client_and_scheme() -> None:
    environ = environ_with(
        HTTP_X_FORWARDED_FOR="203.0.113.5, 127.0.0.1", HTTP_X_FORWARDED_PROTO="https"
    )
    ProxyTrust(["127.0.0.1"]).apply_to_environ(environ)
    assert environ["REMOTE_ADDR"] == "203.0.113.5"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.5, 127.0.0.1"  # the app still sees it


def test_apply_to_environ_with_forwarded_and_scheme_header() -> None:
    environ = environ_with(HTTP_FORWARDED='for="[::1]:80"', HTTP_X_FORWARDED_SCHEME="https")
    ProxyTrust(["127.0.0.1"]).apply_to_environ(environ)
    assert environ["REMOTE_ADDR"] == "::1"
    assert environ["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize(
    "headers",
    [{}, {"HTTP_X_FORWARDED_PROTO": "ftp"}, {"HTTP_FORWARDED": "by=10.0.0.1"}],
    ids=["no-headers", "bad-scheme", "nothing-usable"],
)
def test_apply_to_environ_leaves_environ_alone(headers: dict[str, str]) -> None:
    environ = environ_with(**headers)
    before = dict(environ)
    ProxyTrust(["127.0.0.1"]).apply_to_environ(environ)
    assert environ == before
