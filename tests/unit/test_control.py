"""The worker → arbiter control pipe: decoding what arrives, and a sender that never blocks."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator

import pytest

from hornbeam.worker.control import BOOTED, ERROR, HEARTBEAT, RETIRING, Receiver, Sender

# --- receiver -----------------------------------------------------------------------------------


def test_fresh_receiver() -> None:
    receiver = Receiver(now=10.0)
    assert receiver.last_beat == 10.0
    assert not receiver.booted
    assert not receiver.retiring
    assert receiver.error is None


def test_heartbeats_move_the_last_beat() -> None:
    receiver = Receiver(now=10.0)
    receiver.feed(HEARTBEAT, now=11.0)
    assert receiver.last_beat == 11.0
    receiver.feed(HEARTBEAT * 3, now=12.5)
    assert receiver.last_beat == 12.5
    assert not receiver.booted and not receiver.retiring


def test_empty_feed_is_not_a_heartbeat() -> None:
    receiver = Receiver(now=10.0)
    receiver.feed(b"", now=20.0)
    assert receiver.last_beat == 10.0


def test_booted_and_retiring() -> None:
    receiver = Receiver(now=0.0)
    receiver.feed(HEARTBEAT + BOOTED + HEARTBEAT, now=1.0)
    assert receiver.booted
    assert not receiver.retiring
    assert receiver.last_beat == 1.0
    receiver.feed(HEARTBEAT + RETIRING, now=2.0)
    assert receiver.booted
    assert receiver.retiring
    assert receiver.last_beat == 2.0


def test_error_line_in_one_feed() -> None:
    receiver = Receiver(now=0.0)
    receiver.feed(HEARTBEAT + ERROR + b"cannot import 'app': No module named 'x'\n", now=1.0)
    assert receiver.error == "cannot import 'app': No module named 'x'"
    assert receiver.last_beat == 1.0
    assert not receiver.booted


def test_error_line_split_across_feeds() -> None:
    receiver = Receiver(now=0.0)
    receiver.feed(BOOTED + ERROR + b"worker failed: Ret", now=1.0)
    assert receiver.booted
    assert receiver.error is None
    receiver.feed(b"ry later, Bye", now=2.0)
    assert receiver.error is None
    # the message's own "R" and "B" are text, not control bytes
    assert not receiver.retiring
    receiver.feed(b" \xe2\x9c", now=3.0)
    receiver.feed(b"\x93\n", now=4.0)
    assert receiver.error == "worker failed: Retry later, Bye \u2713"
    assert not receiver.retiring


def test_error_split_right_after_the_marker() -> None:
    receiver = Receiver(now=0.0)
    receiver.feed(ERROR, now=1.0)
    receiver.feed(b"boom\n", now=2.0)
    assert receiver.error == "boom"


def test_invalid_utf8_in_error_is_replaced() -> None:
    receiver = Receiver(now=0.0)
    receiver.feed(ERROR + b"bad \xff byte\n", now=1.0)
    assert receiver.error == "bad \ufffd byte"


# --- sender over a real pipe --------------------------------------------------------------------


class Pipe:
    """Both ends of an os.pipe(), each closed exactly once."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._open = {self.read_fd, self.write_fd}

    def close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self._open):
            self.close(fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    opened = Pipe()
    yield opened
    opened.close_all()


def drain(read_fd: int) -> bytes:
    os.set_blocking(read_fd, False)
    parts = []
    while True:
        try:
            part = os.read(read_fd, 65536)
        except BlockingIOError:
            break
        if not part:
            break
        parts.append(part)
    return b"".join(parts)


def test_sender_makes_its_end_non_blocking(pipe: Pipe) -> None:
    write_fd = pipe.write_fd
    Sender(write_fd)
    assert fcntl.fcntl(write_fd, fcntl.F_GETFL) & os.O_NONBLOCK


def test_messages_reach_the_receiver(pipe: Pipe) -> None:
    read_fd, write_fd = pipe.read_fd, pipe.write_fd
    sender = Sender(write_fd)
    sender.send(BOOTED)
    sender.send(HEARTBEAT)
    sender.send_error("line one\nline two")
    receiver = Receiver(now=0.0)
    receiver.feed(drain(read_fd), now=1.0)
    assert receiver.booted
    assert receiver.error == "line one line two"


def test_long_error_is_truncated_to_one_short_line(pipe: Pipe) -> None:
    read_fd, write_fd = pipe.read_fd, pipe.write_fd
    Sender(write_fd).send_error("x" * 10_000)
    data = drain(read_fd)
    assert data == ERROR + b"x" * 2000 + b"\n"


def test_send_on_a_full_pipe_returns_at_once(pipe: Pipe) -> None:
    read_fd, write_fd = pipe.read_fd, pipe.write_fd
    sender = Sender(write_fd)
    block = b"." * 65536
    for _ in range(1024):  # a pipe holds 64 KiB by default, at most 1 MiB
        try:
            os.write(write_fd, block)
        except BlockingIOError:
            break
    else:
        pytest.fail("the pipe never filled up")
    started = time.monotonic()
    for _ in range(100):
        sender.send(HEARTBEAT)
    sender.send_error("dropped, not blocking")
    assert time.monotonic() - started < 1.0
    # reading makes room: the next heartbeat gets through again
    assert drain(read_fd)
    sender.send(RETIRING)
    assert drain(read_fd) == RETIRING


def test_send_after_the_arbiter_closed_its_end(pipe: Pipe) -> None:
    read_fd, write_fd = pipe.read_fd, pipe.write_fd
    sender = Sender(write_fd)
    pipe.close(read_fd)
    sender.send(HEARTBEAT)  # EPIPE is swallowed: the worker goes on until it is told to stop
    sender.send_error("nobody listens")
