"""The storage layout is an open format (core_rs/src/store.rs, model.rs): another process can
read the LMDB environment with the `lmdb` package and decode records with `msgpack`; Debian's
`mdb_stat` lists the named databases; and `Ledger.backup` makes a consistent hot copy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import pypoints as pp
from conftest import T0, FakeClock, journal_all, run_python

DB_NAMES = ("meta", "programmes", "members", "accounts", "state_log", "journal", "idempotency", "holds",
            "open_holds", "reversals", "rules", "rule_state", "outbox", "member_index", "cards")
YEAR_MS = 365 * 86_400_000


def populate(ledger: pp.Ledger) -> None:
    """A small but varied store: two point types with validity, members, credits, a redeem, a
    hold, a reversal, a transfer."""
    ledger.define_programme("bank", "Bank points")
    ledger.define_point_type("bank", pp.PointTypeSpec("merchant", priority=0,
                                                      validity=pp.Validity.rolling(1, "years")))
    ledger.define_point_type("bank", pp.PointTypeSpec("internal", priority=1,
                                                      validity=pp.Validity.rolling(3, "years")))
    ledger.open_member("alice", "bank", phone="13800000000", id_number="110101199003070000",
                       org=("shandong", "qingdao", "shinan", "103"))
    ledger.open_member("bob", "bank")
    ledger.credit("earn.1", "alice", "merchant", 300)
    ledger.credit("earn.2", "alice", "internal", 5_000)
    ledger.credit("earn.3", "bob", "internal", 700)
    ledger.redeem("redeem.1", "alice", 1_000, channel="mall", order_ref="o-1")  # 300 + 700 (RD-12)
    ledger.hold("hold.1", "alice", 200, ttl_ms=600_000, point_type="internal")
    ledger.reverse("refund.1", "redeem.1", amount=100)
    ledger.transfer("gift.1", "alice", "bob", "internal", 50)


# Runs in a separate interpreter: only `lmdb`, `msgpack` and the stdlib, no pypoints.
READER = r"""
import json, sys
import lmdb, msgpack

env = lmdb.open(sys.argv[1], max_dbs=16, readonly=True, lock=False, subdir=True)
out = {}
with env.begin() as txn:
    def db(name):
        return env.open_db(name.encode(), txn=txn, create=False)
    def get(name, key):
        v = txn.get(key, db=db(name))
        return None if v is None else msgpack.unpackb(v, raw=False)

    member = get("members", b"alice")
    out["member"] = member
    out["account"] = get("accounts", b"alice/internal")
    out["issuance"] = get("accounts", b"#bank/issuance/internal")
    # The journal is stored in chunks of consecutive entries (`core_rs/src/journal.rs`): a map
    # {"v", "s": first seq, "o": offsets, "e": [entry, …]} under the first seq's key, each entry
    # the msgpack bytes it was hashed as, `o` where each one's bin starts (u32 big-endian).
    first_chunk = get("journal", (1).to_bytes(8, "big"))
    e1 = msgpack.unpackb(first_chunk["e"][0], raw=False)
    out["entry1"] = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in e1.items()}
    out["entry1"]["ph_len"], out["entry1"]["h_len"] = len(e1["ph"]), len(e1["h"])
    idem = get("idempotency", b"redeem.1")
    out["idem"] = {"v": idem["v"], "seq": idem["seq"], "n": idem["n"], "h_len": len(idem["h"])}
    out["hold"] = get("holds", b"hold.1")

    # Walk the whole journal: chunks under big-endian keys (their first seq), entries contiguous,
    # and each entry's `ph` is the previous entry's `h` (the hash chain, RK-8).
    seqs, chunks, prev, chain_ok, offsets_ok = [], [], bytes(32), True, True
    for k, v in txn.cursor(db=db("journal")):
        chunk = msgpack.unpackb(v, raw=False)
        o = chunk["o"]
        offsets_ok = offsets_ok and len(o) == 4 * len(chunk["e"]) and all(
            v[int.from_bytes(o[4 * i:4 * i + 4], "big"):].startswith(msgpack.packb(raw, use_bin_type=True))
            for i, raw in enumerate(chunk["e"]))
        chunks.append((int.from_bytes(k, "big"), chunk["v"], chunk["s"], len(chunk["e"]), len(k)))
        for raw in chunk["e"]:
            e = msgpack.unpackb(raw, raw=False)
            seqs.append(e["seq"])
            chain_ok = chain_ok and e["ph"] == prev and len(e["h"]) == 32
            prev = e["h"]
    out["journal_seqs"] = seqs
    out["offsets_ok"] = offsets_ok
    out["journal_chunks"] = chunks
    out["chain_ok"] = chain_ok
    out["account_keys"] = [k.decode() for k, _ in txn.cursor(db=db("accounts"))]
