"""The pure parts of bench/websocket.py: the hand-written RFC 6455 client framing and
handshake checks (bench/ws_client.py), the server commands, the verdicts, the figures and
the report tables.

No server is started and no socket is opened here; the benchmark runs by hand and
tests/integration/test_websocket_idle.py drives the client against a real server.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being built
    sys.path.insert(0, str(BENCH))  # the benchmark imports its neighbours by name
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


ws = _load("bench_websocket", BENCH / "websocket.py")
client = sys.modules["ws_client"]  # the very module websocket.py imported its client from


def _unmask(frame: bytes, header_size: int) -> bytes:
    mask = frame[header_size : header_size + 4]
    body = frame[header_size + 4 :]
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(body))


# ---- handshake ---------------------------------------------------------------------------------
def test_accept_key_matches_the_rfc_6455_example() -> None:
    assert client.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_upgrade_request_is_a_complete_websocket_upgrade() -> None:
    request = client.upgrade_request("127.0.0.1", 8123, "a2V5a2V5a2V5a2V5a2V5aw==", "/echo")
    lines = request.decode("ascii").split("\r\n")
    assert lines[0] == "GET /echo HTTP/1.1"
    assert request.endswith(b"\r\n\r\n") and request.count(b"\r\n\r\n") == 1
    assert set(lines[1:-2]) == {
        "Host: 127.0.0.1:8123",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==",
        "Sec-WebSocket-Version: 13",
    }


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


def test_check_upgrade_response_accepts_a_101_whatever_the_header_case() -> None:
    client.check_upgrade_response(GOOD_101, KEY)


@pytest.mark.parametrize(
    ("head", "complaint"),
    [
        (b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n", "upgrade refused"),
        (GOOD_101.replace(b"upgrade: WebSocket", b"upgrade: h2c"), "Upgrade: websocket"),
        (GOOD_101.replace(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", b"wrong="), "Sec-WebSocket-Accept"),
    ],
)
def test_check_upgrade_response_refuses_anything_else(head: bytes, complaint: str) -> None:
    with pytest.raises(client.BenchError, match=complaint):
        client.check_upgrade_response(head, KEY)


# ---- frames ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "length_bytes"),
    [
        (0, b"\x80"),
        (125, b"\xfd"),
        (126, b"\xfe\x00\x7e"),
        (65535, b"\xfe\xff\xff"),
        (65536, b"\xff" + (65536).to_bytes(8, "big")),
    ],
)
def test_encode_frame_sets_fin_mask_and_the_shortest_length(size: int, length_bytes: bytes) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    frame = client.encode_frame(client.OP_TEXT, payload, b"\x01\x02\x03\x04")
    assert frame[0] == 0x81  # FIN + text
    assert frame[1 : 1 + len(length_bytes)] == length_bytes
    header = 1 + len(length_bytes)
    assert frame[header : header + 4] == b"\x01\x02\x03\x04"
    assert _unmask(frame, header) == payload
    assert frame[header + 4 :] != payload or size == 0  # really masked


def test_encode_frame_close_carries_the_code() -> None:
    frame = client.encode_frame(client.OP_CLOSE, client.NORMAL_CLOSURE, b"\xaa\xbb\xcc\xdd")
    assert frame[:2] == b"\x88\x82"
    assert _unmask(frame, 2) == (1000).to_bytes(2, "big")


def test_decode_frame_start_reads_fin_opcode_and_length_code() -> None:
    assert client.decode_frame_start(b"\x81\x05") == (True, client.OP_TEXT, 5)
    assert client.decode_frame_start(b"\x09\x7e") == (False, client.OP_PING, 126)
    assert client.decode_frame_start(b"\x8a\x7f") == (True, client.OP_PONG, 127)


def test_decode_frame_start_refuses_a_masked_server_frame() -> None:
    with pytest.raises(client.BenchError, match="masked"):
        client.decode_frame_start(b"\x81\x85")


# ---- servers -----------------------------------------------------------------------------------
def test_idle_servers_push_pings_and_timeouts_past_the_test() -> None:
    hornbeam = ws.server_argv("hornbeam", 0, idle=True)
    uvicorn = ws.server_argv("uvicorn", 8123, idle=True)
    quiet = str(ws.QUIET_SECONDS)
    assert hornbeam[hornbeam.index("--websocket-ping-interval") + 1] == quiet
    assert hornbeam[hornbeam.index("--websocket-timeout") + 1] == quiet
    assert uvicorn[uvicorn.index("--ws-ping-interval") + 1] == quiet
    assert uvicorn[uvicorn.index("--ws-ping-timeout") + 1] == quiet
    assert ws.QUIET_SECONDS > 600  # longer than any run of the benchmark


def test_echo_servers_keep_their_defaults_and_serve_one_worker() -> None:
    hornbeam = ws.server_argv("hornbeam", 0, idle=False)
    uvicorn = ws.server_argv("uvicorn", 8123, idle=False)
    assert not [flag for flag in hornbeam + uvicorn if "ping" in flag or "timeout" in flag]
    assert hornbeam[1:4] == ["-m", "hornbeam", ws.APP]
    assert hornbeam[hornbeam.index("-w") + 1] == "1"
    assert hornbeam[hornbeam.index("-b") + 1] == "127.0.0.1:0"
    assert uvicorn[uvicorn.index("--ws") + 1] == "websockets"
    assert uvicorn[uvicorn.index("--workers") + 1] == "1"
    assert uvicorn[uvicorn.index("--port") + 1] == "8123"
    assert {"uvloop", "httptools"} <= set(uvicorn)


# ---- figures and verdicts ----------------------------------------------------------------------
def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted on purpose
    assert ws.percentile(values, 0.5) == 50.0
    assert ws.percentile(values, 0.99) == 99.0
    assert ws.percentile([7.0], 0.99) == 7.0
    assert ws.percentile([], 0.5) is None


def _healthy(server: str = "hornbeam", held_kib: int = 30_000 + 10_000 * 16) -> Any:
    return ws.IdleResult(
        server,
        wanted=10_000,
        opened=10_000,
        open_seconds=3.0,
        rss_idle_kib=30_000,
        rss_held_kib=held_kib,
        rss_closed_kib=held_kib,
        http_ms=1.0,
        handshake_ms=1.0,
        echo_ms=[0.1] * ws.HEALTH_MESSAGES,
        closed_cleanly=10_000,
    )


def test_kib_per_connection_is_rss_growth_over_connections_held() -> None:
    assert _healthy().kib_per_connection == pytest.approx(16.0)
    assert ws.IdleResult("hornbeam", 10).kib_per_connection is None  # nothing measured


def test_a_worker_that_held_up_has_no_problems() -> None:
    assert _healthy().problems() == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"opened": 9_990, "first_refusal": "TimeoutError: "}, "10 not accepted"),
        ({"echo_ms": [0.1] * 98 + [60.0, 60.0]}, "echo p99 60.0 ms"),
        ({"echo_ms": [0.1] * 3}, "echoed 3/100"),
        ({"idle_frames": 4}, "4 frames on idle sockets"),
        ({"closed_cleanly": 9_000}, "1000 not closed cleanly"),
        ({"failure": "server exited with code 1:\nTraceback"}, "server exited with code 1"),
    ],
)
def test_each_shortfall_is_named(change: dict[str, object], complaint: str) -> None:
    result = _healthy()
    for name, value in change.items():
        setattr(result, name, value)
    assert any(complaint in problem for problem in result.problems())


def test_echo_rate_counts_round_trips_per_second() -> None:
    result = ws.EchoResult("hornbeam", 64, seconds=2.0, latencies_ms=[0.5] * 1000)
    assert result.per_second == pytest.approx(500.0)
    assert ws.EchoResult("uvicorn", 64).per_second is None


# ---- report ------------------------------------------------------------------------------------
def _echo(server: str, size: int, messages: int, cpu_us: float) -> Any:
    return ws.EchoResult(
        server,
        size,
        seconds=1.0,
        latencies_ms=[1.0] * messages,
        server_cpu_us=cpu_us,
        client_cpu=0.5,
    )


def test_tables_give_every_figure_and_hornbeam_over_uvicorn() -> None:
    idle = [_healthy("hornbeam"), _healthy("uvicorn", 30_000 + 10_000 * 32)]
    echo = [_echo("hornbeam", 64, 3000, 10.0), _echo("uvicorn", 64, 2000, 20.0)]
    idle_rows = ws.idle_table(idle).splitlines()
    assert len(idle_rows) == 4
    assert "| hornbeam | 10,000 / 10,000 |" in idle_rows[2] and "| 16.0 |" in idle_rows[2]
    assert idle_rows[2].endswith("| healthy |")
    assert "| 64 B | uvicorn | 2,000 | 1.00 | 1.00 | 20.0 | 50% |" in ws.echo_table(echo)
    ratios = ws.ratio_table(idle, echo)
    assert "| idle: KiB per connection (below 1: hornbeam lighter) | 0.50x |" in ratios
    assert "| echo 64 B: messages/s (above 1: hornbeam faster) | 1.50x |" in ratios
    assert "| echo 64 B: server CPU µs/msg (below 1: hornbeam cheaper) | 0.50x |" in ratios


def test_a_failed_server_shows_a_dash_and_its_reason() -> None:
    failed = ws.EchoResult("uvicorn", 16 * 1024, failure="server not ready after 30 s:\nlog")
    echo = [_echo("hornbeam", 16 * 1024, 100, 10.0), failed]
    assert "failed: server not ready after 30 s" in ws.echo_table(echo)
    assert "| echo 16 KB: messages/s (above 1: hornbeam faster) | — |" in ws.ratio_table([], echo)
    text = ws.report("# title", ["fact"], [], echo, ["python bench/websocket.py echo"])
    assert "## Failures" in text and "uvicorn: server not ready after 30 s:\nlog" in text
    assert "## Idle" not in text and "## Echo, 50 connections" in text


def test_parse_args_defaults_and_limits() -> None:
    args = ws.parse_args([])
    assert (args.mode, args.connections, args.duration, args.output) == ("all", 10_000, 5.0, None)
    assert ws.parse_args(["idle", "--connections", "1000"]).connections == 1000
    for bad in (["--connections", "0"], ["--duration", "0"], ["everything"]):
        with pytest.raises(SystemExit):
            ws.parse_args(bad)
