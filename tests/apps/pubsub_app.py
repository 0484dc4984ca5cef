"""WSGI routes over hornbeam_erlang pub/sub for the server-level pub/sub tests."""

import json
import os
import queue
from urllib.parse import parse_qs

from hornbeam_erlang import publish, state_get, state_incr, subscribe


def app(environ, start_response):
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    path = environ["PATH_INFO"]
    if path == "/publish":
        result = {"reached": publish(query["topic"], {"text": query["text"], "pid": os.getpid()})}
    elif path == "/listen":
        with subscribe(query["topic"]) as subscription:
            state_incr("listening:" + query["topic"])  # tells the test we are subscribed
            try:
                result = {"got": subscription.get(timeout=float(query.get("timeout", 10)))}
            except queue.Empty:
                result = {"got": None}
        result["pid"] = os.getpid()
    elif path == "/listening":
        result = state_get("listening:" + query["topic"]) or 0
    else:
        result = {"pid": os.getpid()}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(result).encode()]
