"""Many Python threads against one Ledger: the single writer with group commit never overdraws
(RD-13), never loses an update, applies each command id exactly once, and snapshot reads run
while writers are busy (they never wait for the writer). Audit stays clean (ST-15, RK-8)."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import pypoints as pp
from conftest import journal_all, setup_programme

pytestmark = pytest.mark.slow

THREADS = 8
REDEEM = 5
INITIAL_LOTS = 10
LOT = 500
INITIAL = INITIAL_LOTS * LOT  # 5,000 points = 1,000 redeems of 5
OPS_PER_THREAD = 40  # each op is one execute or one submit batch of 2..16 redeems
AVAILABLE = re.compile(r"available (\d+)")


def _run_threads(target: Callable[[int], None], n: int = THREADS) -> None:
    """Start `n` threads at once (barrier); re-raise the first failure in the caller."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,), name=f"worker-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), f"{t.name} did not finish"
    if errors:
        raise errors[0]


def _redeemer(ledger: pp.Ledger, member: str, log: dict[int, list[tuple[str, object]]]) -> Callable[[int], None]:
    """Thread i: OPS_PER_THREAD operations, mixing single `execute` and `submit` batches of
    redeems with ids unique to the thread; records (id, Receipt | PointsError) in call order."""

    def work(i: int) -> None:
        rng = random.Random(1000 + i)
        out = log[i] = []
        n = 0
        for op in range(OPS_PER_THREAD):
            if op % 3 == 0:
                cid = f"t{i}.r{n}"
                n += 1
                try:
                    out.append((cid, ledger.redeem(cid, member, REDEEM, channel="pos")))
                except pp.PointsError as e:
                    out.append((cid, e))
            else:
                k = rng.randint(2, 16)
                cmds = [pp.Redeem(f"t{i}.r{n + j}", member, REDEEM, channel="mall") for j in range(k)]
                n += k
                results = ledger.submit(cmds)
                assert len(results) == k
                out.extend((c.id, r) for c, r in zip(cmds, results))

    return work


def test_concurrent_redeems_from_one_member_never_overdraw_nor_lose_updates(ledger: pp.Ledger) -> None:
    setup_programme(ledger, members=("alice",))
    for j in range(INITIAL_LOTS):
        ledger.credit(f"seed.{j}", "alice", "general", LOT)
    seq_before = ledger.audit().entries
    log: dict[int, list[tuple[str, object]]] = {}

    _run_threads(_redeemer(ledger, "alice", log))

    attempts = [(cid, r) for i in range(THREADS) for cid, r in log[i]]
    ok = [(cid, r) for cid, r in attempts if isinstance(r, pp.Receipt)]
    refused = [(cid, r) for cid, r in attempts if not isinstance(r, pp.Receipt)]
    # The workload asks for more than the balance, so it must run dry.
    assert len(attempts) * REDEEM > INITIAL
    assert all(isinstance(r, pp.InsufficientPoints) for _, r in refused), \
        Counter(type(r).__name__ for _, r in refused)

    final = ledger.balance("alice", "general")
    assert final.total == final.available == 0
    # No lost update: every success took exactly REDEEM, and together they took the credit.
    assert len(ok) * REDEEM == INITIAL - final.total
    for cid, r in ok:
        assert (r.id, r.kind, r.amount, r.replayed) == (cid, "redeem", REDEEM, False)
        assert sum(n for _, _, n in r.lots_used) == REDEEM
    seqs = [r.seq for _, r in ok]
    assert len(set(seqs)) == len(seqs), "two commands were given the same journal seq"

    # InsufficientPoints only once the balance was exhausted: the refusal saw less than one
    # redeem's worth (here 0, since every amount is a multiple of REDEEM and nobody credits).
    for cid, e in refused:
        m = AVAILABLE.search(str(e))
        assert m, f"{cid}: {e}"
        assert int(m.group(1)) < REDEEM, f"{cid} refused while {m.group(1)} points were available"
    # ...and, within each thread's own call order, nothing succeeds after a refusal.
    for i in range(THREADS):
        kinds = [isinstance(r, pp.Receipt) for _, r in log[i]]
        if False in kinds:
            assert True not in kinds[kinds.index(False):], f"thread {i} succeeded after being refused"

    # The journal has exactly the successful commands, in seq order, and the lots add up.
    journal = journal_all(ledger, seq_before + 1)
    assert sorted(e.seq for e in journal) == sorted(seqs)
    assert {e.id for e in journal} == {cid for cid, _ in ok}
    for cid, _ in refused:
        with pytest.raises(pp.UnknownEntry):
            ledger.entries_of(cid)
    assert ledger.lots("alice").items == []
    report = ledger.audit()
    assert report.problems == []
    assert report.entries == seq_before + len(ok)


