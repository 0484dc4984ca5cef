"""The app loader: every spec form, the refusals, WSGI/ASGI detection and the import path."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hornbeam.errors import EXIT_APP_LOAD, AppLoadError
from hornbeam.loader import detect_interface, load_app, prepare_import_path

WriteModule = Callable[[str, str], None]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Write importable modules under tmp_path; they leave sys.modules after the test."""
    root = tmp_path / "modules"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    written: list[str] = []

    def write(dotted_name: str, source: str) -> None:
        parts = dotted_name.split(".")
        folder = root.joinpath(*parts[:-1])
        folder.mkdir(parents=True, exist_ok=True)
        for depth in range(1, len(parts)):
            root.joinpath(*parts[:depth], "__init__.py").touch()
        (folder / f"{parts[-1]}.py").write_text(textwrap.dedent(source))
        written.append(parts[0])
        importlib.invalidate_caches()

    yield write
    for name in list(sys.modules):
        if name.split(".")[0] in written:
            del sys.modules[name]


def load_error(spec: str) -> str:
    with pytest.raises(AppLoadError) as caught:
        load_app(spec)
    assert caught.value.exit_code == EXIT_APP_LOAD
    return str(caught.value)


WSGI_APPS = """
    def application(environ, start_response):
        return [b"application"]

    def app(environ, start_response):
        return [b"app"]
"""


# --- spec forms ---------------------------------------------------------------------------------


def test_module_alone_prefers_application_over_app(write_module: WriteModule) -> None:
    write_module("hbt_both", WSGI_APPS)
    assert load_app("hbt_both")({}, None) == [b"application"]


def test_module_alone_falls_back_to_app(write_module: WriteModule) -> None:
    write_module("hbt_only_app", "def app(environ, start_response):\n    return [b'app']\n")
    assert load_app("hbt_only_app")({}, None) == [b"app"]


def test_module_attribute(write_module: WriteModule) -> None:
    write_module("hbt_attr", WSGI_APPS)
    assert load_app("hbt_attr:app")({}, None) == [b"app"]


def test_dotted_module_and_attribute_path(write_module: WriteModule) -> None:
    write_module(
        "hbt_pkg.web",
        """
        class Holder:
            class inner:
                @staticmethod
                def wsgi(environ, start_response):
                    return [b"nested"]
        """,
    )
    assert load_app("hbt_pkg.web:Holder.inner.wsgi")({}, None) == [b"nested"]


FACTORY = """
    calls = []

    def create_app(*args, **kwargs):
        calls.append((args, kwargs))
        def app(environ, start_response):
            return [repr((args, kwargs)).encode()]
        return app

    value = 42
"""


def test_factory_without_arguments(write_module: WriteModule) -> None:
    write_module("hbt_factory", FACTORY)
    app = load_app("hbt_factory:create_app()")
    assert app({}, None) == [b"((), {})"]
    assert sys.modules["hbt_factory"].calls == [((), {})]


def test_factory_with_literal_arguments(write_module: WriteModule) -> None:
    write_module("hbt_factory_args", FACTORY)
    app = load_app("hbt_factory_args:create_app('x', n=2)")
    assert app({}, None) == [repr((("x",), {"n": 2})).encode()]


def test_factory_with_code_as_argument_is_refused_before_anything_runs(
    write_module: WriteModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module("hbt_factory_code", FACTORY)
    executed: list[Any] = []
    monkeypatch.setattr(os, "system", lambda command: executed.append(command))
    message = load_error("hbt_factory_code:create_app(os.system('touch pwned'))")
    assert "literal" in message
    assert executed == []
    assert sys.modules["hbt_factory_code"].calls == []


def test_double_star_arguments_are_refused(write_module: WriteModule) -> None:
    write_module("hbt_factory_star", FACTORY)
    assert "**" in load_error("hbt_factory_star:create_app(**{'n': 2})")
    assert sys.modules["hbt_factory_star"].calls == []


@pytest.mark.parametrize("spec", ["my-app:app", ":app", "hbt.:app", "1abc"])
def test_malformed_module_name(spec: str) -> None:
    assert "is not of the form 'module:attribute'" in load_error(spec)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("app[0]", "is not of the form 'module:attribute'"),
        ("1 + 2", "is not of the form 'module:attribute'"),
        ("'text'", "is not of the form 'module:attribute'"),
        ("app(", "is not an attribute or a call"),
    ],
)
def test_expression_that_is_neither_attribute_nor_call(
    write_module: WriteModule, expression: str, reason: str
) -> None:
    write_module("hbt_expr", WSGI_APPS)
    assert reason in load_error(f"hbt_expr:{expression}")


# --- failures -----------------------------------------------------------------------------------


def test_missing_module(write_module: WriteModule) -> None:
    message = load_error("hbt_does_not_exist:app")
    assert "cannot import module 'hbt_does_not_exist'" in message
    assert "--pythonpath" in message


def test_missing_submodule_of_existing_package(write_module: WriteModule) -> None:
    write_module("hbt_pkg2.present", WSGI_APPS)
    assert "cannot import module 'hbt_pkg2.absent'" in load_error("hbt_pkg2.absent:app")


def test_missing_attribute(write_module: WriteModule) -> None:
    write_module("hbt_noattr", WSGI_APPS)
    assert "no attribute 'nope'" in load_error("hbt_noattr:nope")
    assert "no attribute 'missing'" in load_error("hbt_noattr:app.missing")


def test_module_with_neither_default_name(write_module: WriteModule) -> None:
    write_module("hbt_empty", "VALUE = 1\n")
    assert "neither 'application' nor 'app'" in load_error("hbt_empty")


