"""Crash safety: a child process applies credits and redeems as fast as it can (submit batches
and single executes, durability "sync") and prints each command id only after the call that
applied it returned. The parent SIGKILLs it mid-stream, reopens the data directory and checks
that every acknowledged command is there with the seq the child was given, that replaying it
is answered from the idempotency record (replayed=True, same seq), that the audit is clean and
that the recovered ledger takes new writes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import pypoints as pp
from conftest import REPO, T0, FakeClock, journal_all

pytestmark = pytest.mark.slow

MEMBERS = ("m0", "m1", "m2", "m3")

# The child: prints "ACK <id> <seq>" per applied command, after the call returned, and flushes
# after every batch. Command ids encode the command so the parent can rebuild it to replay it:
# "c.<member>.<amount>.<n>" credits, "r.<member>.<amount>.<n>" redeems.
CHILD = r"""
import random, sys
import pypoints as pp

path, seed = sys.argv[1], int(sys.argv[2])
now = [1_700_000_000_000]
def clock():
    now[0] += 1
    return now[0]

ledger = pp.Ledger(path, clock=clock)
out = sys.stdout
members = ("m0", "m1", "m2", "m3")
setup = [pp.DefineProgramme("programme.p", "p"),
         pp.DefinePointType("point-type.p.general", "p", pp.PointTypeSpec("general"))]
setup += [pp.OpenMember(f"member.{m}", m, "p") for m in members]
for cmd in setup:
    r = ledger.execute(cmd)
    out.write(f"SETUP {cmd.id} {r.seq}\n")
out.flush()

rng = random.Random(seed)
n = 0
def command():
    global n
    n += 1
    m = rng.choice(members)
    if rng.random() < 0.55:
        a = rng.randint(1, 50)
        return pp.Credit(f"c.{m}.{a}.{n}", m, "general", a)
    a = rng.randint(1, 40)
    return pp.Redeem(f"r.{m}.{a}.{n}", m, a, channel="pos")

for step in range(20_000):
    if step % 4 == 0:
        cmd = command()
        try:
            r = ledger.execute(cmd)
        except pp.PointsError:
            continue
        out.write(f"ACK {cmd.id} {r.seq}\n")
    else:
        cmds = [command() for _ in range(rng.randint(1, 64))]
        results = ledger.submit(cmds)
        out.write("".join(f"ACK {c.id} {r.seq}\n" for c, r in zip(cmds, results)
                          if isinstance(r, pp.Receipt)))
    out.flush()
out.write("DONE\n")
out.flush()
"""

LINE = re.compile(r"(ACK|SETUP) (\S+) (\d+)\n")


def rebuild(cid: str) -> pp.Command:
    op, member, amount, _ = cid.split(".")
    if op == "c":
        return pp.Credit(cid, member, "general", int(amount))
    return pp.Redeem(cid, member, int(amount), channel="pos")


def run_and_kill(data: Path, seed: int, kill_after: int, err_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Run the child until it has acknowledged `kill_after` commands, SIGKILL it, and return
    every complete ACK / SETUP line it wrote (id → seq), including lines still in the pipe."""
    with err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(seed)], cwd=REPO,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
    watchdog = threading.Timer(60, proc.kill)  # a hung child fails the test instead of hanging it
    watchdog.start()
    acked: dict[str, int] = {}
    setup: dict[str, int] = {}
    killed = False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not killed and len(acked) >= kill_after:
                proc.send_signal(signal.SIGKILL)
                killed = True
            if not line.endswith("\n"):
                break  # cut by the kill mid-write: not a complete acknowledgement
            m = LINE.fullmatch(line)
            if m is None:
                assert line == "DONE\n", f"unexpected child output {line!r}"
                continue
            (setup if m.group(1) == "SETUP" else acked)[m.group(2)] = int(m.group(3))
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed, f"the child ended before {kill_after} acknowledgements:\n{err_path.read_text()}"
    assert proc.returncode == -signal.SIGKILL, err_path.read_text()
    return setup, acked


@pytest.mark.parametrize(("seed", "kill_after"), [(1, 2_000), (2, 2_731), (3, 3_517)])
def test_sigkill_loses_no_acknowledged_command(tmp_path: Path, seed: int, kill_after: int) -> None:
    data = tmp_path / "data"
    setup, acked = run_and_kill(data, seed, kill_after, tmp_path / "child.stderr")
    assert len(setup) == 2 + len(MEMBERS)
    assert len(acked) >= kill_after

    with pp.Ledger(data, clock=FakeClock(T0 + 86_400_000)) as ledger:
        # Every acknowledged id is in the journal at the seq the child was told.
        for cid, seq in {**setup, **acked}.items():
            entries = ledger.entries_of(cid)
            assert [(e.id, e.seq) for e in entries] == [(cid, seq)], cid

        # Replaying every acknowledged command returns the original result.
        ids = list(acked)
        results = ledger.submit([rebuild(cid) for cid in ids])
        for cid, r in zip(ids, results):
            assert isinstance(r, pp.Receipt), f"{cid}: {r!r}"
            assert (r.id, r.seq, r.replayed) == (cid, acked[cid], True)

        report = ledger.audit()
        assert report.problems == []
        # At least the acknowledged commands; possibly a few applied but not yet printed.
        assert report.entries >= len(setup) + len(acked)
        assert len(set(acked.values()) | set(setup.values())) == len(setup) + len(acked)

        # The books agree with the journal member by member: nothing half-applied.
        expected = dict.fromkeys(MEMBERS, 0)
        journal = journal_all(ledger)
        for e in journal:
            if e.kind == "credit":
                expected[e.command["member"]] += e.amount
            elif e.kind == "redeem":
                expected[e.command["member"]] -= e.amount
        assert [e.seq for e in journal] == list(range(1, report.entries + 1))
        for m in MEMBERS:
            b = ledger.balance(m, "general")
            assert b.total == b.available == expected[m], m

        # The recovered store takes new writes after the last committed entry.
        r = ledger.credit("after-crash", "m0", "general", 11)
        assert (r.seq, r.replayed) == (report.entries + 1, False)
        assert ledger.balance("m0", "general").total == expected["m0"] + 11
        assert ledger.audit().problems == []
