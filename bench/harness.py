"""pytest-benchmark plumbing shared by the pypoints and SQLite suites: one function per
workload, run against a loaded `Store` with `benchmark.pedantic` (batches are built in `setup`,
outside the timed region, so every round uses fresh client ids; results are checked in
`teardown`, also outside it). ops/s = commands per round / round time, in `extra_info`."""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench import workloads as wl

RESULTS: list[dict[str, Any]] = []
LOADS: list[dict[str, Any]] = []


def rounds(default: int = 5) -> int:
    return wl.env_int("PYPOINTS_BENCH_ROUNDS", default)


# Paired benchmarks compare two kinds through the sum over their pairs; a single pair swings
# with whichever batch a merge slice lands in, so they need more rounds than a median does.
PAIRED_ROUNDS = 15


def single_rounds() -> int:
    return wl.env_int("PYPOINTS_BENCH_SINGLE_ROUNDS", 200)


@dataclass
class Store:
    """A loaded data set: `submit` applies a batch; `submits(k)` gives k submit functions for k
    threads (the same engine for pypoints, k connections for SQLite)."""

    system: str
    path: str
    submit: wl.Submit
    submits: Callable[[int], list[wl.Submit]]
    state: wl.State
    load: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def du(path: str) -> int:
    try:
        return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True).stdout.split()[0])
    except Exception:
        return 0


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def data_dir_parent() -> str | None:
    return os.environ.get("PYPOINTS_BENCH_DIR") or None


@contextmanager
def pypoints_store(members: int, progress: Callable[[str], None] | None = None) -> Iterator[Store]:
    """A fresh pypoints ledger in a temporary directory, loaded with `members` members."""
    from pypoints import Ledger

    d = tempfile.mkdtemp(prefix="pypoints-bench-lmdb-", dir=data_dir_parent())
    try:
        ledger = Ledger(d)  # durability="sync": every group commit fsyncs before results return
        try:
            say = (lambda m: progress(f"pypoints: {m}")) if progress else None
            info = wl.load(ledger.submit_tuples, members, progress=say)
            # A bulk load ends by writing its state log back (as SQLite's ends with a WAL
            # checkpoint): otherwise the first measured batches pay the load's merge.
            t = time.perf_counter()
            ledger.checkpoint()
            info.update(system="pypoints", bytes=du(d), checkpoint_s=round(time.perf_counter() - t, 2))
            # PYPOINTS_BENCH_PREALLOCATE_GIB: the data file zero-filled that far ahead, as a
            # deployment would format it (`Ledger.preallocate`); untimed, like the load.
            gib = float(os.environ.get("PYPOINTS_BENCH_PREALLOCATE_GIB", "0"))
            if gib > 0:
                t = time.perf_counter()
                ledger.preallocate(int(gib * (1 << 30)))
                info.update(preallocate_gib=gib, preallocate_s=round(time.perf_counter() - t, 2))
            LOADS.append(info)
            yield Store("pypoints", d, ledger.submit_tuples, lambda k: [ledger.submit_tuples] * k,
                        wl.State(members), info, {"ledger": ledger})
        finally:
            ledger.close()
    finally:
        remove(d)


@contextmanager
def sqlite_store(members: int, progress: Callable[[str], None] | None = None) -> Iterator[Store]:
    """A fresh SQLite baseline database in a temporary directory, loaded with `members` members."""
    from bench.sqlite_baseline import SqliteLedger, bulk_load

    d = tempfile.mkdtemp(prefix="pypoints-bench-sqlite-", dir=data_dir_parent())
    path = os.path.join(d, "ledger.db")
    conns: list[SqliteLedger] = []
    try:
        ledger = SqliteLedger(path)
        conns.append(ledger)
        info = bulk_load(ledger, members, progress=progress)
        info.update(system="sqlite", bytes=du(d))
        LOADS.append(info)

        def submits(k: int) -> list[wl.Submit]:
            # one connection per thread (the first is the main connection)
            while len(conns) < k:
                conns.append(SqliteLedger(path))
            return [c.submit_tuples for c in conns[:k]]

        yield Store("sqlite", path, ledger.submit_tuples, submits, wl.State(members), info, {"ledger": ledger})
    finally:
        for c in conns:
            c.close()
        remove(d)


