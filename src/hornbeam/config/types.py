"""Value forms of hornbeam settings: how each kind of value is parsed, checked and printed.

A form turns a raw value (text from the command line or the environment, or a native value from a
config file or the ``start()`` dict) into the typed value a ``Settings`` field holds, or raises
``InvalidValue`` naming the form it expected. It also prints a value back in a form it accepts,
for ``--print-config`` and the docs. ``Bind``, a parsed listening address, lives here too.
"""

from __future__ import annotations

import importlib
import inspect
import ipaddress
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Generic, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

_DEFAULT_HOST = "127.0.0.1"
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")


class InvalidValue(ValueError):
    """A raw value is not of the expected form; ``reason`` adds why, when the form is not enough."""

    def __init__(self, value: object, expected: str, reason: str | None = None) -> None:
        self.value = value
        self.expected = expected
        self.reason = reason
        super().__init__(f"{value!r} is not {expected}" + (f": {reason}" if reason else ""))


@dataclass(frozen=True)
class Bind:
    """One listening address: a TCP host and port, a Unix socket path, or an inherited fd."""

    kind: Literal["tcp", "unix", "fd"]
    host: str | None = None
    port: int | None = None
    path: str | None = None
    fd: int | None = None

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Bind:
        """Parse ``host:port``, ``port``, ``[v6]:port``, ``unix:/path`` or ``fd://N``.

        Raises ValueError with the reason when ``text`` is none of these.
        """
        text = text.strip()
        if text.startswith("unix:"):
            if not text[5:]:
                raise ValueError("the Unix socket path is empty")
            return cls("unix", path=text[5:])
        if text.startswith("fd://"):
            if not re.fullmatch(r"[0-9]+", text[5:]):
                raise ValueError("the file descriptor is not a whole number")
            return cls("fd", fd=int(text[5:]))
        if re.fullmatch(r"[0-9]+", text):
            return cls("tcp", host=_DEFAULT_HOST, port=_port(text))
        bracketed = re.fullmatch(r"\[([^\]]+)\]:([0-9]+)", text)
        if bracketed:
            try:
                ipaddress.IPv6Address(bracketed[1])
            except ValueError:
                raise ValueError(f"{bracketed[1]!r} is not an IPv6 address") from None
            return cls("tcp", host=bracketed[1], port=_port(bracketed[2]))
        plain = re.fullmatch(r"([^:\[\]]+):([0-9]+)", text)
        if plain is None:
            raise ValueError("an IPv6 host needs brackets" if text.count(":") > 1 else "")
        host = plain[1]
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv4 address") from None
        elif not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{host!r} is not a host name")
        return cls("tcp", host=host, port=_port(plain[2]))


def _port(digits: str) -> int:
    port = int(digits)
    if port > 65535:
        raise ValueError(f"port {port} is above 65535")
    return port


class Form(ABC, Generic[T]):
    """How one kind of setting value is given, checked and shown."""

    accepts: str = "a value"  # completes "... is not <accepts>"
    metavar: str = "VALUE"  # placeholder in --help
    repeatable: bool = False  # the CLI flag may be given several times, the values add up
    is_switch: bool = False  # the CLI has --flag / --no-flag instead of --flag VALUE
    imports_code: bool = False  # parsing imports user code, so the import path must be set first

    @property
    def start_accepts(self) -> str:
        """What the start() dict accepts, when it differs from the other sources."""
        return self.accepts

    @abstractmethod
    def parse(self, raw: object) -> T:
        """Return the typed value of ``raw`` or raise InvalidValue."""

    def parse_start_option(self, raw: object) -> T:
        """Like parse, for a value of the start() dict (Hornbeam's units)."""
        return self.parse(raw)

    def format(self, value: T) -> str:
        """Show ``value`` for --print-config and the docs."""
        return str(value)

    def reject(self, raw: object, reason: str | None = None) -> NoReturn:
        raise InvalidValue(raw, self.accepts, reason)


class Text(Form[str]):
    """Text, optionally matching a rule (a regex or a predicate)."""

    def __init__(
        self,
        accepts: str = "non-empty text",
        metavar: str = "TEXT",
        rule: Callable[[str], object] = bool,
    ) -> None:
        self.accepts = accepts
        self.metavar = metavar
        self._rule = rule

    def parse(self, raw: object) -> str:
        if not isinstance(raw, str) or not self._rule(raw):
            self.reject(raw)
        return raw


