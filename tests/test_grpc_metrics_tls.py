"""Prometheus metrics endpoint (requests, latency histograms, in-flight queue depth, the core
writer's group commits and commit batch sizes) and TLS with a certificate and key (issue #4 §4, §5)."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

import grpc
import msgpack
import pytest

from conftest import FakeClock
from grpc_support import Client, seed
from pypoints.server import App, ServerConfig
from pypoints.server.auth import TokenStore
from pypoints.v1 import batch_pb2 as B
from pypoints.v1 import ledger_pb2 as L


def test_metrics_endpoint(tmp_path: Path, clock: FakeClock) -> None:
    data = tmp_path / "data"
    token, _ = TokenStore(data).create("admin")
    app = App(ServerConfig(data_dir=data, port=0, metrics_port=0, workers=4), clock=clock).start()
    try:
        c = Client(grpc.insecure_channel(f"127.0.0.1:{app.port}"), token)
        seed(c)
        c.call(c.ledger, "Credit", L.CreditRequest(request_id="c1", member_id="m1", point_type="general", amount=5))
        with pytest.raises(grpc.RpcError):
            c.call(c.ledger, "Redeem", L.RedeemRequest(request_id="r1", member_id="m1", amount=50))
        list(c.batch.SubmitBatches(iter([B.CommandBatch(batch_id="b", commands=msgpack.packb(
            [("credit", f"b{i}", clock.now, "m2", "general", 1, None, "") for i in range(10)]))]), metadata=c.md, timeout=10))
        assert app.metrics_port
        text = urllib.request.urlopen(f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=10).read().decode()
    finally:
        app.stop(grace=1)
    assert 'pypoints_grpc_requests_total{method="ledger.credit",reason="OK"} 1.0' in text
    assert 'pypoints_grpc_requests_total{method="ledger.redeem",reason="INSUFFICIENT_POINTS"} 1.0' in text
    assert 'pypoints_grpc_latency_seconds_bucket{le="0.005",method="ledger.credit"}' in text
    assert "pypoints_grpc_in_flight" in text
    assert "pypoints_batch_commands_total 10.0" in text
    assert "pypoints_writer_group_commits_total" in text and "pypoints_writer_commit_seconds_total" in text
    assert "pypoints_writer_commit_batch_size_mean" in text
    assert "pypoints_writer_merged_keys_total" in text and "pypoints_writer_state_log_records" in text
    assert "pypoints_writer_queue_depth 0.0" in text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_tls_with_certificate_and_key(tmp_path: Path, clock: FakeClock) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    data = tmp_path / "data"
    token, _ = TokenStore(data).create("admin")
    app = App(ServerConfig(data_dir=data, port=0, tls_cert=cert, tls_key=key, workers=4), clock=clock).start()
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        c = Client(grpc.secure_channel(f"localhost:{app.port}", creds), token)
        seed(c)
        assert c.call(c.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1")).balances
        plain = Client(grpc.insecure_channel(f"127.0.0.1:{app.port}"), token)
        with pytest.raises(grpc.RpcError) as ei:
            plain.call(plain.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1"), timeout=3)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    finally:
        app.stop(grace=1)
