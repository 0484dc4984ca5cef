"""The hornbeam command line: flags generated from the settings, exit codes, messages.

No test starts a server: where main() would serve, the arbiter's serve is replaced by a
function that records the settings (or raises the error under test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hornbeam
from hornbeam.cli import main
from hornbeam.config import Settings
from hornbeam.errors import BindError


@pytest.fixture(autouse=True)
def _clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No HORNBEAM_* variable of the caller and no hornbeam.toml leak into a test."""
    for variable in list(os.environ):
        if variable.startswith("HORNBEAM_"):
            monkeypatch.delenv(variable)
    monkeypatch.chdir(tmp_path)


def run_module(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("HORNBEAM_")}
    return subprocess.run(
        [sys.executable, "-m", "hornbeam", *arguments],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "hornbeam 0.1.0\n"


def test_python_dash_m_hornbeam_version(tmp_path: Path) -> None:
    finished = run_module("--version", cwd=tmp_path)
    assert (finished.returncode, finished.stdout) == (0, "hornbeam 0.1.0\n")


def test_bad_value_exits_2_with_one_line_message(tmp_path: Path) -> None:
    finished = run_module("-w", "abc", "app:application", cwd=tmp_path)
    assert finished.returncode == 2
    assert finished.stdout == ""
    assert finished.stderr == (
        "hornbeam: error: workers: 'abc' from --workers is not a whole number >= 1\n"
    )


def test_bad_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HORNBEAM_TIMEOUT", "soon")
    assert main(["app:application"]) == 2
    assert capsys.readouterr().err.startswith(
        "hornbeam: error: timeout: 'soon' from HORNBEAM_TIMEOUT is not a duration"
    )


def test_unknown_option_suggests_the_right_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--max-request", "5", "app"]) == 2
    assert capsys.readouterr().err == (
        "hornbeam: error: unknown option --max-request (did you mean --max-requests?)\n"
    )


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "-w"]) == 2
    assert "argument -w/--workers: expected one argument" in capsys.readouterr().err
    assert main(["app", "other"]) == 2
    assert "only one APP_SPEC" in capsys.readouterr().err


def test_missing_app_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-w", "2"]) == 2
    assert capsys.readouterr().err.startswith("hornbeam: error: no application given")


def test_help_lists_generated_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("-w N, --workers N", "-b ADDRESS, --bind ADDRESS", "--max-requests N",
                 "--preload-app, --no-preload-app, --preload", "-t SECONDS, --timeout SECONDS",
                 "--limit-request-field_size", "HORNBEAM_MAX_WORKER_MEMORY"):  # fmt: skip
        assert flag in text


def test_print_config_shows_values_and_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hornbeam.toml").write_text('access_log = "-"\n')
    monkeypatch.setenv("HORNBEAM_THREADS", "8")
    assert main(["--print-config", "-w", "3", "app:application"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "app = app:application  (command line)" in lines
    assert "workers = 3  (command line)" in lines
    assert "threads = 8  (env HORNBEAM_THREADS)" in lines
    assert f"access_log = -  (file {tmp_path / 'hornbeam.toml'})" in lines
    assert "timeout = 30s  (default)" in lines


def test_print_config_needs_no_app_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-config"]) == 0
    assert "app = none  (default)" in capsys.readouterr().out.splitlines()


def test_python_config_file_via_dash_c(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_text(
        "workers = 3\n\ndef on_starting(server):\n    print('starting', server)\n"
    )
    finished = run_module("-c", "conf.py", "--print-config", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert f"workers = 3  (file {tmp_path / 'conf.py'})" in finished.stdout.splitlines()
    assert "on_starting = __config__:on_starting  (file " in finished.stdout


def test_main_serves_the_loaded_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Settings] = []
    monkeypatch.setattr("hornbeam.arbiter.serve", served.append)
    assert main(["app:application", "-w", "2", "-b", "[::1]:0"]) == 0
    assert [(settings.app, settings.workers) for settings in served] == [("app:application", 2)]
    assert str(served[0].bind[0]) == "[::1]:0"


def test_errors_while_serving_become_exit_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def address_taken(settings: Settings) -> None:
        raise BindError("bind: 127.0.0.1:8000 is already in use; pick another port with -b")

    monkeypatch.setattr("hornbeam.arbiter.serve", address_taken)
    assert main(["app:application"]) == BindError.exit_code
    assert capsys.readouterr().err == (
        "hornbeam: error: bind: 127.0.0.1:8000 is already in use; pick another port with -b\n"
    )

    def interrupted(settings: Settings) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("hornbeam.arbiter.serve", interrupted)
    assert main(["app:application"]) == 0


def test_start_builds_settings_from_hornbeam_options(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Settings] = []
    monkeypatch.setattr("hornbeam.arbiter.serve", served.append)
    hornbeam.start("app:application", {"pythonpath": ["flask_demo"], "timeout": 30000})
    assert (served[0].app, served[0].pythonpath, served[0].timeout) == (
        "app:application",
        ("flask_demo",),
        30.0,
    )
    assert hornbeam.Settings is Settings
