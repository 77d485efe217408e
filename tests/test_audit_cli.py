"""`python -m pypoints audit DATA_DIR` (RK-8, ST-15): exit 0 and the entry count on a clean store;
exit 1 naming what is wrong after the store was tampered with behind the ledger's back (rewritten
with the `lmdb` and `msgpack` packages, as an attacker or a buggy tool could)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest

import pypoints as pp
from conftest import REPO, FakeClock


def audit_cli(data_dir: Path) -> tuple[int, str]:
    """Run the CLI in a fresh interpreter; (exit code, stdout+stderr with whitespace collapsed:
    rich wraps long lines at the terminal width)."""
    res = subprocess.run([sys.executable, "-m", "pypoints", "audit", str(data_dir)], cwd=REPO,
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return res.returncode, " ".join((res.stdout + res.stderr).split())


def make_store(path: Path) -> int:
    """A closed store with credits, redeems, a hold and a refund; returns its entry count."""
    with pp.Ledger(path, clock=FakeClock()) as ledger:
        ledger.define_programme("p")
        ledger.define_point_type("p", pp.PointTypeSpec("general"))
        ledger.define_point_type("p", pp.PointTypeSpec("bonus", priority=1))
        for m in ("alice", "bob"):
            ledger.open_member(m, "p")
        ledger.submit([pp.Credit(f"c{i}", "alice" if i % 2 else "bob", "general", 100 + i) for i in range(20)])
        ledger.credit("b1", "alice", "bonus", 50)
        ledger.redeem("r1", "alice", 120, channel="mall")
        ledger.hold("h1", "bob", 30, ttl_ms=60_000)
        ledger.reverse("rf1", "r1", amount=20)
        report = ledger.audit()
        assert report.problems == []
        return report.entries


def rewrite(path: Path, db_name: str, key: bytes, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Decode one record with msgpack, change it, write it back in place (the ledger is closed)."""
    env = lmdb.open(str(path), max_dbs=16, lock=False, subdir=True)
    try:
        db = env.open_db(db_name.encode(), create=False)
        with env.begin(write=True, db=db) as txn:
            raw = txn.get(key)
            assert raw is not None, f"{db_name}: no record {key!r}"
            record = msgpack.unpackb(raw, raw=False)
            change(record)
            txn.put(key, msgpack.packb(record, use_bin_type=True))
    finally:
        env.close()
    return record


def pack_chunk(version: int, first: int, entries: list[bytes]) -> bytes:
    """A journal chunk (`core_rs/src/journal.rs`): `{"v", "s": first seq, "o": offsets, "e":
    [entry bytes…]}`, where `o` holds each entry's offset in the value (u32 big-endian)."""
    packer = msgpack.Packer(use_bin_type=True)

    def build(offsets: list[int]) -> bytes:
        table = b"".join(o.to_bytes(4, "big") for o in offsets)
        return (packer.pack_map_header(4) + packer.pack("v") + packer.pack(version) + packer.pack("s")
                + packer.pack(first) + packer.pack("o") + packer.pack(table) + packer.pack("e")
                + packer.pack_array_header(len(entries)))

    at, offsets = len(build([0] * len(entries))), []
    for e in entries:
        offsets.append(at)
        at += len(packer.pack(e))
    return build(offsets) + b"".join(packer.pack(e) for e in entries)


def rewrite_journal_entry(path: Path, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
    """Change one journal entry inside its chunk (stored under its first seq's key) and write
    the chunk back, offsets and all: only the entry's own hash then disagrees."""
    env = lmdb.open(str(path), max_dbs=16, lock=False, subdir=True)
    try:
        with env.begin(write=True, db=env.open_db(b"journal", create=False)) as txn:
            for key, raw in txn.cursor():
                chunk = msgpack.unpackb(raw, raw=False)
                if chunk["s"] <= seq < chunk["s"] + len(chunk["e"]):
                    # the helper writes the format byte for byte
                    assert pack_chunk(chunk["v"], chunk["s"], chunk["e"]) == raw
                    i = seq - chunk["s"]
                    entry = msgpack.unpackb(chunk["e"][i], raw=False)
                    assert entry["seq"] == seq
                    change(entry)
                    chunk["e"][i] = msgpack.packb(entry, use_bin_type=True)
                    txn.put(key, pack_chunk(chunk["v"], chunk["s"], chunk["e"]))
                    return
            raise AssertionError(f"journal: no chunk holds entry {seq}")
    finally:
        env.close()


def seq_of(path: Path, command_id: str) -> int:
    env = lmdb.open(str(path), max_dbs=16, readonly=True, lock=False, subdir=True)
    try:
        with env.begin() as txn:
            raw = txn.get(command_id.encode(), db=env.open_db(b"idempotency", txn=txn, create=False))
            return int(msgpack.unpackb(raw, raw=False)["seq"])
    finally:
        env.close()


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, int]:
    data = tmp_path / "data"
    return data, make_store(data)