class AppSpec(Text):
    """``module``, ``module:attr.sub`` or ``module:factory(args)``; the loader parses it fully."""

    _SHAPE = re.compile(r"[^\W\d]\w*(\.[^\W\d]\w*)*(:[^\W\d]\w*(\.[^\W\d]\w*)*(\(.*\))?)?", re.S)

    def __init__(self) -> None:
        super().__init__(
            "an app spec such as module:attr, module or module:factory()",
            "APP_SPEC",
            self._SHAPE.fullmatch,
        )

    def format(self, value: str) -> str:
        return value or "none"


class BackendUrl(Text):
    """``local``, or the URL of a Redis server; a password in the URL is never shown."""

    _SCHEMES = ("redis", "rediss", "unix")

    def __init__(self) -> None:
        super().__init__(
            "local or a redis://, rediss:// or unix:// URL", "BACKEND", self._is_backend
        )

    def _is_backend(self, text: str) -> bool:
        if text == "local":
            return True
        url = urlsplit(text)
        return url.scheme in self._SCHEMES and bool(url.netloc or url.path)

    def format(self, value: str) -> str:
        url = urlsplit(value)
        if url.password is None:
            return value
        netloc = url.netloc.replace(f":{url.password}@", ":***@", 1)
        return urlunsplit(url._replace(netloc=netloc))


class OrNone(Form[T | None], Generic[T]):
    """An optional setting: None, or an empty string, means unset."""

    def __init__(self, inner: Form[T]) -> None:
        self._inner = inner
        self.accepts = f"{inner.accepts}, or empty for none"
        self.metavar = inner.metavar
        self.imports_code = inner.imports_code

    def parse(self, raw: object) -> T | None:
        return None if raw is None or raw == "" else self._inner.parse(raw)

    def format(self, value: T | None) -> str:
        return "none" if value is None else self._inner.format(value)


class WholeNumber(Form[int]):
    """An integer no smaller than ``minimum``."""

    metavar = "N"

    def __init__(self, minimum: int = 0) -> None:
        self._minimum = minimum
        self.accepts = f"a whole number >= {minimum}"

    def parse(self, raw: object) -> int:
        if isinstance(raw, str) and re.fullmatch(r"\s*[0-9]+\s*", raw):
            number = int(raw)
        elif isinstance(raw, int) and not isinstance(raw, bool):
            number = raw
        else:
            self.reject(raw)
        if number < self._minimum:
            self.reject(raw)
        return number


class Duration(Form[float]):
    """A time span held in seconds. A bare number is seconds, except in the start() dict, where
    it is milliseconds as in Hornbeam."""

    metavar = "SECONDS"
    accepts = "a duration: seconds such as 30 or 2.5, or 500ms, 30s, 2m, 1h"
    _TEXT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h)?\s*", re.I)
    _SECONDS_PER_UNIT: ClassVar[dict[str, float]] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

    @property
    def start_accepts(self) -> str:
        return "a duration: milliseconds such as 30000, or text such as '30s' or '500ms'"

    def parse(self, raw: object) -> float:
        return self._parse(raw, "s", self.accepts)

    def parse_start_option(self, raw: object) -> float:
        return self._parse(raw, "ms", self.start_accepts)

    def _parse(self, raw: object, bare_unit: str, accepts: str) -> float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            amount, unit = float(raw), bare_unit
        elif isinstance(raw, str) and (match := self._TEXT.fullmatch(raw)):
            amount, unit = float(match[1]), (match[2] or bare_unit).lower()
        else:
            raise InvalidValue(raw, accepts)
        if not math.isfinite(amount) or amount < 0:
            raise InvalidValue(raw, accepts)
        return amount * self._SECONDS_PER_UNIT[unit]

    def format(self, value: float) -> str:
        millis = round(value * 1000, 6)
        if 0 < value < 1 and millis.is_integer():
            return f"{int(millis)}ms"
        return f"{value:g}s"


class Size(Form[int]):
    """A number of bytes: ``1048576``, ``512MiB``, ``1GB`` (K, M, G, T alone are binary)."""

    metavar = "SIZE"
    accepts = "a size in bytes such as 1048576, 512MiB or 1GB"
    _TEXT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
    _BYTES_PER_UNIT: ClassVar[dict[str, int]] = {"": 1, "b": 1} | {
        unit: scale
        for power, letter in enumerate("kmgt", start=1)
        for unit, scale in (
            (f"{letter}b", 1000**power),
            (letter, 1024**power),
            (f"{letter}ib", 1024**power),
        )
    }
    _SHOWN_UNITS = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))

    def parse(self, raw: object) -> int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            if raw < 0:
                self.reject(raw)
            return raw
        match = self._TEXT.fullmatch(raw) if isinstance(raw, str) else None
        scale = self._BYTES_PER_UNIT.get(match[2].lower()) if match else None
        if match is None or scale is None or ("." in match[1] and scale == 1):
            self.reject(raw)
        return int(Fraction(match[1]) * scale)

    def format(self, value: int) -> str:
        for unit, scale in self._SHOWN_UNITS:
            if value and value % scale == 0:
                return f"{value // scale}{unit}"
        return str(value)


