"""Workloads shared by the pypoints benchmarks, the SQLite baseline and the smoke test.

Everything here speaks pypoints' wire form: command tuples exactly as `Command.as_tuple(at_ms)`
builds them, so the same batches drive `Ledger.submit_tuples` and `SqliteLedger.submit_tuples`.

The data set (per member `i`, id `m0000042`):
- opened at T0-200d in programme "bench" (one point type "pts", rolling 365-day validity);
- an initial credit of 100,000 points earned at T0-10d (the lot that expires last);
- 2-4 small lots of 100 points earned at T0-150d, -120d, -90d, -60d (expiring first),
so every member holds 3-5 lots of different expiry, and a redemption of 150-250 points draws
FEFO across 2-3 lots while the member's small lots last.

Benchmark time starts at T0+1d and moves 1 s per batch; every command has a fresh client id.
"""

from __future__ import annotations

import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PROGRAMME = "bench"
POINT_TYPE = "pts"
VALIDITY_DAYS = 365
LOAD_BATCH = 50_000
OPEN_AGE_DAYS = 200
INITIAL_CREDIT = 100_000
INITIAL_AGE_DAYS = 10
SMALL_LOT = 100
SMALL_LOT_AGES_DAYS = (150, 120, 90, 60)
SMALL_LOTS_MIN, SMALL_LOTS_MAX = 2, 4
HOLD_TTL_MS = 3_600_000
REDEEM_MIN, REDEEM_MAX = 150, 250
CREDIT_MIN, CREDIT_MAX = 10, 500
# mixed workload shares (the rest of the 10% is capture / reverse of earlier holds / redeems)
MIX_CREDIT, MIX_REDEEM, MIX_HOLD = 0.60, 0.30, 0.05

Command = tuple[Any, ...]
Batch = list[Command]
Submit = Callable[[Batch], list[Any]]


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").replace("_", "").strip()
    return int(v) if v else default


def bench_members() -> int:
    return env_int("PYPOINTS_BENCH_MEMBERS", 1_000_000)


def member_id(i: int) -> str:
    return f"m{i:07d}"


# ----- the initial data set -----

def setup_commands() -> Batch:
    at = T0 - 300 * DAY_MS
    return [
        ("define_programme", f"programme.{PROGRAMME}", at, PROGRAMME, "Bench programme"),
        ("define_point_type", f"point-type.{PROGRAMME}.{POINT_TYPE}", at, PROGRAMME, POINT_TYPE, 0,
         ("rolling", VALIDITY_DAYS, "days"), True, (1, 100, 1, 1, None), []),
    ]


