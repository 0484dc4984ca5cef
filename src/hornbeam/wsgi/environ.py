"""Building the PEP 3333 ``environ`` of a request.

Most keys never change: they sit in a base dict built once per worker, extended once per
connection (addresses), and copied per request, which then only adds what the request says.
Header names are turned into ``HTTP_*`` keys through a bounded cache. Headers whose name holds
an underscore are dropped: ``X_Forwarded_For`` and ``X-Forwarded-For`` would otherwise land on
the same key, a known way to spoof headers behind proxies.
"""

from __future__ import annotations

from typing import Any

from hornbeam import __version__
from hornbeam.forwarded import FORWARDING_ENVIRON_KEYS, ProxyTrust
from hornbeam.http1.events import Request
from hornbeam.http1.target import decode_path, is_plain_path, split_target
from hornbeam.logs import ErrorStream
from hornbeam.wsgi.file_wrapper import FileWrapper

# Header name (as sent) -> environ key, or "" for a header that must be dropped.
_KEY_CACHE: dict[bytes, str] = {}
_KEY_CACHE_LIMIT = 2048
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
_SPECIAL_KEYS = {"CONTENT_TYPE": "CONTENT_TYPE", "CONTENT_LENGTH": "CONTENT_LENGTH"}


def _environ_key(name: bytes) -> str:
    key = _KEY_CACHE.get(name)
    if key is None:
        text = name.decode("latin-1")
        if "_" in text:
            key = ""
        else:
            upper = text.upper().replace("-", "_")
            key = _SPECIAL_KEYS.get(upper) or "HTTP_" + upper
        if len(_KEY_CACHE) < _KEY_CACHE_LIMIT:
            _KEY_CACHE[name] = key
    return key


def base_environ(multithread: bool) -> dict[str, Any]:
    """The keys every request of this worker shares."""
    return {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": ErrorStream(),
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
        "SERVER_SOFTWARE": f"hornbeam/{__version__}",
        "SCRIPT_NAME": "",
    }


def connection_environ(
    base: dict[str, Any], client: tuple[str, int] | None, server: tuple[str, int] | None
) -> dict[str, Any]:
    environ = base.copy()
    if server is not None:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = server[0], str(server[1])
    else:  # unix socket or inherited fd without an address
        environ["SERVER_NAME"], environ["SERVER_PORT"] = "localhost", "0"
    if client is not None:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    else:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = "", "0"
    return environ


def request_environ(
    conn_environ: dict[str, Any], request: Request, body: Any, trust: ProxyTrust
) -> dict[str, Any]:
    environ = conn_environ.copy()
    target = request.target
    raw_uri = target.decode("latin-1")
    if is_plain_path(target):
        environ["PATH_INFO"], environ["QUERY_STRING"] = raw_uri, ""
    else:
        raw_path, query = split_target(target)
        environ["PATH_INFO"] = decode_path(raw_path, "latin-1")
        environ["QUERY_STRING"] = query.decode("latin-1")
    environ["REQUEST_METHOD"] = request.method.decode("latin-1")
    environ["RAW_URI"] = raw_uri
    environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(request.http_version) or (
        "HTTP/" + request.http_version
    )
    environ["wsgi.input"] = body
    forwarded = False
    cached_key = _KEY_CACHE.get
    for name, value in request.headers:
        key = cached_key(name)
        if key is None:
            key = _environ_key(name)
        if not key:
            continue
        text = value.decode("latin-1")
        if key in environ and key.startswith("HTTP_"):
            separator = "; " if key == "HTTP_COOKIE" else ","
            environ[key] = environ[key] + separator + text
        else:
            environ[key] = text
            if key in FORWARDING_ENVIRON_KEYS:
                forwarded = True
    if forwarded and trust.enabled and trust.trusts(environ["REMOTE_ADDR"]):
        trust.apply_to_environ(environ)
    return environ
