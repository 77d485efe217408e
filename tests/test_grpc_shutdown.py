"""`pypoints serve` as a real process: graceful shutdown under load loses no acknowledged call
(issue #4 §5, proof: "kill the client mid-stream; restart the server; audit passes"), health
goes NOT_SERVING on shutdown, and `--demo` seeds and prints an admin token."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import msgpack
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import pypoints as pp
from conftest import REPO, setup_programme
from pypoints.server.auth import TokenStore
from pypoints.v1 import batch_pb2 as B
from pypoints.v1 import batch_pb2_grpc, ledger_pb2 as L, ledger_pb2_grpc

pytestmark = pytest.mark.slow
SERVING = re.compile(r"pypoints serving on ([\d.]+):(\d+)")
MEMBERS = [f"m{i}" for i in range(20)]


def start_server(data: Path, *extra: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "pypoints", "serve", "--port", "0", "--data-dir", str(data),
                             "--workers", "32", *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = SERVING.search(line)
        if m:
            threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()  # type: ignore[union-attr]
            return proc, f"{m.group(1)}:{m.group(2)}", lines
    proc.kill()
    raise AssertionError("server did not start: " + "".join(lines))


def test_sigterm_under_load_loses_no_acknowledged_call(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pp.Ledger(data) as led:
        setup_programme(led, members=tuple(MEMBERS))
    token, _ = TokenStore(data).create("admin")
    md = [("authorization", f"Bearer {token}")]
    proc, address, logs = start_server(data)
    acked: list[tuple[str, str, int]] = []  # (request id, member, amount) acknowledged by the server
    lock = threading.Lock()
    stop = threading.Event()

    def unary(k: int) -> None:
        stub = ledger_pb2_grpc.LedgerServiceStub(grpc.insecure_channel(address))
        n = 0
        while not stop.is_set():
            rid, m = f"u{k}.{n}", MEMBERS[(k + n) % len(MEMBERS)]
            try:
                stub.Credit(L.CreditRequest(request_id=rid, member_id=m, point_type="general", amount=3), metadata=md, timeout=20)
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), e  # type: ignore[attr-defined]
                return
            with lock:
                acked.append((rid, m, 3))
            n += 1

    def stream(k: int, cancel_after: int | None) -> None:
        stub = batch_pb2_grpc.BatchServiceStub(grpc.insecure_channel(address))
        sent: dict[str, list[tuple[str, str, int]]] = {}

        def gen():  # type: ignore[no-untyped-def]
            b = 0
            while not stop.is_set():
                items = [(f"s{k}.{b}.{i}", MEMBERS[i % len(MEMBERS)], 2) for i in range(200)]
                sent[f"b{b}"] = items
                yield B.CommandBatch(batch_id=f"b{b}", commands=msgpack.packb(
                    [("credit", rid, 1_700_000_000_000, m, "general", a, None, "") for rid, m, a in items]))
                b += 1
                time.sleep(0.01)

        call = stub.SubmitBatches(gen(), metadata=md, timeout=60)
        try:
            for i, res in enumerate(call):
                assert res.refused == 0
                with lock:
                    acked.extend(sent[res.batch_id])
                if cancel_after is not None and i + 1 >= cancel_after:
                    call.cancel()  # the client dies mid-stream
                    return
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), e  # type: ignore[attr-defined]

    threads = [threading.Thread(target=unary, args=(k,)) for k in range(8)]
    threads += [threading.Thread(target=stream, args=(100, None)), threading.Thread(target=stream, args=(101, 3))]
    for t in threads:
        t.start()
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert rc == 0, "".join(logs)
    assert '"event": "stopped"' in "".join(logs)
    assert len(acked) > 100, "the load never got going"

    with pp.Ledger(data) as led:
        missing = [rid for rid, _m, _a in acked if not led.entries_of(rid)]
        assert not missing, f"{len(missing)} acknowledged commands lost, e.g. {missing[:3]}"
        for m in MEMBERS:
            assert led.balance(m, "general").total >= sum(a for _r, mm, a in acked if mm == m)
        assert led.audit().ok
    # restart: serves again over the same store, then the CLI audit passes
    proc2, address2, logs2 = start_server(data)
    try:
        h = health_pb2_grpc.HealthStub(grpc.insecure_channel(address2))
        assert h.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        stub = ledger_pb2_grpc.LedgerServiceStub(grpc.insecure_channel(address2))
        assert stub.GetBalances(L.GetBalancesRequest(member_id="m0"), metadata=md, timeout=10).balances[0].total > 0
    finally:
        proc2.send_signal(signal.SIGTERM)
        assert proc2.wait(timeout=60) == 0, "".join(logs2)
    audit = subprocess.run([sys.executable, "-m", "pypoints", "audit", str(data)], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    assert audit.returncode == 0 and "audit OK" in audit.stdout, audit.stdout + audit.stderr


def test_shutdown_sets_health_not_serving_and_refuses_new_calls(tmp_path: Path) -> None:
    from pypoints.server import App, ServerConfig

    app = App(ServerConfig(data_dir=tmp_path / "d", port=0)).start()
    h = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{app.port}"))
    assert h.Check(health_pb2.HealthCheckRequest(service="pypoints.v1.LedgerService")).status == health_pb2.HealthCheckResponse.SERVING
    app.stop(grace=1)
    statuses = app.health._server_status  # after stop no call can reach it; read the servicer's table
    assert statuses and all(s == health_pb2.HealthCheckResponse.NOT_SERVING for s in statuses.values())
    with pytest.raises(Exception):
        app.ledger.balances("m1")  # the store is closed


def test_serve_demo_seeds_and_prints_an_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "pypoints", "serve", "--demo", "--port", "0", "--data-dir", str(data)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        out = [proc.stdout.readline() for _ in range(3)]
        token = out[2].strip()
        assert token.startswith("pp_"), out
        address = None
        for line in proc.stderr:
            m = SERVING.search(line)
            if m:
                address = f"{m.group(1)}:{m.group(2)}"
                break
        assert address
        stub = ledger_pb2_grpc.LedgerServiceStub(grpc.insecure_channel(address))
        bal = stub.GetBalances(L.GetBalancesRequest(member_id="m00001"), metadata=[("authorization", f"Bearer {token}")], timeout=10)
        assert {b.point_type for b in bal.balances} == {"merchant", "internal", "employee"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_a_server_that_cannot_bind_leaves_the_store_closed(tmp_path: Path) -> None:
    from pypoints.server import App, ServerConfig

    first = App(ServerConfig(data_dir=tmp_path / "a", port=0)).start()
    try:
        led = pp.Ledger(tmp_path / "b")
        with pytest.raises(Exception):
            App(ServerConfig(data_dir=tmp_path / "b", port=first.port), ledger=led)
        with pytest.raises(pp.LedgerClosed):  # the failed server closed its ledger
            led.balances("m1")
    finally:
        first.stop(grace=1)
