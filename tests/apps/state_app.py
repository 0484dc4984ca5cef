"""A WSGI app over hornbeam_erlang for server-level state tests."""

import json
import os
from urllib.parse import parse_qs

from hornbeam_erlang import state_get, state_incr, state_set, state_size


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/incr":
        result = state_incr(query.get("key", "counter"))
    elif path == "/get":
        result = state_get(query["key"])
    elif path == "/set":
        ttl = float(query["ttl"]) if "ttl" in query else None
        state_set(query["key"], query["value"], ttl=ttl)
        result = True
    elif path == "/set-many":
        for i in range(int(query["count"])):
            state_set(f"{query['prefix']}{i}", "x" * 100, ttl=float(query["ttl"]))
        result = True
    elif path == "/size":
        result = state_size()
    else:
        result = os.getpid()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(result).encode()]