def run_rounds(benchmark: Any, store: Store, *, workload: str, make: Callable[[], Any],
               run: Callable[[Any], Any], commands: int, n_rounds: int) -> None:
    tally = wl.Tally()
    pending: list[Any] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (make(),), {}

    def target(work: Any) -> None:
        pending.append(run(work))

    def teardown(work: Any) -> None:
        while pending:
            tally.add(pending.pop())

    benchmark.group = workload
    stats = getattr(store.extra.get("ledger"), "writer_stats", None)  # pypoints only
    before = stats() if stats else None
    benchmark.pedantic(target, setup=setup, teardown=teardown, rounds=n_rounds, iterations=1)
    teardown(None)
    record(benchmark, store, workload, commands, tally)
    if stats and before is not None:
        writer = writer_fields(before, stats(), commands * n_rounds)
        benchmark.extra_info.update(writer)
        RESULTS[-1].update(writer)


def writer_fields(before: dict[str, int], after: dict[str, int], commands: int) -> dict[str, Any]:
    """What the writer did over a benchmark's rounds (setups included): group commits, and the
    state log keys its merges wrote back per command (the background work a round may carry)."""
    d = {k: after[k] - before[k] for k in ("groups", "merged_keys", "merge_cycles")}
    return {"writer_groups": d["groups"], "merged_keys_per_command": round(d["merged_keys"] / max(commands, 1), 2),
            "merge_cycles_begun": d["merge_cycles"], "log_records_after": after["log_records"]}


def record(benchmark: Any, store: Store, workload: str, commands: int, tally: wl.Tally) -> None:
    info = benchmark.extra_info
    info.update(system=store.system, workload=workload, members=store.state.members,
                commands_per_round=commands, **tally.info())
    row: dict[str, Any] = {"system": store.system, "workload": workload, "commands": commands, **tally.info()}
    meta = getattr(benchmark, "stats", None)
    if meta is not None:
        timing = timing_fields(commands, meta.stats.data)
        info.update(timing)
        row.update(timing)
    RESULTS.append(row)


def record_times(store: Store, workload: str, commands: int, seconds: list[float], tally: wl.Tally) -> dict[str, Any]:
    """A RESULTS row for rounds timed outside pytest-benchmark (the credit half of a paired
    benchmark); returns the timing fields for the caller's extra_info."""
    timing = timing_fields(commands, seconds) if seconds else {}
    RESULTS.append({"system": store.system, "workload": workload, "commands": commands, **tally.info(), **timing})
    return timing


def timing_fields(commands: int, seconds: list[float]) -> dict[str, Any]:
    data = sorted(seconds)
    median, mean = statistics.median(data), statistics.fmean(data)
    out: dict[str, Any] = {
        "rounds": len(data), "round_s": median, "round_s_median": median, "round_s_max": data[-1],
        "ops_per_s": round(commands / median), "ops_per_s_best": round(commands / data[0]),
        # Sustained: all commands over all rounds' time. Background work (the state log's
        # rolling merge) lands in some rounds; a median would hide it, the mean does not.
        "ops_per_s_mean": round(commands / mean), "latency_ms_p99": None,
    }
    if commands == 1:
        out["latency_ms_median"] = round(median * 1e3, 3)
        out["latency_ms_p99"] = round(data[min(len(data) - 1, math.ceil(0.99 * len(data)) - 1)] * 1e3, 3)
    return out


# ----- the workloads -----

def batch(benchmark: Any, store: Store, kind: str, n: int) -> None:
    build = {"credit": wl.credit_batch, "redeem": wl.redeem_batch, "mixed": wl.mixed_batch}[kind]
    st = store.state
    if kind == "mixed" and not st.new_holds:
        # one untimed batch first, so the timed rounds have earlier holds and redeems to target
        wl.check(store.submit(build(st, n)))
    run_rounds(benchmark, store, workload=f"{kind} batch {n:,}", make=lambda: build(st, n),
               run=store.submit, commands=n, n_rounds=rounds())


def sustained(benchmark: Any, store: Store, n: int) -> None:
    """Many credit batches back to back (PYPOINTS_BENCH_SUSTAINED_ROUNDS, default 40 x n): long
    enough to include the state log's background merge, so the mean is the sustained rate."""
    st = store.state
    run_rounds(benchmark, store, workload=f"sustained credit {sustained_rounds()} x {n:,}",
               make=lambda: wl.credit_batch(st, n), run=store.submit, commands=n, n_rounds=sustained_rounds())


def sustained_rounds() -> int:
    return wl.env_int("PYPOINTS_BENCH_SUSTAINED_ROUNDS", 40)


def steady(benchmark: Any, store: Store, n: int) -> None:
    """Mixed batches back to back for PYPOINTS_BENCH_STEADY_ROUNDS (default 200 x n): at 10,000
    commands a round that is about two periods of the state log's merge cycle (one starts every
    ~96 group records and merges over ~33 of them, bench/README "Sessions 22-23"), so the mean is
    the rate a ledger keeps up at 1M random members, merges included. The short rows above run
    mostly between cycles; run this last, as the merge it starts would land in later rows."""
    st = store.state
    if not st.new_holds and not st.ready_holds:
        wl.check(store.submit(wl.mixed_batch(st, n)))  # earlier holds and redeems to target
    run_rounds(benchmark, store, workload=f"steady state mixed {steady_rounds()} x {n:,}",
               make=lambda: wl.mixed_batch(st, n), run=store.submit, commands=n, n_rounds=steady_rounds())


