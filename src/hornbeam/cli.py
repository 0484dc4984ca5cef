"""The ``hornbeam`` command: parse the command line, then run the server until it stops.

Returns the process exit status (see errors.py): 0 after a clean stop, 2 for a bad setting or
command line, and the code of any other HornbeamError raised while serving.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from hornbeam.config import describe
from hornbeam.config.command_line import parse_command_line
from hornbeam.config.sources import load_command_line
from hornbeam.errors import ConfigError, HornbeamError


def main(argv: list[str] | None = None) -> int:
    """Run ``hornbeam`` with ``argv`` (default: sys.argv without the program name)."""
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except HornbeamError as exc:
        print(f"hornbeam: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0


def _run(arguments: Sequence[str]) -> int:
    try:
        command_line = parse_command_line(arguments)
    except SystemExit as exit:  # --help or --version, already printed by argparse
        return exit.code if isinstance(exit.code, int) else 0
    settings = load_command_line(command_line, os.environ)
    if command_line.print_config:
        print(describe(settings))
        return 0
    if not settings.app:
        raise ConfigError(
            "no application given: name it as APP_SPEC, e.g. hornbeam app:application "
            "(or set HORNBEAM_APP, or app in hornbeam.toml)"
        )
    from hornbeam.arbiter import serve  # the server itself, imported only when there is one to run

    serve(settings)
    return 0
