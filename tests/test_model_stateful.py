"""Stateful model test: the ledger (real LMDB in a fresh temp dir, injected clock, no sleeps)
against a small pure-Python reference model.

Hypothesis drives every command of the ledger (credit, redeem, hold, capture, void, transfer,
convert, reverse, expire, freeze, unfreeze), good and bad (zero / negative / > 2**63 amounts,
unknown members and types, empty and too long ids, settling voided / captured / lapsed holds,
spending more than is available, non-transferable types, commands with several defects at once),
plus replays of earlier command ids (same content: the original receipt, replayed=True; other
content: IdempotencyConflict). The model keeps, per member and point type, the lots (id,
remaining, expiry, effective time) and mirrors the core's rules exactly (core_rs/src/ledger.rs),
so for every command it predicts:

* success or the exact exception class (checks are mirrored in the core's order);
* the receipt (seq, kind, amount, credited, lots used / made in order, entries, cursor);
* the resulting balances, lots, history (entries touching each member), hold states and
  member statuses.

After every step the invariants compare the whole ledger with the model (paginating lots and
history with small pages) and run the audit, so a refused command provably changes nothing.

Rules exercised (REQUIREMENTS.md): RD-8 / RD-13 (never spend more than is available),
RD-12 (types by priority) + EX-11 (earliest expiry first), EX-7 (pending points),
EX-2 (expiry sweep), RK-4 (freeze), RK-10 (clawback), XF-1 (gifts), XF-2 (conversion),
XF-9 (non-transferable employee points), ST-15 / RK-8 (the books always balance), MA-2 / MA-14
(a card finds its one member; a member holds a bounded number of cards).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pypoints import _core
from pypoints import commands as c
from pypoints import errors as E
from pypoints.ledger import Ledger
from pypoints.models import Lot, PointTypeSpec, Validity

DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
PROGRAMME = "prog"
MEMBERS = ("m0", "m1", "m2")
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
AMOUNT_MAX = _core.AMOUNT_MAX
ID_MAX = _core.ID_LENGTH_MAX
TTL_MIN, TTL_MAX = _core.HOLD_TTL_MS_MIN, _core.HOLD_TTL_MS_MAX
ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@/")
NEVER = I64_MAX  # FEFO key of a lot that never expires


@dataclass(frozen=True)
class TypeDef:
    priority: int
    validity_days: int | None  # rolling N days, or None = never expires
    transferable: bool
    convert_to: tuple[tuple[str, int, int], ...] = ()


# PT-1 / RD-12: merchant points (priority 0) are spent before internal points (priority 1).
# PT-7 / EX-4 / XF-9: employee points have their own validity and cannot be transferred.
# XF-2: merchant points convert into internal points at 1:2 (floor).
ALL_TYPES: dict[str, TypeDef] = {
    "merchant": TypeDef(0, 30, True, (("internal", 1, 2),)),
    "internal": TypeDef(1, None, True),
    "employee": TypeDef(2, 60, False),
}


class Expect(Exception):
    """The model predicts that the command fails with exactly this exception class."""

    def __init__(self, cls: type[E.PointsError]) -> None:
        super().__init__(cls.__name__)
        self.cls = cls


def _check_id(s: str) -> None:
    if s == "":
        raise Expect(E.InvalidArgument)
    if len(s.encode()) > ID_MAX:
        raise Expect(E.LimitExceeded)
    if not set(s) <= ID_CHARS:
        raise Expect(E.InvalidArgument)


def _check_card(card: str) -> None:
    if card == "" or not all(ch in "0123456789" for ch in card):
        raise Expect(E.InvalidArgument)
    if len(card) > _core.CARD_NUMBER_LENGTH_MAX:
        raise Expect(E.LimitExceeded)
    if len(card) < _core.CARD_NUMBER_LENGTH_MIN:
        raise Expect(E.InvalidArgument)


def _check_amount(n: int) -> None:
    if n <= 0:
        raise Expect(E.InvalidArgument)
    if n > AMOUNT_MAX:
        raise Expect(E.LimitExceeded)


def _ints(x: Any) -> list[int]:
    if isinstance(x, bool):
        return []
    if isinstance(x, int):
        return [x]
    if isinstance(x, (tuple, list)):
        return [i for y in x for i in _ints(y)]
    return []


@dataclass
class LotMeta:
    member: str
    type: str
    amount: int
    earned: int
    expires: int | None
    effective: int
    source_seq: int

    def fefo(self, lot_id: int) -> tuple[int, int]:
        return (NEVER if self.expires is None else self.expires, lot_id)


@dataclass
class MHold:
    member: str
    amount: int
    consumed: list[tuple[str, int, int]]  # (type, lot id, n) in the order taken
    expires_at: int
    state: str = "open"
    captured: int = 0


@dataclass
class Draft:
    """One journal entry the model expects: members whose accounts it posts to, and its data."""

    members: set[str] = field(default_factory=set)
    amount: int = 0
    used: list[tuple[str, int, int]] = field(default_factory=list)
    made: list[tuple[str, int, int]] = field(default_factory=list)
    credited: int = 0


class Model:
    def __init__(self, types: dict[str, TypeDef]) -> None:
        self.types = types
        self.order = sorted(types, key=lambda t: (types[t].priority, t))  # spending order (RD-12)
        self.status: dict[str, str] = {}
        self.lots: dict[tuple[str, str], dict[int, int]] = {}  # (member, type) -> {lot id: remaining}
        self.meta: dict[int, LotMeta] = {}
        self.held: dict[tuple[str, str], int] = {}
        self.holds: dict[str, MHold] = {}
        self.done: dict[str, tuple[c.Command, tuple[Any, ...]]] = {}  # id -> (command, receipt)
        self.spends: dict[str, tuple[str, list[tuple[str, int, int]]]] = {}  # redeem/capture slices
        self.reversed: dict[str, int] = {}
        self.history: dict[str, list[tuple[int, str]]] = {m: [] for m in MEMBERS}
        self.cards: dict[str, list[str]] = {m: [] for m in MEMBERS}  # member -> cards, binding order
        self.next_seq = 1
        self.next_lot = 0

    def clone(self) -> Model:
        """A copy to try a command on (cheaper than deepcopy: lot metadata, commands, receipts
        and slice lists are never mutated)."""
        m = copy.copy(self)
        m.status, m.meta, m.held = dict(self.status), dict(self.meta), dict(self.held)
        m.lots = {k: dict(v) for k, v in self.lots.items()}
        m.holds = {k: replace(h) for k, h in self.holds.items()}
        m.done, m.spends, m.reversed = dict(self.done), dict(self.spends), dict(self.reversed)
        m.history = {k: list(v) for k, v in self.history.items()}
        m.cards = {k: list(v) for k, v in self.cards.items()}
        return m

    # ----- helpers -----

    def acct(self, m: str, t: str) -> dict[int, int]:
        return self.lots.setdefault((m, t), {})

    def fefo(self, acct: dict[int, int]) -> list[int]:
        return sorted(acct, key=lambda i: self.meta[i].fefo(i))

    def spendable(self, lot: int, now: int) -> bool:
        x = self.meta[lot].expires
        return self.meta[lot].effective <= now and (x is None or now < x)

    def member(self, m: str) -> None:
        _check_id(m)
        if m not in self.status:
            raise Expect(E.UnknownMember)

    def active(self, m: str) -> None:
        self.member(m)
        if self.status[m] == "frozen":  # RK-4
            raise Expect(E.MemberFrozen)

    def ptype(self, t: str) -> TypeDef:
        if t not in self.types:
            raise Expect(E.UnknownPointType)
        return self.types[t]

    def hold(self, hid: str) -> MHold:
        _check_id(hid)
        if hid not in self.holds:
            raise Expect(E.UnknownHold)
        return self.holds[hid]

    def expiry(self, t: str, at: int) -> int | None:
        d = self.types[t].validity_days
        return None if d is None else at + d * DAY

    def new_lot(self, m: str, t: str, n: int, earned: int, expires: int | None, eff: int) -> int:
        self.next_lot += 1
        self.meta[self.next_lot] = LotMeta(m, t, n, earned, expires, eff, self.next_seq)
        self.acct(m, t)[self.next_lot] = n
        return self.next_lot

    def take(self, m: str, types: list[str], amount: int, now: int, spendable_only: bool,
             first: tuple[int, ...] = ()) -> list[tuple[str, int, int]]:
        """Mirror of `Ledger::take`: refuse when short (RD-8, RD-13), else consume the types in
        order and each type's lots earliest expiry first (RD-12, EX-11). `first` are the lots a
        clawback takes before the others: those the reversed entry made (RK-10)."""
        avail = sum(r for t in types for i, r in self.acct(m, t).items()
                    if not spendable_only or self.spendable(i, now))
        if avail < amount:
            raise Expect(E.InsufficientPoints)
        left, used = amount, []
        for t in types:
            a = self.acct(m, t)
            order = self.fefo(a)
            front = [i for i in first if i in a]
            order = front + [i for i in order if i not in front]
            for i in order:
                if left == 0:
                    break
                if spendable_only and not self.spendable(i, now):
                    continue
                n = min(a[i], left)
                used.append((t, i, n))
                a[i] -= n
                left -= n
                if a[i] == 0:
                    del a[i]
        assert left == 0
        return used

    def restore(self, m: str, t: str, lot: int, n: int) -> None:
        a = self.acct(m, t)
        a[lot] = a.get(lot, 0) + n

    def unpin(self, h: MHold) -> None:
        for t, _, n in h.consumed:
            self.held[(h.member, t)] -= n

    def void(self, hid: str, h: MHold) -> Draft:
        for t, i, n in h.consumed:
            self.restore(h.member, t, i, n)
        self.unpin(h)
        h.state = "voided"
        return Draft({h.member}, h.amount, list(h.consumed))

    # ----- commands -----

    def apply(self, cmd: c.Command, now: int) -> tuple[Any, ...] | None:
        """Predict `cmd` at `now`: raise Expect(error class), or mutate the model and return the
        expected receipt fields. Returns None for a replay (handled by the caller)."""
        # Parsing refuses integers outside i64 before anything else.
        if any(not I64_MIN <= i <= I64_MAX for i in _ints(cmd.as_tuple(now))):
            raise Expect(E.InvalidArgument)
        _check_id(cmd.id)
        if cmd.id in self.done:
            if self.done[cmd.id][0] != cmd:
                raise Expect(E.IdempotencyConflict)
            return None
        seq0 = self.next_seq
        drafts = getattr(self, "op_" + cmd.op)(cmd, now)
        if not drafts:
            drafts = [Draft()]
        for n, d in enumerate(drafts):
            for m in sorted(d.members):
                self.history[m].append((seq0 + n, cmd.id))
        self.next_seq += len(drafts)
        return (cmd.id, seq0, cmd.op, sum(d.amount for d in drafts),
                sum(d.credited for d in drafts), [s for d in drafts for s in d.used],
                [s for d in drafts for s in d.made], len(drafts), None)

    def op_define_programme(self, cmd: c.DefineProgramme, now: int) -> list[Draft]:
        return []

    def op_define_point_type(self, cmd: c.DefinePointType, now: int) -> list[Draft]:
        return []

    def op_open_member(self, cmd: c.OpenMember, now: int) -> list[Draft]:
        self.status[cmd.member] = "active"
        return []

    def op_credit(self, cmd: c.Credit, now: int) -> list[Draft]:
        _check_amount(cmd.amount)
        self.member(cmd.member)  # a frozen member can still earn
        self.ptype(cmd.point_type)
        eff = now if cmd.effective_at is None else cmd.effective_at
        if eff < now:
            raise Expect(E.InvalidArgument)
        # EX-7: pending until `eff`; EX-1: validity runs from the earn (posting) time.
        lot = self.new_lot(cmd.member, cmd.point_type, cmd.amount, now,
                           self.expiry(cmd.point_type, now), eff)
        return [Draft({cmd.member}, cmd.amount, [], [(cmd.point_type, lot, cmd.amount)])]

    def _debit_types(self, t: str | None) -> list[str]:
        if t is None:
            return list(self.order)  # RD-12: every type by priority
        self.ptype(t)
        return [t]

    def op_redeem(self, cmd: c.Redeem, now: int) -> list[Draft]:
        self.active(cmd.member)
        _check_amount(cmd.amount)
        types = self._debit_types(cmd.point_type)
        used = self.take(cmd.member, types, cmd.amount, now, True)  # RD-8, RD-12, RD-13, EX-11
        self.spends[cmd.id] = (cmd.member, used)
        return [Draft({cmd.member}, cmd.amount, used)]

    def op_hold(self, cmd: c.Hold, now: int) -> list[Draft]:
        if not TTL_MIN <= cmd.ttl_ms <= TTL_MAX:
            raise Expect(E.InvalidArgument)
        self.active(cmd.member)
        _check_amount(cmd.amount)
        types = self._debit_types(cmd.point_type)
        used = self.take(cmd.member, types, cmd.amount, now, True)
        for t, _, n in used:
            self.held[(cmd.member, t)] = self.held.get((cmd.member, t), 0) + n
        self.holds[cmd.id] = MHold(cmd.member, cmd.amount, used, now + cmd.ttl_ms)
        return [Draft({cmd.member}, cmd.amount, used)]

    def op_capture(self, cmd: c.Capture, now: int) -> list[Draft]:
        h = self.hold(cmd.hold)
        if h.state != "open":
            raise Expect(E.HoldNotOpen)
        if now >= h.expires_at:
            raise Expect(E.HoldExpired)
        self.active(h.member)
        n = h.amount if cmd.amount is None else cmd.amount
        _check_amount(n)
        if n > h.amount:
            raise Expect(E.InvalidArgument)
        captured, released, left = [], [], n
        for t, i, k in h.consumed:
            take = min(k, left)
            left -= take
            if take:
                captured.append((t, i, take))
            if k - take:
                released.append((t, i, k - take))
        for t, i, k in released:
            self.restore(h.member, t, i, k)
        self.unpin(h)
        h.state, h.captured = "captured", n
        self.spends[cmd.id] = (h.member, captured)
        # Listed in the member's history even when it is a full capture (which posts only
        # holds -> redemption): the entry concerns the accounts the points were captured from.
        return [Draft({h.member}, n, captured)]

    def op_void(self, cmd: c.Void, now: int) -> list[Draft]:
        h = self.hold(cmd.hold)
        if h.state != "open":
            raise Expect(E.HoldNotOpen)
        return [self.void(cmd.hold, h)]

    def op_transfer(self, cmd: c.Transfer, now: int) -> list[Draft]:
        _check_amount(cmd.amount)
        if cmd.from_member == cmd.to_member:
            raise Expect(E.InvalidArgument)
        self.active(cmd.from_member)
        self.member(cmd.to_member)
        if not self.ptype(cmd.point_type).transferable:
            raise Expect(E.NotTransferable)  # XF-9
        used = self.take(cmd.from_member, [cmd.point_type], cmd.amount, now, True)
        made = []
        for t, i, n in used:
            # XF-1: the receiver's lots keep the sender's expiry (a gift never extends validity).
            src = self.meta[i]
            j = self.new_lot(cmd.to_member, t, n, src.earned, src.expires, now)
            made.append((t, j, n))
        self.spends[cmd.id] = (cmd.from_member, used)
        return [Draft({cmd.from_member, cmd.to_member}, cmd.amount, used, made)]

    def op_convert(self, cmd: c.Convert, now: int) -> list[Draft]:
        _check_amount(cmd.amount)
        self.active(cmd.member)
        ft = self.ptype(cmd.from_type)
        self.ptype(cmd.to_type)
        rate = [(num, den) for to, num, den in ft.convert_to if to == cmd.to_type]
        if not rate:
            raise Expect(E.InvalidArgument)
        credited = cmd.amount * rate[0][0] // rate[0][1]
        if credited <= 0:
            raise Expect(E.InvalidArgument)
        _check_amount(credited)
        used = self.take(cmd.member, [cmd.from_type], cmd.amount, now, True)
        lot = self.new_lot(cmd.member, cmd.to_type, credited, now, self.expiry(cmd.to_type, now), now)
        self.spends[cmd.id] = (cmd.member, used)
        return [Draft({cmd.member}, cmd.amount, used, [(cmd.to_type, lot, credited)], credited)]

    def op_reverse(self, cmd: c.Reverse, now: int) -> list[Draft]:
        _check_id(cmd.target)
        if cmd.target not in self.done:
            raise Expect(E.UnknownEntry)
        target, receipt = self.done[cmd.target]
        if not isinstance(target, (c.Credit, c.Redeem, c.Capture, c.Transfer, c.Convert)):
            raise Expect(E.NotReversible)
        original = receipt[3]
        done = self.reversed.get(cmd.target, 0)
        left = original - done
        if cmd.amount is not None and cmd.ratio is not None:
            raise Expect(E.InvalidArgument)
        if cmd.amount is not None:
            n = cmd.amount
        elif cmd.ratio is not None:
            num, den = cmd.ratio
            if num <= 0 or den <= 0 or num > den:
                raise Expect(E.InvalidArgument)
            n = original * num // den  # RK-10: proportional
        else:
            n = left
        _check_amount(n)
        if n > left:
            raise Expect(E.InvalidArgument)
        made_lots = tuple(i for _, i, _ in receipt[6])
        if isinstance(target, c.Credit):
            # RK-10 clawback: the credited lot first, then the rest earliest-expiry first,
            # pending and not-yet-swept lots included.
            m, t = target.member, target.point_type
            used = self.take(m, [t], n, now, False, first=made_lots)
            self.reversed[cmd.target] = done + n
            return [Draft({m}, n, used)]
        back, used, members = 0, [], set()
        if isinstance(target, c.Transfer):
            # The receiver gives back what the transfer made first; the sender's lots return.
            used = self.take(target.to_member, [target.point_type], n, now, False, first=made_lots)
            members = {target.to_member}
        elif isinstance(target, c.Convert):
            # XF-2 undone in proportion; a full reversal claws back exactly what was credited.
            credited = receipt[4]
            back = (done + n) * credited // original - done * credited // original
            if back:
                used = self.take(target.member, [target.to_type], back, now, False, first=made_lots)
        self.reversed[cmd.target] = done + n
        # Refund: restore the consumed slices last-taken-first, with their original expiry.
        m, slices = self.spends[cmd.target]
        members.add(m)
        skip, left, made = done, n, []
        for t, i, k in reversed(slices):
            s = min(skip, k)
            skip -= s
            k2 = min(k - s, left)
            if k2 == 0:
                continue
            left -= k2
            self.restore(m, t, i, k2)
            made.append((t, i, k2))
        assert left == 0
        return [Draft(members, n, used, made, back)]

    def op_expire(self, cmd: c.Expire, now: int) -> list[Draft]:
        """EX-2: holds past their TTL void first (one entry each, by expiry then id), then every
        account's lots with expires_at <= as_of go to breakage (one entry per account, by key)."""
        drafts = []
        due = sorted((h.expires_at, hid) for hid, h in self.holds.items()
                     if h.state == "open" and h.expires_at <= cmd.as_of)
        for _, hid in due:
            drafts.append(self.void(hid, self.holds[hid]))
        for (m, t) in sorted(self.lots, key=lambda k: f"{k[0]}/{k[1]}"):
            if cmd.after is not None and f"{m}/{t}" <= cmd.after:
                continue
            a = self.lots[(m, t)]
            gone = [i for i in self.fefo(a)
                    if self.meta[i].expires is not None and self.meta[i].expires <= cmd.as_of]
            if gone:
                used = [(t, i, a.pop(i)) for i in gone]
                drafts.append(Draft({m}, sum(n for _, _, n in used), used))
        return drafts

    def op_freeze(self, cmd: c.Freeze, now: int) -> list[Draft]:
        self.member(cmd.member)
        self.status[cmd.member] = "frozen"  # RK-4
        return []

    def op_unfreeze(self, cmd: c.Unfreeze, now: int) -> list[Draft]:
        self.member(cmd.member)
        self.status[cmd.member] = "active"
        return []

    def holder(self, card: str) -> str | None:
        return next((m for m, cs in self.cards.items() if card in cs), None)

    def op_bind_card(self, cmd: c.BindCard, now: int) -> list[Draft]:
        _check_card(cmd.card)
        self.member(cmd.member)  # a frozen member may get a card
        if self.holder(cmd.card) is not None:
            raise Expect(E.CardAlreadyBound)
        if len(self.cards[cmd.member]) >= _core.CARDS_PER_MEMBER_MAX:
            raise Expect(E.LimitExceeded)
        self.cards[cmd.member].append(cmd.card)
        return []

    def op_unbind_card(self, cmd: c.UnbindCard, now: int) -> list[Draft]:
        _check_card(cmd.card)
        self.member(cmd.member)
        if cmd.card not in self.cards[cmd.member]:
            raise Expect(E.UnknownCard)
        self.cards[cmd.member].remove(cmd.card)
        return []

    # ----- expected views -----

    def balance(self, m: str, t: str, now: int) -> tuple[str, int, int, int, int]:
        a = self.acct(m, t)
        total = sum(a.values())
        avail = sum(r for i, r in a.items() if self.spendable(i, now))
        pending = sum(r for i, r in a.items() if self.meta[i].effective > now)
        return (t, total, avail, pending, self.held.get((m, t), 0))

    def lot_rows(self, m: str) -> list[Lot]:
        out = []
        for t in self.order:
            a = self.acct(m, t)
            for i in self.fefo(a):
                x = self.meta[i]
                out.append(Lot(t, i, a[i], x.amount, x.earned, x.expires, x.effective, x.source_seq))
        return out


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any],
           one_in: int = 6) -> st.SearchStrategy[Any]:
    """`good` most of the time, `bad` about once in `one_in` draws (shrinks towards good)."""
    return st.integers(0, one_in - 1).flatmap(lambda k: bad if k == one_in - 1 else good)


