"""Keeps a source checkout from running compiled modules older than their sources.

setup.py compiles the request hot path with mypyc next to the ``.py`` files (and the LMDB
binding next to its ``_lmdb*.c`` and ``.h`` files), and Python imports the compiled module
first: once a source is edited, its old compiled code would still run, silently.
``hornbeam/__init__.py`` calls :func:`refuse_stale_compiled_modules` before anything else
of the package is imported. This module itself is never compiled.
"""

from __future__ import annotations

import os
from pathlib import Path


def refuse_stale_compiled_modules(package: Path) -> None:
    """Raise ImportError, saying how to rebuild, if a compiled module in the source checkout
    holding ``package`` is older than its ``.py`` source, or than a ``.c``/``.h`` file named
    after it (the sources of a C extension)."""
    if not (package.parent.name == "src" and (package.parent.parent / "setup.py").exists()):
        return  # an installed wheel: sources and compiled modules were installed together
    for directory, _, files in os.walk(package):
        for name in files:
            if not name.endswith(".so"):
                continue
            built = Path(directory, name).stat().st_mtime
            stem = name.split(".", 1)[0]
            c_sources = (f for f in files if f.startswith(stem) and f.endswith((".c", ".h")))
            for source in (Path(directory, stem + ".py"), *(Path(directory, f) for f in c_sources)):
                if source.exists() and source.stat().st_mtime > built:
                    raise ImportError(
                        f"{source} changed after it was compiled; rebuild with "
                        "`python -m pip install -e .` (HORNBEAM_COMPILE=0 for pure Python)"
                    )
