"""Fixtures for the benchmarks: one loaded data set per system, built once per module (the
loads are in bench/harness.py so the smoke test in tests/ reuses them on a tiny data set).

Env vars:
  PYPOINTS_BENCH_MEMBERS        members in the data set (default 1,000,000)
  PYPOINTS_BENCH_ROUNDS         rounds per batch benchmark (default 5; 15 pairs for earn vs credit)
  PYPOINTS_BENCH_SINGLE_ROUNDS  rounds of the one-command-per-commit benchmark (default 200)
  PYPOINTS_BENCH_SUSTAINED_ROUNDS / PYPOINTS_BENCH_STEADY_ROUNDS  rounds of the sustained credit
                                (default 40) and steady-state mixed (default 200) benchmarks
  PYPOINTS_BENCH_DIR            parent of the temporary data directories (default: the system's)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from bench import harness, workloads as wl
from bench.harness import Store


def _say(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines past pytest's output capture (the loads take a while at 1M members)."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    cap = config.pluginmanager.get_plugin("capturemanager")

    def say(msg: str) -> None:
        if tr is None:
            return
        if cap is None:
            tr.write_line(f"[bench] {msg}")
            return
        with cap.global_and_fixture_disabled():
            tr.write_line(f"[bench] {msg}")

    return say


@pytest.fixture(scope="module")
def pypoints_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with harness.pypoints_store(wl.bench_members(), progress=_say(request.config)) as store:
        yield store


@pytest.fixture(scope="module")
def sqlite_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with harness.sqlite_store(wl.bench_members(), progress=_say(request.config)) as store:
        yield store


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    lines = harness.summary_lines()
    if lines:
        terminalreporter.section("pypoints bench: ops/s = commands per round / median round time")
        for line in lines:
            terminalreporter.write_line(line)
