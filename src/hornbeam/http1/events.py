"""The events an HTTP/1.1 request becomes: one Request, any number of Data, one EndOfMessage.

The request parser (``hornbeam.http1.parser``) produces them from raw bytes; the connection and
the WSGI/ASGI adapters consume them. They are frozen so they can cross to app threads safely,
and slotted so creating one per request stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

Fields: TypeAlias = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Request:
    """A request head, with the framing facts the server needs already worked out.

    ``headers`` keeps names as sent (case, order and repeats); values exclude the whitespace
    around them, which RFC 9112 section 5 says is not part of a field value.
    """

    method: bytes  # b"GET"
    target: bytes  # the request-target as sent: b"/a%20b?x=1", b"*", b"http://host/p"
    http_version: str  # "1.0" or "1.1"
    headers: Fields
    keep_alive: bool  # the client will send another request on this connection
    expect_continue: bool  # "Expect: 100-continue" on HTTP/1.1: answer 100 before reading
    content_length: int | None  # None when absent or chunked
    chunked: bool
    upgrade: bytes | None  # lower-cased Upgrade value when Connection: upgrade asks for it


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of the request body, de-chunked; pieces follow the reads, not the chunks."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The request is complete; ``trailers`` are the fields after a chunked body."""

    trailers: Fields = ()


Event: TypeAlias = Request | Data | EndOfMessage
