"""The process default state handle, and the module-level state calls made on it.

`hornbeam_erlang` and `hornbeam.state` export these functions. Each one is a single call
on the default handle: the handle a hornbeam worker attached (the shared store), or
else an in-process `MemoryStore` created on first use, so the same app code also runs
in a test, a script, or under another server. After a fork the child forgets the
parent's handle; if the parent was attached to a shared store, the child opens its own
handle on that store on first use, otherwise it starts a fresh in-process store.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hornbeam.state.api import StateStore
from hornbeam.state.backends.memory import MemoryStore
from hornbeam.state.codec import Key, Value

_default: StateStore | None = None
# How to open a handle on the shared store in a process forked from an attached one.
_reopen: Callable[[], StateStore] | None = None
_default_lock = threading.Lock()


def default_store() -> StateStore:
    """The state handle of this process (created on first use)."""
    global _default
    store = _default
    if store is not None:
        return store
    with _default_lock:
        if _default is None:
            _default = _reopen() if _reopen is not None else MemoryStore()
        return _default


def install_default(store: StateStore, reopen: Callable[[], StateStore] | None) -> None:
    """Make `store` this process's default handle; `reopen` opens one in a forked child."""
    global _default, _reopen
    with _default_lock:
        _default, _reopen = store, reopen


def uninstall_default(store: StateStore) -> None:
    """Forget `store` as the default handle (the next use starts an in-process store)."""
    global _default, _reopen
    with _default_lock:
        if _default is store:
            _default, _reopen = None, None


def _forget_after_fork() -> None:
    global _default, _default_lock
    _default = None
    _default_lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_forget_after_fork)


def state_get(key: Key) -> Any:
    """The value of `key`, or None (see `StateStore.get`)."""
    return (_default or default_store()).get(key)


def state_set(key: Key, value: Value, ttl: float | None = None) -> None:
    """Store `value` under `key`, with an optional time to live in seconds."""
    (_default or default_store()).set(key, value, ttl)


def state_delete(key: Key) -> bool:
    """Remove `key`; a missing key is a no-op."""
    return (_default or default_store()).delete(key)


def state_incr(key: Key, delta: int = 1, ttl: float | None = None) -> int:
    """Atomically add `delta` to an int counter (missing starts at 0) and return it."""
    return (_default or default_store()).incr(key, delta, ttl)


def state_decr(key: Key, delta: int = 1, ttl: float | None = None) -> int:
    """`state_incr(key, -delta, ttl)`."""
    return (_default or default_store()).decr(key, delta, ttl)


def state_incr_float(key: Key, delta: float, ttl: float | None = None) -> float:
    """Atomically add `delta` to a number (missing starts at 0.0) and return the float."""
    return (_default or default_store()).incr_float(key, delta, ttl)


def state_get_multi(keys: Iterable[Key]) -> dict[Key, Any]:
    """A dict of the keys among `keys` that exist."""
    return (_default or default_store()).get_multi(keys)


def state_set_multi(mapping: Mapping[Key, Value], ttl: float | None = None) -> None:
    """Store every item of `mapping` in one atomic step."""
    (_default or default_store()).set_multi(mapping, ttl)


def state_keys(prefix: Key | None = None) -> list[str]:
    """The keys starting with `prefix` (all keys when None), in any order."""
    return (_default or default_store()).keys(prefix)


def state_clear(prefix: Key | None = None) -> int:
    """Remove the keys starting with `prefix` (all when None); return how many there were."""
    return (_default or default_store()).clear(prefix)


def state_size() -> int:
    """How many keys the store holds."""
    return (_default or default_store()).size()


def state_add(key: Key, value: Value, ttl: float | None = None) -> bool:
    """Atomically store `value` only if `key` is absent; True if stored."""
    return (_default or default_store()).add(key, value, ttl)


def state_ttl(key: Key) -> float | None:
    """Seconds before `key` expires; None if it has no expiry or is missing."""
    return (_default or default_store()).ttl(key)


def state_touch(key: Key, ttl: float | None) -> bool:
    """Change only the expiry of `key`; False if it is missing."""
    return (_default or default_store()).touch(key, ttl)


def state_compare_and_set(key: Key, expected: Value, new: Value, ttl: float | None = None) -> bool:
    """Atomically store `new` only if the value of `key` equals `expected`."""
    return (_default or default_store()).compare_and_set(key, expected, new, ttl)


def state_delete_if(key: Key, expected: Value) -> bool:
    """Atomically remove `key` only if its value equals `expected`."""
    return (_default or default_store()).delete_if(key, expected)


# Hornbeam's short names.
get = state_get
set = state_set
delete = state_delete
incr = state_incr
decr = state_decr
