"""Where settings come from, and how they become one Settings.

Two phases, as in uvicorn: first every source hands over raw values with where they came from
(defaults < config file < environment < command line, or < start() dict); then each winning
value is parsed by its setting's form. An error names the setting, the source, the bad value
and the accepted form, on one line.
"""

from __future__ import annotations

import difflib
import inspect
import os
import runpy
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from hornbeam.config.command_line import CommandLine, parse_command_line
from hornbeam.config.settings import DECLARATIONS, Settings, default_value, env_var
from hornbeam.config.types import InvalidValue
from hornbeam.errors import ConfigError

CONFIG_FILE_ENV = "HORNBEAM_CONFIG"
DEFAULT_CONFIG_FILE = "hornbeam.toml"

# Every key a config file or the start() dict may use, and the setting it names.
_KEYS = {
    key: name for name, declaration in DECLARATIONS.items() for key in (name, *declaration.aliases)
}


@dataclass(frozen=True)
class Given:
    """A raw value of one setting, and where it was given."""

    raw: object
    origin: str  # as Settings.origin shows it
    where: str  # as an error message names the place
    in_start_units: bool = False  # from the start() dict: bare durations are milliseconds


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from the command line ``argv`` (without the program name), the environment and
    the config file. Raises ConfigError; --help and --version exit as argparse does."""
    return load_command_line(parse_command_line(argv), environ)


def load_command_line(
    command_line: CommandLine, environ: Mapping[str, str], launch_dir: Path | None = None
) -> Settings:
    """Settings from an already parsed command line (see load)."""
    launch_dir = launch_dir or Path.cwd()
    given = _from_config_file(command_line.config_file, environ, launch_dir)
    given |= _from_environ(environ)
    given |= {
        name: Given(raw, "command line", command_line.flag_of(name))
        for name, raw in command_line.values.items()
    }
    return _settings(
        given, launch_dir, partial(load_command_line, command_line, launch_dir=launch_dir)
    )


def from_start_options(
    app_spec: str, options: Mapping[str, object], environ: Mapping[str, str]
) -> Settings:
    """Settings for ``hornbeam.start(app_spec, options)``: keys and units are Hornbeam's
    (durations in milliseconds); defaults < config file < environment < options."""
    return _from_start_options(app_spec, MappingProxyType(dict(options)), environ, Path.cwd())


def _from_start_options(
    app_spec: str, options: Mapping[str, object], environ: Mapping[str, str], launch_dir: Path
) -> Settings:
    given = _from_config_file(None, environ, launch_dir)
    given |= _from_environ(environ)
    where = "start() options"
    for key, raw in options.items():
        name = _setting_for_key(key, where, exclude="app")
        if name in given and given[name].origin == "start()":
            raise ConfigError(f"{name}: given twice in {where} (as {name} and as an alias)")
        given[name] = Given(raw, "start()", f"{where} key {key!r}", in_start_units=True)
    given["app"] = Given(app_spec, "start()", "start()'s app_spec argument")
    reload = partial(_from_start_options, app_spec, options, launch_dir=launch_dir)
    return _settings(given, launch_dir, reload)


def _from_environ(environ: Mapping[str, str]) -> dict[str, Given]:
    given = {}
    for name in DECLARATIONS:
        variable = env_var(name)
        if variable in environ:
            given[name] = Given(environ[variable], f"env {variable}", variable)
    return given


def _from_config_file(
    explicit: str | None, environ: Mapping[str, str], launch_dir: Path
) -> dict[str, Given]:
    named = explicit or environ.get(CONFIG_FILE_ENV)
    if named:
        path = launch_dir / named
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist or is not a file")
    elif (launch_dir / DEFAULT_CONFIG_FILE).is_file():
        path = launch_dir / DEFAULT_CONFIG_FILE
    else:
        return {}
    path = path.resolve()
    if path.suffix == ".toml":
        entries = _read_toml(path)
    elif path.suffix == ".py":
        entries = _run_python(path)
    else:
        raise ConfigError(f"config file {str(path)!r} must end in .toml or .py")
    given: dict[str, Given] = {}
    for key, raw in entries.items():
        name = _setting_for_key(key, str(path))
        if name in given:
            raise ConfigError(f"{name}: given twice in {path} (as {name} and as an alias)")
        given[name] = Given(raw, f"file {path}", str(path))
    return given


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _run_python(path: Path) -> dict[str, Any]:
    """The settings of a gunicorn-style config file: its module-level names, except those
    starting with _ and imported modules and classes (helpers, not settings)."""
    try:
        namespace = runpy.run_path(str(path), run_name="__config__")
    except Exception as exc:
        summary = " ".join(str(exc).split())
        raise ConfigError(f"config file {path} failed: {type(exc).__name__}: {summary}") from exc
    return {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_") and not isinstance(value, ModuleType | type)
    }


def _setting_for_key(key: object, where: str, exclude: str | None = None) -> str:
    known = {alias: name for alias, name in _KEYS.items() if name != exclude}
    if isinstance(key, str) and key in known:
        return known[key]
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown setting {key!r} in {where}{hint}")


def _settings(
    given: Mapping[str, Given], launch_dir: Path, reload: Callable[[Mapping[str, str]], Settings]
) -> Settings:
    values: dict[str, Any] = {}
    imports_code = []
    for name, declaration in DECLARATIONS.items():
        if name not in given:
            values[name] = default_value(name)
        elif declaration.form.imports_code:
            imports_code.append(name)  # after pythonpath and chdir are known
        else:
            values[name] = _parse(name, given[name])
            if declaration.launch_relative and values[name] is not None:
                values[name] = os.path.join(launch_dir, values[name])
    if imports_code:
        app_dir = values["chdir"] or str(launch_dir)
        search = [app_dir, *(os.path.join(app_dir, entry) for entry in values["pythonpath"])]
        with _import_path(search):
            values |= {name: _parse(name, given[name]) for name in imports_code}
    origin = {name: given[name].origin if name in given else "default" for name in DECLARATIONS}
    return Settings(**values, origin=origin, _reload=reload)


def _parse(name: str, given: Given) -> Any:
    form = DECLARATIONS[name].form
    try:
        if given.in_start_units:
            return form.parse_start_option(given.raw)
        return form.parse(given.raw)
    except InvalidValue as exc:
        reason = f" ({exc.reason})" if exc.reason else ""
        message = f"{name}: {_shown(exc.value)} from {given.where} is not {exc.expected}{reason}"
        raise ConfigError(message) from None


def _shown(value: object) -> str:
    if callable(value):
        return f"{getattr(value, '__qualname__', type(value).__name__)}{_signature(value)}"
    return repr(value)


def _signature(function: Callable[..., object]) -> str:
    try:
        return str(inspect.signature(function))
    except (TypeError, ValueError):
        return "(...)"


@contextmanager
def _import_path(directories: list[str]) -> Iterator[None]:
    """Let hook modules be imported from the app's directories, then restore sys.path."""
    added = [directory for directory in directories if directory not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for directory in added:
            if directory in sys.path:
                sys.path.remove(directory)
