"""The state store's life cycle inside a hornbeam server, as the arbiter and workers see it.

The arbiter calls `StateRuntime.create()` before forking any worker, `worker_exited()`
after reaping any worker, `sweep_expired()` about once a second and `close()` on a full
stop; each worker calls `worker_attach()` right after it is forked. The arbiter may fork
at any time in between: no store handle crosses a fork (see `backends.lmdb`).
"""

from __future__ import annotations

import os

from hornbeam.state.api import SharedBackend, StoreLimits
from hornbeam.state.backends import open_shared_backend
from hornbeam.state.facade import install_default, uninstall_default


class StateRuntime:
    """The shared store of one server: created in the arbiter, attached in each worker."""

    run_dir: str

    def __init__(self, shared: SharedBackend) -> None:
        self._shared = shared
        self.run_dir = shared.location
        self._owner_pid = os.getpid()
        self._closed = False

    @classmethod
    def create(
        cls, backend: str, state_path: str | None, *, limits: StoreLimits | None = None
    ) -> StateRuntime:
        """Set up the store named by `backend` (the `state_backend` setting) in the arbiter.

        `local` is the LMDB store, in `state_path` if given (its data then outlives the
        server) or else in a private directory on tmpfs. The arbiter's own handle becomes
        its default, so app code run there under `preload_app` writes to the shared store.
        Raises ConfigError for a backend this build does not have, StateError if the
        store cannot be opened.
        """
        runtime = cls(open_shared_backend(backend, state_path, limits))
        install_default(runtime._shared.arbiter_store, reopen=runtime._shared.open_store)
        return runtime

    def worker_attach(self) -> None:
        """In a worker right after fork: open this process's own handle and make it the
        default handle of `hornbeam_erlang` / `hornbeam.state`."""
        install_default(self._shared.open_store(), reopen=self._shared.open_store)

    def worker_exited(self) -> int:
        """In the arbiter after reaping a worker: free the reader slots of dead processes
        (a reader killed mid-read would otherwise stop LMDB from reusing pages); return
        how many were freed."""
        return self._shared.check_readers()

    def sweep_expired(self) -> int:
        """In the arbiter about once a second: delete expired keys; return how many."""
        return self._shared.arbiter_store.sweep_expired()

    def close(self) -> None:
        """In the arbiter on a full stop: close the store, and delete its data unless a
        `state_path` was given. Idempotent; in a forked child it only drops handles."""
        if self._closed:
            return
        self._closed = True
        uninstall_default(self._shared.arbiter_store)
        if os.getpid() == self._owner_pid:
            self._shared.close()
        else:
            self._shared.arbiter_store.close()
