"""The commands bench/README.md shows are ones the scripts accept (the runs themselves are
minutes long and machine-bound: they are taken by hand, never in the test suite)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
_BLOCK = re.compile(r"^```\w*\n(.*?)^```", re.S | re.M)


def _commands() -> list[list[str]]:
    commands = []
    for block in _BLOCK.findall((BENCH / "README.md").read_text()):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("python bench/"):
                commands.append(shlex.split(line)[1:])
    return commands


def _load(script: Path) -> ModuleType:
    existing = sys.modules.get(script.stem)
    if existing is not None and getattr(existing, "__file__", None) == str(script):
        return existing
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(script.stem, script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c))
def test_documented_command_parses(command: list[str]) -> None:
    script = BENCH.parent / command[0]
    assert script.is_file(), f"{command[0]} is documented but missing"
    module = _load(script)
    module.parse_args(command[1:])  # argparse exits (and fails the test) on a bad option


def test_every_script_named_in_the_readme_exists_and_answers_help() -> None:
    text = (BENCH / "README.md").read_text()
    for name in sorted(set(re.findall(r"bench/(\w+\.py)", text))):
        result = subprocess.run(
            [sys.executable, str(BENCH / name), "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, f"bench/{name} --help: {result.stderr}"
    assert (BENCH / "profile.sh").is_file()
