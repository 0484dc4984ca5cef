"""Shared state (SPEC section 4), importable as `hornbeam.state` and as `hornbeam_erlang`.

The module-level calls (`state_get`, `state_incr`, ..., and the aliases `get`, `set`,
`delete`, `incr`, `decr`) act on the process default handle, `default_store()`.
Handles are `StateStore` objects; a server manages its shared store with `StateRuntime`.
"""

from hornbeam.state.api import StateError, StateFullError, StateStore, StoreLimits
from hornbeam.state.backends.lmdb import LmdbStore
from hornbeam.state.backends.memory import MemoryStore
from hornbeam.state.codec import Key, Value
from hornbeam.state.facade import (
    decr,
    default_store,
    delete,
    get,
    incr,
    set,
    state_add,
    state_clear,
    state_compare_and_set,
    state_decr,
    state_delete,
    state_delete_if,
    state_get,
    state_get_multi,
    state_incr,
    state_incr_float,
    state_keys,
    state_set,
    state_set_multi,
    state_size,
    state_touch,
    state_ttl,
)
from hornbeam.state.runtime import StateRuntime

__all__ = [
    "Key",
    "LmdbStore",
    "MemoryStore",
    "StateError",
    "StateFullError",
    "StateRuntime",
    "StateStore",
    "StoreLimits",
    "Value",
    "decr",
    "default_store",
    "delete",
    "get",
    "incr",
    "set",
    "state_add",
    "state_clear",
    "state_compare_and_set",
    "state_decr",
    "state_delete",
    "state_delete_if",
    "state_get",
    "state_get_multi",
    "state_incr",
    "state_incr_float",
    "state_keys",
    "state_set",
    "state_set_multi",
    "state_size",
    "state_touch",
    "state_ttl",
]