class Switch(Form[bool]):
    """A boolean: true/false, yes/no, on/off, 1/0."""

    accepts = "a boolean: true, false, yes, no, on, off, 1 or 0"
    is_switch = True
    _WORDS: ClassVar[dict[str, bool]] = {"true": True, "yes": True, "on": True, "1": True}
    _WORDS |= {"false": False, "no": False, "off": False, "0": False}

    def parse(self, raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in self._WORDS:
            return self._WORDS[raw.strip().lower()]
        self.reject(raw)

    def format(self, value: bool) -> str:
        return "true" if value else "false"


class Choice(Form[str]):
    """One word out of a fixed set, case-insensitive."""

    def __init__(self, *options: str) -> None:
        self._options = options
        self.accepts = f"one of {', '.join(options)}"
        self.metavar = "{" + ",".join(options) + "}"

    def parse(self, raw: object) -> str:
        if isinstance(raw, str) and raw.strip().lower() in self._options:
            return raw.strip().lower()
        self.reject(raw)


class Address(Form[Bind]):
    """One listening address, see Bind.parse; a bare integer is a port."""

    accepts = "an address host:port, port, [v6]:port, unix:/path or fd://N"
    metavar = "ADDRESS"

    def parse(self, raw: object) -> Bind:
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str):
            self.reject(raw)
        try:
            return Bind.parse(raw)
        except ValueError as exc:
            self.reject(raw, str(exc) or None)


class ListOf(Form[tuple[T, ...]], Generic[T]):
    """Several values: a list, or text separated by commas; on the CLI the flag may repeat."""

    repeatable = True

    def __init__(self, item: Form[T], *, allow_empty: bool = True) -> None:
        self._item = item
        self._allow_empty = allow_empty
        self.accepts = f"{item.accepts}, or several separated by commas"
        self.metavar = item.metavar

    def parse(self, raw: object) -> tuple[T, ...]:
        values = tuple(self._item.parse(piece) for piece in self._pieces(raw))
        if not values and not self._allow_empty:
            given = ",".join(map(str, raw)) if isinstance(raw, list | tuple) else raw
            self.reject(given, "the list is empty")
        return values

    def _pieces(self, raw: object) -> Iterator[object]:
        for element in raw if isinstance(raw, list | tuple) else [raw]:
            if isinstance(element, str):
                yield from (piece.strip() for piece in element.split(",") if piece.strip())
            else:
                yield element

    def format(self, value: tuple[T, ...]) -> str:
        return ",".join(self._item.format(item) for item in value) or "none"


class Hook(Form[Callable[..., object]]):
    """A server hook: a function, or ``"module:function"`` naming one (imported, never eval'd)."""

    imports_code = True
    metavar = "MODULE:FUNCTION"
    _REFERENCE = re.compile(r"([\w.]+):([\w.]+)")

    def __init__(self, *parameters: str) -> None:
        self._parameters = parameters
        self.accepts = f"a function ({', '.join(parameters)}) or 'module:function' naming one"

    def parse(self, raw: object) -> Callable[..., object]:
        function = self._resolve(raw) if isinstance(raw, str) else raw
        if not callable(function):
            self.reject(raw)
        try:
            inspect.signature(function).bind(*self._parameters)
        except TypeError:
            self.reject(raw, f"it cannot be called with ({', '.join(self._parameters)})")
        except ValueError:  # no signature to inspect (a builtin): trust it
            pass
        return function

    def _resolve(self, reference: str) -> object:
        match = self._REFERENCE.fullmatch(reference.strip())
        if match is None:
            self.reject(reference)
        try:
            found: Any = importlib.import_module(match[1])
        except Exception as exc:
            self.reject(reference, f"importing {match[1]} failed: {_one_line(exc)}")
        for attribute in match[2].split("."):
            if not hasattr(found, attribute):
                self.reject(reference, f"{match[1]} has no {match[2]}")
            found = getattr(found, attribute)
        return found

    def format(self, value: Callable[..., object]) -> str:
        module = getattr(value, "__module__", None) or "?"
        return f"{module}:{getattr(value, '__qualname__', repr(value))}"


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def is_ip_or_network(text: str) -> bool:
    """True for an IPv4/IPv6 address or network (``10.0.0.0/8``)."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True