def test_concurrent_credits_to_different_members_all_land(ledger: pp.Ledger) -> None:
    members = tuple(f"m{i}" for i in range(THREADS))
    setup_programme(ledger, point_types=("general", "bonus"), members=members)
    expected: dict[tuple[str, str], int] = {}
    receipts: dict[int, list[pp.Receipt]] = {}
    lock = threading.Lock()

    def work(i: int) -> None:
        rng = random.Random(2000 + i)
        member = members[i]
        mine: dict[str, int] = {"general": 0, "bonus": 0}
        out = receipts[i] = []
        n = 0
        for op in range(60):
            if op % 4 == 0:
                t, amount = rng.choice(("general", "bonus")), rng.randint(1, 1000)
                out.append(ledger.credit(f"{member}.c{n}", member, t, amount, memo="ER-28"))
                mine[t] += amount
                n += 1
            else:
                cmds = []
                for _ in range(rng.randint(1, 12)):
                    t, amount = rng.choice(("general", "bonus")), rng.randint(1, 1000)
                    cmds.append(pp.Credit(f"{member}.c{n}", member, t, amount))
                    mine[t] += amount
                    n += 1
                results = ledger.submit(cmds)
                for r in results:
                    assert isinstance(r, pp.Receipt), r
                out.extend(results)  # type: ignore[arg-type]
        with lock:
            for t, total in mine.items():
                expected[(member, t)] = total

    _run_threads(work)

    for (member, t), total in expected.items():
        b = ledger.balance(member, t)
        assert (b.total, b.available, b.pending, b.held) == (total, total, 0, 0), (member, t)
        lots = ledger.lots(member, point_type=t, page_size=1000).items
        assert sum(lot.remaining for lot in lots) == total
    all_receipts = [r for rs in receipts.values() for r in rs]
    assert all(not r.replayed for r in all_receipts)
    assert sum(r.amount for r in all_receipts) == sum(expected.values())
    assert len({r.seq for r in all_receipts}) == len(all_receipts)
    report = ledger.audit()
    assert report.problems == []
    assert report.entries == 2 + 1 + THREADS + len(all_receipts)  # programme, 2 types, members


def test_same_command_id_from_many_threads_applies_once(ledger: pp.Ledger) -> None:
    """Retries racing each other (AIP-155): one application, every caller gets its receipt."""
    setup_programme(ledger, members=("bob",))
    ledger.credit("seed", "bob", "general", 1_000)
    got: dict[int, list[pp.Receipt]] = {}

    def work(i: int) -> None:
        out = got[i] = []
        for k in range(20):
            cmd = pp.Redeem(f"order-{k}", "bob", 7, channel="app")
            if (i + k) % 2:
                out.append(ledger.execute(cmd))
            else:
                (r,) = ledger.submit([cmd])
                assert isinstance(r, pp.Receipt), r
                out.append(r)

    _run_threads(work)

    for k in range(20):
        rs = [got[i][k] for i in range(THREADS)]
        assert sum(not r.replayed for r in rs) == 1, f"order-{k} applied {sum(not r.replayed for r in rs)} times"
        assert len({r.seq for r in rs}) == 1
        assert len(ledger.entries_of(f"order-{k}")) == 1
    assert ledger.balance("bob", "general").total == 1_000 - 20 * 7
    assert ledger.audit().problems == []


def test_reads_proceed_while_writers_run(ledger: pp.Ledger) -> None:
    setup_programme(ledger, members=("carol",))
    for j in range(INITIAL_LOTS):
        ledger.credit(f"seed.{j}", "carol", "general", LOT)
    log: dict[int, list[tuple[str, object]]] = {}
    writing = threading.Event()
    done = threading.Event()
    reads: list[tuple[int, bool]] = []  # (balance, writers running when the read returned)
    read_errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not done.is_set():
                b = ledger.balance("carol", "general")
                assert b.total == b.available and b.pending == 0 and b.held == 0, b
                reads.append((b.total, writing.is_set()))
        except BaseException as e:  # noqa: BLE001
            read_errors.append(e)

    r = threading.Thread(target=reader, name="reader")
    r.start()
    writing.set()
    try:
        _run_threads(_redeemer(ledger, "carol", log), n=THREADS - 1)
    finally:
        writing.clear()
        done.set()
        r.join(timeout=60)
    assert not r.is_alive()
    assert read_errors == []

    during = [v for v, w in reads if w]
    assert during, "the reader made no progress while the writers ran"
    values = [v for v, _ in reads]
    for v in values:
        assert v % REDEEM == 0 and 0 <= v <= INITIAL, v
    for a, b in zip(values, values[1:]):
        assert b <= a, f"balance went back up from {a} to {b}: a read saw an older snapshot"
    final = ledger.balance("carol", "general").total
    assert values[-1] == final
    successes = sum(isinstance(x, pp.Receipt) for i in log for _, x in log[i])
    assert successes * REDEEM == INITIAL - final
    assert ledger.audit().problems == []


def test_reads_do_not_wait_for_a_long_write(ledger: pp.Ledger) -> None:
    """A batch of 20,000 commands keeps the writer busy in one transaction; balance reads that
    start and finish inside that call prove readers are not serialised behind the writer."""
    setup_programme(ledger, members=("dave", "erin"))
    ledger.credit("seed", "erin", "general", 10)
    window: list[float] = []
    spans: list[tuple[float, float, int]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            total = ledger.balance("erin", "general").total
            spans.append((t0, time.perf_counter(), total))

    r = threading.Thread(target=reader)
    r.start()
    try:
        cmds = [pp.Credit(f"bulk.{k}", "dave", "general", 1) for k in range(1_000)]
        cmds += [pp.Redeem(f"bulk.r{k}", "dave", 1) for k in range(19_000)]
        window.append(time.perf_counter())
        results = ledger.submit(cmds)
        window.append(time.perf_counter())
    finally:
        stop.set()
        r.join(timeout=60)
    ok = sum(isinstance(x, pp.Receipt) for x in results)
    assert ok == 2_000  # 1,000 credits, then 1,000 of the redeems
    inside = [s for s in spans if window[0] < s[0] and s[1] < window[1]]
    assert inside, f"no read completed during the {window[1] - window[0]:.3f}s write"
    assert {total for *_, total in spans} == {10}
    assert ledger.audit().problems == []


def test_closing_one_handle_does_not_stop_another_on_the_same_directory(tmp_path: Path) -> None:
    first = pp.Ledger(tmp_path / "data")
    try:
        setup_programme(first, members=("zoe",))
        second = pp.Ledger(tmp_path / "data")
        second.close()
        first.credit("after-other-close", "zoe", "general", 1)
        assert first.balance("zoe", "general").total == 1
    finally:
        first.close()