def steady_rounds() -> int:
    return wl.env_int("PYPOINTS_BENCH_STEADY_ROUNDS", 200)


def single(benchmark: Any, store: Store) -> None:
    st = store.state
    run_rounds(benchmark, store, workload="single credit per commit", make=lambda: wl.credit_batch(st, 1),
               run=store.submit, commands=1, n_rounds=single_rounds())


def threaded(benchmark: Any, store: Store, threads: int, n: int, batches: int) -> None:
    st = store.state
    submits = store.submits(threads)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench") as pool:
        run_rounds(benchmark, store, workload=f"{threads} threads x {batches} x credit batch {n:,}",
                   make=lambda: wl.threaded_work(st, threads, batches, n),
                   run=lambda work: wl.run_threaded(pool, submits, work),
                   commands=threads * batches * n, n_rounds=rounds())


def reads(benchmark: Any, store: Store, n: int) -> None:
    """`n` balance reads of uniformly random members from one thread, each in a read snapshot of
    its own, with the state log as the writes before left it: a member the log lacks is looked
    for in every log record before its checkpoint (`store::in_log`)."""
    ledger, st = store.extra["ledger"], store.state

    def run(members: list[str]) -> list[Any]:
        for m in members:
            ledger.balances(m, point_type=wl.POINT_TYPE)
        return []  # nothing for the tally: reads are not commands

    run_rounds(benchmark, store, workload=f"balance reads {n:,} (one thread)",
               make=lambda: [st.member() for _ in range(n)], run=run, commands=n, n_rounds=rounds())


# threads, batch size, batches per thread per round
THREADED = [(2, 10_000, 2), (4, 10_000, 2), (4, 1_000, 10), (4, 1, 50)]
BATCH_SIZES = [10_000, 50_000]


def summary_lines() -> list[str]:
    lines = []
    for ld in LOADS:
        lines.append(f"{ld['system']}: loaded {ld['members']:,} members ({ld['commands']:,} commands) in "
                     f"{ld['seconds']:.1f} s"
                     + (f", then a checkpoint in {ld['checkpoint_s']:.1f} s" if "checkpoint_s" in ld else "")
                     + f"; data {ld.get('bytes', 0) / 2**30:.2f} GiB")
    if not RESULTS:
        return lines
    lines.append(f"{'workload':<40} {'system':<10} {'cmds/round':>10} {'rounds':>6} {'median s':>9} "
                 f"{'ops/s':>10} {'best ops/s':>10} {'sustained':>10} {'max s':>7}  notes")
    order = {r["workload"]: i for i, r in enumerate(RESULTS)}
    credit = {(r["commands"], r["system"]): r for r in RESULTS
              if r["workload"].startswith("credit batch") and "ops_per_s" in r}
    for r in sorted(RESULTS, key=lambda r: (order[r["workload"]], r["system"])):
        notes = []
        c = credit.get((r["commands"], r["system"]))
        if r["workload"].startswith("earn batch") and c and "ops_per_s" in r:
            # issue #3's target: earn within 30 % of plain credit (>= 70 %)
            notes.append(f"{r['ops_per_s'] / c['ops_per_s']:.0%} of credit "
                         f"(sustained {r['ops_per_s_mean'] / c['ops_per_s_mean']:.0%})")
        if "lots_per_redeem" in r:
            notes.append(f"{r['lots_per_redeem']} lots/redeem")
        if r.get("merged_keys_per_command"):
            notes.append(f"merge {r['merged_keys_per_command']} keys/cmd")
        if "log_records_after" in r:
            notes.append(f"log {r['log_records_after']} rec")
        if r.get("latency_ms_p99") is not None:
            notes.append(f"p99 {r['latency_ms_p99']} ms")
        if "ops_per_s" in r:
            lines.append(f"{r['workload']:<40} {r['system']:<10} {r['commands']:>10,} {r['rounds']:>6} "
                         f"{r['round_s']:>9.4f} {r['ops_per_s']:>10,} {r['ops_per_s_best']:>10,} "
                         f"{r['ops_per_s_mean']:>10,} {r['round_s_max']:>7.3f}  {', '.join(notes)}")
        else:
            lines.append(f"{r['workload']:<40} {r['system']:<10} {r['commands']:>10,}  (not timed)")
    return lines
