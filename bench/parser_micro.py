"""Micro-benchmark of the HTTP/1.1 request parser's hot path: microseconds per request.

Run: python bench/parser_micro.py [--requests N]. Prints the best of several rounds for a
typical GET (5 header fields) and, for scale, llhttp alone with empty callbacks.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import httptools

from hornbeam.http1 import Limits, RequestParser

TYPICAL_GET = (
    b"GET /index.html?page=2 HTTP/1.1\r\n"
    b"Host: localhost:8000\r\n"
    b"User-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\n"
    b"Accept-Encoding: gzip, br\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)
ROUNDS = 7


class _EmptyCallbacks:
    def on_message_begin(self) -> None: ...
    def on_url(self, url: bytes) -> None: ...
    def on_header(self, name: bytes, value: bytes) -> None: ...
    def on_headers_complete(self) -> None: ...
    def on_message_complete(self) -> None: ...


def best_microseconds(feed: Callable[[bytes], object], requests: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(requests):
            feed(TYPICAL_GET)
        best = min(best, time.perf_counter() - started)
    return best / requests * 1e6


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__)
    arguments.add_argument("--requests", type=int, default=100_000, help="requests per round")
    requests = arguments.parse_args().requests
    parser = RequestParser(Limits())
    assert len(parser.feed(TYPICAL_GET)) == 2  # a Request and its EndOfMessage
    ours = best_microseconds(parser.feed, requests)
    llhttp = best_microseconds(httptools.HttpRequestParser(_EmptyCallbacks()).feed_data, requests)
    print(f"RequestParser.feed, typical GET: {ours:.2f} us/request")
    print(f"httptools with empty callbacks:  {llhttp:.2f} us/request")


if __name__ == "__main__":
    main()
