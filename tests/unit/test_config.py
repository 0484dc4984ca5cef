"""Settings: value forms, every source, precedence, errors, reload and the generated docs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from hornbeam.config import Bind, Settings, describe, from_start_options, load
from hornbeam.config.docs import render_reference, with_readme_section
from hornbeam.config.types import Duration, InvalidValue, Size, Switch
from hornbeam.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _empty_launch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test from an empty directory, so no stray hornbeam.toml is read."""
    monkeypatch.chdir(tmp_path)


def config_error(argv: list[str], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(argv, environ or {})
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- binds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:80", Bind("tcp", host="0.0.0.0", port=80)),
        ("localhost:8000", Bind("tcp", host="localhost", port=8000)),
        ("9000", Bind("tcp", host="127.0.0.1", port=9000)),
        ("[::1]:8080", Bind("tcp", host="::1", port=8080)),
        ("[::]:0", Bind("tcp", host="::", port=0)),
        ("127.0.0.1:65535", Bind("tcp", host="127.0.0.1", port=65535)),
        ("unix:/run/hb.sock", Bind("unix", path="/run/hb.sock")),
        ("fd://3", Bind("fd", fd=3)),
    ],
)
def test_bind_forms_parse_and_print_canonically(text: str, expected: Bind) -> None:
    assert Bind.parse(text) == expected
    assert Bind.parse(str(expected)) == expected


def test_bind_canonical_text() -> None:
    assert str(Bind.parse("9000")) == "127.0.0.1:9000"
    assert str(Bind.parse("[::1]:80")) == "[::1]:80"
    assert str(Bind.parse("unix:/tmp/s")) == "unix:/tmp/s"
    assert str(Bind.parse("fd://4")) == "fd://4"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("127.0.0.1:65536", "port 65536 is above 65535"),
        ("::1:8000", "an IPv6 host needs brackets"),
        ("[nonsense]:80", "is not an IPv6 address"),
        ("999.1.1.1:80", "is not an IPv4 address"),
        ("unix:", "path is empty"),
        ("fd://three", "not a whole number"),
        ("host:", ""),
        ("", ""),
    ],
)
def test_bad_bind_is_a_one_line_error_with_the_reason(text: str, reason: str) -> None:
    message = config_error(["-b", text])
    assert message.startswith(f"bind: {text!r} from --bind is not an address host:port")
    assert reason in message


def test_bind_repeats_and_splits_on_commas() -> None:
    settings = load(["-b", "127.0.0.1:1", "-b", "unix:/tmp/a,[::1]:2"], {})
    assert [str(bind) for bind in settings.bind] == ["127.0.0.1:1", "unix:/tmp/a", "[::1]:2"]
    assert load([], {"HORNBEAM_BIND": "1, 2"}).bind == (Bind.parse("1"), Bind.parse("2"))


def test_bind_default_and_empty_list() -> None:
    assert load([], {}).bind == (Bind("tcp", host="127.0.0.1", port=8000),)
    assert "the list is empty" in config_error([], {"HORNBEAM_BIND": ","})


# --- durations, sizes, booleans, lists ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("2.5", 2.5), (".5", 0.5), ("500ms", 0.5), ("30s", 30.0), ("2m", 120.0),
     ("1h", 3600.0), (" 10 S ", 10.0), ("0", 0.0)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert Duration().parse(text) == pytest.approx(seconds)
    assert load(["--timeout", text], {}).timeout == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-1", "abc", "5 parsecs", "1e3", "nan", "", "30 s s"])
def test_bad_durations(text: str) -> None:
    message = config_error(["-t", text])
    assert message == (
        f"timeout: {text!r} from --timeout is not a duration: seconds such as 30 or 2.5, "
        "or 500ms, 30s, 2m, 1h"
    )


def test_duration_printing_round_trips() -> None:
    form = Duration()
    for seconds in (30.0, 2.5, 0.5, 0.001, 0.0, 120.0):
        assert form.parse(form.format(seconds)) == pytest.approx(seconds)
    assert form.format(0.5) == "500ms"
    assert form.format(30.0) == "30s"


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("512MiB", 512 * 2**20), ("1GB", 10**9), ("1gib", 2**30),
     ("1.5KiB", 1536), ("64k", 65536), ("10 MB", 10**7), ("0", 0), ("7B", 7)],
)  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert Size().parse(text) == size
    assert load([], {"HORNBEAM_MAX_WORKER_MEMORY": text}).max_worker_memory == size


