"""`serve --preallocate-mib` / `ServerConfig.preallocate_bytes`: the data file is zero-filled
ahead before the server reports SERVING (commits that grow the file cost several times those
that overwrite it: bench/README, session 24); a bad size is refused and leaves the store closed."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

import pypoints as pp
from conftest import FakeClock
from pypoints.cli import main
from pypoints.server import App, ServerConfig

ROOM_BYTES = 8 << 20


def data_file_bytes(data: Path) -> int:
    return (data / "data.mdb").stat().st_size


def test_the_data_file_is_zero_filled_ahead_before_the_server_serves(tmp_path: Path) -> None:
    data = tmp_path / "data"
    app = App(ServerConfig(data_dir=data, port=0, workers=4, preallocate_bytes=ROOM_BYTES), clock=FakeClock())
    before = data_file_bytes(data)
    app.start()
    try:
        assert data_file_bytes(data) >= before + ROOM_BYTES - (1 << 20), "room ahead of the used part"
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        app.stop(grace=1)
    with pp.Ledger(data) as led:
        assert led.audit().ok


def test_a_preallocation_past_the_map_is_refused_and_leaves_the_store_closed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    app = App(ServerConfig(data_dir=data, port=0, workers=4, preallocate_bytes=1 << 62), clock=FakeClock())
    size = data_file_bytes(data)
    with pytest.raises(pp.InvalidArgument):
        app.start()
    assert data_file_bytes(data) == size, "nothing written"
    with pytest.raises(pp.LedgerClosed):
        app.ledger.balances("m1")
    with pp.Ledger(data) as led:  # and it opens again
        assert led.audit().ok


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_serve_refuses_a_bad_preallocation_size(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(main, ["serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
                                       "--preallocate-mib", value])
    assert result.exit_code == 2, result.output
    assert "--preallocate-mib" in result.output


def test_serve_refuses_a_preallocation_past_the_map(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
                                       "--preallocate-mib", str(1 << 40)])
    assert result.exit_code == 2, result.output
    assert "--preallocate-mib" in result.output and "map" in result.output
