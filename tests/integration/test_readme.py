"""Every code snippet of the README is run here, so the README cannot drift from the truth.

A snippet this module does not know how to run fails the suite: add it here when you add
one to the README.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness import ROOT, wait_for

README = ROOT / "README.md"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(README.read_text())]


def _bash(*needles: str) -> str:
    """The one bash block of the README that contains every needle."""
    [block] = [
        b.strip() for lang, b in _blocks() if lang == "bash" and all(n in b for n in needles)
    ]
    return block


def _demo_command() -> str:
    return _bash("hornbeam app:", "flask_demo")


def _test_command() -> str:
    [command] = [b.strip() for lang, b in _blocks() if lang == "bash" and "pytest" in b]
    return command


def _quick_start() -> str:
    return _bash("curl", "/api/items")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HORNBEAM_")}
    # The README's commands use the default 127.0.0.1:8000; the environment moves them to a
    # free port without touching the command itself (env overrides the default, not argv).
    env["HORNBEAM_BIND"] = "127.0.0.1:0"
    return env


class _Background:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def url(self, timeout: float) -> str:
        found: list[str] = []

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(self.log_path.read_text(errors="replace"))
            found[:] = _LISTENING.findall(self.log_path.read_text(errors="replace"))
            return bool(found)

        wait_for(listening, timeout, "the server to listen")
        return found[0]

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: bash and hornbeam
        try:
            code = self.proc.wait(30)
        finally:
            self._log.close()
        return code


def _wait_serving(url: str) -> None:
    target = url if url.count("/") > 2 else url + "/"

    def answers() -> bool:
        try:
            return httpx.get(target, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, 30, "the app to answer")


def test_every_snippet_is_covered() -> None:
    known = {
        _demo_command(),
        _test_command(),
        _quick_start(),
        _bash("hornbeam app:", "fastapi_demo"),
        _bash("curl", "/stats"),
        _bash("hornbeam app:", "examples/chat"),
    }
    python_blocks = [b for lang, b in _blocks() if lang == "python"]
    others = [b.strip() for lang, b in _blocks() if lang != "python" and b.strip() not in known]
    assert not others, f"README snippets without a test: {others}"
    assert len(python_blocks) == 1


def test_test_command_is_what_ci_runs() -> None:
    assert _test_command() in (ROOT / ".ci" / "run").read_text()


def test_demo_command_and_quick_start(tmp_path: Path) -> None:
    demo = _Background(["bash", "-c", _demo_command()], tmp_path / "demo.log")
    try:
        url = demo.url(timeout=240)  # the command installs first
        _wait_serving(url)
        script = _quick_start().replace("http://localhost:8000", url)
        out = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        assert '"cached":false' in out and '"cached":true' in out
        assert out.index('"cached":false') < out.index('"cached":true')
        assert '"id_seq":1' in out
        wait_for(
            lambda: demo.log_path.read_text().count("Booting worker with pid") == 4,
            30,
            "the demo's 4 workers",
        )
    finally:
        assert demo.stop() in (0, -signal.SIGTERM)


def test_python_start_snippet(tmp_path: Path) -> None:
    [code] = [b for lang, b in _blocks() if lang == "python"]
    script = tmp_path / "start.py"
    script.write_text(code)
    server = _Background([sys.executable, str(script)], tmp_path / "start.log")
    try:
        url = server.url(timeout=30)
        _wait_serving(url)
        deadline = time.monotonic() + 20
        while server.log_path.read_text().count("Booting worker") < 4:
            assert time.monotonic() < deadline, "start() did not boot 4 workers"
            time.sleep(0.05)
    finally:
        assert server.stop() == 0


def test_settings_reference_is_generated() -> None:
    """README's settings table and docs/settings.md match the declarations."""
    result = subprocess.run(
        [sys.executable, "-m", "hornbeam.config.docs", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_fastapi_demo_command_and_curl_lines(tmp_path: Path) -> None:
    demo = _Background(["bash", "-c", _bash("hornbeam app:", "fastapi_demo")], tmp_path / "f.log")
    try:
        url = demo.url(timeout=240)
        wait_for(
            lambda: demo.log_path.read_text().count("Booting worker with pid") == 4,
            30,
            "the demo's 4 workers",
        )
        _wait_serving(url + "/stats")
        script = _bash("curl", "/stats").replace("http://localhost:8000", url)
        out = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        assert out.startswith('{"id":1,"name":"Item 1"')
        assert '"views":1' in out
        assert '"lifespan_startups":4' in out
    finally:
        assert demo.stop() in (0, -signal.SIGTERM)


def test_chat_command_serves_the_page(tmp_path: Path) -> None:
    chat = _Background(["bash", "-c", _bash("hornbeam app:", "examples/chat")], tmp_path / "c.log")
    try:
        url = chat.url(timeout=240)
        _wait_serving(url)
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200
        assert "WebSocket" in page.text
    finally:
        assert chat.stop() in (0, -signal.SIGTERM)
