"""``wsgi.input``: file-like reads across chunks, blocking, disconnects, flow control."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hornbeam.errors import ClientDisconnected
from hornbeam.wsgi.input import HIGH_WATER, LOW_WATER, StreamingInput

DEADLINE = 5.0


class FlowControl:
    """Counts the pause/resume calls the input makes."""

    def __init__(self) -> None:
        self.pauses = 0
        self.resumes = 0

    def pause(self) -> None:
        self.pauses += 1

    def resume(self) -> None:
        self.resumes += 1


@pytest.fixture
def flow() -> FlowControl:
    return FlowControl()


def make_input(
    flow: FlowControl,
    *chunks: bytes,
    finished: bool = True,
    read_timeout: float = DEADLINE,
    bounded: bool = True,
) -> StreamingInput:
    """A body fed with ``chunks`` and, unless told otherwise, complete."""
    body = StreamingInput(flow.pause, flow.resume, read_timeout, bounded=bounded)
    for chunk in chunks:
        body.feed(chunk)
    if finished:
        body.finish()
    return body


class Reader:
    """Runs one read call on its own thread, as an app thread would."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = threading.Event()
        self._call = call
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.started.wait(DEADLINE)

    def _run(self) -> None:
        self.started.set()
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc

    def is_blocked(self, for_seconds: float = 0.05) -> bool:
        self._thread.join(for_seconds)
        return self._thread.is_alive()

    def join(self) -> Any:
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive(), "the reader is still blocked"
        return self.result


@pytest.fixture
def readers() -> Iterator[list[Reader]]:
    started: list[Reader] = []
    yield started
    for reader in started:
        assert not reader.is_blocked(DEADLINE), "a reader thread was left blocked"


# --- reads of a body that has arrived -----------------------------------------------------------


def test_read_all(flow: FlowControl) -> None:
    body = make_input(flow, b"hello ", b"wor", b"ld")
    assert body.read() == b"hello world"
    assert body.read() == b""
    assert body.read(10) == b""


def test_read_none_reads_all(flow: FlowControl) -> None:
    assert make_input(flow, b"ab", b"cd").read(None) == b"abcd"


def test_read_sized_within_a_chunk(flow: FlowControl) -> None:
    body = make_input(flow, b"abcdefgh")
    assert body.read(0) == b""
    assert body.read(3) == b"abc"
    assert body.read(3) == b"def"
    assert body.read(3) == b"gh"
    assert body.read(3) == b""


def test_read_sized_across_chunks_fills_the_request(flow: FlowControl) -> None:
    # like a file: read(n) returns n bytes unless the body ends first; apps commonly call
    # read(int(CONTENT_LENGTH)) once and expect the whole body
    body = make_input(flow, b"abc", b"def", b"g")
    assert body.read(5) == b"abcde"
    assert body.read(100) == b"fg"
    assert body.read(1) == b""


def test_readline(flow: FlowControl) -> None:
    body = make_input(flow, b"first\nsec", b"ond\n\nthi", b"rd")
    assert body.readline() == b"first\n"
    assert body.readline() == b"second\n"
    assert body.readline() == b"\n"
    assert body.readline() == b"third"
    assert body.readline() == b""


def test_readline_none_is_unlimited(flow: FlowControl) -> None:
    assert make_input(flow, b"one line\n", b"two\n").readline(None) == b"one line\n"


def test_readline_with_limit(flow: FlowControl) -> None:
    body = make_input(flow, b"abcdef\ngh", b"ij\nk")
    assert body.readline(4) == b"abcd"
    assert body.readline(4) == b"ef\n"
    assert body.readline(3) == b"ghi"  # crosses the chunk boundary
    assert body.readline(0) == b""
    assert body.readline(10) == b"j\n"
    assert body.readline(10) == b"k"
    assert body.readline(10) == b""


def test_readline_byte_by_byte_chunks(flow: FlowControl) -> None:
    data = b"alpha\nbeta\ngamma"
    body = make_input(flow, *(data[i : i + 1] for i in range(len(data))))
    assert [body.readline() for _ in range(4)] == [b"alpha\n", b"beta\n", b"gamma", b""]


def test_readlines(flow: FlowControl) -> None:
    body = make_input(flow, b"a\nbb\n", b"ccc\nd")
    assert body.readlines() == [b"a\n", b"bb\n", b"ccc\n", b"d"]


def test_readlines_with_hint_stops_once_the_hint_is_reached(flow: FlowControl) -> None:
    body = make_input(flow, b"a\nbb\n", b"ccc\nd")
    assert body.readlines(3) == [b"a\n", b"bb\n"]
    assert body.readlines(0) == [b"ccc\n", b"d"]


def test_iteration(flow: FlowControl) -> None:
    body = make_input(flow, b"x\ny", b"\nz")
    assert list(body) == [b"x\n", b"y\n", b"z"]
    assert list(body) == []


def test_take_all_buffered(flow: FlowControl) -> None:
    body = make_input(flow, b"ab", b"cd")
    assert body.complete
    assert body.take_all_buffered() == b"abcd"
    assert body.read() == b""


