"""Acceptance: the user's seed Flask app, unchanged, on 4 workers sharing state.

First the seed document's own curl script (examples/flask_demo/curl_script.sh, verbatim)
with the outputs the document promises; then the hard version: concurrent clients on every
worker must see one store (unique gap-free ids, exact counters).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from harness import ROOT, Server, running

DEMO = ROOT / "examples" / "flask_demo"


def _json_stream(text: str) -> list[object]:
    """Split curl's concatenated JSON bodies (curl adds no newline between them)."""
    decoder = json.JSONDecoder()
    values, index = [], 0
    text = text.strip()
    while index < len(text):
        value, end = decoder.raw_decode(text, index)
        values.append(value)
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
    return values


def _start_demo(tmp_path: Path) -> AbstractContextManager[Server]:
    return running(tmp_path, "app:application", "--pythonpath", str(DEMO), workers=4)


def _same_minute_window() -> None:
    """The seed's rate limit is per wall-clock minute: don't start a 105-request burst at :59."""
    deadline = time.monotonic() + 20
    while datetime.now().second > 45 and time.monotonic() < deadline:
        time.sleep(0.5)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the seed's script needs curl")
def test_seed_curl_script_prints_what_the_document_shows(tmp_path: Path) -> None:
    script = (DEMO / "curl_script.sh").read_text()
    with _start_demo(tmp_path) as server:
        _same_minute_window()
        script = script.replace("http://localhost:8000", server.url)
        out = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        created_1, created_2, listed, listed_again, item, metrics, *limited = _json_stream(out)
    assert created_1 == {"item": {"id": 1, "name": "Item 1", "description": "First item"}}
    assert created_2 == {"item": {"id": 2, "name": "Item 2", "description": "Second item"}}
    assert listed["cached"] is False and len(listed["items"]) == 2  # type: ignore[index]
    assert listed_again["cached"] is True  # type: ignore[index]
    assert listed_again["items"] == listed["items"]  # type: ignore[index]
    assert item == {"item": created_1["item"], "cached": False}  # type: ignore[index]
    assert metrics == {
        "requests": {"total": 6},
        "items": {"count": 2, "id_seq": 2},
        "cache": {"items_list_cached": True},
    }
    assert len(limited) == 105
    assert limited[:100] == [{"remaining": 100 - n} for n in range(1, 101)]
    assert limited[100:] == [{"error": "Rate limit exceeded"}] * 5


def test_concurrent_clients_share_one_store(tmp_path: Path) -> None:
    with _start_demo(tmp_path) as server:
        requests_made = 0

        def create(n: int) -> tuple[list[int], int]:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                ids = []
                for i in range(25):
                    r = client.post("/api/items", json={"name": f"c{n}-{i}", "description": "x"})
                    assert r.status_code == 201
                    ids.append(r.json()["item"]["id"])
                return ids, 25

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(create, range(16)))
        ids = [i for chunk, _ in results for i in chunk]
        requests_made += sum(count for _, count in results)
        assert sorted(ids) == list(range(1, 401)), "ids must be unique and gap-free"

        def home(_: int) -> list[int]:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                return [client.get("/").json()["views"] for _ in range(10)]

        with ThreadPoolExecutor(8) as pool:
            views = [v for chunk in pool.map(home, range(8)) for v in chunk]
        requests_made += len(views)
        assert sorted(views) == list(range(1, 81)), "each request adds exactly one view"

        metrics = server.get("/metrics").json()
        requests_made += 1
        assert metrics["items"]["id_seq"] == 400
        assert metrics["items"]["count"] == 400
        assert metrics["requests"]["total"] == requests_made
