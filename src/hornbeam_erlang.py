"""Hornbeam's Python API under its original module name, so Hornbeam apps run unchanged.

Shared state (SPEC section 4): every call acts on the process default state handle; see
`hornbeam.state`. The functions are the very objects of `hornbeam.state`, so importing
them from here adds nothing to a call. Pub/sub (`publish`, `subscribe`) goes through the
arbiter's broker under hornbeam, and stays within the process elsewhere.
"""

from hornbeam.pubsub.client import publish, publish_async, subscribe
from hornbeam.state import (
    decr,
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

__all__ = [
    "decr",
    "delete",
    "get",
    "incr",
    "publish",
    "publish_async",
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
    "subscribe",
]