print(json.dumps(out))
"""


def test_another_process_reads_records_with_lmdb_and_msgpack(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pp.Ledger(data, clock=FakeClock()) as ledger:
        populate(ledger)
        # one group of 70 entries: more than one chunk holds (JOURNAL_CHUNK_ENTRIES_MAX = 64)
        ledger.submit([pp.Credit(f"batch.{i}", "bob", "merchant", 1) for i in range(70)])
        expected_entries = ledger.journal(1, page_size=1_000)
        balances = {b.point_type: b for b in ledger.balances("alice")}

    res = run_python(READER, str(data))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)

    m = out["member"]
    assert (m["v"], m["id"], m["programme"], m["phone"], m["status"], m["kind"], m["tier"]) == \
        (1, "alice", "bank", "13800000000", "active", "individual", "ordinary")
    assert m["org"] == ["shandong", "qingdao", "shinan", "103"]
    assert m["created_at"] == T0
    # RK-9: the ID number is stored only as a keyed hash (64 hex digits), never in clear.
    assert re.fullmatch(r"[0-9a-f]{64}", m["id_hash"])
    assert m["id_hash"] == pp._core.hash_id_number("110101199003070000")
    assert "110101199003070000" not in json.dumps(out)

    a = out["account"]
    # 5,000 − 700 redeemed + 100 refunded − 200 held − 50 gifted
    assert a["v"] == 1
    assert a["b"] == 5_000 - 700 + 100 - 200 - 50 == balances["internal"].total
    assert a["hd"] == 200 == balances["internal"].held
    # lots are positional: [id, remaining, amount, earned_at, expires_at, effective_at, source_seq]
    assert sum(lot[1] for lot in a["lots"]) == a["b"]
    for lot in a["lots"]:
        i, r, amount, earned, expires, effective, source = lot
        assert 0 < r <= amount
        assert expires == earned + 3 * YEAR_MS + 86_400_000  # 3 years incl. 2024-02-29 (EX-1)
        assert effective >= earned and source >= 1 and i >= 1
    assert out["issuance"] == {"v": 1, "b": -(5_000 + 700), "hd": 0, "ls": 0, "lots": []}

    e1 = out["entry1"]
    assert (e1["v"], e1["seq"], e1["id"], e1["n"], e1["at"]) == (1, 1, "programme.bank", 0, T0)
    assert e1["cmd"] == {"op": "define_programme", "programme": "bank", "name": "Bank points"}
    assert (e1["ph_len"], e1["h_len"]) == (32, 32)
    assert e1["ph"] == "00" * 32  # the first entry chains to zeros
    assert bytes.fromhex(e1["h"]) == expected_entries[0].hash

    idem = out["idem"]
    redeem = next(e for e in expected_entries if e.id == "redeem.1")
    assert idem == {"v": 1, "seq": redeem.seq, "n": 1, "h_len": 16}

    hold = out["hold"]
    assert (hold["state"], hold["amount"], hold["captured"], hold["expires_at"]) == ("open", 200, 0, T0 + 600_000)

    assert out["journal_seqs"] == list(range(1, len(expected_entries) + 1))
    assert out["offsets_ok"] is True
    chunks = out["journal_chunks"]
    assert all(key == first and v == 1 and len_key == 8 for key, v, first, _, len_key in chunks)
    # each chunk starts where the one before ended; the batch filled one to the most it holds
    assert [c[0] for c in chunks] == [1] + [c[2] + c[3] for c in chunks[:-1]]
    assert max(c[3] for c in chunks) == 64
    assert out["chain_ok"] is True
    assert sorted(out["account_keys"]) == out["account_keys"]  # LMDB order: byte order
    assert {"alice/merchant", "alice/internal", "bob/internal"} <= set(out["account_keys"])
    assert {"#bank/issuance/internal", "#bank/redemption/merchant", "#bank/holds/internal"} <= \
        set(out["account_keys"])


MDB_STAT = shutil.which("mdb_stat")


@pytest.mark.skipif(MDB_STAT is None, reason="mdb_stat not installed (Debian package lmdb-utils)")
def test_mdb_stat_lists_the_named_databases(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pp.Ledger(data, clock=FakeClock()) as ledger:
        populate(ledger)
        entries = ledger.audit().entries
    assert MDB_STAT is not None
    res = subprocess.run([MDB_STAT, "-a", str(data)], capture_output=True, text=True, timeout=30,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    stats = dict(re.findall(r"^Status of (\S+(?: DB)?)\n(?:  .*\n)*?  Entries: (\d+)$", res.stdout, re.M))
    assert set(DB_NAMES) <= set(stats), res.stdout
    assert int(stats["journal"]) == entries
    assert int(stats["idempotency"]) == 12  # every command above, one record each
    assert int(stats["members"]) == 2
    assert int(stats["holds"]) == int(stats["open_holds"]) == 1
    assert int(stats["reversals"]) == 1
    assert int(stats["Main DB"]) == len(DB_NAMES)  # the main DB holds only the names


def _same_state(a: pp.Ledger, b: pp.Ledger, members: tuple[str, ...]) -> None:
    for m in members:
        assert a.balances(m) == b.balances(m), m
        assert a.lots(m, page_size=1_000) == b.lots(m, page_size=1_000), m


def test_hot_backup_of_an_open_ledger(tmp_path: Path, open_ledger: Callable[..., pp.Ledger]) -> None:
    live = open_ledger(tmp_path / "data")
    populate(live)
    dest = tmp_path / "backup"
    live.backup(dest)  # while open
    assert (dest / "data.mdb").is_file()
    # The live ledger goes on working after the copy, and the copy does not see that.
    live.credit("after-backup", "bob", "internal", 1)

    copy = open_ledger(dest)
    report = copy.audit()
    assert report.problems == []
    assert report.entries == live.audit().entries - 1
    with pytest.raises(pp.UnknownEntry):
        copy.entries_of("after-backup")
    assert copy.balance("bob", "internal").total == live.balance("bob", "internal").total - 1
    for m in ("alice",):
        assert copy.balances(m) == live.balances(m)
    assert copy.hold_state("hold.1") == live.hold_state("hold.1")
    assert copy.journal(1, page_size=1_000) == live.journal(1, page_size=1_000)[:-1]
    # The copy is a full ledger: it takes commands and replays old ones.
    assert copy.redeem("redeem.1", "alice", 1_000, channel="mall", order_ref="o-1").replayed
    assert copy.capture("capture.1", "hold.1").amount == 200
    assert copy.audit().problems == []

    # A second backup into the same place refuses to overwrite it.
    with pytest.raises(pp.AlreadyExists):
        live.backup(dest)


def test_hot_backup_while_writers_run_is_a_consistent_snapshot(tmp_path: Path,
                                                              open_ledger: Callable[..., pp.Ledger]) -> None:
    """Backups taken while another thread commits batches: each copy is the live journal cut at a
    commit boundary (never half a batch), with a clean audit."""
    live = open_ledger(tmp_path / "data")
    populate(live)
    stop = threading.Event()
    committed = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            n = 0
            while not stop.is_set() and n < 200:
                batch = [pp.Credit(f"w.{n}.{k}", "bob", "merchant", 3) for k in range(20)]
                batch += [pp.Redeem(f"w.{n}.r{k}", "bob", 2, point_type="merchant") for k in range(20)]
                assert all(isinstance(r, pp.Receipt) for r in live.submit(batch))
                committed.set()
                n += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            committed.set()

    t = threading.Thread(target=writer)
    t.start()
    try:
        for i in range(3):
            # Two signals: the batch behind the second one was submitted after the first one
            # arrived, so it committed after the previous backup. The writer keeps going.
            for _ in range(2):
                committed.clear()
                assert committed.wait(timeout=60), "the writer made no progress"
            assert errors == []
            live.backup(tmp_path / f"backup{i}")
    finally:
        stop.set()
        t.join(timeout=60)
    assert errors == []
    live_journal = journal_all(live)
    previous = 0
    for i in range(3):
        copy = open_ledger(tmp_path / f"backup{i}")
        report = copy.audit()
        assert report.problems == [], f"backup{i}"
        # A prefix of the live journal, hash for hash: a snapshot at a commit boundary.
        got = journal_all(copy)
        assert got == live_journal[:len(got)]
        commits = sum(1 for e in got if e.id.startswith("w."))
        assert commits % 40 == 0, "the copy split a batch"
        assert commits >= 40 * (i + 1) and commits > previous
        previous = commits
        b = copy.balance("bob", "merchant")
        assert b.total == commits // 40 * 20


def test_preallocate_zero_fills_the_data_file_ahead_and_refuses_bad_sizes(tmp_path: Path) -> None:
    # Storage: commits that grow the file cost several times one that overwrites (bench/README,
    # session 24), so the file can be formatted ahead, as TigerBeetle's is.
    data = tmp_path / "data"
    with pp.Ledger(data, clock=FakeClock()) as ledger:
        populate(ledger)
        before = (data / "data.mdb").stat().st_size
        want = 8 << 20
        wrote = ledger.preallocate(want)
        size = (data / "data.mdb").stat().st_size
        assert wrote > 0 and size >= want and size == before + wrote
        assert ledger.preallocate(want) == 0, "long enough already"
        for bad in (-1, 1.5, "8", True):
            with pytest.raises(pp.InvalidArgument):
                ledger.preallocate(bad)  # type: ignore[arg-type]
        with pytest.raises(pp.InvalidArgument):
            ledger.preallocate(1 << 62)  # past the map
        assert (data / "data.mdb").stat().st_size == size, "refused sizes write nothing"
        entries = ledger.audit().entries
    with pp.Ledger(data, clock=FakeClock()) as ledger:
        report = ledger.audit()
        assert report.ok and report.entries == entries
