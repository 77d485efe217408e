"""The baseline: the same ledger work done the way a typical team would, in Python over SQLite.

SQLite in WAL mode with `synchronous=FULL` (every COMMIT fsyncs the WAL), normal tables with
indexes (members, accounts, system_accounts, lots, journal, idempotency, holds, reversals), one
transaction per batch, a SAVEPOINT per command so a refused command changes nothing (the same
per-command atomicity pypoints gives inside a group commit), and Python applying each command:
idempotency check, member check, FEFO lot consumption with `SELECT ... ORDER BY expires_at`,
balance updates on the member and the programme's system account (double entry), a journal row.

It takes the same command tuples as `pypoints.Ledger.submit_tuples` and returns a receipt or an
exception instance per command, in order. It does less than pypoints (no hash chain over the
journal, no per-account history links, no msgpack records readable by other tools; it supports
the commands the benchmarks use: define_programme, define_point_type, open_member, credit,
redeem, hold, capture, reverse of a redeem or capture), so the comparison flatters SQLite.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from bench import workloads as wl

DAY_MS = 86_400_000
NEVER = 2**62
AMOUNT_MAX = 1_000_000_000_000
ID_LENGTH_MAX = 64
CACHE_MIB = 256

SCHEMA = """
CREATE TABLE IF NOT EXISTS programmes (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS point_types (
    programme TEXT NOT NULL, id TEXT NOT NULL, priority INTEGER NOT NULL,
    validity_days INTEGER, PRIMARY KEY (programme, id));
CREATE TABLE IF NOT EXISTS members (
    id TEXT PRIMARY KEY, programme TEXT NOT NULL, phone TEXT, id_hash TEXT, org TEXT,
    tier TEXT, kind TEXT, status TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    member TEXT NOT NULL, point_type TEXT NOT NULL, balance INTEGER NOT NULL,
    held INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (member, point_type));
CREATE TABLE IF NOT EXISTS system_accounts (
    programme TEXT NOT NULL, kind TEXT NOT NULL, point_type TEXT NOT NULL,
    balance INTEGER NOT NULL, PRIMARY KEY (programme, kind, point_type));
CREATE TABLE IF NOT EXISTS lots (
    lot_id INTEGER PRIMARY KEY, member TEXT NOT NULL, point_type TEXT NOT NULL,
    remaining INTEGER NOT NULL, amount INTEGER NOT NULL, earned_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL, effective_at INTEGER NOT NULL, source_seq INTEGER);
CREATE INDEX IF NOT EXISTS lots_fefo ON lots (member, point_type, expires_at, lot_id);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY, cmd_id TEXT NOT NULL, kind TEXT NOT NULL, at INTEGER NOT NULL,
    member TEXT, amount INTEGER NOT NULL, postings TEXT NOT NULL, lots_used TEXT NOT NULL,
    command TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS journal_member ON journal (member, seq);
CREATE TABLE IF NOT EXISTS idempotency (id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY, member TEXT NOT NULL, programme TEXT NOT NULL, amount INTEGER NOT NULL,
    captured INTEGER NOT NULL, state TEXT NOT NULL, expires_at INTEGER NOT NULL, consumed TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS holds_open ON holds (state, expires_at);
CREATE TABLE IF NOT EXISTS reversals (target_seq INTEGER PRIMARY KEY, reversed INTEGER NOT NULL);
"""

SYSTEM_KINDS = ("issuance", "redemption", "holds", "breakage")


# ----- errors (returned per command, like pypoints' typed errors) -----

class LedgerError(Exception):
    pass


class InvalidArgument(LedgerError):
    pass


class AlreadyExists(LedgerError):
    pass


class UnknownProgramme(LedgerError):
    pass


class UnknownMember(LedgerError):
    pass


class UnknownHold(LedgerError):
    pass


class UnknownEntry(LedgerError):
    pass


class MemberFrozen(LedgerError):
    pass


class InsufficientPoints(LedgerError):
    pass


class IdempotencyConflict(LedgerError):
    pass


class HoldNotOpen(LedgerError):
    pass


class HoldExpired(LedgerError):
    pass


class NotReversible(LedgerError):
    pass


class SqlReceipt:
    __slots__ = ("id", "seq", "kind", "amount", "lots_used", "lots_made", "replayed")

    def __init__(self, id: str, seq: int, kind: str, amount: int, lots_used: list[tuple[str, int, int]],
                 lots_made: list[tuple[str, int, int]], replayed: bool = False) -> None:
        self.id, self.seq, self.kind, self.amount = id, seq, kind, amount
        self.lots_used, self.lots_made, self.replayed = lots_used, lots_made, replayed

    def __repr__(self) -> str:
        return f"SqlReceipt(id={self.id!r}, seq={self.seq}, kind={self.kind!r}, amount={self.amount})"


def _dumps(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"))


def fingerprint(t: tuple[Any, ...]) -> tuple[str, str]:
    """(command body as JSON, its hash): the idempotency fingerprint ignores the timestamp."""
    body = _dumps(t[3:])
    return body, hashlib.sha256(f"{t[0]}|{body}".encode()).hexdigest()[:32]


def _amount(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= AMOUNT_MAX:
        raise InvalidArgument(f"amount must be 1..={AMOUNT_MAX}")
    return n


class SqliteLedger:
    """One connection. Give each thread its own `SqliteLedger` on the same path."""

    def __init__(self, path: str, *, cache_mib: int = CACHE_MIB) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
        self.db.execute("PRAGMA busy_timeout=600000")
        self.db.execute("PRAGMA temp_store=MEMORY")
        self.db.executescript(SCHEMA)
        self.types: dict[str, list[tuple[str, int | None]]] = {}
        self._load_types()
        self.handlers: dict[str, Callable[..., tuple[int, int, list[Any], list[Any]]]] = {
            "define_programme": self._define_programme,
            "define_point_type": self._define_point_type,
            "open_member": self._open_member,
            "credit": self._credit,
            "redeem": self._redeem,
            "hold": self._hold,
            "capture": self._capture,
            "reverse": self._reverse,
        }

    def close(self) -> None:
        self.db.close()

    def _load_types(self) -> None:
        self.types.clear()
        for prog, tid, _prio, days in self.db.execute(
                "SELECT programme, id, priority, validity_days FROM point_types ORDER BY programme, priority, id"):
            self.types.setdefault(prog, []).append((tid, days))

    # ----- the batch API -----

    def submit_tuples(self, batch: list[tuple[Any, ...]]) -> list[Any]:
        """Apply a batch in one transaction (one fsync at COMMIT); each command atomic on its own."""
        cur = self.db.cursor()
        out: list[Any] = []
        cur.execute("BEGIN IMMEDIATE")
        try:
            for t in batch:
                cur.execute("SAVEPOINT cmd")
                try:
                    r = self._apply(cur, t)
                except (LedgerError, sqlite3.IntegrityError) as e:
                    cur.execute("ROLLBACK TO cmd")
                    cur.execute("RELEASE cmd")
                    out.append(e if isinstance(e, LedgerError) else AlreadyExists(str(e)))
                else:
                    cur.execute("RELEASE cmd")
                    out.append(r)
            cur.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self._load_types()
            raise
        return out

    def _apply(self, cur: sqlite3.Cursor, t: tuple[Any, ...]) -> SqlReceipt:
        op, cid, at = t[0], t[1], t[2]
        handler = self.handlers.get(op)
        if handler is None:
            raise InvalidArgument(f"unknown command {op!r}")
        if not isinstance(cid, str) or not 0 < len(cid.encode()) <= ID_LENGTH_MAX:
            raise InvalidArgument("command id must be 1..64 bytes")
        body, fp = fingerprint(t)
        row = cur.execute("SELECT fingerprint, seq FROM idempotency WHERE id = ?", (cid,)).fetchone()
        if row is not None:
            if row[0] != fp:
                raise IdempotencyConflict(cid)
            kind, amount = cur.execute("SELECT kind, amount FROM journal WHERE seq = ?", (row[1],)).fetchone()
            return SqlReceipt(cid, row[1], kind, amount, [], [], True)
        seq, amount, used, made = handler(cur, cid, at, t, body)
        cur.execute("INSERT INTO idempotency (id, fingerprint, seq) VALUES (?, ?, ?)", (cid, fp, seq))
        return SqlReceipt(cid, seq, op, amount, used, made)

    # ----- helpers -----

    @staticmethod
    def _journal(cur: sqlite3.Cursor, cid: str, kind: str, at: int, member: str | None, amount: int,
                 postings: list[Any], used: list[Any], body: str) -> int:
        cur.execute(
            "INSERT INTO journal (cmd_id, kind, at, member, amount, postings, lots_used, command) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (cid, kind, at, member, amount, _dumps(postings), _dumps(used), body))
        return cur.lastrowid  # type: ignore[return-value]

    @staticmethod
    def _member(cur: sqlite3.Cursor, member: str, *, active: bool = False) -> str:
        row = cur.execute("SELECT programme, status FROM members WHERE id = ?", (member,)).fetchone()
        if row is None:
            raise UnknownMember(member)
        if active and row[1] == "frozen":
            raise MemberFrozen(member)
        return row[0]

    @staticmethod
    def _system(cur: sqlite3.Cursor, programme: str, kind: str, point_type: str, delta: int) -> None:
        cur.execute("UPDATE system_accounts SET balance = balance + ? WHERE programme = ? AND kind = ? "
                    "AND point_type = ?", (delta, programme, kind, point_type))

    def _spend(self, cur: sqlite3.Cursor, member: str, programme: str, point_type: str | None,
               amount: int, at: int) -> list[tuple[str, int, int]]:
        """Take `amount` from spendable lots, earliest expiry first; refuse if not enough."""
        types = self.types.get(programme, [])
        if point_type is not None:
            if not any(t == point_type for t, _ in types):
                raise InvalidArgument(f"unknown point type {point_type!r}")
            names = [point_type]
        else:
            names = [t for t, _ in types]
        lots: list[tuple[str, int, int]] = []
        for ty in names:
            lots.extend((ty, lot_id, rem) for lot_id, rem in cur.execute(
                "SELECT lot_id, remaining FROM lots WHERE member = ? AND point_type = ? AND remaining > 0 "
                "AND effective_at <= ? AND expires_at > ? ORDER BY expires_at, lot_id",
                (member, ty, at, at)))
        available = sum(r for _, _, r in lots)
        if available < amount:
            raise InsufficientPoints(f"requested {amount}, available {available}")
        left = amount
        used: list[tuple[str, int, int]] = []
        per_type: dict[str, int] = {}
        for ty, lot_id, rem in lots:
            n = min(rem, left)
            cur.execute("UPDATE lots SET remaining = remaining - ? WHERE lot_id = ?", (n, lot_id))
            used.append((ty, lot_id, n))
            per_type[ty] = per_type.get(ty, 0) + n
            left -= n
            if left == 0:
                break
        for ty, n in per_type.items():
            cur.execute("UPDATE accounts SET balance = balance - ? WHERE member = ? AND point_type = ?",
                        (n, member, ty))
        return used

    @staticmethod
    def _restore(cur: sqlite3.Cursor, member: str, ty: str, lot_id: int, n: int) -> None:
        cur.execute("UPDATE lots SET remaining = remaining + ? WHERE lot_id = ?", (n, lot_id))
        cur.execute("UPDATE accounts SET balance = balance + ? WHERE member = ? AND point_type = ?",
                    (n, member, ty))

    # ----- commands -----

    def _define_programme(self, cur, cid, at, t, body):
        _, _, _, programme, name = t
        if cur.execute("SELECT 1 FROM programmes WHERE id = ?", (programme,)).fetchone():
            raise AlreadyExists(programme)
        cur.execute("INSERT INTO programmes (id, name) VALUES (?, ?)", (programme, name))
        return self._journal(cur, cid, "define_programme", at, None, 0, [], [], body), 0, [], []

    def _define_point_type(self, cur, cid, at, t, body):
        programme, tid, priority, validity = t[3], t[4], t[5], t[6]
        if not cur.execute("SELECT 1 FROM programmes WHERE id = ?", (programme,)).fetchone():
            raise UnknownProgramme(programme)
        if validity[0] == "none":
            days = None
        elif validity[0] == "rolling" and validity[2] == "days":
            days = validity[1]
        else:
            raise InvalidArgument("the baseline supports validity none or rolling N days")
        cur.execute("INSERT INTO point_types (programme, id, priority, validity_days) VALUES (?, ?, ?, ?)",
                    (programme, tid, priority, days))
        cur.executemany("INSERT INTO system_accounts (programme, kind, point_type, balance) VALUES (?, ?, ?, 0)",
                        [(programme, k, tid) for k in SYSTEM_KINDS])
        seq = self._journal(cur, cid, "define_point_type", at, None, 0, [], [], body)
        self._load_types()
        return seq, 0, [], []

    def _open_member(self, cur, cid, at, t, body):
        _, _, _, member, programme, phone, id_hash, org, tier, kind = t
        if programme not in self.types and not cur.execute(
                "SELECT 1 FROM programmes WHERE id = ?", (programme,)).fetchone():
            raise UnknownProgramme(programme)
        if cur.execute("SELECT 1 FROM members WHERE id = ?", (member,)).fetchone():
            raise AlreadyExists(f"member {member!r} exists")
        cur.execute("INSERT INTO members (id, programme, phone, id_hash, org, tier, kind, status, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?)",
                    (member, programme, phone, id_hash, _dumps(org), tier, kind, at))
        return self._journal(cur, cid, "open_member", at, member, 0, [], [], body), 0, [], []

    def _credit(self, cur, cid, at, t, body):
        _, _, _, member, ty, amount, effective_at, memo = t
        _amount(amount)
        programme = self._member(cur, member)
        days = next((d for name, d in self.types.get(programme, []) if name == ty), False)
        if days is False:
            raise InvalidArgument(f"unknown point type {ty!r}")
        eff = at if effective_at is None else effective_at
        if eff < at:
            raise InvalidArgument("effective_at must not be before the command time")
        expires = NEVER if days is None else at + days * DAY_MS
        postings = [(ty, f"#{programme}/issuance/{ty}", f"{member}/{ty}", amount)]
        seq = self._journal(cur, cid, "credit", at, member, amount, postings, [], body)
        cur.execute("INSERT INTO lots (member, point_type, remaining, amount, earned_at, expires_at, "
                    "effective_at, source_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (member, ty, amount, amount, at, expires, eff, seq))
        lot_id = cur.lastrowid
        cur.execute("INSERT INTO accounts (member, point_type, balance, held) VALUES (?, ?, ?, 0) "
                    "ON CONFLICT (member, point_type) DO UPDATE SET balance = balance + excluded.balance",
                    (member, ty, amount))
        self._system(cur, programme, "issuance", ty, -amount)
        return seq, amount, [], [(ty, lot_id, amount)]

    def _redeem(self, cur, cid, at, t, body):
        _, _, _, member, ty, amount, _channel, _merchant, _order_ref, _org = t
        _amount(amount)
        programme = self._member(cur, member, active=True)
        used = self._spend(cur, member, programme, ty, amount, at)
        postings = []
        for u_ty, _lot, n in used:
            self._system(cur, programme, "redemption", u_ty, n)
            postings.append((u_ty, f"{member}/{u_ty}", f"#{programme}/redemption/{u_ty}", n))
        seq = self._journal(cur, cid, "redeem", at, member, amount, postings, used, body)
        return seq, amount, used, []

    def _hold(self, cur, cid, at, t, body):
        _, _, _, member, ty, amount, ttl_ms, _channel, _merchant, _order_ref, _org = t
        _amount(amount)
        if not 1_000 <= ttl_ms <= 30 * DAY_MS:
            raise InvalidArgument("ttl_ms out of range")
        programme = self._member(cur, member, active=True)
        used = self._spend(cur, member, programme, ty, amount, at)
        postings = []
        for u_ty, _lot, n in used:
            cur.execute("UPDATE accounts SET held = held + ? WHERE member = ? AND point_type = ?", (n, member, u_ty))
            self._system(cur, programme, "holds", u_ty, n)
            postings.append((u_ty, f"{member}/{u_ty}", f"#{programme}/holds/{u_ty}", n))
        cur.execute("INSERT INTO holds (id, member, programme, amount, captured, state, expires_at, consumed) "
                    "VALUES (?, ?, ?, ?, 0, 'open', ?, ?)", (cid, member, programme, amount, at + ttl_ms, _dumps(used)))
        seq = self._journal(cur, cid, "hold", at, member, amount, postings, used, body)
        return seq, amount, used, []

    def _capture(self, cur, cid, at, t, body):
        _, _, _, hold, amount = t
        row = cur.execute("SELECT member, programme, amount, state, expires_at, consumed FROM holds WHERE id = ?",
                          (hold,)).fetchone()
        if row is None:
            raise UnknownHold(hold)
        member, programme, held, state, expires_at, consumed = row
        if state != "open":
            raise HoldNotOpen(f"{hold} is {state}")
        if at >= expires_at:
            raise HoldExpired(hold)
        self._member(cur, member, active=True)
        n = held if amount is None else _amount(amount)
        if n > held:
            raise InvalidArgument(f"capture {n} exceeds the hold's {held}")
        captured, postings, left = [], [], n
        for ty, lot_id, k in json.loads(consumed):
            c = min(k, left)
            left -= c
            if c:
                captured.append((ty, lot_id, c))
                self._system(cur, programme, "holds", ty, -c)
                self._system(cur, programme, "redemption", ty, c)
                postings.append((ty, f"#{programme}/holds/{ty}", f"#{programme}/redemption/{ty}", c))
            if k - c:  # released back to the member's lot, original expiry kept
                self._system(cur, programme, "holds", ty, -(k - c))
                self._restore(cur, member, ty, lot_id, k - c)
                postings.append((ty, f"#{programme}/holds/{ty}", f"{member}/{ty}", k - c))
            cur.execute("UPDATE accounts SET held = held - ? WHERE member = ? AND point_type = ?", (k, member, ty))
        cur.execute("UPDATE holds SET state = 'captured', captured = ? WHERE id = ?", (n, hold))
        seq = self._journal(cur, cid, "capture", at, member, n, postings, captured, body)
        return seq, n, captured, []

    def _reverse(self, cur, cid, at, t, body):
        _, _, _, target, amount, ratio, _reason = t
        row = cur.execute("SELECT seq FROM idempotency WHERE id = ?", (target,)).fetchone()
        if row is None:
            raise UnknownEntry(target)
        tseq = row[0]
        kind, member, original, used_json = cur.execute(
            "SELECT kind, member, amount, lots_used FROM journal WHERE seq = ?", (tseq,)).fetchone()
        if kind not in ("redeem", "capture"):
            raise NotReversible(f"the baseline refunds redeems and captures, not a {kind}")
        r = cur.execute("SELECT reversed FROM reversals WHERE target_seq = ?", (tseq,)).fetchone()
        done = r[0] if r else 0
        left = original - done
        if amount is not None and ratio is not None:
            raise InvalidArgument("give amount or ratio, not both")
        n = amount if amount is not None else (original * ratio[0] // ratio[1] if ratio else left)
        _amount(n)
        if n > left:
            raise InvalidArgument(f"reversal of {n} exceeds the {left} points left")
        programme = self._member(cur, member)
        skip, rest, restored, postings = done, n, [], []
        for ty, lot_id, k in reversed(json.loads(used_json)):  # last taken first
            s = min(skip, k)
            skip -= s
            c = min(k - s, rest)
            if c == 0:
                continue
            rest -= c
            self._system(cur, programme, "redemption", ty, -c)
            self._restore(cur, member, ty, lot_id, c)
            restored.append((ty, lot_id, c))
            postings.append((ty, f"#{programme}/redemption/{ty}", f"{member}/{ty}", c))
        cur.execute("INSERT INTO reversals (target_seq, reversed) VALUES (?, ?) "
                    "ON CONFLICT (target_seq) DO UPDATE SET reversed = excluded.reversed", (tseq, done + n))
        seq = self._journal(cur, cid, "reverse", at, member, n, postings, restored, body)
        return seq, n, [], restored


# ----- bulk load with executemany -----

def bulk_load(ledger: SqliteLedger, members: int, seed: int = 1,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The same data set as `workloads.load`, from the same command tuples, written with
    executemany: one transaction (one fsync) per 50,000-command batch, like the pypoints load.
    Setup commands (programme, point type) go through the normal command path."""
    import time

    db = ledger.db
    phases: dict[str, list[float]] = {}
    t_all = time.perf_counter()
    for phase, b in wl.load_batches(members, seed):
        t = time.perf_counter()
        if phase == "setup":
            wl.check(ledger.submit_tuples(b))
        else:
            _bulk_batch(ledger, b)
        acc = phases.setdefault(phase, [0, 0.0])
        acc[0] += len(b)
        acc[1] += time.perf_counter() - t
    total = time.perf_counter() - t_all
    info = wl.load_summary(members, phases, total)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if progress:
        progress(f"sqlite: loaded {members:,} members, {info['commands']:,} commands in {total:.1f} s: "
                 + ", ".join(f"{p} {v['ops_per_s']:,}/s" for p, v in info["phases"].items() if v["ops_per_s"]))
    return info


def _bulk_batch(ledger: SqliteLedger, batch: list[tuple[Any, ...]]) -> None:
    db = ledger.db
    cur = db.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        seq0 = cur.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0] + 1
        journal, idem = [], []
        if batch[0][0] == "open_member":
            rows = []
            for seq, t in enumerate(batch, seq0):
                _, cid, at, member, programme, phone, id_hash, org, tier, kind = t
                body, fp = fingerprint(t)
                rows.append((member, programme, phone, id_hash, _dumps(org), tier, kind, at))
                journal.append((seq, cid, "open_member", at, member, 0, "[]", "[]", body))
                idem.append((cid, fp, seq))
            cur.executemany("INSERT INTO members (id, programme, phone, id_hash, org, tier, kind, status, "
                            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?)", rows)
        else:  # credits of one point type, each member at most once per batch
            lots, accounts, total = [], [], 0
            programme = wl.PROGRAMME
            days = dict(ledger.types[programme])
            for seq, t in enumerate(batch, seq0):
                _, cid, at, member, ty, amount, _eff, _memo = t
                body, fp = fingerprint(t)
                postings = _dumps([(ty, f"#{programme}/issuance/{ty}", f"{member}/{ty}", amount)])
                journal.append((seq, cid, "credit", at, member, amount, postings, "[]", body))
                idem.append((cid, fp, seq))
                d = days[ty]
                lots.append((member, ty, amount, amount, at, NEVER if d is None else at + d * DAY_MS, at, seq))
                accounts.append((member, ty, amount))
                total += amount
            cur.executemany("INSERT INTO lots (member, point_type, remaining, amount, earned_at, expires_at, "
                            "effective_at, source_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", lots)
            cur.executemany("INSERT INTO accounts (member, point_type, balance, held) VALUES (?, ?, ?, 0) "
                            "ON CONFLICT (member, point_type) DO UPDATE SET balance = balance + excluded.balance",
                            accounts)
            cur.execute("UPDATE system_accounts SET balance = balance - ? WHERE programme = ? AND kind = 'issuance' "
                        "AND point_type = ?", (total, programme, batch[0][4]))
        cur.executemany("INSERT INTO journal (seq, cmd_id, kind, at, member, amount, postings, lots_used, command) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", journal)
        cur.executemany("INSERT INTO idempotency (id, fingerprint, seq) VALUES (?, ?, ?)", idem)
        cur.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def audit(ledger: SqliteLedger) -> list[str]:
    """Zero-sum and lots-equal-balance checks (used by the smoke test)."""
    db = ledger.db
    problems = []
    member_sum = db.execute("SELECT coalesce(sum(balance), 0) FROM accounts").fetchone()[0]
    system_sum = db.execute("SELECT coalesce(sum(balance), 0) FROM system_accounts").fetchone()[0]
    if member_sum + system_sum != 0:
        problems.append(f"imbalance: members {member_sum} + system {system_sum} != 0")
    bad = db.execute(
        "SELECT count(*) FROM accounts a WHERE balance != "
        "(SELECT coalesce(sum(remaining), 0) FROM lots l WHERE l.member = a.member AND l.point_type = a.point_type)"
    ).fetchone()[0]
    if bad:
        problems.append(f"{bad} accounts whose balance is not the sum of their lots")
    return problems