@pytest.mark.parametrize("text", ["12XB", "-1", "1.5", "MiB", "1,000"])
def test_bad_sizes(text: str) -> None:
    message = config_error(["--limit-request-body", text])
    assert message.startswith(f"limit_request_body: {text!r} from --limit-request-body is not ")
    assert "512MiB" in message


def test_size_printing() -> None:
    assert Size().format(2**30) == "1GiB"
    assert Size().format(512 * 2**20) == "512MiB"
    assert Size().format(1000) == "1000"
    assert Size().format(0) == "0"


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("YES", True), ("on", True), ("1", True), ("false", False), ("no", False),
     ("Off", False), ("0", False)],
)  # fmt: skip
def test_booleans(text: str, value: bool) -> None:
    assert Switch().parse(text) is value
    assert load([], {"HORNBEAM_PRELOAD_APP": text}).preload_app is value


def test_boolean_flags_and_bad_boolean() -> None:
    assert load(["--preload"], {}).preload_app is True
    assert load(["--no-preload-app"], {"HORNBEAM_PRELOAD_APP": "yes"}).preload_app is False
    message = config_error([], {"HORNBEAM_PRELOAD_APP": "maybe"})
    assert message.startswith("preload_app: 'maybe' from HORNBEAM_PRELOAD_APP is not a boolean")


def test_lists_split_on_commas_and_repeat() -> None:
    settings = load(["--pythonpath", "a,b", "--pythonpath", "c"], {})
    assert settings.pythonpath == ("a", "b", "c")
    trusted = load([], {"HORNBEAM_FORWARDED_ALLOW_IPS": "10.0.0.0/8, ::1,192.168.1.2"})
    assert trusted.forwarded_allow_ips == ("10.0.0.0/8", "::1", "192.168.1.2")
    assert load(["--forwarded-allow-ips", "*"], {}).forwarded_allow_ips == ("*",)
    message = config_error(["--forwarded-allow-ips", "10.0.0.1,proxy.local"])
    assert message.startswith("forwarded_allow_ips: 'proxy.local' from --forwarded-allow-ips")


def test_whole_numbers_and_choices() -> None:
    assert load(["-w", "3", "--threads", "0"], {}).workers == 3
    assert config_error(["-w", "0"]) == "workers: '0' from --workers is not a whole number >= 1"
    assert load(["--interface", "ASGI"], {}).interface == "asgi"
    message = config_error(["--log-level", "verbose"])
    assert message == (
        "log_level: 'verbose' from --log-level is not one of debug, info, warning, error, critical"
    )


def test_optional_settings_are_unset_by_an_empty_value(tmp_path: Path) -> None:
    (tmp_path / "hornbeam.toml").write_text('access_log = "-"\nhealth_path = "/health"\n')
    settings = load([], {"HORNBEAM_ACCESS_LOG": ""})
    assert settings.access_log is None
    assert settings.health_path == "/health"
    assert "a path starting with /" in config_error(["--health-path", "health"])


def test_app_spec_shapes() -> None:
    for spec in ("app", "pkg.app:application", "app:create_app()", "app:make('x', 2)", "a:b.c"):
        assert load([spec], {}).app == spec
    for spec in ("app:", "1app", "app:application:x", "app:f(", "app; rm"):
        assert config_error([spec]).startswith(f"app: {spec!r} from APP_SPEC is not an app spec")


def test_state_backend_urls_and_redacted_password() -> None:
    assert load([], {}).state_backend == "local"
    settings = load(["--state-backend", "redis://:s3cret@127.0.0.1:6379/0"], {})
    assert settings.state_backend == "redis://:s3cret@127.0.0.1:6379/0"
    assert "s3cret" not in describe(settings)
    assert "redis://:***@127.0.0.1:6379/0" in describe(settings)
    assert load(["--state-backend", "unix:///run/redis.sock"], {}).state_backend.startswith("unix")
    assert "a redis://" in config_error(["--state-backend", "memcached://x"])


