"""The gRPC load benchmark (issue #4 targets: unary >= 5,000 requests/s with p99 < 20 ms at 32
clients; streaming >= 500,000 durable ops/s): one round of each, numbers in extra_info.

    python -m pytest bench/test_grpc_load_bench.py --benchmark-only -q -s
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from bench import load

SECONDS = float(os.environ.get("PYPOINTS_LOAD_SECONDS", "10"))
MEMBERS = int(os.environ.get("PYPOINTS_LOAD_MEMBERS", "100000"))


@pytest.mark.parametrize(("mode", "clients"), [("unary", 32), ("stream", 4)])
def test_grpc_load(benchmark: Any, mode: str, clients: int) -> None:
    res = benchmark.pedantic(load.run, kwargs=dict(mode=mode, clients=clients, seconds=SECONDS, members=MEMBERS),
                             rounds=1, iterations=1)
    print("\n" + res.line())
    benchmark.extra_info.update(vars(res))
    assert res.errors == 0
