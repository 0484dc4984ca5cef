"""Listening sockets: reuse-port slots, busy ports, Unix sockets, inherited fds, IPv6."""

from __future__ import annotations

import os
import select
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hornbeam.arbiter.listeners import Listeners
from hornbeam.config.types import Bind
from hornbeam.errors import EXIT_BIND, BindError

BACKLOG = 16


@pytest.fixture
def opened() -> Iterator[list[Listeners]]:
    """Listeners created by a test; all closed afterwards, even when the test fails."""
    created: list[Listeners] = []
    yield created
    for listeners in created:
        listeners.close()


def listen(opened: list[Listeners], *binds: Bind) -> Listeners:
    listeners = Listeners(binds, BACKLOG)
    opened.append(listeners)
    listeners.open()
    return listeners


def bind_error(*binds: Bind) -> str:
    listeners = Listeners(binds, BACKLOG)
    try:
        with pytest.raises(BindError) as caught:
            listeners.open()
    finally:
        listeners.close()
    assert caught.value.exit_code == EXIT_BIND
    return str(caught.value)


@pytest.fixture
def short_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for Unix socket paths (they must stay under ~100 bytes)."""
    path = tmp_path_factory.mktemp("sock", numbered=True)
    assert len(str(path)) < 80
    return path


def held_tcp_port(sock: socket.socket, host: str = "127.0.0.1") -> int:
    sock.bind((host, 0))
    sock.listen(1)
    port: int = sock.getsockname()[1]
    return port


def accept_on_any(sockets: list[socket.socket], port: int) -> socket.socket:
    """Connect to ``port`` and return the listening socket the kernel handed the client to."""
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        ready, _, _ = select.select(sockets, [], [], 5)
        assert len(ready) == 1
        conn, _ = ready[0].accept()
        conn.close()
    chosen: socket.socket = ready[0]
    return chosen


# --- TCP ----------------------------------------------------------------------------------------


def test_port_zero_resolves_one_port_for_every_slot(opened: list[Listeners]) -> None:
    listeners = listen(opened, Bind("tcp", host="127.0.0.1", port=0))
    (url,) = listeners.urls()
    port = int(url.rsplit(":", 1)[1])
    assert url == f"http://127.0.0.1:{port}"
    assert port > 0

    (first,) = listeners.for_slot(0)
    (second,) = listeners.for_slot(1)
    assert first is not second
    for sock in (first, second):
        assert sock.getsockname() == ("127.0.0.1", port)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert not sock.getblocking()
    assert listeners.for_slot(0) == [first]  # created once per slot
    assert listeners.slots() == [0, 1]
    assert accept_on_any([first, second], port) in (first, second)


def test_close_slot_closes_only_that_slot(opened: list[Listeners]) -> None:
    listeners = listen(opened, Bind("tcp", host="127.0.0.1", port=0))
    (first,) = listeners.for_slot(0)
    (second,) = listeners.for_slot(1)
    listeners.close_slot(0)
    assert first.fileno() == -1
    assert second.fileno() != -1
    assert listeners.slots() == [1]
    listeners.close()
    assert second.fileno() == -1


def test_port_held_by_a_plain_listener() -> None:
    with socket.socket() as holder:
        port = held_tcp_port(holder)
        message = bind_error(Bind("tcp", host="127.0.0.1", port=port))
    assert message == (
        f"bind: 127.0.0.1:{port} is already in use; stop the other server or choose another port"
    )


def test_port_held_by_another_reuse_port_server() -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        port = held_tcp_port(holder)
        assert "is already in use" in bind_error(Bind("tcp", host="127.0.0.1", port=port))


def test_ipv6_loopback(opened: list[Listeners]) -> None:
    listeners = listen(opened, Bind("tcp", host="::1", port=0))
    (url,) = listeners.urls()
    assert url.startswith("http://[::1]:")
    port = int(url.rsplit(":", 1)[1])
    (sock,) = listeners.for_slot(0)
    assert sock.family == socket.AF_INET6
    assert sock.getsockname()[:2] == ("::1", port)
    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1


# --- Unix sockets -------------------------------------------------------------------------------


def test_unix_socket_created_shared_and_removed(opened: list[Listeners], short_dir: Path) -> None:
    path = short_dir / "hb.sock"
    listeners = listen(opened, Bind("unix", path=str(path)))
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    assert listeners.urls() == [f"unix:{path}"]
    (first,) = listeners.for_slot(0)
    (second,) = listeners.for_slot(1)
    assert first is second  # a Unix socket cannot be split between workers
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))
    listeners.close_slot(0)
    assert first.fileno() != -1  # shared sockets live until the listeners close
    listeners.close()
    assert first.fileno() == -1
    assert not path.exists()


def test_stale_unix_socket_is_replaced(opened: list[Listeners], short_dir: Path) -> None:
    path = short_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as dead_server:
        dead_server.bind(str(path))
    assert path.exists()  # a server that died leaves its socket file behind
    listeners = listen(opened, Bind("unix", path=str(path)))
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))
    (sock,) = listeners.for_slot(0)
    conn, _ = sock.accept()
    conn.close()


def test_live_unix_socket_is_refused(short_dir: Path) -> None:
    path = short_dir / "live.sock"
    with socket.socket(socket.AF_UNIX) as live_server:
        live_server.bind(str(path))
        live_server.listen(1)
        assert (
            bind_error(Bind("unix", path=str(path))) == f"bind: {path} is in use by another server"
        )
        # the other server keeps its socket
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
    path.unlink()


def test_regular_file_at_the_path_is_refused(short_dir: Path) -> None:
    path = short_dir / "data.txt"
    path.write_text("precious")
    message = bind_error(Bind("unix", path=str(path)))
    assert message == f"bind: {path} exists and is not a socket; refusing to replace it"
    assert path.read_text() == "precious"


def test_failure_closes_what_was_already_opened(short_dir: Path) -> None:
    path = short_dir / "first.sock"
    with socket.socket() as holder:
        port = held_tcp_port(holder)
        bind_error(Bind("unix", path=str(path)), Bind("tcp", host="127.0.0.1", port=port))
    assert not path.exists()


# --- inherited file descriptors -----------------------------------------------------------------


def test_fd_wraps_an_inherited_socket(opened: list[Listeners]) -> None:
    inherited = socket.socket()
    port = held_tcp_port(inherited)
    fd = inherited.detach()  # from now on the listeners own the descriptor
    listeners = listen(opened, Bind("fd", fd=fd))
    assert listeners.urls() == [f"fd://{fd}"]
    (first,) = listeners.for_slot(0)
    (second,) = listeners.for_slot(1)
    assert first is second
    assert first.fileno() == fd
    assert first.getsockname() == ("127.0.0.1", port)
    assert not first.getblocking()
    assert accept_on_any([first], port) is first
    listeners.close()
    assert first.fileno() == -1


def test_fd_that_is_not_a_socket() -> None:
    read_fd, write_fd = os.pipe()
    try:
        message = bind_error(Bind("fd", fd=read_fd))
        assert message.startswith(f"bind: fd://{read_fd} is not an open socket")
    finally:
        os.close(read_fd)
        os.close(write_fd)