BAD_AMOUNTS = st.sampled_from([0, -1, AMOUNT_MAX + 1, 2**63, -(2**63) - 1, AMOUNT_MAX])
GOOD_AMOUNTS = st.integers(1, 300)
AMOUNTS = mostly(GOOD_AMOUNTS, BAD_AMOUNTS, one_in=12)
GOOD_MEMBER = st.sampled_from(MEMBERS)
BAD_MEMBER = st.sampled_from(["ghost", "", "m" * (ID_MAX + 1), "m 0"])
MEMBER = mostly(GOOD_MEMBER, BAD_MEMBER, one_in=16)
GOOD_TYPE = st.sampled_from(list(ALL_TYPES))  # "employee" is unknown when not defined
TYPE = mostly(GOOD_TYPE, st.just("bogus"), one_in=16)
OPT_TYPE = st.one_of(st.none(), TYPE)
# "fresh" = a new valid command id; the rest are refused before anything else.
ID_KIND = mostly(st.just("fresh"), st.sampled_from(["", "x" * (ID_MAX + 1), "has space"]), one_in=20)
# Whole days often, so that `now == expires_at` boundaries actually happen.
TTL = mostly(st.one_of(st.integers(1, 30).map(lambda d: d * DAY), st.integers(TTL_MIN, TTL_MAX)),
             st.sampled_from([0, TTL_MIN - 1, TTL_MAX + 1, 2**63]), one_in=12)
