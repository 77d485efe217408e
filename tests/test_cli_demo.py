"""The README's first command runs `pypoints demo`: it must build a realistic day on a real LMDB
store, print balances and a clean audit, and be safe to run twice (idempotent ids)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pypoints as pp
from pypoints import demo


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypoints", *args], capture_output=True,
                          text=True, timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_demo_runs_a_day_and_audits_clean(tmp_path: Path) -> None:
    data = tmp_path / "var" / "pypoints"
    first = run_cli("demo", "--data-dir", str(data))
    assert first.returncode == 0, first.stderr
    assert "audit OK" in first.stdout
    for op in ("credit", "redeem", "hold", "capture", "void", "reverse", "transfer", "convert", "expire", "bind_card"):
        assert op in first.stdout
    # Refusals are typed and visible: RD-8 insufficient, RK-4 frozen, XF-9 not transferable.
    for reason in ("INSUFFICIENT_POINTS", "MEMBER_FROZEN", "NOT_TRANSFERABLE"):
        assert reason in first.stdout
    with pp.Ledger(data) as ledger:
        entries = ledger.audit().entries
        frozen = ledger.member(demo.member_id(999)).status
        # MA-2, MA-10: card holders are found by their bound bank card
        assert [m.id for m in ledger.find_members(card=demo.card_number(5))] == [demo.member_id(5)]
        # EX-7: card points credited today are pending until tomorrow.
        pending = sum(b.pending for i in range(1, 40, 4) for b in ledger.balances(
            demo.member_id(i), at=pp.to_ms(demo.DAY) + 12 * demo.HOUR_MS))
    assert frozen == "frozen" and pending > 0 and entries > 3_000

    second = run_cli("demo", "--data-dir", str(data))
    assert second.returncode == 0, second.stderr
    with pp.Ledger(data) as ledger:
        report = ledger.audit()
    assert report.ok
    # The rerun replays every applied command; only commands refused the first time may apply.
    assert report.entries - entries < 50


def test_backup_cli_copies_a_store_that_audits_clean(tmp_path: Path) -> None:
    data, copy = tmp_path / "data", tmp_path / "copy"
    assert run_cli("demo", "--data-dir", str(data)).returncode == 0
    done = run_cli("backup", str(data), str(copy))
    assert done.returncode == 0, done.stderr
    audit = run_cli("audit", str(copy))
    assert audit.returncode == 0 and "audit OK" in audit.stdout
    assert run_cli("backup", str(data), str(copy)).returncode != 0, "never overwrite a backup"