# --- sources and precedence --------------------------------------------------------------------


def test_defaults() -> None:
    settings = load([], {})
    assert settings == Settings()
    assert settings.timeout == 30.0
    assert settings.limit_request_body == 2**30
    assert (
        settings.access_log_format == '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    )
    assert set(settings.origin.values()) == {"default"}


def test_precedence_file_then_environment_then_command_line(tmp_path: Path) -> None:
    (tmp_path / "hornbeam.toml").write_text("workers = 2\nthreads = 4\nbacklog = 10\n")
    settings = load(["--workers", "7"], {"HORNBEAM_WORKERS": "5", "HORNBEAM_THREADS": "6"})
    assert (settings.workers, settings.threads, settings.backlog) == (7, 6, 10)
    file = f"file {tmp_path / 'hornbeam.toml'}"
    assert settings.origin["workers"] == "command line"
    assert settings.origin["threads"] == "env HORNBEAM_THREADS"
    assert settings.origin["backlog"] == file
    assert settings.origin["keepalive"] == "default"


def test_environment_error_message_is_exactly_one_line() -> None:
    message = config_error([], {"HORNBEAM_WORKERS": "abc"})
    assert message == "workers: 'abc' from HORNBEAM_WORKERS is not a whole number >= 1"


def test_toml_file_native_values_and_error_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "server.toml"
    config.parent.mkdir()
    config.write_text(
        textwrap.dedent("""\
        app = "site:app"
        bind = ["127.0.0.1:9001", "unix:/tmp/hb.sock"]
        keepalive = 2.5
        timeout = "1m"
        max_worker_memory = "512MiB"
        preload_app = true
        pythonpath = ["src", "lib"]
        loglevel = "debug"
        """)
    )
    settings = load(["-c", "conf/server.toml"], {})
    assert settings.app == "site:app"
    assert [str(bind) for bind in settings.bind] == ["127.0.0.1:9001", "unix:/tmp/hb.sock"]
    assert (settings.keepalive, settings.timeout) == (2.5, 60.0)
    assert settings.max_worker_memory == 512 * 2**20
    assert settings.preload_app is True
    assert settings.pythonpath == ("src", "lib")
    assert settings.log_level == "debug"
    assert settings.origin["log_level"] == f"file {config}"
    config.write_text("workers = -2\n")
    assert config_error(["-c", str(config)]) == (
        f"workers: -2 from {config} is not a whole number >= 1"
    )


def test_unknown_file_key_suggests_the_setting(tmp_path: Path) -> None:
    (tmp_path / "hornbeam.toml").write_text("wrokers = 4\n")
    message = config_error([])
    assert message == (
        f"unknown setting 'wrokers' in {tmp_path / 'hornbeam.toml'} (did you mean 'workers'?)"
    )


def test_bad_config_files(tmp_path: Path) -> None:
    assert "does not exist" in config_error(["-c", "missing.toml"])
    (tmp_path / "bad.toml").write_text("workers = \n")
    assert "is not valid TOML" in config_error(["-c", "bad.toml"])
    (tmp_path / "conf.yaml").write_text("workers: 4\n")
    assert "must end in .toml or .py" in config_error(["-c", "conf.yaml"])
    (tmp_path / "broken.py").write_text("workers = 1 / 0\n")
    assert "failed: ZeroDivisionError: division by zero" in config_error(["-c", "broken.py"])
    (tmp_path / "twice.toml").write_text('log_level = "info"\nloglevel = "debug"\n')
    assert "given twice" in config_error(["-c", "twice.toml"])


def test_config_file_from_environment(tmp_path: Path) -> None:
    (tmp_path / "other.toml").write_text("threads = 3\n")
    assert load([], {"HORNBEAM_CONFIG": "other.toml"}).threads == 3


def test_hornbeam_toml_is_read_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "hornbeam.toml").write_text('bind = "0.0.0.0:8080"\n')
    assert load([], {}).bind == (Bind("tcp", host="127.0.0.1", port=8000),)
    monkeypatch.chdir(project)
    settings = load([], {})
    assert settings.bind == (Bind("tcp", host="0.0.0.0", port=8080),)
    assert settings.origin["bind"] == f"file {project / 'hornbeam.toml'}"


