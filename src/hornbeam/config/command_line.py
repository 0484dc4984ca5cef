"""The ``hornbeam`` command line, generated from the setting declarations.

Each setting gets ``--<name>`` plus the spellings its declaration adds (``-w``, gunicorn's
``--preload`` ...). Values are kept as the user typed them: sources.py parses them like the
values of every other source, so an error reads the same wherever the value came from.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from hornbeam.config.settings import DECLARATIONS, Declaration, env_var, shown_default
from hornbeam.errors import ConfigError

_USAGE = "hornbeam [OPTIONS] APP_SPEC"
_DESCRIPTION = (
    "Serve a WSGI or ASGI app with pre-forked workers that share state. Every option can also "
    "be set as HORNBEAM_<NAME> in the environment or as <name> in hornbeam.toml; "
    "durations are seconds (30, 2.5) or 500ms, 30s, 2m; sizes are bytes or 512MiB, 1GB."
)


@dataclass(frozen=True)
class CommandLine:
    """What the command line asked for: raw setting values by name, and the actions."""

    values: Mapping[str, object]
    config_file: str | None = None
    print_config: bool = False

    def flag_of(self, name: str) -> str:
        """How an error message names the option that gave setting ``name``."""
        declaration = DECLARATIONS[name]
        return declaration.positional or long_flag(name)


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors raised as ConfigError instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def long_flag(name: str) -> str:
    """The ``--long-form`` command-line flag of setting ``name``."""
    return "--" + name.replace("_", "-")


def _help(name: str, declaration: Declaration) -> str:
    text = f"{declaration.help} [default: {shown_default(name)}; env {env_var(name)}]"
    return text.replace("%", "%%")  # argparse %-formats help strings


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``hornbeam``; --help and --version exit, as usual with argparse."""
    from hornbeam import __version__  # here, not at import: hornbeam/__init__ imports config

    parser = _Parser(
        prog="hornbeam",
        usage=_USAGE,
        description=_DESCRIPTION,
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    parser.add_argument("-v", "--version", action="version", version=f"hornbeam {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        dest="config_file",
        metavar="FILE",
        help="Config file: .toml, or a gunicorn-style .py whose module-level names are "
        "settings [default: hornbeam.toml if present; env HORNBEAM_CONFIG]",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="Print every setting with its value and where it came from, then exit.",
    )
    sections: dict[str, argparse._ArgumentGroup] = {}
    for name, declaration in DECLARATIONS.items():
        if declaration.section not in sections:
            sections[declaration.section] = parser.add_argument_group(declaration.section)
        group = sections[declaration.section]
        form = declaration.form
        if declaration.positional:
            group.add_argument(
                name, nargs="?", metavar=declaration.positional, help=_help(name, declaration)
            )
            continue
        flags = sorted((long_flag(name), *declaration.flags), key=lambda flag: flag[:2] == "--")
        if form.is_switch:
            action: str | type[argparse.Action] = argparse.BooleanOptionalAction
            group.add_argument(*flags, dest=name, action=action, help=_help(name, declaration))
        else:
            action = "append" if form.repeatable else "store"
            group.add_argument(
                *flags,
                dest=name,
                action=action,
                metavar=form.metavar,
                help=_help(name, declaration),
            )
    return parser


def parse_command_line(argv: Sequence[str]) -> CommandLine:
    """Split ``argv`` (without the program name) into raw setting values and actions.

    Raises ConfigError for an unknown option or a missing option value.
    """
    parser = build_parser()
    namespace, extra = parser.parse_known_args(list(argv))
    if extra:
        raise ConfigError(_explain_extra(parser, extra))
    given = vars(namespace)
    return CommandLine(
        values={name: given[name] for name in DECLARATIONS if name in given},
        config_file=given.get("config_file"),
        print_config=given.get("print_config", False),
    )


def _explain_extra(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    options = [argument for argument in extra if argument.startswith("-")]
    if not options:
        return f"unexpected argument {extra[0]!r}: only one APP_SPEC can be given"
    unknown = options[0].split("=", 1)[0]
    known = [flag for action in parser._actions for flag in action.option_strings]
    close = difflib.get_close_matches(unknown, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else "; see hornbeam --help"
    return f"unknown option {unknown}{hint}"
