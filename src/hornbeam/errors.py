"""The one exception hierarchy of hornbeam, and the process exit codes it maps to.

Every error a user can meet says what was wrong and what to do about it.
"""

from __future__ import annotations

# Exit codes of the `hornbeam` command (documented in the README).
EXIT_OK = 0
EXIT_ERROR = 1  # unexpected failure of the server itself
EXIT_CONFIG = 2  # bad command line, setting value or config file
EXIT_WORKER_BOOT = 3  # a worker could not boot (gunicorn's WORKER_BOOT_ERROR)
EXIT_APP_LOAD = 4  # the application could not be imported (gunicorn's APP_LOAD_ERROR)
EXIT_BIND = 5  # a listening address could not be bound (in use, permission, bad host)


class HornbeamError(Exception):
    """Base class of every error hornbeam raises on purpose."""

    exit_code = EXIT_ERROR


class ConfigError(HornbeamError):
    """A setting has a value of the wrong form, or a config file cannot be read."""

    exit_code = EXIT_CONFIG


class AppLoadError(HornbeamError):
    """The application spec cannot be resolved to a callable."""

    exit_code = EXIT_APP_LOAD


class BindError(HornbeamError):
    """A listening socket cannot be created."""

    exit_code = EXIT_BIND


class WorkerBootError(HornbeamError):
    """A worker process failed while starting."""

    exit_code = EXIT_WORKER_BOOT


class ClientDisconnected(OSError):
    """The client went away mid-request: a body read (WSGI ``wsgi.input``) or a ``send()``
    (ASGI) that can no longer succeed. An OSError, as the ASGI spec asks of it."""
