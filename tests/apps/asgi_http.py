"""ASGI HTTP app for the ASGI 3 conformance tests (routed by path).

Things the client cannot see on the wire (an exception raised inside ``send()``, the moment
``receive()`` said ``http.disconnect``, a cancellation) are written as JSON reports into the
directory named by the ``ASGI_REPORT_DIR`` environment variable, in a file named by the
request's ``report`` query parameter. Lifespan startup fills ``scope["state"]``.
"""

import asyncio
import hashlib
import json
import os
import re
import time
from urllib.parse import parse_qs

GREETING = "hello from startup"


def _query(scope):
    return {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


def _report(scope, payload, suffix=""):
    """Write ``payload`` as ``<report><suffix>.json``, atomically (the test polls for it)."""
    name = _query(scope)["report"]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"bad report name {name!r}")
    target = os.path.join(os.environ["ASGI_REPORT_DIR"], f"{name}{suffix}.json")
    with open(target + ".tmp", "w") as out:
        json.dump(payload, out)
    os.replace(target + ".tmp", target)


def _jsonable(value):
    """Scope values as JSON: bytes become ``{"hex": ...}``, tuples become lists."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


async def _respond(send, body, status=200, content_type=b"text/plain", headers=()):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive):
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise OSError("client left before the body was read")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


# ---- scope and receive ----------------------------------------------------------------------
async def scope_report(scope, receive, send):
    await _read_body(receive)
    report = {key: _jsonable(value) for key, value in scope.items() if key != "extensions"}
    report["types"] = {key: type(value).__name__ for key, value in scope.items()}
    report["header_pair_types"] = sorted(
        {
            f"{type(pair).__name__}:{type(pair[0]).__name__}:{type(pair[1]).__name__}"
            for pair in scope["headers"]
        }
    )
    await _respond(send, json.dumps(report).encode(), content_type=b"application/json")


async def upload_echo(scope, receive, send):
    """One JSON line per ``http.request`` message, sent as soon as the message is received."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(10_000):
        message = await receive()
        line = {
            "type": message["type"],
            "body": message.get("body", b"").decode("latin-1"),
            "more_body": message.get("more_body", False),
        }
        await send(
            {
                "type": "http.response.body",
                "body": json.dumps(line).encode() + b"\n",
                "more_body": True,
            }
        )
        if not line["more_body"]:
            break
    await send({"type": "http.response.body", "body": b""})


async def wait_disconnect(scope, receive, send):
    """Read the body, say so in a report, then wait for the client to go away."""
    await _read_body(receive)
    _report(scope, {"waiting_since": time.monotonic()}, "-ready")
    message = await receive()
    _report(scope, {"type": message["type"], "at": time.monotonic()})


async def hash_upload(scope, receive, send):
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        digest.update(body)
        size += len(body)
        if not message.get("more_body", False):
            break
    await _respond(send, json.dumps({"sha256": digest.hexdigest(), "size": size}).encode())


# ---- send -----------------------------------------------------------------------------------
async def stream(scope, receive, send):
    count = int(_query(scope).get("n", "3"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for index in range(count):
        await send({"type": "http.response.body", "body": b"part-%d;" % index, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def content_length(scope, receive, send):
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
    )
    await send({"type": "http.response.body", "body": b"01234", "more_body": True})
    await send({"type": "http.response.body", "body": b"56789"})


async def trailers(scope, receive, send):
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum")],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": b"payload", "more_body": True})
    await send({"type": "http.response.body", "body": b"-end"})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"c0ffee")]})


async def pathsend(scope, receive, send):
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    await send({"type": "http.response.pathsend", "path": _query(scope)["path"]})


async def early_hints(scope, receive, send):
    await send(
        {
            "type": "http.response.informational",
            "status": 103,
            "headers": [(b"link", b"</style.css>; rel=preload; as=style")],
        }
    )
    await _respond(send, b"final")


async def no_response(scope, receive, send):
    return


async def raise_before_start(scope, receive, send):
    raise ValueError("secret detail the client must not see")


async def raise_after_start(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise ValueError("failed after the response started")


async def send_after_complete(scope, receive, send):
    await _respond(send, b"done")
    try:
        await send({"type": "http.response.body", "body": b"too late"})
    except Exception as exc:
        _report(scope, {"raised": type(exc).__name__, "message": str(exc)})
    else:
        _report(scope, {"raised": None})


async def send_after_disconnect(scope, receive, send):
    """Stream until ``send()`` fails because the client left (bounded: 5 s at most)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    block = b"x" * 65536
    for _ in range(500):
        try:
            await send({"type": "http.response.body", "body": block, "more_body": True})
        except Exception as exc:
            _report(scope, {"raised": type(exc).__name__, "is_oserror": isinstance(exc, OSError)})
            return
        await asyncio.sleep(0.01)
    _report(scope, {"raised": None})


async def bad_header(scope, receive, send):
    await _respond(send, b"must not be sent", headers=[(b"x-split", b"a\r\nx-injected: yes")])


async def slow(scope, receive, send):
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        _report(scope, {"cancelled": True})
        raise
    await _respond(send, b"slept")


async def fast(scope, receive, send):
    await _respond(send, b"fast")


async def state_report(scope, receive, send):
    state = scope["state"]
    body = json.dumps(state).encode()
    if _query(scope).get("mutate"):
        state["greeting"] = "changed by a request"
        state["added_by_request"] = True
    await _respond(send, body, content_type=b"application/json")


ROUTES = {
    "/upload-echo": upload_echo,
    "/wait-disconnect": wait_disconnect,
    "/hash": hash_upload,
    "/stream": stream,
    "/content-length": content_length,
    "/trailers": trailers,
    "/pathsend": pathsend,
    "/early-hints": early_hints,
    "/no-response": no_response,
    "/raise-before-start": raise_before_start,
    "/raise-after-start": raise_after_start,
    "/send-after-complete": send_after_complete,
    "/send-after-disconnect": send_after_disconnect,
    "/bad-header": bad_header,
    "/slow": slow,
    "/fast": fast,
    "/state": state_report,
}


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["greeting"] = GREETING
            scope["state"]["worker_pid"] = os.getpid()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    path = scope["path"]
    if path.startswith("/scope"):  # any path below it: path decoding is under test
        await scope_report(scope, receive, send)
        return
    route = ROUTES.get(path)
    if route is None:
        await _respond(send, b"no such route", status=404)
        return
    await route(scope, receive, send)
