"""What the benchmark scripts' markdown reports are made of, so they read alike.

Owns the tables and the figures in them, the facts about the machine and the packages
measured, and saving a report under bench/results/.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def figure(value: float | None, digits: int = 1) -> str:
    """`value` with thousands separators, or a dash when it was not measured."""
    return "—" if value is None else f"{value:,.{digits}f}"


def machine_facts(packages: Sequence[str], tools: Sequence[str] = ()) -> list[str]:
    """The report's list of facts: CPUs and their model, kernel, Python, then `tools` (one
    fact each, such as the load generator's version), then the versions of `packages`."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?"
    )
    return [
        f"CPUs (nproc): {os.cpu_count()}, {model}",
        f"Kernel: {platform.system()} {platform.release()}",
        f"Python: {platform.python_version()} ({sys.executable})",
        *tools,
        f"Packages: {_package_versions(packages)}",
    ]


def machine_line(*facts: str) -> str:
    """The machine in one line: kernel, CPUs, Python, then `facts`, then the load average."""
    system = f"{platform.system()} {platform.release()}"
    python = f"Python {platform.python_version()}"
    load = f"load average at start {os.getloadavg()[0]:.2f}"
    return ", ".join([system, f"{os.cpu_count()} CPUs", python, *facts, load])


def _package_versions(packages: Sequence[str]) -> str:
    versions = []
    for package in packages:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return ", ".join(versions)


def save_report(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def print_report(lines: Sequence[str], path: Path | None) -> None:
    """Print the report; save it to `path` too unless that is None (--no-write)."""
    text = "\n".join(lines)
    print(text)
    if path is not None:
        save_report(path, text)
