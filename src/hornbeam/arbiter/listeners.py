"""The listening sockets, owned by the arbiter and inherited by workers across fork.

TCP: one ``SO_REUSEPORT`` socket per worker *slot*, so the kernel spreads new connections
evenly over the workers (a shared socket lets the busiest worker take most of them). The
arbiter keeps every socket open, so connections queued on a slot survive the death or the
replacement of its worker: the next worker of that slot accepts them (no connection refused on
reload). Unix sockets and inherited file descriptors cannot be split: all slots share one.

Before creating reuse-port sockets the address is probed with a plain bind, so a port that is
already taken (even by another reuse-port server) is reported instead of silently shared.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Sequence

from hornbeam.config.types import Bind
from hornbeam.errors import BindError


class Listeners:
    def __init__(self, binds: Sequence[Bind], backlog: int) -> None:
        self._binds = list(binds)
        self._backlog = backlog
        self._resolved: list[tuple[int, str]] = []  # (family, host) per TCP bind
        self._ports: list[int] = []
        self._shared: dict[int, socket.socket] = {}  # bind index -> unix/fd socket
        self._slots: dict[int, list[socket.socket]] = {}
        self._unix_paths: list[str] = []

    def open(self) -> None:
        """Check every address and create the shared sockets; raises BindError."""
        try:
            for index, bind in enumerate(self._binds):
                if bind.kind == "tcp":
                    self._probe_tcp(bind)
                elif bind.kind == "unix":
                    self._shared[index] = self._open_unix(bind)
                else:
                    self._shared[index] = self._open_fd(bind)
        except BaseException:
            self.close()
            raise

    def urls(self) -> list[str]:
        out = []
        tcp = iter(zip(self._resolved, self._ports, strict=True))
        for bind in self._binds:
            if bind.kind == "tcp":
                (family, host), port = next(tcp)
                shown = f"[{host}]" if family == socket.AF_INET6 else host
                out.append(f"http://{shown}:{port}")
            else:
                out.append(str(bind))
        return out

    def for_slot(self, slot: int) -> list[socket.socket]:
        """The sockets a worker of ``slot`` serves (created on first use)."""
        sockets = self._slots.get(slot)
        if sockets is None:
            sockets = []
            tcp = iter(zip(self._resolved, self._ports, strict=True))
            for index, bind in enumerate(self._binds):
                if bind.kind == "tcp":
                    (family, host), port = next(tcp)
                    sockets.append(self._reuseport_socket(family, host, port))
                else:
                    sockets.append(self._shared[index])
            self._slots[slot] = sockets
        return sockets

    def keep_only_slot(self, slot: int) -> None:
        """In a freshly forked worker: close the inherited sockets of every other slot.

        Holding them would keep a slot's queue alive (and unserved) after its own worker
        and the arbiter have let go of it.
        """
        mine = {id(sock) for sock in self._slots.get(slot, [])}
        for other, sockets in self._slots.items():
            if other != slot:
                for sock in sockets:
                    if id(sock) not in mine:
                        sock.close()

    def slots(self) -> list[int]:
        return sorted(self._slots)

    def close_slot(self, slot: int) -> None:
        shared = set(self._shared.values())
        for sock in self._slots.pop(slot, []):
            if sock not in shared:
                sock.close()

    def close(self) -> None:
        for slot in list(self._slots):
            self.close_slot(slot)
        for sock in self._shared.values():
            sock.close()
        self._shared.clear()
        for path in self._unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._unix_paths.clear()

    # ---- TCP -----------------------------------------------------------------------------------
    def _probe_tcp(self, bind: Bind) -> None:
        assert bind.host is not None and bind.port is not None
        try:
            infos = socket.getaddrinfo(
                bind.host, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise BindError(f"bind: cannot resolve host {bind.host!r}: {exc.strerror}") from exc
        family, _, _, _, address = infos[0]
        host = str(address[0])
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind((host, bind.port))
            port = probe.getsockname()[1]
        except OSError as exc:
            raise BindError(_bind_failure(str(bind), exc)) from exc
        finally:
            probe.close()
        self._resolved.append((family, host))
        self._ports.append(port)

    def _reuseport_socket(self, family: int, host: str, port: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(self._backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise BindError(_bind_failure(f"{host}:{port}", exc)) from exc
        return sock

    # ---- unix and inherited ----------------------------------------------------------------------
    def _open_unix(self, bind: Bind) -> socket.socket:
        assert bind.path is not None
        path = bind.path
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise BindError(f"bind: {path} exists and is not a socket; refusing to replace it")
            if _unix_socket_in_use(path):
                raise BindError(f"bind: {path} is in use by another server")
            os.unlink(path)  # stale socket left by a server that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o660)
            sock.listen(self._backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise BindError(_bind_failure(str(bind), exc)) from exc
        self._unix_paths.append(path)
        return sock

    def _open_fd(self, bind: Bind) -> socket.socket:
        assert bind.fd is not None
        try:
            sock = socket.socket(fileno=bind.fd)
        except OSError as exc:
            raise BindError(f"bind: fd://{bind.fd} is not an open socket: {exc.strerror}") from exc
        sock.setblocking(False)
        return sock


def _unix_socket_in_use(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        try:
            client.connect(path)
        except OSError:
            return False
        return True


def _bind_failure(address: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"bind: {address} is already in use; stop the other server or choose another port"
    if exc.errno == errno.EACCES:
        return f"bind: permission denied for {address} (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"bind: {address} is not an address of this machine"
    return f"bind: cannot listen on {address}: {exc.strerror}"
