"""A per-process dict standing in for hornbeam's shared state, for the peer servers only.

bench/peers.py puts this directory first on PYTHONPATH when it runs the Flask demo under
gunicorn or granian, which have no shared state: each worker counts on its own. Hornbeam
runs the same app with the real ``hornbeam_erlang`` module. Only the functions the demo
calls are here, with the real module's semantics (missing counters start at 0).
"""

from __future__ import annotations

import threading
from typing import Any

_MISSING = object()
_values: dict[str, Any] = {}
_lock = threading.Lock()  # gthread runs the app on many threads; counters must stay exact


def state_get(key: str) -> Any:
    """The value of `key`, or None."""
    return _values.get(key)


def state_set(key: str, value: Any, ttl: float | None = None) -> None:
    """Store `value` under `key` (the time to live is accepted and ignored)."""
    _values[key] = value


def state_incr(key: str, delta: int = 1, ttl: float | None = None) -> int:
    """Add `delta` to the counter `key` (missing starts at 0) and return the new value."""
    with _lock:
        value = int(_values.get(key, 0)) + delta
        _values[key] = value
        return value


def state_delete(key: str) -> bool:
    """Remove `key`; say whether it was there."""
    with _lock:
        return _values.pop(key, _MISSING) is not _MISSING


def state_keys(prefix: str | None = None) -> list[str]:
    """The keys starting with `prefix` (all keys when None)."""
    return [key for key in list(_values) if prefix is None or key.startswith(prefix)]
