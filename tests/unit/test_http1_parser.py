"""The HTTP/1.1 request parser: the corpus in every chunking, limits, upgrades and states.

Every corpus case is replayed whole, byte by byte and in 20 seeded random chunkings; each
replay must give the same events (adjacent Data merged) or the same ProtocolError status.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest

from hornbeam.errors import ConfigError
from hornbeam.http1 import (
    Data,
    EndOfMessage,
    Event,
    Limits,
    ProtocolError,
    Request,
    RequestParser,
)

from http1_corpus import INVALID, VALID, Case, head, request

RANDOM_CHUNKINGS = 20
END = EndOfMessage()


@dataclass
class Replay:
    events: list[Event]  # Data merged; for a refused stream, up to the last EndOfMessage
    status: int | None
    upgrade_bytes: bytes
    in_message: bool = False  # left inside a request when the bytes ran out


def merge_data(events: Iterable[Event]) -> list[Event]:
    merged: list[Event] = []
    for event in events:
        if isinstance(event, Data) and merged and isinstance(merged[-1], Data):
            merged[-1] = Data(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def replay(chunks: Iterable[bytes], limits: Limits) -> Replay:
    parser = RequestParser(limits)
    events: list[Event] = []
    try:
        for chunk in chunks:
            events += parser.feed(chunk)
    except ProtocolError as error:
        events += error.events
        # Data of a request cut short depends on where reads ended; complete ones do not.
        ends = [i for i, event in enumerate(events) if isinstance(event, EndOfMessage)]
        del events[ends[-1] + 1 if ends else 0 :]
        return Replay(merge_data(events), error.status, b"")
    return Replay(merge_data(events), None, parser.take_upgrade_bytes(), parser.in_message)


def random_chunks(raw: bytes, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    start = 0
    while start < len(raw):
        end = start + rng.randint(1, max(1, len(raw) // 4))
        yield raw[start:end]
        start = end


def chunkings(raw: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [raw]
    yield "byte by byte", [raw[i : i + 1] for i in range(len(raw))]
    for seed in range(RANDOM_CHUNKINGS):
        yield f"random chunking {seed}", list(random_chunks(raw, seed))


def expected(case: Case) -> Replay:
    return Replay(list(case.events), case.status, case.upgrade_bytes)


@pytest.mark.parametrize("case", VALID, ids=lambda case: case.name)
def test_valid_request_gives_the_same_events_in_every_chunking(case: Case) -> None:
    for how, chunks in chunkings(case.raw):
        assert replay(chunks, case.limits) == expected(case), how


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case.name)
def test_invalid_request_is_refused_with_its_status_in_every_chunking(case: Case) -> None:
    for how, chunks in chunkings(case.raw):
        assert replay(chunks, case.limits) == expected(case), how


def test_corpus_is_large_enough() -> None:
    assert len(VALID) >= 25
    assert len(INVALID) >= 30


# ---- limits: exactly at a limit passes, one byte over is refused ------------------------------


def request_line_of(length: int, method: bytes = b"GET") -> bytes:
    prefix, suffix = method + b" /", b" HTTP/1.1"
    return prefix + b"a" * (length - len(prefix) - len(suffix)) + suffix


def field_line_of(length: int) -> bytes:
    return b"X-Pad: " + b"v" * (length - len(b"X-Pad: "))


def refusal(chunks: Iterable[bytes], limits: Limits) -> int | None:
    return replay(chunks, limits).status


def whole_and_bytewise(raw: bytes) -> list[list[bytes]]:
    return [[raw], [raw[i : i + 1] for i in range(len(raw))]]


@pytest.mark.parametrize("method", [b"GET", b"OPTIONS"])
@pytest.mark.parametrize("limit", [20, 64, 4094])
def test_request_line_at_the_limit_passes_and_one_over_is_414(limit: int, method: bytes) -> None:
    limits = Limits(request_line=limit)
    for chunks in whole_and_bytewise(head(request_line_of(limit, method), b"Host: a")):
        assert refusal(chunks, limits) is None
    for chunks in whole_and_bytewise(head(request_line_of(limit + 1, method), b"Host: a")):
        assert refusal(chunks, limits) == 414


@pytest.mark.parametrize("limit", [16, 8190])
def test_field_line_at_the_limit_passes_and_one_over_is_431(limit: int) -> None:
    limits = Limits(field_size=limit)
    at_limit = head(b"GET / HTTP/1.1", b"Host: a", field_line_of(limit))
    for chunks in whole_and_bytewise(at_limit):
        assert refusal(chunks, limits) is None
    over = head(b"GET / HTTP/1.1", b"Host: a", field_line_of(limit + 1))
    for chunks in whole_and_bytewise(over):
        assert refusal(chunks, limits) == 431


def test_field_count_at_the_limit_passes_and_one_over_is_431() -> None:
    limits = Limits(fields=5)
    five = [b"Host: a"] + [b"X-%d: v" % i for i in range(4)]
    for chunks in whole_and_bytewise(head(b"GET / HTTP/1.1", *five)):
        assert refusal(chunks, limits) is None
    for chunks in whole_and_bytewise(head(b"GET / HTTP/1.1", *five, b"X-Last: v")):
        assert refusal(chunks, limits) == 431


def test_trailer_count_is_limited_apart_from_the_head() -> None:
    limits = Limits(fields=2)
    start = head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked") + b"0\r\n"
    assert refusal([start + b"A: 1\r\nB: 2\r\n\r\n"], limits) is None
    assert refusal([start + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n"], limits) == 431


def test_content_length_at_the_limit_passes_and_one_over_is_413_before_the_body() -> None:
    limits = Limits(body=100)
    at_limit = head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 100")
    assert refusal([at_limit, b"x" * 100], limits) is None
    parser = RequestParser(limits)
    with pytest.raises(ProtocolError) as refused:
        parser.feed(head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 101"))
    assert refused.value.status == 413
    assert refused.value.events == []


def test_chunked_total_at_the_limit_passes_and_one_over_is_413() -> None:
    limits = Limits(body=10)
    start = head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked")
    for chunks in whole_and_bytewise(start + b"4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n"):
        assert refusal(chunks, limits) is None
    for chunks in whole_and_bytewise(start + b"4\r\n0123\r\n7\r\n456789a\r\n0\r\n\r\n"):
        assert refusal(chunks, limits) == 413


def test_huge_chunk_size_is_refused_once_its_bytes_pass_the_limit() -> None:
    parser = RequestParser(Limits(body=1000))
    parser.feed(head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked"))
    parser.feed(b"ffffffffffffffff\r\n" + b"x" * 1000)
    with pytest.raises(ProtocolError) as refused:
        parser.feed(b"x")
    assert refused.value.status == 413


def test_zero_turns_every_limit_off() -> None:
    limits = Limits(request_line=0, fields=0, field_size=0, body=0)
    fields = [b"Host: a", field_line_of(100_000), *(b"X-%d: v" % i for i in range(300))]
    raw = head(request_line_of(100_000), *fields, b"Content-Length: 2000000")
    assert refusal([raw, b"x" * 2_000_000], limits) is None


def test_negative_limit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="field_size"):
        Limits(field_size=-1)


# ---- lines that never end are refused as their bytes arrive ----------------------------------


def trickle(parser: RequestParser, data: bytes, size: int) -> int:
    """Feed ``data`` in pieces of ``size`` until refused; return the refusal status."""
    for start in range(0, len(data), size):
        try:
            parser.feed(data[start : start + size])
        except ProtocolError as error:
            assert start < len(data)
            return error.status
    raise AssertionError("an endless line was never refused")


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_endless_target_is_414_before_the_limit_is_passed_by_much(piece: int) -> None:
    parser = RequestParser(Limits(request_line=4094))
    assert trickle(parser, b"GET /" + b"a" * 5100, piece) == 414


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_endless_spaces_in_the_request_line_are_414(piece: int) -> None:
    parser = RequestParser(Limits(request_line=100))
    assert trickle(parser, b"GET " + b" " * 200, piece) == 414


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_endless_header_line_is_431(piece: int) -> None:
    parser = RequestParser(Limits(field_size=8190))
    assert trickle(parser, b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 9000, piece) == 431


def test_endless_header_line_in_one_read_is_431_at_once() -> None:
    parser = RequestParser(Limits(field_size=100))
    with pytest.raises(ProtocolError) as refused:
        parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 200)
    assert refused.value.status == 431


def test_unfinished_request_line_after_empty_lines_is_held_to_the_request_line_limit() -> None:
    parser = RequestParser(Limits(request_line=300, field_size=50))
    assert parser.feed(b"\r\n\r\nGET /" + b"a" * 200) == []
    assert parser.feed(b"a" * 20 + b" HTTP/1.1\r\nHost: a\r\n\r\n")[1:] == [END]
    assert trickle(parser, b"\r\nGET /" + b"a" * 400, 50) == 414


def test_endless_line_after_a_pipelined_request_is_refused() -> None:
    parser = RequestParser(Limits(field_size=100, request_line=100))
    events = parser.feed(head(b"GET / HTTP/1.1", b"Host: a") + b"GET / HTTP/1.1\r\nX: aaa")
    assert events == [request(headers=((b"Host", b"a"),)), END]
    assert trickle(parser, b"a" * 300, 10) == 431


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_endless_chunk_extension_is_431(piece: int) -> None:
    parser = RequestParser(Limits(field_size=100))
    parser.feed(head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked"))
    assert trickle(parser, b"5;ext=" + b"e" * 200, piece) == 431


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_endless_trailer_line_is_431(piece: int) -> None:
    parser = RequestParser(Limits(field_size=100))
    parser.feed(head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked"))
    parser.feed(b"3\r\nabc\r\n0\r\n")
    assert trickle(parser, b"X-Trailer: " + b"t" * 200, piece) == 431


def test_long_chunk_data_in_small_reads_is_not_mistaken_for_a_line() -> None:
    parser = RequestParser(Limits(field_size=100))
    parser.feed(head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked"))
    body = b"z" * 5000
    raw = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    events: list[Event] = []
    for start in range(0, len(raw), 37):
        events += parser.feed(raw[start : start + 37])
    assert merge_data(events) == [Data(body), END]


# ---- upgrades and the bytes after them ------------------------------------------------------

WEBSOCKET_HEAD = head(
    b"GET /ws HTTP/1.1", b"Host: a", b"Connection: keep-alive, Upgrade", b"Upgrade: websocket"
)


def test_a_bad_host_is_refused_after_good_ones_on_the_same_connection() -> None:
    """The parser remembers the last valid Host to skip checking it again; a different,
    bad one on a later request of the same connection must still be refused."""
    parser = RequestParser(Limits())
    for _ in range(2):
        assert isinstance(parser.feed(head(b"GET / HTTP/1.1", b"Host: a.example:80"))[0], Request)
    with pytest.raises(ProtocolError) as refused:
        parser.feed(head(b"GET / HTTP/1.1", b"Host: a.example/evil"))
    assert refused.value.status == 400


def test_take_upgrade_bytes_is_empty_before_any_upgrade() -> None:
    parser = RequestParser(Limits())
    parser.feed(head(b"GET / HTTP/1.1", b"Host: a"))
    assert parser.take_upgrade_bytes() == b""


def test_upgrade_keeps_every_later_byte_unparsed() -> None:
    parser = RequestParser(Limits())
    events = parser.feed(WEBSOCKET_HEAD + b"\x81\x02hi")
    assert isinstance(events[0], Request)
    assert events[0].upgrade == b"websocket"
    assert events[1:] == [END]
    assert parser.feed(head(b"GET /smuggled HTTP/1.1", b"Host: a")) == []
    assert parser.feed(b"\x00not http") == []
    assert parser.take_upgrade_bytes() == (
        b"\x81\x02hi" + head(b"GET /smuggled HTTP/1.1", b"Host: a") + b"\x00not http"
    )
    assert parser.take_upgrade_bytes() == b""
    assert parser.feed(b"more") == []
    assert parser.take_upgrade_bytes() == b"more"


def test_upgrade_body_split_over_reads_comes_before_the_end_and_the_upgrade_bytes() -> None:
    parser = RequestParser(Limits())
    start = head(b"POST / HTTP/1.1", b"Host: a", b"Connection: upgrade", b"Upgrade: h2c")
    events = parser.feed(start[:-2] + b"Content-Length: 6\r\n\r\nab")
    assert [type(event) for event in events] == [Request, Data]
    assert parser.in_message
    assert parser.feed(b"cd") == [Data(b"cd")]
    assert parser.feed(b"efPRI") == [Data(b"ef"), END]
    assert not parser.in_message
    assert parser.take_upgrade_bytes() == b"PRI"


def test_in_message_follows_head_body_and_end() -> None:
    parser = RequestParser(Limits())
    assert not parser.in_message
    parser.feed(b"\r\n")
    assert not parser.in_message  # empty lines before a request are no request yet
    parser.feed(b"PO")
    assert parser.in_message
    parser.feed(b"ST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n")
    assert parser.in_message
    parser.feed(b"ok")
    assert not parser.in_message


def test_parser_stays_refused_after_an_error() -> None:
    parser = RequestParser(Limits())
    with pytest.raises(ProtocolError) as first:
        parser.feed(b"GET / HTTP/9.9\r\nHost: a\r\n\r\n")
    assert (first.value.status, first.value.reason) == (
        505,
        "HTTP/9.9 is not supported; use HTTP/1.1",
    )
    with pytest.raises(ProtocolError) as again:
        parser.feed(head(b"GET / HTTP/1.1", b"Host: a"))
    assert again.value.status == 505
    assert again.value.events == []


# ---- never a crash -------------------------------------------------------------------------


def mutations(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(data))
        action = rng.randrange(3)
        if action == 0:
            data[position] = rng.choice(b"\x00\r\n \t:;,0aZ\x7f\xff")
        elif action == 1:
            del data[position]
        else:
            data[position:position] = data[position : position + rng.randint(1, 8)]
    return bytes(data)


def test_mutated_requests_give_events_or_a_protocol_error_never_a_crash() -> None:
    rng = random.Random(1234)
    for _ in range(600):
        raw = mutations(rng, rng.choice(VALID).raw)
        replay(random_chunks(raw, rng.randrange(1000)), Limits(body=1 << 20))


def test_a_released_parser_leaves_nothing_for_the_garbage_collector() -> None:
    """The C parser holds the parser's callbacks: a cycle, until ``release()`` breaks it."""
    request = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    gc.collect()
    kept = RequestParser(Limits())
    kept.feed(request)
    del kept
    assert gc.collect() > 0  # the cycle was real
    released = RequestParser(Limits())
    released.feed(request)
    released.release()
    del released
    assert gc.collect() == 0