def test_clean_store_exits_0_and_counts_entries(store: tuple[Path, int]) -> None:
    data, entries = store
    code, out = audit_cli(data)
    assert code == 0, out
    assert f"{entries} journal entries" in out
    assert "FAILED" not in out


def test_altered_journal_amount_exits_1_and_names_the_entry(store: tuple[Path, int]) -> None:
    data, entries = store
    seq = seq_of(data, "r1")
    rewrite_journal_entry(data, seq, lambda e: e.update(amount=e["amount"] - 100))
    code, out = audit_cli(data)
    assert code == 1, out
    assert "FAILED" in out
    assert f"entry {seq} " in out + " " and "hash" in out, out
    assert f"{entries} entries" in out  # still reports what it checked


def test_altered_account_balance_exits_1_and_names_the_account(store: tuple[Path, int]) -> None:
    data, _ = store
    before = rewrite(data, "accounts", b"alice/general", lambda a: a.update(b=a["b"] + 100))
    code, out = audit_cli(data)
    assert code == 1, out
    assert "account alice/general" in out, out
    assert str(before["b"]) in out  # the balance it found
    assert "hash" not in out  # the journal itself is intact


def test_altered_lot_exits_1(store: tuple[Path, int]) -> None:
    """Points conjured into a lot without a posting: balance still matches postings, lots don't."""
    data, _ = store

    def conjure(a: dict[str, Any]) -> None:
        a["lots"][0][1] += 7  # [id, remaining, amount, earned, expires, effective, source]

    rewrite(data, "accounts", b"bob/general", conjure)
    code, out = audit_cli(data)
    assert code == 1, out
    assert "account bob/general" in out and "lots" in out, out


def test_lot_given_a_later_expiry_exits_1_though_every_sum_holds(store: tuple[Path, int]) -> None:
    """RK-8 / EX-1: a lot's validity extended behind the ledger's back keeps every balance and
    sum intact; the audit rebuilds the account from its entries' effects (`fx`) and sees it."""
    data, _ = store

    def extend(a: dict[str, Any]) -> None:
        lot = a["lots"][-1]  # [id, remaining, amount, earned, expires, effective, source]
        lot[4] = (lot[4] or 4_102_444_800_000) + 365 * 86_400_000

    rewrite(data, "accounts", b"alice/general", extend)
    code, out = audit_cli(data)
    assert code == 1, out
    assert "account alice/general: its lots differ from what its entries' effects give" in out, out
    assert "balance" not in out and "sum" not in out, out


def test_audit_reports_the_same_problems_as_the_api(store: tuple[Path, int]) -> None:
    data, _ = store
    rewrite(data, "accounts", b"#p/redemption/general", lambda a: a.update(b=a["b"] - 1))
    code, out = audit_cli(data)
    assert code == 1, out
    with pp.Ledger(data) as ledger:
        problems = ledger.audit().problems
    assert problems
    for p in problems:
        assert " ".join(p.split()) in out, (p, out)


def test_not_a_data_directory_is_a_usage_error_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    code, out = audit_cli(missing)
    assert code == 2, out
    assert "data.mdb" in out or "not a pypoints data directory" in out
    assert not missing.exists(), "audit must not create a store where none was"


def test_truncated_journal_tail_is_detected(store: tuple[Path, int]) -> None:
    data, _ = store
    with pp.Ledger(data, clock=FakeClock()) as ledger:
        last = ledger.freeze("frz1", "bob", "RK-4").seq
    env = lmdb.open(str(data), max_dbs=16, lock=False, subdir=True)
    try:
        with env.begin(write=True, db=env.open_db(b"journal", create=False)) as txn:
            assert txn.delete(last.to_bytes(8, "big"))
    finally:
        env.close()
    code, out = audit_cli(data)
    assert code == 1, out
    assert str(last) in out