# --- a reader waiting for the loop --------------------------------------------------------------


def test_reader_blocks_until_data_is_fed(flow: FlowControl, readers: list[Reader]) -> None:
    body = make_input(flow, finished=False)
    reader = Reader(lambda: body.read(4))
    readers.append(reader)
    assert reader.is_blocked()
    body.feed(b"data")
    assert reader.join() == b"data"


def test_read_all_blocks_until_finish(flow: FlowControl, readers: list[Reader]) -> None:
    body = make_input(flow, b"part1 ", finished=False)
    reader = Reader(body.read)
    readers.append(reader)
    assert reader.is_blocked()
    body.feed(b"part2")
    assert reader.is_blocked()
    body.finish()
    assert reader.join() == b"part1 part2"


def test_readline_blocks_until_the_line_ends(flow: FlowControl, readers: list[Reader]) -> None:
    body = make_input(flow, b"no newline yet", finished=False)
    reader = Reader(body.readline)
    readers.append(reader)
    assert reader.is_blocked()
    body.feed(b" ... there\nnext")
    assert reader.join() == b"no newline yet ... there\n"
    body.finish()
    assert body.read() == b"next"


def test_abort_wakes_the_reader_with_client_disconnected(
    flow: FlowControl, readers: list[Reader]
) -> None:
    body = make_input(flow, finished=False)
    reader = Reader(body.read)
    readers.append(reader)
    assert reader.is_blocked()
    body.abort("connection reset by peer")
    reader.join()
    assert isinstance(reader.error, ClientDisconnected)
    assert str(reader.error) == "connection reset by peer"


def test_abort_after_buffered_data_serves_the_data_first(flow: FlowControl) -> None:
    body = make_input(flow, b"line\n", finished=False)
    body.abort("gone")
    assert body.readline() == b"line\n"
    with pytest.raises(ClientDisconnected, match="gone"):
        body.readline()


def test_abort_after_finish_changes_nothing(flow: FlowControl) -> None:
    body = make_input(flow, b"all of it")
    body.abort("closed after the body")
    assert body.read() == b"all of it"


def test_read_timeout(flow: FlowControl) -> None:
    body = make_input(flow, b"only this", finished=False, read_timeout=0.05)
    assert body.read(9) == b"only this"
    started = time.monotonic()
    with pytest.raises(ClientDisconnected, match="timed out"):
        body.read(100)
    assert 0.04 <= time.monotonic() - started < DEADLINE


# --- flow control -------------------------------------------------------------------------------


def test_pause_once_past_high_water_and_resume_once_below_low_water(flow: FlowControl) -> None:
    body = make_input(flow, finished=False)
    piece = b"x" * (16 * 1024)
    fed = 0
    while fed <= HIGH_WATER:
        assert flow.pauses == 0
        body.feed(piece)
        fed += len(piece)
    assert flow.pauses == 1
    body.feed(piece)
    body.feed(piece)
    assert flow.pauses == 1
    fed += 2 * len(piece)

    while fed - len(piece) >= LOW_WATER:
        assert flow.resumes == 0
        assert body.read(len(piece)) == piece
        fed -= len(piece)
    assert body.read(len(piece)) == piece
    assert flow.resumes == 1
    body.finish()
    body.read()
    assert (flow.pauses, flow.resumes) == (1, 1)


def test_pauses_again_after_a_resume(flow: FlowControl) -> None:
    body = make_input(flow, finished=False)
    body.feed(b"x" * (HIGH_WATER + 1))
    assert len(body.read(HIGH_WATER + 1)) == HIGH_WATER + 1
    assert (flow.pauses, flow.resumes) == (1, 1)
    body.feed(b"y" * (HIGH_WATER + 1))
    assert (flow.pauses, flow.resumes) == (2, 1)


def test_unbounded_input_never_pauses(flow: FlowControl) -> None:
    body = make_input(flow, finished=False, bounded=False)
    for _ in range(8):
        body.feed(b"z" * HIGH_WATER)
    body.finish()
    assert len(body.read()) == 8 * HIGH_WATER
    assert (flow.pauses, flow.resumes) == (0, 0)


# --- first read hook ----------------------------------------------------------------------------


def test_first_read_hook_runs_exactly_once_at_the_first_read(flow: FlowControl) -> None:
    calls: list[str] = []
    body = make_input(flow, finished=False)
    body.set_first_read_hook(lambda: calls.append("continue"))
    body.feed(b"one\ntwo\n")
    assert calls == []
    assert body.readline() == b"one\n"
    assert calls == ["continue"]
    body.finish()
    assert body.read() == b"two\n"
    assert body.read() == b""
    assert calls == ["continue"]


def test_first_read_hook_runs_before_the_reader_waits(
    flow: FlowControl, readers: list[Reader]
) -> None:
    hooked = threading.Event()
    body = make_input(flow, finished=False)
    body.set_first_read_hook(hooked.set)
    reader = Reader(body.read)
    readers.append(reader)
    assert hooked.wait(DEADLINE)
    assert reader.is_blocked()
    body.finish()
    assert reader.join() == b""
