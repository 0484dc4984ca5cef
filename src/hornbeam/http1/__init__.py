"""HTTP/1.1 as sans-IO pieces: the request parser (bytes in, events out) and its events.

The response side lives in ``hornbeam.http1.writer``.
"""

from hornbeam.http1.events import Data, EndOfMessage, Event, Request
from hornbeam.http1.parser import Limits, ProtocolError, RequestParser

__all__ = ["Data", "EndOfMessage", "Event", "Limits", "ProtocolError", "Request", "RequestParser"]
