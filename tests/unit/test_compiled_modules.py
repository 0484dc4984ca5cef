"""A source checkout refuses to run compiled modules older than their sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hornbeam.compiled import refuse_stale_compiled_modules

COMPILED = "parser.cpython-311-x86_64-linux-gnu.so"


def checkout(root: Path, with_setup: bool = True) -> Path:
    package = root / "src" / "hornbeam" / "http1"
    package.mkdir(parents=True)
    if with_setup:
        (root / "setup.py").write_text("")
    (package / "parser.py").write_text("")
    (package / COMPILED).write_bytes(b"")
    return root / "src" / "hornbeam"


def age(path: Path, seconds: float) -> None:
    stamp = path.stat().st_mtime - seconds
    os.utime(path, (stamp, stamp))


def test_a_source_edited_after_compiling_is_refused(tmp_path: Path) -> None:
    package = checkout(tmp_path)
    age(package / "http1" / COMPILED, 60)
    with pytest.raises(ImportError, match=r"parser\.py changed after it was compiled"):
        refuse_stale_compiled_modules(package)


def test_a_fresh_build_passes(tmp_path: Path) -> None:
    package = checkout(tmp_path)
    age(package / "http1" / "parser.py", 60)
    refuse_stale_compiled_modules(package)


def test_an_installed_package_is_not_checked(tmp_path: Path) -> None:
    package = checkout(tmp_path, with_setup=False)
    age(package / "http1" / COMPILED, 60)
    refuse_stale_compiled_modules(package)


@pytest.mark.parametrize("source", ["_lmdb.c", "_lmdb_txn.c", "_lmdb.h"])
def test_a_c_source_edited_after_compiling_is_refused(tmp_path: Path, source: str) -> None:
    package = tmp_path / "src" / "hornbeam" / "state"
    package.mkdir(parents=True)
    (tmp_path / "setup.py").write_text("")
    built = package / "_lmdb.cpython-311-x86_64-linux-gnu.so"
    built.write_bytes(b"")
    (package / source).write_text("")
    age(built, 60)
    with pytest.raises(ImportError, match=rf"{source} changed after it was compiled"):
        refuse_stale_compiled_modules(tmp_path / "src" / "hornbeam")
