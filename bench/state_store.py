"""The shared store as both state benchmarks (state.py, asgi_state.py) measure it.

Owns setting up the real store (LMDB on tmpfs) the way the arbiter does and closing it, the
value the benchmarks store, and the LMDB versions their reports name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lmdb

from hornbeam.state import StateRuntime
from hornbeam.state.backends.lmdb_binding import DEFAULT

# a small session-like dict: what an app typically keeps in shared state
VALUE: dict[str, Any] = {"user": 42, "name": "ada", "roles": ["admin", "ops"]}


@contextmanager
def local_store() -> Iterator[StateRuntime]:
    """This process as the arbiter of a store on this machine; closed on the way out."""
    runtime = StateRuntime.create("local", None)
    try:
        yield runtime
    finally:
        runtime.close()


def lmdb_versions() -> str:
    """The binding the store uses, and the LMDB library under it."""
    if DEFAULT.name == "py-lmdb":
        return f"LMDB {'.'.join(map(str, lmdb.version()))} (py-lmdb {lmdb.__version__})"
    from hornbeam.state import _lmdb

    return f"LMDB {'.'.join(map(str, _lmdb.version()))} (hornbeam's binding, holding the GIL)"
