"""The ceiling grpcio itself puts on unary calls on this machine: an echo server with a trivial
handler (no pypoints code at all) in one process, asyncio clients in others, C concurrent calls
for T seconds. Whatever pypoints' unary methods do, they cannot beat this number.

    python -m bench.grpc_ceiling [--server aio|sync] [--clients 32] [--procs 1] [--seconds 5]

Prints calls/s and p50/p99 latency. Compare with `python -m bench.load --mode unary`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
from concurrent import futures
from typing import Any

import grpc

from bench.load import pct

SERVICE, METHOD = "ceiling.Echo", "Echo"
PAYLOAD = b"x" * 60  # about the size of a CreditRequest


def _identity(x: bytes) -> bytes:
    return x


def _handlers(handler: Any) -> list[grpc.GenericRpcHandler]:
    method = grpc.unary_unary_rpc_method_handler(handler, _identity, _identity)
    return [grpc.method_handlers_generic_handler(SERVICE, {METHOD: method})]


def _serve(kind: str, ports: Any) -> None:
    if kind == "sync":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
        server.add_generic_rpc_handlers(_handlers(lambda req, ctx: req))
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        server.wait_for_termination()
        return

    async def echo(req: bytes, ctx: Any) -> bytes:
        return req

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(_handlers(echo))
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def _client(port: int, concurrency: int, seconds: float, out: Any) -> None:
    async def main() -> list[float]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_unary(f"/{SERVICE}/{METHOD}")
            lat: list[float] = []
            end = time.perf_counter() + seconds

            async def loop() -> None:
                while time.perf_counter() < end:
                    t = time.perf_counter()
                    await call(PAYLOAD, timeout=30)
                    lat.append(time.perf_counter() - t)

            await asyncio.gather(*(loop() for _ in range(concurrency)))
            return lat

    out.put(asyncio.run(main()))


def run(server: str = "aio", clients: int = 32, procs: int = 1, seconds: float = 5.0) -> dict[str, float]:
    ports: Any = mp.Queue()
    sp = mp.Process(target=_serve, args=(server, ports), daemon=True)
    sp.start()
    try:
        port = ports.get(timeout=30)
        out: Any = mp.Queue()
        cps = [mp.Process(target=_client, args=(port, max(1, clients // procs), seconds, out)) for _ in range(procs)]
        for c in cps:
            c.start()
        lat = [x for _ in cps for x in out.get(timeout=seconds + 60)]
        for c in cps:
            c.join()
    finally:
        sp.kill()
    return {"calls_per_s": len(lat) / seconds, "p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", choices=["aio", "sync"], default="aio")
    ap.add_argument("--clients", type=int, default=32, help="concurrent calls in flight")
    ap.add_argument("--procs", type=int, default=1, help="client processes")
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    r = run(a.server, a.clients, a.procs, a.seconds)
    print(f"grpcio {grpc.__version__} {a.server} server, trivial handler, {a.clients} concurrent calls from "
          f"{a.procs} client process(es): {r['calls_per_s']:,.0f} calls/s, p50 {r['p50_ms']:.2f} ms, "
          f"p99 {r['p99_ms']:.2f} ms")


if __name__ == "__main__":
    main()
