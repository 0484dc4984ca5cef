"""The registry of state backends: the one place that maps a `state_backend` value to code.

`state_backend` is `local` (or its alias `lmdb`: one machine, embedded) or a URL whose
scheme names the backend (`redis://...`, `unix://...` for cluster mode). A new backend
registers a factory under its scheme; the runtime and the facade never name backends.
"""

from __future__ import annotations

from collections.abc import Callable

from hornbeam.errors import ConfigError
from hornbeam.state.api import SharedBackend, StoreLimits
from hornbeam.state.backends.lmdb import LmdbSharedState

# A factory gets the state_backend value, the state_path setting and the size limits.
SharedBackendFactory = Callable[[str, str | None, StoreLimits], SharedBackend]

LOCAL = "local"
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


def _open_local(spec: str, state_path: str | None, limits: StoreLimits) -> SharedBackend:
    return LmdbSharedState(state_path, limits)


_factories: dict[str, SharedBackendFactory] = {LOCAL: _open_local, "lmdb": _open_local}


def register_shared_backend(scheme: str, factory: SharedBackendFactory) -> None:
    """Make `state_backend` values with this scheme (or equal to it) use `factory`."""
    _factories[scheme.lower()] = factory


def backend_scheme(spec: str) -> str:
    """The registry name of a `state_backend` value: a URL's scheme, else the value."""
    scheme, separator, _rest = spec.partition("://")
    return (scheme if separator else spec).strip().lower()


def open_shared_backend(
    spec: str, state_path: str | None, limits: StoreLimits | None = None
) -> SharedBackend:
    """The shared store a `state_backend` value names, created in the calling process."""
    scheme = backend_scheme(spec)
    factory = _factories.get(scheme)
    if factory is None:
        if scheme in REDIS_SCHEMES:
            raise ConfigError("state_backend: redis is not available yet")
        raise ConfigError(
            f"state_backend: unknown backend {spec!r}; use 'local' (one machine) or a "
            "redis://host:port/db URL (cluster)"
        )
    return factory(spec, state_path, limits or StoreLimits())
