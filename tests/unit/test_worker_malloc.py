"""Workers cap glibc's malloc arenas (memory freed by one app thread stays usable by all)."""

from __future__ import annotations

import platform

import pytest

from hornbeam.worker.process import limit_malloc_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the arena cap is glibc's")
def test_arena_cap_is_accepted_by_glibc() -> None:
    assert limit_malloc_arenas() is True
