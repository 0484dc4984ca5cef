"""Trusting ``X-Forwarded-*`` / ``Forwarded`` headers only from the proxies we are told to.

A request whose peer address is in ``forwarded_allow_ips`` (or any peer with ``*``) may set the
client address and the scheme through ``X-Forwarded-For`` / ``X-Forwarded-Proto`` or the
RFC 7239 ``Forwarded`` header. From any other peer those headers are passed to the app
untouched but never believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

# The fields a trusted proxy may set, by lower-cased name, and the forms the adapters meet
# them in: ASGI header names (bytes) and WSGI environ keys.
FORWARDING_FIELDS = ("forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-scheme")
FORWARDING_HEADER_NAMES = frozenset(name.encode("ascii") for name in FORWARDING_FIELDS)
FORWARDING_ENVIRON_KEYS = {
    "HTTP_" + name.upper().replace("-", "_"): name for name in FORWARDING_FIELDS
}


class ProxyTrust:
    def __init__(self, allow: Iterable[str]) -> None:
        entries = [a.strip() for a in allow if a.strip()]
        self._any = "*" in entries
        self._networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]
        self.enabled = bool(entries)
        self._cache: dict[str, bool] = {}

    def trusts(self, address: str) -> bool:
        if self._any:
            return True
        known = self._cache.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(ip in net for net in self._networks)
            if len(self._cache) < 4096:
                self._cache[address] = known
        return known

    def client_and_scheme(self, headers: dict[str, str]) -> tuple[str | None, str | None]:
        """The forwarded client address and scheme, from lower-cased header names."""
        client = scheme = None
        forwarded = headers.get("forwarded")
        if forwarded:
            # the last element was added by the proxy nearest to us
            last = forwarded.split(",")[-1]
            for pair in last.split(";"):
                name, _, value = pair.strip().partition("=")
                value = value.strip().strip('"')
                if name.lower() == "for" and value:
                    client = value[1:].split("]")[0] if value.startswith("[") else value
                    if client.count(":") == 1:
                        client = client.split(":")[0]
                elif name.lower() == "proto" and value:
                    scheme = value.lower()
        xff = headers.get("x-forwarded-for")
        if client is None and xff:
            # walk from the nearest hop back past the proxies we trust
            hops = [h.strip() for h in xff.split(",") if h.strip()]
            for hop in reversed(hops):
                client = hop
                if not self.trusts(hop):
                    break
        proto = headers.get("x-forwarded-proto") or headers.get("x-forwarded-scheme")
        if scheme is None and proto:
            scheme = proto.split(",")[-1].strip().lower()
        if scheme not in (None, "http", "https"):
            scheme = None
        return client, scheme

    def apply_to_environ(self, environ: dict[str, Any]) -> None:
        headers = {name: environ.get(key, "") for key, name in FORWARDING_ENVIRON_KEYS.items()}
        if not any(headers.values()):
            return
        client, scheme = self.client_and_scheme(headers)
        if client:
            environ["REMOTE_ADDR"] = client
        if scheme:
            environ["wsgi.url_scheme"] = scheme
