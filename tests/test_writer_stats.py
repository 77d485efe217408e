"""The writer's counters (`Ledger.writer_stats`): what metrics and benchmarks read to see
group commit at work and where the writer's time goes."""

from __future__ import annotations

from pathlib import Path

import pypoints as pp
from conftest import FakeClock


def test_writer_stats_count_groups_commands_and_time(tmp_path: Path) -> None:
    with pp.Ledger(tmp_path / "data", clock=FakeClock()) as ledger:
        before = ledger.writer_stats()
        assert set(before) == {"groups", "commands", "apply_ns", "flush_ns", "commit_ns", "checkpoints"}
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
