"""Smoke test of the benchmark code (bench/): every workload runs once, untimed, on a data set of
1,000 members, against pypoints and the SQLite baseline, and both stores still balance."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness, sqlite_baseline, workloads as wl  # noqa: E402

MEMBERS = 1_000


class OneShot:
    """Stands in for pytest-benchmark's fixture: one untimed round, no stats."""

    def __init__(self) -> None:
        self.extra_info: dict[str, Any] = {}
        self.group = ""
        self.stats = None

    def pedantic(self, target, setup=None, teardown=None, rounds=1, iterations=1):  # type: ignore[no-untyped-def]
        args, kwargs = setup() if setup else ((), {})
        out = target(*args, **kwargs)
        if teardown:
            teardown(*args, **kwargs)
        return out


def run_every_workload(store: harness.Store, n: int) -> None:
    for kind in ("credit", "redeem", "mixed"):
        harness.batch(OneShot(), store, kind, n)
    harness.batch(OneShot(), store, "mixed", n)  # second mixed batch: captures and refunds
    harness.single(OneShot(), store)
    harness.sustained(OneShot(), store, n)
    harness.steady(OneShot(), store, n)
    for threads, _, batches in harness.THREADED:
        harness.threaded(OneShot(), store, threads, 50, min(batches, 2))


@pytest.mark.parametrize("system", ["pypoints", "sqlite"])
def test_bench_workloads_run(system: str) -> None:
    harness.RESULTS.clear()
    open_store = harness.pypoints_store if system == "pypoints" else harness.sqlite_store
    with open_store(MEMBERS) as store:
        assert store.load["commands"] > 4 * MEMBERS
        run_every_workload(store, 400)
        if system == "pypoints":
            harness.reads(OneShot(), store, 100)
            assert any(r["workload"] == "balance reads 100 (one thread)" for r in harness.RESULTS)
        kinds: dict[str, int] = {}
        for r in harness.RESULTS:
            for k, v in r.get("kinds", {}).items():
                kinds[k] = kinds.get(k, 0) + v
        assert {"credit", "redeem", "hold", "capture", "reverse"} <= set(kinds), kinds
        steady = next(r for r in harness.RESULTS if r["workload"].startswith("steady state mixed"))
        assert steady["commands"] == 400 and set(steady["kinds"]) >= {"credit", "redeem"}, steady
        redeem = next(r for r in harness.RESULTS if r["workload"].startswith("redeem"))
        assert redeem["lots_per_redeem"] >= 2  # FEFO across the small lots
        ledger = store.extra["ledger"]
        if system == "pypoints":
            report = ledger.audit()
            assert report.ok, report.problems
        else:
            assert sqlite_baseline.audit(ledger) == []
    assert harness.summary_lines()


def test_sqlite_baseline_semantics(tmp_path: Path) -> None:
    """The baseline does what the workloads need: idempotent replay, conflicts, FEFO, refusal."""
    db = sqlite_baseline.SqliteLedger(str(tmp_path / "l.db"))
    try:
        wl.check(db.submit_tuples(wl.setup_commands()))
        at = wl.T0
        cmds = [
            ("open_member", "o1", at, "a", wl.PROGRAMME, "", None, [], "ordinary", "individual"),
            ("credit", "c1", at, "a", wl.POINT_TYPE, 100, None, ""),
            ("credit", "c2", at + 1000, "a", wl.POINT_TYPE, 100, None, ""),
        ]
        wl.check(db.submit_tuples(cmds))
        r = db.submit_tuples([("redeem", "r1", at + 2000, "a", None, 150, "", "", "", "")])[0]
        assert [n for _, _, n in r.lots_used] == [100, 50]
        again = db.submit_tuples([("redeem", "r1", at + 3000, "a", None, 150, "", "", "", "")])[0]
        assert again.replayed and again.seq == r.seq
        out = db.submit_tuples([
            ("redeem", "r1", at, "a", None, 10, "", "", "", ""),
            ("redeem", "r2", at, "a", None, 51, "", "", "", ""),
            ("reverse", "v1", at, "r1", None, None, ""),
        ])
        assert isinstance(out[0], sqlite_baseline.IdempotencyConflict)
        assert isinstance(out[1], sqlite_baseline.InsufficientPoints)
        assert out[2].amount == 150
        assert db.db.execute("SELECT balance FROM accounts WHERE member = 'a'").fetchone()[0] == 200
        assert sqlite_baseline.audit(db) == []
    finally:
        db.close()


def test_grpc_ceiling_measures_a_trivial_echo_server() -> None:
    # bench/grpc_ceiling.py: grpcio's own unary ceiling (issue #4's unary target is judged against it)
    from bench import grpc_ceiling

    r = grpc_ceiling.run("aio", clients=4, procs=1, seconds=0.5)
    assert r["calls_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"]


def test_thread_cpu_names_the_writer_and_finds_the_busy_thread(ledger: Any) -> None:
    # bench/thread_cpu.py: which thread of a process limits throughput (bench/README "Session 13")
    import os
    import threading
    import time

    from bench import thread_cpu

    # A Rust thread names itself once it first runs: on a busy machine the ledger's threads may
    # still be called "python" just after it opened.
    want = {"pypoints-writer", "pypoints-sealer"}
    deadline = time.monotonic() + 10
    while not want <= (names := {name for _, name in thread_cpu.sample(os.getpid())}) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert want <= names, names

    stop = time.monotonic() + 1.0
    busy: list[int] = []

    def spin() -> None:
        busy.append(threading.get_native_id())
        while time.monotonic() < stop:
            pass

    t = threading.Thread(target=spin)
    t.start()
    rows = thread_cpu.shares(os.getpid(), 0.5)
    t.join()
    assert rows and rows[0][1] == busy[0] and rows[0][2] > 0, rows
