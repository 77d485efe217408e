"""Smoke run of the gRPC load generator (bench/load.py) under pytest-benchmark: one tiny round
per mode proves it drives a real `pypoints serve` process with no errors and reads the writer's
group-commit counters from the Prometheus endpoint. Numbers: `python -m bench.load` (bench/README.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", ["unary", "stream"])
def test_load_generator_smoke(benchmark: Any, mode: str) -> None:
    res = benchmark.pedantic(load.run, kwargs=dict(mode=mode, clients=4, seconds=1.0, members=200, batch=500,
                                                   workers=8), rounds=1, iterations=1)
    benchmark.extra_info.update(requests_per_s=res.requests_per_s, ops_per_s=res.ops_per_s,
                                p50_ms=res.p50_ms, p99_ms=res.p99_ms)
    assert res.errors == 0, res.error_samples
    assert res.requests > 0 and res.ops >= res.requests
    assert res.p99_ms >= res.p50_ms > 0
    assert res.commands_per_commit >= 1
    if mode == "stream":
        assert res.ops == res.requests * 500
