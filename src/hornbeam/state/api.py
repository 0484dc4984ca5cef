"""The contract of the shared state store: the handle protocol every backend implements.

SPEC section 4 in code. `StateStore` is what applications and the `hornbeam_erlang` facade
call; `SharedBackend` is the server-side owner of one store shared by every process of a
server (created in the arbiter, opened again in each worker). Backends live in
`hornbeam.state.backends` and are chosen by name through its registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hornbeam.errors import HornbeamError
from hornbeam.state.codec import Key, Value, int_delta

MIB = 1 << 20
GIB = 1 << 30


class StateError(HornbeamError):
    """The state store could not carry out a call for a reason other than bad arguments."""


class StateFullError(StateError):
    """The store reached its size limit; the call changed nothing."""


@dataclass(frozen=True)
class StoreLimits:
    """Size limits of a store that lives in a memory map (constructor arguments, not globals).

    `map_size` is the size mapped at first; it doubles whenever a write needs more, up to
    `max_size`, past which a write raises `StateFullError`. With a writable map the file is
    allocated over the whole map, so the first map is small: 32 MiB of tmpfs, which even
    Docker's 64 MB /dev/shm holds.
    """

    map_size: int = 32 * MIB
    max_size: int = 16 * GIB

    def __post_init__(self) -> None:
        if self.map_size <= 0 or self.max_size < self.map_size:
            raise ValueError(
                f"state store limits: need 0 < map_size <= max_size, got map_size="
                f"{self.map_size} and max_size={self.max_size}"
            )


class StateStore(ABC):
    """A handle on a key/value store with the semantics of SPEC section 4.

    Every method is atomic and safe to call from any thread. Keys are `str`, or `bytes`
    naming the same key as their UTF-8 str; `keys()` always gives str. Values are copied
    in and out as data (see `Value`); anything else raises `TypeError` at write time.
    A key whose time to live has passed is absent for every call, swept or not.
    `ttl` arguments are seconds (int or float > 0); `None` means no expiry.
    """

    @abstractmethod
    def get(self, key: Key) -> Any:
        """The value of `key`, or None when it is missing or expired."""

    @abstractmethod
    def set(self, key: Key, value: Value, ttl: float | None = None) -> None:
        """Store `value` under `key`, replacing any value and expiry it had."""

    @abstractmethod
    def delete(self, key: Key) -> bool:
        """Remove `key`; True if a live key was removed (a missing key is a no-op)."""

    @abstractmethod
    def incr(self, key: Key, delta: int = 1, ttl: float | None = None) -> int:
        """Add `delta` to the int under `key` and return the result.

        A missing or expired key starts at 0, and only then does `ttl` apply (set in the
        same atomic step, for fixed-window rate limits); an existing key keeps its expiry.
        A stored value that is not an int, or a `delta` that is not an int (bool is not),
        raises TypeError naming the key. A result outside the signed 64-bit range raises
        OverflowError and leaves the value unchanged.
        """

    def decr(self, key: Key, delta: int = 1, ttl: float | None = None) -> int:
        """`incr(key, -delta, ttl)`."""
        return self.incr(key, -int_delta("decr", key, delta), ttl)

    @abstractmethod
    def incr_float(self, key: Key, delta: float, ttl: float | None = None) -> float:
        """Add `delta` to the int or float under `key` and return the float result.

        A missing or expired key starts at 0.0; `ttl` applies as in `incr`.
        """

    @abstractmethod
    def get_multi(self, keys: Iterable[Key]) -> dict[Key, Any]:
        """The live keys among `keys`, each mapped to its value, read in one snapshot."""

    @abstractmethod
    def set_multi(self, mapping: Mapping[Key, Value], ttl: float | None = None) -> None:
        """Store every item of `mapping` in one atomic step (all or nothing)."""

    @abstractmethod
    def keys(self, prefix: Key | None = None) -> list[str]:
        """The live keys (as str) that start with `prefix`, in no particular order."""

    @abstractmethod
    def clear(self, prefix: Key | None = None) -> int:
        """Remove every key starting with `prefix` (all keys when None); how many were live."""

    @abstractmethod
    def size(self) -> int:
        """How many live keys the store holds."""

    @abstractmethod
    def add(self, key: Key, value: Value, ttl: float | None = None) -> bool:
        """Store `value` only if `key` is missing or expired; True if it was stored."""

    @abstractmethod
    def ttl(self, key: Key) -> float | None:
        """Seconds left before `key` expires; None if it has no expiry or is missing."""

    @abstractmethod
    def touch(self, key: Key, ttl: float | None) -> bool:
        """Change only the expiry of a live key (None removes it); False if it is missing."""

    @abstractmethod
    def compare_and_set(
        self, key: Key, expected: Value, new: Value, ttl: float | None = None
    ) -> bool:
        """Store `new` (with `ttl`, as `set` does) only if the live value equals `expected`.

        Values compare as they read back (a tuple equals the list it is stored as). A
        missing key never matches, not even `expected=None`: create keys with `add`.
        """

    @abstractmethod
    def delete_if(self, key: Key, expected: Value) -> bool:
        """Remove `key` only if its live value equals `expected` (compared as above)."""

    @abstractmethod
    def sweep_expired(self) -> int:
        """Delete expired keys to reclaim their space; return how many were deleted."""

    @abstractmethod
    def close(self) -> None:
        """Release what the handle holds in this process. Idempotent."""


class SharedBackend(ABC):
    """One store shared by every process of a server, owned by the arbiter.

    Created in the arbiter before any fork; `open_store()` gives the calling process its
    own handle, so a forked worker never uses a handle of its parent.
    """

    location: str

    @abstractmethod
    def open_store(self) -> StateStore:
        """A new handle for the calling process, ready to use."""

    @property
    @abstractmethod
    def arbiter_store(self) -> StateStore:
        """The handle the arbiter itself uses (sweeps, and app code run under preload)."""

    @abstractmethod
    def check_readers(self) -> int:
        """Free what dead processes left behind; return how many leftovers were freed."""

    @abstractmethod
    def close(self) -> None:
        """Close the arbiter's handle and delete the data unless it is meant to persist."""
