"""The in-process state store: a dict of encoded records behind a lock.

Used when an app runs outside a hornbeam server (a test, a script, gunicorn, `flask run`),
where there are no other workers to share with. Records are kept encoded exactly as the
shared stores keep them, so values are copies and every rule (types, int range, expiry)
is the same as under hornbeam.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from hornbeam.state.codec import RECORD_HEADER
from hornbeam.state.records import Body, Clock, P, RecordStore, RecordTxn, T

# Expired records are dropped by a sweep that runs on a write at most once per interval.
# The interval grows with the store (one second per 50,000 keys) so that the sweep, which
# looks at every key, costs about the same small share of time at any size.
SWEEP_INTERVAL = 1.0
KEYS_PER_SWEEP_SECOND = 50_000


class _Records(dict[bytes, bytes]):
    """The records, with the transaction methods the calls use."""

    def put(self, key: bytes, value: bytes, /) -> bool:
        self[key] = value
        return True

    def delete(self, key: bytes, /) -> bool:
        return self.pop(key, None) is not None


class MemoryStore(RecordStore):
    """A thread-safe `StateStore` private to this process."""

    def __init__(self, clock: Clock = time.time) -> None:
        super().__init__(clock)
        self._records = _Records()
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL

    def _read(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            return body(self._records, *args, **kwargs)

    def _write(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            if time.monotonic() >= self._next_sweep:
                self._sweep_locked()
            return body(self._records, *args, **kwargs)

    def _scan(self, txn: RecordTxn, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return (
            (key, record) for key, record in list(self._records.items()) if key.startswith(prefix)
        )

    def sweep_expired(self) -> int:
        with self._lock:
            return self._sweep_locked()

    def _sweep_locked(self) -> int:
        now = self._clock()
        expired = [
            key
            for key, record in self._records.items()
            if 0 < RECORD_HEADER.unpack_from(record)[0] <= now
        ]
        for key in expired:
            del self._records[key]
        pause = max(SWEEP_INTERVAL, len(self._records) / KEYS_PER_SWEEP_SECOND)
        self._next_sweep = time.monotonic() + pause
        return len(expired)

    def close(self) -> None:
        """Drop every record (the data of an in-process store goes with its handle)."""
        with self._lock:
            self._records.clear()