ADVANCE = st.one_of(st.integers(1, 40).map(lambda d: d * DAY), st.integers(0, 40 * DAY),
                    st.sampled_from([1, TTL_MIN]))
# EX-7: None = effective now; a positive delay makes the lot pending; -1 (before now) is refused.
DELAY = mostly(st.one_of(st.none(), st.just(0), st.integers(1, 3 * DAY)), st.just(-1), one_in=12)
BAD_REFS = st.sampled_from(["nothing-here", "", "r" * (ID_MAX + 1)])
# A small pool, so that cards are bound, refused as taken, unbound and bound again.
CARD_POOL = [f"880000{i:02d}" for i in range(10)]
CARD = mostly(st.sampled_from(CARD_POOL),
              st.sampled_from(["", "8800000", "8" * 20, "8800000a", "８８００００００"]), one_in=10)

# The machine's actions with their weights (a list with repeats; hypothesis shrinks towards the
# front). OPTIONAL_ACTIONS may be switched off for a whole run.
ACTIONS = (["credit"] * 4 + ["redeem"] * 3 + ["hold"] * 3 + ["settle"] * 3 + ["advance"] * 3
           + ["reverse"] * 3 + ["transfer"] * 2 + ["set_status"] * 3 + ["mangle"] * 2
           + ["convert"] * 2 + ["expire_now", "replay", "cards"])
