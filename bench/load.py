"""gRPC load generator (issue #4): N concurrent clients for T seconds against `pypoints serve`.

    python -m bench.load --mode unary  --clients 32 --seconds 10   # earn(credit)/redeem mix, one call each
    python -m bench.load --mode stream --clients 4  --seconds 10 --batch 10000   # SubmitBatches

Without --address it seeds a data set (--members, each with a large credit) in a temp dir and
starts `python -m pypoints serve` on 127.0.0.1:0 in its own process (so client and server do
not share a GIL, only the machine's cores), with the Prometheus endpoint on, and reads the
core writer's counters from it at the end. Every command is durable (the server's ledger runs
with durability "sync"). Prints requests/s, ops/s, p50/p99 latency (per call, or per batch in
stream mode) and the mean commands per group commit."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import msgpack

REPO = Path(__file__).resolve().parent.parent
SERVING = re.compile(r"pypoints serving on ([\d.]+):(\d+)(?:.*metrics on :(\d+))?")
T0 = 1_700_000_000_000


@dataclass
class Result:
    mode: str
    clients: int
    seconds: float
    requests: int = 0
    ops: int = 0
    errors: int = 0
    requests_per_s: float = 0.0
    ops_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    commands_per_commit: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.mode}: {self.clients} clients x {self.seconds:.1f} s: {self.requests:,} requests "
                f"({self.requests_per_s:,.0f}/s), {self.ops:,} ledger ops ({self.ops_per_s:,.0f}/s), "
                f"latency p50 {self.p50_ms:.2f} ms p99 {self.p99_ms:.2f} ms, errors {self.errors}, "
                f"mean commands per group commit {self.commands_per_commit:.1f}")


def seed(data: Path, members: int) -> str:
    """A programme `bench`, point type `pts`, `members` members with 10^9 points each; returns an admin token."""
    import pypoints as pp
    from pypoints.server.auth import TokenStore

    with pp.Ledger(data, durability="no_sync_bulk_load") as led:
        led.define_programme("bench")
        led.define_point_type("bench", pp.PointTypeSpec("pts"))
        for lo in range(0, members, 50_000):
            ids = range(lo, min(members, lo + 50_000))
            led.submit_tuples([("open_member", f"open.{i}", T0, f"m{i}", "bench", "", None, [], "ordinary", "individual") for i in ids])
            led.submit_tuples([("credit", f"seed.{i}", T0, f"m{i}", "pts", 10**9, None, "") for i in ids])
    token, _ = TokenStore(data).create("admin", name="bench")
    return token


def start_server(data: Path, workers: int) -> tuple[subprocess.Popen[str], str, int | None]:
    proc = subprocess.Popen([sys.executable, "-m", "pypoints", "serve", "--port", "0", "--metrics-port", "0",
                             "--data-dir", str(data), "--workers", str(workers), "--log-level", "warning"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = SERVING.search(line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
            return proc, f"{m.group(1)}:{m.group(2)}", int(m.group(3)) if m.group(3) else None
    raise RuntimeError("server did not start")


def writer_counters(metrics_port: int | None) -> dict[str, float]:
    if metrics_port is None:
        return {}
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    out = {}
    for name in ("pypoints_writer_group_commits_total", "pypoints_writer_commands_total"):
        m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
        if m:
            out[name] = float(m.group(1))
    return out


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


async def run_unary(address: str, token: str, clients: int, seconds: float, members: int, redeem_share: float) -> Result:
    from pypoints.v1 import ledger_pb2 as L, ledger_pb2_grpc

    md = (("authorization", f"Bearer {token}"),)
    lat: list[float] = []
    res = Result("unary", clients, seconds)
    run = os.getpid()
    async with grpc.aio.insecure_channel(address) as ch:
        stub = ledger_pb2_grpc.LedgerServiceStub(ch)
        deadline = time.perf_counter() + seconds

        async def client(k: int) -> None:
            rng = random.Random(k)
            n = 0
            while time.perf_counter() < deadline:
                m = f"m{rng.randrange(members)}"
                rid = f"load.{run}.{k}.{n}"
                t = time.perf_counter()
                try:
                    if rng.random() < redeem_share:
                        await stub.Redeem(L.RedeemRequest(request_id=rid, member_id=m, amount=rng.randint(1, 50)),
                                          metadata=md, timeout=30)
                    else:
                        await stub.Credit(L.CreditRequest(request_id=rid, member_id=m, point_type="pts",
                                                          amount=rng.randint(1, 500)), metadata=md, timeout=30)
                    lat.append(time.perf_counter() - t)
                except grpc.aio.AioRpcError as e:
                    res.errors += 1
                    if len(res.error_samples) < 5:
                        res.error_samples.append(f"{e.code()}: {e.details()}")
                n += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
    res.requests = res.ops = len(lat)
    res.requests_per_s = res.ops_per_s = len(lat) / elapsed
    res.p50_ms, res.p99_ms = pct(lat, 0.50), pct(lat, 0.99)
    return res


async def run_stream(address: str, token: str, clients: int, seconds: float, members: int, batch: int) -> Result:
    from pypoints.v1 import batch_pb2 as B, batch_pb2_grpc

    md = (("authorization", f"Bearer {token}"),)
    lat: list[float] = []
    ops = 0
    res = Result("stream", clients, seconds)
    run = os.getpid()
    async with grpc.aio.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        stub = batch_pb2_grpc.BatchServiceStub(ch)
        deadline = time.perf_counter() + seconds

        async def client(k: int) -> None:
            nonlocal ops
            rng = random.Random(k)
            call = stub.SubmitBatches(metadata=md, timeout=seconds + 120)
            b = 0
            while time.perf_counter() < deadline:
                base = rng.randrange(members)
                cmds = [("credit", f"sl.{run}.{k}.{b}.{i}", T0, f"m{(base + i * 7919) % members}", "pts", 1 + i % 100, None, "")
                        for i in range(batch)]
                msg = B.CommandBatch(batch_id=str(b), commands=msgpack.packb(cmds))
                t = time.perf_counter()
                await call.write(msg)
                out = await call.read()
                lat.append(time.perf_counter() - t)
                ops += out.applied + out.replayed
                res.errors += out.refused
                b += 1
            await call.done_writing()
            while (await call.read()) is not grpc.aio.EOF:
                pass

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
    res.requests, res.ops = len(lat), ops
    res.requests_per_s, res.ops_per_s = len(lat) / elapsed, ops / elapsed
    res.p50_ms, res.p99_ms = pct(lat, 0.50), pct(lat, 0.99)
    return res


def run(mode: str = "unary", clients: int = 32, seconds: float = 10.0, members: int = 10_000, batch: int = 10_000,
        redeem_share: float = 0.3, address: str | None = None, token: str | None = None, workers: int = 64) -> Result:
    tmp = None
    proc = None
    metrics_port = None
    try:
        if address is None:
            tmp = Path(tempfile.mkdtemp(prefix="pypoints-load-"))
            token = seed(tmp / "data", members)
            proc, address, metrics_port = start_server(tmp / "data", workers)
        assert token, "--token is required with --address"
        before = writer_counters(metrics_port)
        if mode == "unary":
            res = asyncio.run(run_unary(address, token, clients, seconds, members, redeem_share))
        else:
            res = asyncio.run(run_stream(address, token, clients, seconds, members, batch))
        after = writer_counters(metrics_port)
        if after:
            groups = after["pypoints_writer_group_commits_total"] - before["pypoints_writer_group_commits_total"]
            cmds = after["pypoints_writer_commands_total"] - before["pypoints_writer_commands_total"]
            res.commands_per_commit = cmds / groups if groups else 0.0
        return res
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["unary", "stream"], default="unary")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=10_000, help="commands per stream message")
    ap.add_argument("--redeem-share", type=float, default=0.3)
    ap.add_argument("--workers", type=int, default=64, help="server RPC threads")
    ap.add_argument("--address", default=None, help="an already running server (then --token)")
    ap.add_argument("--token", default=None)
    ns = ap.parse_args(argv)
    res = run(ns.mode, ns.clients, ns.seconds, ns.members, ns.batch, ns.redeem_share, ns.address, ns.token, ns.workers)
    print(res.line())
    for s in res.error_samples:
        print("  error:", s)
    print(asdict(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
