"""WSGI apps the integration tests run under the real server (one module, routed by path)."""

import hashlib
import json
import os
import threading
import time

_blocked = threading.Event()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/pid":
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/sleep":
        seconds = float(environ.get("QUERY_STRING", "").partition("=")[2] or 1)
        time.sleep(seconds)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept %g" % seconds]
    if path == "/block-forever":
        _blocked.wait()  # never set: the worker's only thread stays stuck
        start_response("200 OK", [])
        return [b"unreachable"]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/digest":
        digest = hashlib.sha256()
        size = 0
        stream = environ["wsgi.input"]
        while chunk := stream.read(65536):
            digest.update(chunk)
            size += len(chunk)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{size} {digest.hexdigest()}".encode()]
    if path == "/environ":
        keys = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int))}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(keys).encode()]
    if path == "/cookies":
        start_response("200 OK", [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")])
        return [b"two cookies"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"chunk %d\n" % i for i in range(5))
    if path == "/error":
        raise RuntimeError("boom from the app")
    if path == "/bad-header":
        start_response("200 OK", [("X-Evil", "a\r\nInjected: yes")])
        return [b"never sent"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]
