"""The writer's counters (`Ledger.writer_stats`): what metrics and benchmarks read to see
group commit at work and where the writer's time goes."""

from __future__ import annotations

from pathlib import Path

import pytest

import pypoints as pp
from conftest import FakeClock, run_python

# Records in the state log, read by another process (LMDB allows one environment per process).
LOG_RECORDS = r"""
import sys, lmdb
env = lmdb.open(sys.argv[1], readonly=True, lock=False, max_dbs=16, subdir=True)
with env.begin() as txn:
    print(txn.stat(env.open_db(b"state_log", txn=txn, create=False))["entries"])
"""


def log_records(data: Path) -> int:
    res = run_python(LOG_RECORDS, str(data))
    assert res.returncode == 0, res.stderr
    return int(res.stdout)


def test_writer_stats_count_groups_commands_and_time(tmp_path: Path) -> None:
    with pp.Ledger(tmp_path / "data", clock=FakeClock()) as ledger:
        before = ledger.writer_stats()
        assert set(before) == {"groups", "commands", "apply_ns", "flush_ns", "commit_ns", "checkpoints", "room_ns",
                               "merged_keys", "merge_cycles", "log_records", "log_states"}
        ledger.define_programme("bank", "Bank points")
        ledger.define_point_type("bank", pp.PointTypeSpec("pts", priority=0))
        ledger.open_member("alice", "bank")
        # One batch of three credits is one group commit (one write transaction, one fsync).
        cmds = [pp.commands.Credit(f"c{i}", "alice", "pts", 10, None, "").as_tuple(FakeClock()()) for i in range(3)]
        ledger.submit_tuples(cmds)
        after = ledger.writer_stats()
        assert after["commands"] - before["commands"] == 6
        assert after["groups"] - before["groups"] == 4
        assert all(after[k] > before[k] for k in ("apply_ns", "commit_ns"))
        assert after["checkpoints"] == 0


@pytest.mark.parametrize("tail", ["none", "bad"])
def test_a_batch_of_many_chunks_is_one_group_commit(tmp_path: Path, tail: str) -> None:
    """The binding queues a batch chunk by chunk as it parses it; the writer holds its group
    open for the next chunk, so the batch commits once (not once for its first chunk and
    again for the rest). A batch whose last commands are all bad input still ends its group
    at once: the writer is only told more follows when another good command does."""
    from pypoints import _core
    clock = FakeClock()
    with pp.Ledger(tmp_path / "data", clock=clock) as ledger:
        ledger.define_programme("bank", "Bank points")
        ledger.define_point_type("bank", pp.PointTypeSpec("pts", priority=0))
        members = [f"m{k}" for k in range(4)]  # an account holds at most 4,096 lots
        for m in members:
            ledger.open_member(m, "bank")
        n = 3 * _core.SUBMIT_CHUNK_COMMANDS + 5
        cmds = [pp.commands.Credit(f"c{i}", members[i % 4], "pts", 1, None, "").as_tuple(clock()) for i in range(n)]
        if tail == "bad":  # a whole chunk's worth of unparseable commands at the end
            cmds += [("credit", f"bad{i}") for i in range(_core.SUBMIT_CHUNK_COMMANDS)]
        before = ledger.writer_stats()
        results = ledger.submit_tuples(cmds)
        after = ledger.writer_stats()
        assert all(isinstance(r, pp.Receipt) for r in results[:n])
        assert all(isinstance(r, pp.InvalidArgument) for r in results[n:])
        assert (after["groups"] - before["groups"], after["commands"] - before["commands"]) == (1, n)
        assert sum(ledger.balance(m, "pts").total for m in members) == n


def test_checkpoint_writes_the_state_log_back_after_the_batches_before_it(tmp_path: Path) -> None:
    clock = FakeClock()
    data = tmp_path / "data"
    ledger = pp.Ledger(data, clock=clock)
    ledger.define_programme("bank", "Bank points")
    ledger.define_point_type("bank", pp.PointTypeSpec("pts", priority=0))
    for m in ("alice", "bob"):
        ledger.open_member(m, "bank")
    results = ledger.submit_tuples([pp.commands.Credit(f"c{i}", ("alice", "bob")[i % 2], "pts", 10 + i, None, "")
                                    .as_tuple(clock()) for i in range(6)])
    assert all(isinstance(r, pp.Receipt) for r in results)
    assert log_records(data) > 0, "small groups stay in the state log until a merge"
    before = ledger.writer_stats()
    assert before["log_records"] == log_records(data) and before["log_states"] > 0
    balances = {m: ledger.balance(m, "pts") for m in ("alice", "bob")}
    ledger.checkpoint()
    assert log_records(data) == 0
    after = ledger.writer_stats()
    assert after["checkpoints"] == 1
    assert (after["log_records"], after["log_states"]) == (0, 0)
    # what the log held went back: both accounts and the system account, six ids, ...
    assert after["merged_keys"] - before["merged_keys"] >= 2 + 6
    assert {m: ledger.balance(m, "pts") for m in ("alice", "bob")} == balances
    assert ledger.audit().ok
    ledger.close()
    with pytest.raises(pp.errors.LedgerClosed):
        ledger.checkpoint()


def test_a_batch_the_store_cannot_hold_is_refused_whole(tmp_path: Path) -> None:
    """The binding builds a chunk's results while the writer commits its group (they are not
    durable yet); when the commit fails (here: the LMDB map is full) every command of the batch
    gets the storage error, none a receipt, and nothing of it is in the store (DESIGN: the
    idempotency record and the effect commit together or not at all)."""
    from pypoints import _core
    clock = FakeClock()
    data = tmp_path / "data"
    with pp.Ledger(data, clock=clock, map_size_bytes=8 << 20) as ledger:
        ledger.define_programme("bank", "Bank points")
        ledger.define_point_type("bank", pp.PointTypeSpec("pts", priority=0))
        ledger.open_member("alice", "bank")
        n = 3 * _core.SUBMIT_CHUNK_COMMANDS  # several chunks: results built before the commit
        refused, batches = None, 0
        for b in range(40):
            cmds = [pp.commands.OpenMember(f"o{b}-{i}", f"m{b}-{i}", "bank").as_tuple(clock()) for i in range(n)]
            cmds.append(pp.commands.Credit(f"c{b}", "alice", "pts", 1, None, "").as_tuple(clock()))
            results = ledger.submit_tuples(cmds)
            if any(not isinstance(r, pp.Receipt) for r in results):
                refused = results
                break
            batches += 1
        assert refused is not None and batches > 0, "the map fills after some batches fit"
        assert all(isinstance(r, pp.errors.StorageError) for r in refused), {type(r) for r in refused}
        assert ledger.balance("alice", "pts").total == batches
        assert ledger.audit().ok
    # Reopened with room, the refused ids were never recorded: the same batch now applies.
    with pp.Ledger(data, clock=clock) as ledger:
        cmds = [pp.commands.OpenMember(f"o{batches}-{i}", f"m{batches}-{i}", "bank").as_tuple(clock()) for i in range(n)]
        cmds.append(pp.commands.Credit(f"c{batches}", "alice", "pts", 1, None, "").as_tuple(clock()))
        results = ledger.submit_tuples(cmds)
        assert all(isinstance(r, pp.Receipt) and not r.replayed for r in results)
        assert ledger.balance("alice", "pts").total == batches + 1
        assert ledger.audit().ok