def test_python_config_file_with_a_function_hook(tmp_path: Path) -> None:
    (tmp_path / "gunicorn_conf.py").write_text(
        textwrap.dedent("""\
        import multiprocessing

        _cores = 2
        workers = _cores * 2
        bind = "127.0.0.1:8123"
        accesslog = "-"
        started = []

        def on_starting(server):
            started.append(server)
        """)
    )
    message = config_error(["-c", "gunicorn_conf.py"])
    assert message.startswith("unknown setting 'started' in ")
    (tmp_path / "gunicorn_conf.py").write_text(
        (tmp_path / "gunicorn_conf.py").read_text().replace("started = []", "_started = []")
        .replace("started.append", "_started.append")
    )  # fmt: skip
    settings = load(["-c", "gunicorn_conf.py"], {})
    assert (settings.workers, settings.access_log) == (4, "-")
    assert settings.on_starting is not None
    assert settings.on_starting.__name__ == "on_starting"
    settings.on_starting("the server")
    assert settings.on_starting.__globals__["_started"] == ["the server"]
    assert "on_starting = __config__:on_starting  (file " in describe(settings)


def test_hook_with_the_wrong_signature_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_text("def post_fork(server):\n    pass\n")
    message = config_error(["-c", "conf.py"])
    assert message.startswith("post_fork: post_fork(server) from ")
    assert "it cannot be called with (server, worker)" in message


def test_hook_named_by_module_and_function_on_the_python_path(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "hb_test_hooks.py").write_text(
        "def exited(server, worker):\n    return (server, worker)\n"
    )
    settings = load(["--pythonpath", "lib", "--worker-exit", "hb_test_hooks:exited"], {})
    assert settings.worker_exit is not None
    assert settings.worker_exit(1, 2) == (1, 2)
    assert str(tmp_path / "lib") not in sys.path
    message = config_error(["--worker-exit", "no_such_module_hb:exited"])
    assert "importing no_such_module_hb failed: ModuleNotFoundError" in message
    message = config_error(["--pythonpath", "lib", "--worker-exit", "hb_test_hooks:missing"])
    assert message.endswith("(hb_test_hooks has no missing)")
    assert config_error(["--on-starting", "not a reference"]).startswith("on_starting: ")


def test_launch_relative_paths_become_absolute(tmp_path: Path) -> None:
    settings = load(["--chdir", "app", "--venv", "/opt/venv"], {})
    assert settings.chdir == str(tmp_path / "app")
    assert settings.venv == "/opt/venv"


# --- the start() dict --------------------------------------------------------------------------


def test_start_options_use_hornbeam_names_and_milliseconds() -> None:
    settings = from_start_options(
        "app:application",
        {
            "pythonpath": ["flask_demo"],
            "workers": 4,
            "timeout": 30000,
            "graceful_timeout": "5s",
            "keepalive": 1500,
            "worker_class": "wsgi",
            "bind": "0.0.0.0:8000",
        },
        {},
    )
    assert settings.app == "app:application"
    assert settings.pythonpath == ("flask_demo",)
    assert settings.workers == 4
    assert settings.timeout == 30.0
    assert settings.graceful_timeout == 5.0
    assert settings.keepalive == 1.5
    assert settings.interface == "wsgi"
    assert settings.bind == (Bind("tcp", host="0.0.0.0", port=8000),)
    assert settings.origin["timeout"] == "start()"
    assert settings.origin["app"] == "start()"


def test_start_options_precedence_and_errors(tmp_path: Path) -> None:
    (tmp_path / "hornbeam.toml").write_text("workers = 2\nthreads = 3\n")
    settings = from_start_options("app", {"workers": 6}, {"HORNBEAM_THREADS": "9"})
    assert (settings.workers, settings.threads) == (6, 9)
    with pytest.raises(ConfigError, match=r"^unknown setting 'wokers' in start\(\) options "
                       r"\(did you mean 'workers'\?\)$"):  # fmt: skip
        from_start_options("app", {"wokers": 4}, {})
    with pytest.raises(ConfigError) as caught:
        from_start_options("app", {"timeout": -5}, {})
    assert str(caught.value) == (
        "timeout: -5 from start() options key 'timeout' is not a duration: milliseconds such "
        "as 30000, or text such as '30s' or '500ms'"
    )
    with pytest.raises(ConfigError, match="given twice"):
        from_start_options("app", {"interface": "wsgi", "worker_class": "asgi"}, {})
    with pytest.raises(ConfigError, match="app_spec argument is not an app spec"):
        from_start_options("", {}, {})