def small_lot_counts(members: int, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return rng.choices(range(SMALL_LOTS_MIN, SMALL_LOTS_MAX + 1), k=members)


def load_batches(members: int, seed: int = 1, batch: int = LOAD_BATCH) -> Iterator[tuple[str, Batch]]:
    """(phase, batch) in load order: setup, open_member, initial credit, then small lots."""
    yield "setup", setup_commands()
    at = T0 - OPEN_AGE_DAYS * DAY_MS
    for s in range(0, members, batch):
        yield "open_member", [
            ("open_member", f"open.{m}", at, m, PROGRAMME, "", None, [], "ordinary", "individual")
            for m in map(member_id, range(s, min(s + batch, members)))
        ]
    at = T0 - INITIAL_AGE_DAYS * DAY_MS
    for s in range(0, members, batch):
        yield "initial_credit", [
            ("credit", f"init.{m}", at, m, POINT_TYPE, INITIAL_CREDIT, None, "")
            for m in map(member_id, range(s, min(s + batch, members)))
        ]
    counts = small_lot_counts(members, seed)
    for k in range(SMALL_LOTS_MAX):
        at = T0 - SMALL_LOT_AGES_DAYS[k] * DAY_MS
        out: Batch = []
        for i in range(members):
            if counts[i] > k:
                m = member_id(i)
                out.append(("credit", f"lot{k}.{m}", at, m, POINT_TYPE, SMALL_LOT, None, ""))
                if len(out) == batch:
                    yield "small_lots", out
                    out = []
        if out:
            yield "small_lots", out


def load_summary(members: int, phases: dict[str, list[float]], total: float) -> dict[str, Any]:
    """Commands, seconds and ops/s of a load, per phase and in all."""
    return {"members": members, "seconds": round(total, 2),
            "commands": sum(int(n) for n, _ in phases.values()),
            "phases": {p: {"commands": int(n), "seconds": round(s, 2),
                           "ops_per_s": round(n / s) if s else None} for p, (n, s) in phases.items()}}


def load(submit: Submit, members: int, seed: int = 1,
         progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load the data set through `submit` (one durable commit per 50,000-command batch)."""
    phases: dict[str, list[float]] = {}
    t_all = time.perf_counter()
    for phase, b in load_batches(members, seed):
        t = time.perf_counter()
        check(submit(b))
        acc = phases.setdefault(phase, [0, 0.0])
        acc[0] += len(b)
        acc[1] += time.perf_counter() - t
    total = time.perf_counter() - t_all
    info = load_summary(members, phases, total)
    if progress:
        progress(f"loaded {members:,} members, {info['commands']:,} commands in {total:.1f} s: "
                 + ", ".join(f"{p} {v['ops_per_s']:,}/s" for p, v in info["phases"].items() if v["ops_per_s"]))
    return info


# ----- benchmark batches -----

class State:
    """Random source, id counter, clock and pools of holds/redeems for one store."""

    def __init__(self, members: int, seed: int = 7) -> None:
        self.members = members
        self.rng = random.Random(seed)
        self.seq = 0
        self.now = T0 + DAY_MS
        # ids created by the previous mixed batch become targets of capture/reverse in the next
        self.new_holds: list[str] = []
        self.new_redeems: list[str] = []
        self.ready_holds: deque[str] = deque(maxlen=100_000)
        self.ready_redeems: deque[str] = deque(maxlen=100_000)

    def at(self) -> int:
        self.now += 1000
        return self.now

    def ids(self, prefix: str, n: int) -> list[str]:
        s = self.seq
        self.seq += n
        return [f"{prefix}{i}" for i in range(s, s + n)]

    def member(self) -> str:
        return member_id(self.rng.randrange(self.members))


def credit_batch(st: State, n: int) -> Batch:
    at, rr, members = st.at(), st.rng.randrange, st.members
    span = CREDIT_MAX - CREDIT_MIN + 1
    return [("credit", cid, at, member_id(rr(members)), POINT_TYPE, CREDIT_MIN + rr(span), None, "")
            for cid in st.ids("c.", n)]


def redeem_cmd(st: State, cid: str, at: int) -> Command:
    amount = REDEEM_MIN + st.rng.randrange(REDEEM_MAX - REDEEM_MIN + 1)
    return ("redeem", cid, at, st.member(), None, amount, "pos", "shop-0042", cid, "")


def hold_cmd(st: State, cid: str, at: int) -> Command:
    amount = REDEEM_MIN + st.rng.randrange(REDEEM_MAX - REDEEM_MIN + 1)
    return ("hold", cid, at, st.member(), None, amount, HOLD_TTL_MS, "online", "mall", cid, "")


def redeem_batch(st: State, n: int) -> Batch:
    """Redeem 150-250 points (any type, FEFO) from random members."""
    at = st.at()
    return [redeem_cmd(st, cid, at) for cid in st.ids("r.", n)]


def mixed_batch(st: State, n: int) -> Batch:
    """60% credit, 30% redeem, 5% hold, 5% capture of an earlier hold or full refund (reverse)
    of an earlier redeem, alternating; targets come from previously submitted batches."""
    st.ready_holds.extend(st.new_holds)
    st.ready_redeems.extend(st.new_redeems)
    st.new_holds, st.new_redeems = [], []
    at, rnd = st.at(), st.rng.random
    span = CREDIT_MAX - CREDIT_MIN + 1
    out: Batch = []
    flip = False
    for cid in st.ids("x.", n):
        u = rnd()
        if u < MIX_CREDIT:
            out.append(("credit", cid, at, st.member(), POINT_TYPE, CREDIT_MIN + st.rng.randrange(span), None, ""))
        elif u < MIX_CREDIT + MIX_REDEEM:
            out.append(redeem_cmd(st, cid, at))
            st.new_redeems.append(cid)
        elif u < MIX_CREDIT + MIX_REDEEM + MIX_HOLD:
            out.append(hold_cmd(st, cid, at))
            st.new_holds.append(cid)
        else:
            flip = not flip
            if (flip or not st.ready_redeems) and st.ready_holds:
                out.append(("capture", cid, at, st.ready_holds.popleft(), None))
            elif st.ready_redeems:
                out.append(("reverse", cid, at, st.ready_redeems.popleft(), None, None, "refund"))
            else:  # nothing submitted yet to capture or refund
                out.append(hold_cmd(st, cid, at))
                st.new_holds.append(cid)
    return out


def threaded_work(st: State, threads: int, batches: int, n: int,
                  build: Callable[[State, int], Batch] = credit_batch) -> list[list[Batch]]:
    """`batches` batches of `n` commands for each of `threads` threads."""
    return [[build(st, n) for _ in range(batches)] for _ in range(threads)]


def run_threaded(pool: ThreadPoolExecutor, submits: Sequence[Submit], work: list[list[Batch]]) -> list[list[Any]]:
    """Thread `k` submits its batches one after the other through `submits[k]`; all threads run
    at once. Returns every result."""

    def worker(k: int) -> list[Any]:
        out: list[Any] = []
        for b in work[k]:
            out.extend(submits[k](b))
        return out

    return [f.result() for f in [pool.submit(worker, k) for k in range(len(work))]]


# ----- checking results (outside the timed region) -----

def flatten(results: list[Any]) -> list[Any]:
    if results and isinstance(results[0], list):
        return [r for part in results for r in part]
    return results


def check(results: list[Any]) -> list[Any]:
    """Every result must be a receipt: a refused command is cheaper and would flatter the
    numbers, so a benchmark round with any error fails."""
    results = flatten(results)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise AssertionError(f"{len(errors)} of {len(results)} commands failed, e.g. {errors[:3]!r}")
    return results


class Tally:
    """Counts receipts by kind and the lots each redeem drew, over all rounds."""

    def __init__(self) -> None:
        self.commands = 0
        self.kinds: dict[str, int] = {}
        self.redeems = 0
        self.redeem_lots = 0
        self.multi_lot_redeems = 0

    def add(self, results: list[Any]) -> None:
        for r in check(results):
            self.commands += 1
            self.kinds[r.kind] = self.kinds.get(r.kind, 0) + 1
            if r.kind == "redeem":
                k = len(r.lots_used)
                self.redeems += 1
                self.redeem_lots += k
                self.multi_lot_redeems += k >= 2

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kinds": dict(sorted(self.kinds.items()))}
        if self.redeems:
            out["lots_per_redeem"] = round(self.redeem_lots / self.redeems, 2)
            out["redeems_over_2plus_lots"] = round(self.multi_lot_redeems / self.redeems, 3)
        return out
