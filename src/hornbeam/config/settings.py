"""The Settings dataclass: every setting of hornbeam, each declared once.

A field's type and default say what the server uses; its ``Declaration`` (field metadata) says
how the value is given. From that one declaration come the CLI flag ``--<name>``, the
environment variable ``HORNBEAM_<NAME>``, the config-file and ``start()`` key ``<name>``, and
the entry in docs/settings.md. Reading the sources is sources.py's job; this module only
declares and describes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from hornbeam.config.types import (
    Address,
    AppSpec,
    BackendUrl,
    Bind,
    Choice,
    Duration,
    Form,
    Hook,
    ListOf,
    OrNone,
    Size,
    Switch,
    Text,
    WholeNumber,
    is_ip_or_network,
)

ServerHook = Callable[[Any], object]  # gunicorn's hook(server)
WorkerHook = Callable[[Any, Any], object]  # gunicorn's hook(server, worker)

DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

_PATH = Text("a non-empty path", "PATH")
_SECONDS = Duration()
_COUNT = WholeNumber(0)


def _is_trusted_peer(text: str) -> bool:
    return text == "*" or is_ip_or_network(text)


@dataclass(frozen=True)
class Declaration:
    """Everything said about one setting besides its name, type and default."""

    form: Form[Any]
    help: str
    section: str
    flags: tuple[str, ...] = ()  # CLI spellings besides --<name>: short and gunicorn forms
    aliases: tuple[str, ...] = ()  # file / start() keys besides <name>: Hornbeam's, gunicorn's
    shown_default: str | None = None  # the default as documented, when it depends on the machine
    positional: str | None = None  # given on the CLI as this positional argument, not a flag
    launch_relative: bool = False  # a relative path is taken from the directory hornbeam started in


def _setting(default: object = MISSING, *, factory: Any = MISSING, **declared: Any) -> Any:
    """A dataclass field carrying its Declaration (``factory`` computes a default at load)."""
    return field(
        default=default, default_factory=factory, metadata={"hornbeam": Declaration(**declared)}
    )


@dataclass(frozen=True)
class Settings:
    """The effective settings of one server; ``origin`` tells where each value came from."""

    app: str = _setting(
        "",
        form=AppSpec(),
        section="Application",
        positional="APP_SPEC",
        aliases=("wsgi_app",),
        shown_default="none (required to run)",
        help="The application: module:attr, module (attr application, else app) or "
        "module:factory() to call a factory.",
    )
    interface: Literal["auto", "wsgi", "asgi"] = _setting(
        "auto",
        form=Choice("auto", "wsgi", "asgi"),
        section="Application",
        aliases=("worker_class",),
        help="Whether the app speaks WSGI or ASGI; auto detects it. Hornbeam's start() "
        "option name is worker_class.",
    )
    preload_app: bool = _setting(
        False,
        form=Switch(),
        section="Application",
        flags=("--preload",),
        help="Import the app in the arbiter before forking, then gc.freeze() so workers share "
        "its memory pages.",
    )
    pythonpath: tuple[str, ...] = _setting(
        (),
        form=ListOf(_PATH),
        section="Application",
        help="Directories put in front of the import path (comma-separated), e.g. flask_demo.",
    )
    chdir: str | None = _setting(
        None,
        form=OrNone(_PATH),
        section="Application",
        launch_relative=True,
        help="Change to this directory before loading the app.",
    )
    venv: str | None = _setting(
        None,
        form=OrNone(_PATH),
        section="Application",
        launch_relative=True,
        help="A virtual environment whose site-packages are added to the import path.",
    )
    lifespan: Literal["auto", "on", "off"] = _setting(
        "auto",
        form=Choice("auto", "on", "off"),
        section="Application",
        help="ASGI lifespan: auto runs it if the app supports it, on requires it, off skips it.",
    )
    lifespan_timeout: float = _setting(
        30.0,
        form=_SECONDS,
        section="Application",
        help="How long ASGI lifespan startup and shutdown may take.",
    )
    bind: tuple[Bind, ...] = _setting(
        (Bind("tcp", host="127.0.0.1", port=8000),),
        form=ListOf(Address(), allow_empty=False),
        section="Listening",
        flags=("-b",),
        help="Address to listen on; repeat the flag (or separate with commas) for several.",
    )
    backlog: int = _setting(
        2048,
        form=WholeNumber(1),
        section="Listening",
        help="Most connections waiting to be accepted (the listen() backlog).",
    )
    workers: int = _setting(
        factory=lambda: os.cpu_count() or 1,
        form=WholeNumber(1),
        section="Workers",
        flags=("-w",),
        shown_default="number of CPUs",
        help="Number of worker processes.",
    )
    threads: int = _setting(
        64,
        form=_COUNT,
        section="Workers",
        help="Most WSGI app threads per worker; more run at once only while the others block "
        "(idle ones cost nothing). 0 runs WSGI apps inline on the event loop: faster only for "
        "tiny apps, and only for apps that never block.",
    )
    max_requests: int = _setting(
        0,
        form=_COUNT,
        section="Workers",
        help="Replace a worker gracefully after it served this many requests; 0 never.",
    )
    max_requests_jitter: int = _setting(
        0,
        form=_COUNT,
        section="Workers",
        help="Add a random 0..N to max_requests per worker, so workers do not restart together.",
    )
    max_worker_memory: int = _setting(
        0,
        form=Size(),
        section="Workers",
        help="Replace a worker gracefully once its resident memory passes this size; 0 never.",
    )
    timeout: float = _setting(
        30.0,
        form=_SECONDS,
        section="Timeouts",
        flags=("-t",),
        help="Heartbeat: a worker whose event loop stays silent this long is killed and "
        "replaced; 0 disables.",
    )
    graceful_timeout: float = _setting(
        30.0,
        form=_SECONDS,
        section="Timeouts",
        help="How long workers may finish in-flight requests on SIGTERM or reload.",
    )
    keepalive: float = _setting(
        5.0,
        form=_SECONDS,
        section="Timeouts",
        flags=("--keep-alive",),
        help="How long an idle keep-alive connection waits for its next request.",
    )
    request_timeout: float = _setting(
        0.0,
        form=_SECONDS,
        section="Timeouts",
        help="Time limit per request: the client gets 504; 0 disables.",
    )
    limit_request_line: int = _setting(
        4094,
        form=_COUNT,
        section="Limits",
        help="Longest request line in bytes (longer: 414).",
    )
    limit_request_fields: int = _setting(
        100,
        form=_COUNT,
        section="Limits",
        help="Most header fields in a request (more: 431).",
    )
    limit_request_field_size: int = _setting(
        8190,
        form=_COUNT,
        section="Limits",
        flags=("--limit-request-field_size",),
        help="Longest header field in bytes (longer: 431).",
    )
    limit_request_body: int = _setting(
        1024**3,
        form=Size(),
        section="Limits",
        help="Largest request body (larger: 413); 0 means no limit.",
    )
    websocket_timeout: float = _setting(
        60.0,
        form=_SECONDS,
        section="WebSocket",
        help="Close a WebSocket that has been silent this long (no message, no pong); 0 never.",
    )
    websocket_ping_interval: float = _setting(
        20.0,
        form=_SECONDS,
        section="WebSocket",
        help="Ping an idle WebSocket this often, so dead peers are found; 0 never.",
    )
    websocket_max_frame_size: int = _setting(
        16 * 1024**2,
        form=Size(),
        section="WebSocket",
        help="Largest WebSocket message accepted; a larger one closes the socket with 1009.",
    )
    websocket_compress: bool = _setting(
        False,
        form=Switch(),
        section="WebSocket",
        help="Offer permessage-deflate compression to WebSocket clients.",
    )
    health_path: str | None = _setting(
        None,
        form=OrNone(Text("a path starting with /", "PATH", lambda text: text.startswith("/"))),
        section="Limits",
        help="A path the server answers itself, never reaching the app: 200 when ready, 503 "
        "while draining. E.g. /_hornbeam/health.",
    )
    forwarded_allow_ips: tuple[str, ...] = _setting(
        ("127.0.0.1",),
        form=ListOf(Text("an IP address or network, or *", "IPS", _is_trusted_peer)),
        section="Proxy",
        help="Peers whose X-Forwarded-* and Forwarded headers are trusted; * trusts all.",
    )
    access_log: str | None = _setting(
        None,
        form=OrNone(_PATH),
        section="Logging",
        flags=("--access-logfile",),
        aliases=("accesslog",),
        shown_default="none (off)",
        help="Where the access log goes: - for stdout, or a file path; unset turns it off.",
    )
    error_log: str = _setting(
        "-",
        form=_PATH,
        section="Logging",
        flags=("--error-logfile", "--log-file"),
        aliases=("errorlog",),
        help="Where the error log goes: - for stderr, or a file path.",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = _setting(
        "info",
        form=Choice("debug", "info", "warning", "error", "critical"),
        section="Logging",
        aliases=("loglevel",),
        help="Least severe message the error log shows.",
    )
    access_log_format: str = _setting(
        DEFAULT_ACCESS_LOG_FORMAT,
        form=Text(metavar="FORMAT"),
        section="Logging",
        flags=("--access-logformat",),
        help="Access log line, with gunicorn's %(x)s atoms.",
    )
    on_starting: ServerHook | None = _setting(  # noqa: RUF009 (_setting builds a field)
        None,
        form=OrNone(Hook("server")),
        section="Server hooks",
        help="Called as on_starting(server) in the arbiter before anything starts.",
    )
    post_fork: WorkerHook | None = _setting(  # noqa: RUF009 (_setting builds a field)
        None,
        form=OrNone(Hook("server", "worker")),
        section="Server hooks",
        help="Called as post_fork(server, worker) in each new worker.",
    )
    worker_exit: WorkerHook | None = _setting(  # noqa: RUF009 (_setting builds a field)
        None,
        form=OrNone(Hook("server", "worker")),
        section="Server hooks",
        help="Called as worker_exit(server, worker) in a worker that is stopping.",
    )
    pidfile: str | None = _setting(
        None,
        form=OrNone(_PATH),
        section="Process",
        flags=("-p", "--pid"),
        help="Write the arbiter's process id to this file.",
    )
    name: str | None = _setting(
        None,
        form=OrNone(Text()),
        section="Process",
        flags=("-n",),
        aliases=("proc_name",),
        shown_default="none (the host name)",
        help="Process title and cluster node name.",
    )
    state_backend: str = _setting(
        "local",
        form=BackendUrl(),
        section="Shared state",
        help="Where shared state and pub/sub live: local (this machine) or a Redis URL "
        "(cluster mode).",
    )
    state_path: str | None = _setting(
        None,
        form=OrNone(_PATH),
        section="Shared state",
        help="Directory where the local store persists; unset keeps state in memory until a "
        "full stop.",
    )
    origin: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    _reload: Callable[[Mapping[str, str]], Settings] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Settings built directly (not by load) still tell where every value came from.
        origin = {
            name: self.origin.get(name)
            or ("default" if getattr(self, name) == default_value(name) else "Settings()")
            for name in DECLARATIONS
        }
        object.__setattr__(self, "origin", MappingProxyType(origin))

    def reload(self) -> Settings:
        """Read the same sources again: the config file, os.environ now, and the same command
        line or start() options. Settings built directly have no sources and stay as they are."""
        return self if self._reload is None else self._reload(os.environ)


def _declared(spec: Field[Any]) -> Declaration | None:
    declaration = spec.metadata.get("hornbeam")
    return declaration if isinstance(declaration, Declaration) else None


DECLARATIONS: Mapping[str, Declaration] = MappingProxyType(
    {spec.name: declared for spec in fields(Settings) if (declared := _declared(spec))}
)
_FIELDS = {spec.name: spec for spec in fields(Settings)}


def default_value(name: str) -> Any:
    """The default of setting ``name`` on this machine."""
    spec = _FIELDS[name]
    return spec.default if spec.default_factory is MISSING else spec.default_factory()


def shown_default(name: str) -> str:
    """The default of setting ``name`` as the docs and --help show it."""
    declaration = DECLARATIONS[name]
    return declaration.shown_default or declaration.form.format(default_value(name))


def env_var(name: str) -> str:
    """The environment variable of setting ``name``."""
    return f"HORNBEAM_{name.upper()}"


def describe(settings: Settings) -> str:
    """The ``--print-config`` text: one ``name = value  (source)`` line per setting."""
    return "\n".join(
        f"{name} = {declaration.form.format(getattr(settings, name))}  ({settings.origin[name]})"
        for name, declaration in DECLARATIONS.items()
    )
