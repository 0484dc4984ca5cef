"""Turning an app spec such as ``"app:application"`` into the application callable.

The spec is parsed with :mod:`ast`, never evaluated: ``module``, ``module:attr``,
``module:attr.sub`` and ``module:factory()`` / ``module:factory('arg', 2)`` with literal
arguments only. This module also decides whether the callable speaks WSGI or ASGI.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

from hornbeam.errors import AppLoadError

Interface = Literal["wsgi", "asgi"]

_DEFAULT_ATTRS = ("application", "app")


def prepare_import_path(pythonpath: Sequence[str], chdir: str | None, venv: str | None) -> None:
    """Apply ``chdir``, ``venv`` and ``pythonpath`` so the app's modules can be imported."""
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppLoadError(
                f"chdir: cannot change directory to {chdir!r}: {exc.strerror}"
            ) from exc
    entries = [os.path.abspath(p) for p in pythonpath]
    if venv:
        entries.extend(_venv_site_packages(venv))
    cwd = os.getcwd()
    if cwd not in sys.path:
        entries.append(cwd)
    for entry in reversed(entries):
        if entry not in sys.path:
            sys.path.insert(0, entry)


def _venv_site_packages(venv: str) -> list[str]:
    lib = os.path.join(venv, "lib")
    found = []
    if os.path.isdir(lib):
        for name in sorted(os.listdir(lib)):
            candidate = os.path.join(lib, name, "site-packages")
            if name.startswith("python") and os.path.isdir(candidate):
                found.append(candidate)
    if not found:
        raise AppLoadError(
            f"venv: no lib/pythonX.Y/site-packages under {venv!r}; is it a virtualenv?"
        )
    return found


def load_app(spec: str) -> Callable[..., Any]:
    """Import the module named by ``spec`` and return the application callable."""
    module_name, _, expression = spec.partition(":")
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise AppLoadError(f"app: {spec!r} is not of the form 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(
                f"app: cannot import module {module_name!r} ({exc}); check --pythonpath and --chdir"
            ) from exc
        raise
    if not expression:
        for attr in _DEFAULT_ATTRS:
            if hasattr(module, attr):
                return _ensure_callable(getattr(module, attr), spec)
        raise AppLoadError(f"app: module {module_name!r} has neither 'application' nor 'app'")
    return _ensure_callable(_resolve_expression(module, expression, spec), spec)


def _resolve_expression(module: object, expression: str, spec: str) -> object:
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as exc:
        raise AppLoadError(
            f"app: {expression!r} in {spec!r} is not an attribute or a call"
        ) from exc
    if isinstance(node, ast.Call):
        if node.keywords and any(k.arg is None for k in node.keywords):
            raise AppLoadError(f"app: {spec!r}: ** arguments are not supported")
        try:
            args = [ast.literal_eval(arg) for arg in node.args]
            kwargs = {str(k.arg): ast.literal_eval(k.value) for k in node.keywords}
        except ValueError as exc:
            raise AppLoadError(f"app: {spec!r}: factory arguments must be literals") from exc
        factory = _resolve_attribute(module, node.func, spec)
        if not callable(factory):
            raise AppLoadError(f"app: {spec!r}: {ast.unparse(node.func)} is not callable")
        return factory(*args, **kwargs)
    return _resolve_attribute(module, node, spec)


def _resolve_attribute(module: object, node: ast.expr, spec: str) -> object:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppLoadError(f"app: {spec!r} is not of the form 'module:attribute'")
    names.append(node.id)
    target = module
    for name in reversed(names):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise AppLoadError(f"app: {spec!r}: no attribute {name!r}") from None
    return target


def _ensure_callable(app: object, spec: str) -> Callable[..., Any]:
    if not callable(app):
        raise AppLoadError(f"app: {spec!r} resolved to {type(app).__name__}, which is not callable")
    return app


def detect_interface(app: Callable[..., Any], requested: str = "auto") -> Interface:
    """Return ``"asgi"`` for a coroutine function ``app(scope, receive, send)``, else ``"wsgi"``."""
    if requested in ("wsgi", "asgi"):
        return requested  # type: ignore[return-value]
    candidate: object = app
    if not inspect.isfunction(candidate) and not inspect.ismethod(candidate):
        candidate = getattr(app, "__call__", app)  # noqa: B004 - we want the bound __call__
    if inspect.iscoroutinefunction(candidate):
        return "asgi"
    return "wsgi"