def test_start_options_accept_a_hook_function() -> None:
    def post_fork(server: object, worker: object) -> None:
        """A gunicorn-style hook."""

    assert from_start_options("app", {"post_fork": post_fork}, {}).post_fork is post_fork


# --- describe, reload, direct construction -----------------------------------------------------


def test_describe_has_one_line_per_setting_with_its_source() -> None:
    text = describe(load(["-w", "3", "-b", "[::1]:9000"], {"HORNBEAM_KEEPALIVE": "500ms"}))
    lines = text.splitlines()
    assert "workers = 3  (command line)" in lines
    assert "bind = [::1]:9000  (command line)" in lines
    assert "keepalive = 500ms  (env HORNBEAM_KEEPALIVE)" in lines
    assert "limit_request_body = 1GiB  (default)" in lines
    assert len(lines) == len(Settings().origin)


def test_reload_reads_the_file_and_environment_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hornbeam.toml"
    config.write_text("workers = 2\nmax_requests = 100\n")
    monkeypatch.delenv("HORNBEAM_THREADS", raising=False)
    settings = load(["--keepalive", "7"], {})
    config.write_text("workers = 3\nmax_requests = 200\n")
    monkeypatch.setenv("HORNBEAM_THREADS", "11")
    monkeypatch.chdir(tmp_path.parent)  # the arbiter may have changed directory since
    reloaded = settings.reload()
    assert (reloaded.workers, reloaded.max_requests, reloaded.threads) == (3, 200, 11)
    assert reloaded.keepalive == 7.0
    assert reloaded.origin["threads"] == "env HORNBEAM_THREADS"


def test_reload_of_start_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HORNBEAM_WORKERS", raising=False)
    options = {"timeout": 1000}
    settings = from_start_options("app", options, {})
    options["timeout"] = 9000  # the caller's dict changing later does not leak in
    (tmp_path / "hornbeam.toml").write_text("workers = 5\n")
    reloaded = settings.reload()
    assert (reloaded.timeout, reloaded.workers, reloaded.app) == (1.0, 5, "app")


def test_settings_built_directly() -> None:
    settings = Settings(app="app:application", workers=2)
    assert settings.origin["app"] == "Settings()"
    assert settings.origin["threads"] == "default"
    assert settings.reload() is settings
    assert settings == Settings(app="app:application", workers=2)


# --- docs --------------------------------------------------------------------------------------


def test_docs_settings_md_is_up_to_date() -> None:
    written = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    assert written == render_reference(), "run: python -m hornbeam.config.docs"


def test_docs_cover_every_setting_and_say_start_durations_are_milliseconds() -> None:
    reference = render_reference()
    for name in Settings().origin:
        assert f"### `{name}`" in reference
        assert f"`HORNBEAM_{name.upper()}`" in reference
    assert "In the `start()` dict a bare number is milliseconds" in reference
    assert "in the `start()` dict: a duration: milliseconds" in reference


def test_readme_section_between_markers_is_regenerated() -> None:
    readme = "# hornbeam\n\n<!-- settings:start -->\nstale\n<!-- settings:end -->\n\nmore\n"
    updated = with_readme_section(readme)
    assert updated.startswith("# hornbeam\n\n<!-- settings:start -->\n")
    assert updated.endswith("<!-- settings:end -->\n\nmore\n")
    assert "stale" not in updated
    assert "| `max_worker_memory` | `--max-worker-memory` | `0` |" in updated
    assert with_readme_section(updated) == updated
    assert with_readme_section("# no markers\n") == "# no markers\n"


def test_invalid_value_names_value_and_form() -> None:
    error = InvalidValue("x", "a thing", "why")
    assert str(error) == "'x' is not a thing: why"