OPTIONAL_ACTIONS = ["set_status", "transfer", "convert", "replay", "expire_now", "mangle", "cards"]


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="pypoints-model-")
        self.now = T0
        self.ledger = Ledger(self.dir, clock=lambda: self.now)
        self.model: Model | None = None
        self.actions: list[str] = []
        self.counter = 0

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ----- plumbing -----

    def new_id(self, kind: str = "fresh") -> str:
        if kind != "fresh":
            return kind
        self.counter += 1
        return f"cmd-{self.counter}"

    def run(self, cmd: c.Command, call: Callable[[], Any] | None = None) -> Any:
        """Execute `cmd` on the ledger and the model; check outcome and receipt."""
        assert self.model is not None
        call = call or (lambda: self.ledger.execute(cmd))
        trial = self.model.clone()
        try:
            expected = trial.apply(cmd, self.now)
        except Expect as ex:
            note(f"at {self.now - T0} ms: {cmd} -> expect {ex.cls.__name__}")
            with pytest.raises(E.PointsError) as info:
                call()
            assert type(info.value) is ex.cls, f"{cmd}: expected {ex.cls.__name__}, got {info.value!r}"
            return None
        replay = expected is None
        if replay:
            expected = self.model.done[cmd.id][1]
        note(f"at {self.now - T0} ms: {cmd} -> expect {'replay of ' if replay else ''}{expected}")
        r = call()
        got = (r.id, r.seq, r.kind, r.amount, r.credited, [tuple(s) for s in r.lots_used],
               [tuple(s) for s in r.lots_made], r.entries, r.cursor)
        assert got == expected, f"{cmd}:\n  receipt {got}\n  model   {expected}"
        assert r.replayed is replay
        if not replay:
            trial.done[cmd.id] = (cmd, expected)
            self.model = trial
        return r

    def pick(self, data: st.DataObject, pool: list[str], bad: st.SearchStrategy[str]) -> str:
        """One of `pool` (oldest first), favouring the newest few, so that a hold is settled or a
        redeem refunded soon after and again; sometimes a `bad` reference instead."""
        if not pool:
            return data.draw(bad, label="ref")
        newest = st.integers(max(0, len(pool) - 4), len(pool) - 1)
        i = data.draw(mostly(st.one_of(newest, st.integers(0, len(pool) - 1)), st.just(-1), one_in=8),
                      label="pick")
        return pool[i] if i >= 0 else data.draw(bad, label="ref")

    # ----- setup -----

    @initialize(with_employee=st.booleans(),
                seed=st.lists(st.tuples(GOOD_MEMBER, GOOD_TYPE, st.integers(1, 500)), min_size=1, max_size=8),
                off=st.sets(st.sampled_from(OPTIONAL_ACTIONS)))
    def setup(self, with_employee: bool, seed: list[tuple[str, str, int]], off: set[str]) -> None:
        """One programme, two or three point types, three members, some opening credits. `off`
        switches a few actions off for this run (swarm testing: e.g. no freezes at all)."""
        types = {k: v for k, v in ALL_TYPES.items() if with_employee or k != "employee"}
        self.model = Model(types)
        self.actions = [a for a in ACTIONS if a not in off]
        self.run(c.DefineProgramme(f"programme.{PROGRAMME}", PROGRAMME, "model test"))
        for tid, td in types.items():
            v = Validity.never() if td.validity_days is None else Validity.rolling(td.validity_days, "days")
            spec = PointTypeSpec(tid, td.priority, v, td.transferable, convert_to=td.convert_to)
            self.run(c.DefinePointType(f"point-type.{tid}", PROGRAMME, spec))
        for m in MEMBERS:
            self.run(c.OpenMember(f"member.{m}", m, PROGRAMME))
        for m, t, n in seed:  # opening balances, so that spending starts early
            self.run(c.Credit(self.new_id(), m, t, n))

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        """One action, drawn with weights (a single rule, so that hypothesis' per-rule swarm
        testing cannot leave a run with, say, only expiry sweeps; `setup` does a milder one)."""
        action = data.draw(st.sampled_from(self.actions), label="action")
        getattr(self, action)(data)

    def command_id(self, data: st.DataObject) -> str:
        return self.new_id(data.draw(ID_KIND, label="id"))

    # ----- time -----

    def boundaries(self) -> list[int]:
        """Future instants where something changes: lots become effective or expire, holds lapse."""
        assert self.model is not None
        mo = self.model
        live = [mo.meta[i] for a in mo.lots.values() for i in a]
        live += [mo.meta[i] for h in mo.holds.values() if h.state == "open" for _, i, _ in h.consumed]
        ts = {x for m in live for x in (m.effective, m.expires) if x is not None}
        ts |= {h.expires_at for h in mo.holds.values() if h.state == "open"}
        return sorted(t for t in ts if t > self.now)

    def advance(self, data: st.DataObject) -> None:
        """Time passes: lots become effective (EX-7) and expire, holds lapse; half the time
        exactly to (or 1 ms around) such an instant. Sometimes the scheduled expiry job
        (DI-9, EX-2) then runs at the new time."""
        assert self.model is not None
        future = []
        to = data.draw(st.sampled_from(["ms", "boundary", "hold_lapse"]), label="to")
        if to == "hold_lapse":  # right at a hold's TTL: capture refused from here on
            future = sorted(h.expires_at for h in self.model.holds.values()
                            if h.state == "open" and h.expires_at > self.now)
        if to == "boundary" or (to == "hold_lapse" and not future):
            future = self.boundaries()
        if future:
            t = data.draw(st.sampled_from(future[:4]), label="boundary")
            self.now = max(self.now, t + data.draw(st.sampled_from([0, 0, -1, 1]), label="offset"))
        else:
            self.now += data.draw(ADVANCE, label="ms")
        if data.draw(st.sampled_from([False, False, True]), label="sweep"):
            self.expire_now(data)

    def expire_now(self, data: st.DataObject) -> None:
        """EX-2: expire(as_of=now) voids lapsed holds, then sweeps expired lots, including the
        slices those holds just put back (the sweep used to read the accounts from before the
        voids: fixed in 90d6628, covered by tests/test_scenarios.py too)."""
        eid = self.command_id(data)

        def sweep() -> Any:
            rs = self.ledger.expire(eid, self.now)
            assert len(rs) == 1 and rs[0].cursor is None
            return rs[0]

        self.run(c.Expire(eid, self.now, None), call=sweep)

    # ----- commands -----

    def available(self, member: str, types: list[str]) -> int:
        assert self.model is not None
        mo = self.model
        if member not in mo.status:
            return 0
        return sum(r for t in types if t in mo.types
                   for i, r in mo.acct(member, t).items() if mo.spendable(i, self.now))

    def amount(self, data: st.DataObject, cap: int) -> int:
        """Mostly an amount the state covers (1..cap); else any amount: too much, or invalid."""
        fit = st.integers(1, cap) if cap >= 1 else GOOD_AMOUNTS
        return data.draw(mostly(fit, AMOUNTS, one_in=3), label="amount")

    def debit_types(self, t: str | None) -> list[str]:
        assert self.model is not None
        return list(self.model.order) if t is None else [t]

    def credit(self, data: st.DataObject) -> None:
        member = data.draw(MEMBER, label="member")
        t = data.draw(TYPE, label="point_type")
        amount = data.draw(mostly(st.integers(1, 500), BAD_AMOUNTS, one_in=12), label="amount")
        delay = data.draw(DELAY, label="delay")
        eff = None if delay is None else self.now + delay  # EX-7: pending until eff
        self.run(c.Credit(self.command_id(data), member, t, amount, eff))

    def redeem(self, data: st.DataObject) -> None:
        # RD-8 / RD-13: refused unless the available points cover it (InsufficientPoints);
        # RD-12: without a type, merchant before internal; EX-11: earliest expiry first.
        member = data.draw(MEMBER, label="member")
        t = data.draw(OPT_TYPE, label="point_type")
        amount = self.amount(data, self.available(member, self.debit_types(t)))
        self.run(c.Redeem(self.command_id(data), member, amount, t))

    def hold(self, data: st.DataObject) -> None:
        member = data.draw(MEMBER, label="member")
        t = data.draw(OPT_TYPE, label="point_type")
        amount = self.amount(data, self.available(member, self.debit_types(t)))
        ttl = data.draw(TTL, label="ttl_ms")
        self.run(c.Hold(self.command_id(data), member, amount, ttl, t))

    def settle(self, data: st.DataObject) -> None:
        """Capture (full or partial) or void a hold; also of voided / captured / lapsed holds
        (HoldNotOpen, HoldExpired), unknown holds, zero / too large amounts."""
        assert self.model is not None
        mo = self.model
        # Often an open hold of a frozen member (RK-4: it can be voided, not captured).
        frozen = [k for k, h in mo.holds.items() if h.state == "open" and mo.status[h.member] == "frozen"]
        if frozen and data.draw(st.booleans(), label="frozen_member_hold"):
            hid = data.draw(st.sampled_from(frozen), label="hold")
        else:  # open holds last, so that `pick` favours them
            hid = self.pick(data, sorted(mo.holds, key=lambda k: mo.holds[k].state == "open"), BAD_REFS)
        how = data.draw(st.sampled_from(["capture", "partial", "void"]), label="settle")
        if how == "void":
            self.run(c.Void(self.command_id(data), hid))
            return
        h = self.model.holds.get(hid)
        amount = None if how == "capture" else self.amount(data, h.amount if h else 0)
        self.run(c.Capture(self.command_id(data), hid, amount))

    def transfer(self, data: st.DataObject) -> None:
        # XF-1 gift (the receiver's lots keep the sender's expiry); XF-9: employee points are
        # not transferable (NotTransferable).
        src, dst = data.draw(mostly(st.permutations(MEMBERS).map(lambda p: (p[0], p[1])),
                                    st.tuples(MEMBER, MEMBER), one_in=8), label="from_to")
        t = data.draw(mostly(st.just("merchant"), TYPE, one_in=2), label="point_type")
        amount = self.amount(data, self.available(src, [t]))
        self.run(c.Transfer(self.command_id(data), src, dst, t, amount))

    def convert(self, data: st.DataObject) -> None:
        # XF-2: merchant -> internal at 1:2 (1 point converts to 0: refused); no other rate.
        member = data.draw(MEMBER, label="member")
        ft, tt = data.draw(mostly(st.just(("merchant", "internal")), st.tuples(TYPE, TYPE), one_in=4),
                           label="types")
        amount = self.amount(data, self.available(member, [ft]))
        self.run(c.Convert(self.command_id(data), member, ft, tt, amount))

    def reverse(self, data: st.DataObject) -> None:
        # Refund of a redeem / capture (lots restored last-taken-first with their expiry),
        # clawback of a credit (RK-10: the credited lot first), undoing a transfer or a convert
        # (both sides); partial, proportional or the rest. Anything else is NotReversible,
        # unknown ids UnknownEntry.
        assert self.model is not None
        done = self.model.done
        kind = data.draw(st.sampled_from([(c.Redeem, c.Capture), c.Credit, (c.Transfer, c.Convert)]), label="of")
        reversible = [k for k, (cmd, _) in done.items() if isinstance(cmd, kind)]
        rev = self.model.reversed
        # Often a partly reversed target again: the next refund must skip the slices the
        # earlier ones restored (last taken first).
        partly = [k for k in reversible if 0 < rev.get(k, 0) < done[k][1][3]]
        if partly and data.draw(st.booleans(), label="again"):
            target = data.draw(st.sampled_from(partly), label="target")
        else:
            target = self.pick(data, reversible, st.one_of(st.sampled_from(list(done)), BAD_REFS))
        left = done[target][1][3] - self.model.reversed.get(target, 0) if target in reversible else 0
        mode = data.draw(st.sampled_from(["amount", "rest", "ratio", "amount", "rest", "both", "bad_ratio"]),
                         label="mode")
        amount = self.amount(data, left) if mode in ("amount", "both") else None
        num, den = sorted(data.draw(st.tuples(st.integers(1, 4), st.integers(1, 4)), label="ratio")
                          if mode in ("ratio", "both", "bad_ratio") else (1, 1))
        ratio = {"ratio": (num, den), "both": (num, den), "bad_ratio": (den + 1, den)}.get(mode)
        self.run(c.Reverse(self.command_id(data), target, amount, ratio))

    def set_status(self, data: st.DataObject) -> None:
        """RK-4: freeze (no redeem / hold / capture / transfer / convert) or unfreeze."""
        assert self.model is not None
        if data.draw(st.booleans(), label="freeze"):
            # Often a member with an open hold: a frozen member's hold can be voided, not captured.
            busy = sorted({h.member for h in self.model.holds.values() if h.state == "open"})
            member = data.draw(mostly(st.sampled_from(busy), MEMBER, one_in=3) if busy else MEMBER,
                               label="member")
            self.run(c.Freeze(self.command_id(data), member, "abuse"))
        else:
            frozen = [m for m, s in self.model.status.items() if s == "frozen"]
            self.run(c.Unfreeze(self.command_id(data), self.pick(data, frozen, MEMBER), "cleared"))

    def cards(self, data: st.DataObject) -> None:
        """MA-2 / MA-14: bind a card (often one already bound: refused) or unbind one (often by
        its own member)."""
        assert self.model is not None
        card = data.draw(CARD, label="card")
        if data.draw(st.booleans(), label="bind"):
            self.run(c.BindCard(self.command_id(data), data.draw(MEMBER, label="member"), card))
        else:
            holder = self.model.holder(card)
            member = data.draw(mostly(st.just(holder), MEMBER, one_in=3) if holder else MEMBER, label="member")
            self.run(c.UnbindCard(self.command_id(data), member, card, "lost"))

    def mangle(self, data: st.DataObject) -> None:
        """A command with several defects at once (bad / unknown / frozen member, bad amount,
        unknown type, bad TTL, bad reference...): the model must name the error the core checks
        first."""
        for _ in range(data.draw(st.integers(1, 4), label="how_many")):
            self.mangle_one(data)

    def mangle_one(self, data: st.DataObject) -> None:
        assert self.model is not None
        half = lambda good, bad: st.one_of(good, bad)  # noqa: E731
        kind = data.draw(st.sampled_from(["redeem", "hold", "credit", "transfer", "convert",
                                          "capture", "reverse", "freeze"]), label="mangle")
        cid = self.new_id(data.draw(mostly(st.just("fresh"), ID_KIND, one_in=6), label="id"))
        member = data.draw(half(GOOD_MEMBER, BAD_MEMBER), label="member")
        other = data.draw(half(GOOD_MEMBER, MEMBER), label="other")
        amount = data.draw(half(st.integers(1, 300), BAD_AMOUNTS), label="amount")
        t = data.draw(half(GOOD_TYPE, st.just("bogus")), label="point_type")
        ref = data.draw(half(st.sampled_from(list(self.model.done) + list(self.model.holds)), BAD_REFS),
                        label="ref")
        cmd: c.Command
        if kind == "redeem":
            cmd = c.Redeem(cid, member, amount, data.draw(st.one_of(st.none(), st.just(t)), label="typed"))
        elif kind == "hold":
            ttl = data.draw(half(TTL, st.sampled_from([0, TTL_MIN - 1, TTL_MAX + 1])), label="ttl_ms")
            cmd = c.Hold(cid, member, amount, ttl, data.draw(st.one_of(st.none(), st.just(t)), label="typed"))
        elif kind == "credit":
            delay = data.draw(st.sampled_from([0, -1, DAY]), label="delay")
            cmd = c.Credit(cid, member, t, amount, self.now + delay)
        elif kind == "transfer":
            cmd = c.Transfer(cid, member, other, t, amount)
        elif kind == "convert":
            to_type = data.draw(half(st.just("internal"), TYPE), label="to_type")
            cmd = c.Convert(cid, member, t, to_type, amount)
        elif kind == "capture":
            cmd = c.Capture(cid, ref, data.draw(st.sampled_from([None, amount]), label="capture_amount"))
        elif kind == "reverse":
            cmd = c.Reverse(cid, ref, data.draw(st.sampled_from([None, amount]), label="reverse_amount"))
        else:
            cmd = c.Freeze(cid, member, "mangled")
        self.run(cmd)

    # ----- idempotency -----

    def replay(self, data: st.DataObject) -> None:
        """An earlier id again (possibly later in time). Same content: the original receipt with
        replayed=True and nothing changes; different content: IdempotencyConflict."""
        assert self.model is not None
        cid = self.pick(data, list(self.model.done), st.nothing())
        old = self.model.done[cid][0]
        how = data.draw(st.sampled_from(["same", "same", "freeze", "amount"]), label="replay")
        if how == "same":
            cmd = old
        elif how == "amount" and isinstance(getattr(old, "amount", None), int):
            cmd = replace(old, amount=old.amount + 1)  # type: ignore[call-arg]
        else:
            cmd = c.Freeze(cid, MEMBERS[0], "conflict-probe")
        self.run(cmd)

    # ----- invariants -----

    @invariant()
    def matches_model(self) -> None:
        if self.model is None:
            return
        mo, led, now = self.model, self.ledger, self.now
        for m in MEMBERS:
            got = [(b.point_type, b.total, b.available, b.pending, b.held) for b in led.balances(m)]
            assert got == [mo.balance(m, t, now) for t in mo.order], f"balances of {m}"
            lots, token = [], ""
            while True:
                page = led.lots(m, page_size=2, page_token=token)
                lots += page.items
                token = page.next_page_token
                if not token:
                    break
            assert lots == mo.lot_rows(m), f"lots of {m}"
            hist, token = [], ""
            while True:
                hp = led.history(m, page_size=3, page_token=token)
                assert len(hp.items) <= 3
                hist += [(e.seq, e.id) for e in hp.items]
                token = hp.next_page_token
                if not token:
                    break
            assert hist == mo.history[m][::-1], f"history of {m}"
            assert led.member(m).status == mo.status[m]
            assert led.member(m).cards == tuple(mo.cards[m]), f"cards of {m}"
        for card in CARD_POOL[:4]:
            holder = mo.holder(card)
            assert [x.id for x in led.find_members(card=card)] == ([holder] if holder else []), f"card {card}"
        for hid, h in mo.holds.items():
            hs = led.hold_state(hid)
            assert (hs.member, hs.amount, hs.captured, hs.state, hs.expires_at) == \
                (h.member, h.amount, h.captured, h.state, h.expires_at), f"hold {hid}"
        assert led.audit().problems == []


LedgerMachine.TestCase.settings = settings(
    # ~4 s on 2 cores; PYPOINTS_MODEL_EXAMPLES=500 for a deeper (nightly) run.
    max_examples=int(os.environ.get("PYPOINTS_MODEL_EXAMPLES", "40")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[p for p in Phase if p is not Phase.explain],  # explain is slow for state machines
)
TestLedgerModel = LedgerMachine.TestCase