def test_attribute_that_is_not_callable(write_module: WriteModule) -> None:
    write_module("hbt_value", FACTORY)
    assert "resolved to int, which is not callable" in load_error("hbt_value:value")


def test_factory_that_is_not_callable(write_module: WriteModule) -> None:
    write_module("hbt_value_call", FACTORY)
    assert "value is not callable" in load_error("hbt_value_call:value()")


def test_import_error_inside_the_app_module_propagates(write_module: WriteModule) -> None:
    write_module("hbt_broken", "import hbt_missing_dependency\n")
    with pytest.raises(ModuleNotFoundError) as caught:
        load_app("hbt_broken:app")
    assert not isinstance(caught.value, AppLoadError)
    assert caught.value.name == "hbt_missing_dependency"


def test_import_error_of_a_dependency_whose_name_prefixes_the_module_propagates(
    write_module: WriteModule,
) -> None:
    # "shop_web" depends on a missing "shop": the user must see that "shop" is missing,
    # not be told that "shop_web" itself cannot be found.
    write_module("shop_web", "import shop\n")
    with pytest.raises(ModuleNotFoundError) as caught:
        load_app("shop_web:app")
    assert caught.value.name == "shop"


# --- interface detection ------------------------------------------------------------------------


def wsgi_function(environ: Any, start_response: Any) -> list[bytes]:
    return []


async def asgi_function(scope: Any, receive: Any, send: Any) -> None:
    return None


class AsyncCallable:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        return None


class SyncCallable:
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        return []


class WsgiClassApp:
    """PEP 3333 allows a class as the app: calling it builds the response iterable."""

    def __init__(self, environ: Any, start_response: Any) -> None:
        self.environ = environ

    def __iter__(self) -> Iterator[bytes]:
        return iter(())


class AsgiMethodHolder:
    async def serve(self, scope: Any, receive: Any, send: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (wsgi_function, "wsgi"),
        (asgi_function, "asgi"),
        (AsyncCallable(), "asgi"),
        (SyncCallable(), "wsgi"),
        (WsgiClassApp, "wsgi"),
        (AsgiMethodHolder().serve, "asgi"),
    ],
    ids=["wsgi-function", "asgi-function", "async-call", "sync-call", "wsgi-class", "method"],
)
def test_detect_interface(app: Callable[..., Any], expected: str) -> None:
    assert detect_interface(app) == expected
    assert detect_interface(app, "auto") == expected


def test_explicit_interface_overrides_detection() -> None:
    assert detect_interface(asgi_function, "wsgi") == "wsgi"
    assert detect_interface(wsgi_function, "asgi") == "asgi"


# --- import path --------------------------------------------------------------------------------


@pytest.fixture
def isolated_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private sys.path and working directory, both restored after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_venv(root: Path, *versions: str) -> list[Path]:
    site_packages = []
    for version in versions:
        folder = root / "lib" / version / "site-packages"
        folder.mkdir(parents=True)
        site_packages.append(folder)
    (root / "bin").mkdir()
    return site_packages


def test_pythonpath_entries_become_absolute_and_come_first(isolated_path: Path) -> None:
    (isolated_path / "src").mkdir()
    (isolated_path / "lib2").mkdir()
    prepare_import_path(["src", str(isolated_path / "lib2")], None, None)
    assert sys.path[:2] == [str(isolated_path / "src"), str(isolated_path / "lib2")]


def test_chdir_changes_directory_and_puts_it_on_the_path(isolated_path: Path) -> None:
    project = isolated_path / "project"
    (project / "code").mkdir(parents=True)
    prepare_import_path(["code"], str(project), None)
    assert os.getcwd() == str(project)
    # relative pythonpath entries are taken from the new directory
    assert sys.path[:2] == [str(project / "code"), str(project)]


def test_chdir_to_a_missing_directory(isolated_path: Path) -> None:
    with pytest.raises(AppLoadError, match=r"chdir: cannot change directory to .*nowhere"):
        prepare_import_path([], str(isolated_path / "nowhere"), None)
    assert os.getcwd() == str(isolated_path)


def test_venv_site_packages_are_added_after_pythonpath(isolated_path: Path) -> None:
    venv = isolated_path / "venv"
    site_a, site_b = make_venv(venv, "python3.10", "python3.11")
    (venv / "lib" / "not-python").mkdir()
    (site_b / "hbt_venv_module.py").write_text("MARK = 'from venv'\n")
    try:
        prepare_import_path(["src"], None, str(venv))
        assert sys.path[:4] == [
            str(isolated_path / "src"),
            str(site_a),
            str(site_b),
            str(isolated_path),
        ]
        importlib.invalidate_caches()
        assert importlib.import_module("hbt_venv_module").MARK == "from venv"
    finally:
        sys.modules.pop("hbt_venv_module", None)


def test_venv_without_site_packages(isolated_path: Path) -> None:
    (isolated_path / "venv" / "lib" / "python3.11").mkdir(parents=True)
    with pytest.raises(AppLoadError, match="is it a virtualenv"):
        prepare_import_path([], None, str(isolated_path / "venv"))
    with pytest.raises(AppLoadError, match=r"no lib/pythonX\.Y/site-packages"):
        prepare_import_path([], None, str(isolated_path / "missing"))


def test_prepare_import_path_twice_adds_nothing_twice(isolated_path: Path) -> None:
    make_venv(isolated_path / "venv", "python3.11")
    prepare_import_path(["src"], None, str(isolated_path / "venv"))
    after_first = list(sys.path)
    prepare_import_path(["src"], None, str(isolated_path / "venv"))
    assert sys.path == after_first
