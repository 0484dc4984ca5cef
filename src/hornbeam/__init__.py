"""hornbeam: a pre-fork WSGI/ASGI server whose workers share state."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hornbeam.compiled import refuse_stale_compiled_modules

__version__ = "0.1.0"


refuse_stale_compiled_modules(Path(__file__).resolve().parent)

from hornbeam.config import Settings  # noqa: E402 (after the check: it imports compiled modules)

__all__ = ["Settings", "__version__", "start"]


def start(app_spec: str, options: Mapping[str, object] | None = None) -> None:
    """Serve ``app_spec`` until stopped, like Hornbeam's ``hornbeam:start(AppSpec, Opts)``.

    ``options`` uses Hornbeam's names, with durations in milliseconds. Raises a HornbeamError
    (ConfigError, AppLoadError, BindError, ...) when the server cannot run.
    """
    import os

    from hornbeam.arbiter import serve
    from hornbeam.config import from_start_options

    serve(from_start_options(app_spec, options or {}, os.environ))
