"""hornbeam: a pre-fork WSGI/ASGI server whose workers share state."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__version__ = "0.1.0"


def refuse_stale_compiled_modules(package: Path) -> None:
    """In a source checkout, a module compiled by setup.py shadows its ``.py``: once the
    source is edited, the old compiled code would still run, silently. Refuse to import and
    say how to rebuild instead."""
    if not (package.parent.name == "src" and (package.parent.parent / "setup.py").exists()):
        return  # an installed wheel: sources and compiled modules were installed together
    for directory, _, files in os.walk(package):
        for name in files:
            if not name.endswith(".so"):
                continue
            source = Path(directory, name.split(".", 1)[0] + ".py")
            if source.exists() and source.stat().st_mtime > Path(directory, name).stat().st_mtime:
                raise ImportError(
                    f"{source} changed after it was compiled; rebuild with "
                    "`python -m pip install -e .` (HORNBEAM_COMPILE=0 for pure Python)"
                )


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
