"""Bad input through the Python API: every refusal raises its typed exception from
`pypoints.errors` (the exact class, not just a parent) AND changes nothing: the journal, every
balance, every lot, every hold and the audit are the same before and after.

Deterministic: a fixed injected clock, one tmp_path data dir per test."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from pypoints import (
    BindCard, Capture, CashRate, Command, Convert, Credit, DefinePointType, DefineProgramme, Expire, Freeze,
    Hold, Ledger, OpenMember, PointTypeSpec, Receipt, Redeem, Transfer, Validity, Void, errors, to_ms,
)
from pypoints import _core
from pypoints.errors import (
    AlreadyExists, HoldExpired, HoldNotOpen, IdempotencyConflict, InsufficientPoints, InvalidArgument,
    LedgerClosed, LimitExceeded, MemberFrozen, NotFound, NotReversible, NotTransferable, PointsError,
    Refused, StorageError, UnknownEntry, UnknownHold, UnknownMember, UnknownPointType, UnknownProgramme,
)
from pypoints.errors import CardAlreadyBound, UnknownCard
from pypoints.errors import InvalidRule, UnknownRule

# ----------------------------------------------------------------------------------------------
# shared fixtures (kept in this file on purpose: conftest.py belongs to nobody in particular)
# ----------------------------------------------------------------------------------------------

NOW = to_ms(datetime(2024, 5, 10, tzinfo=timezone.utc))
HOUR = 3_600_000
DAY = 24 * HOUR
TTL = HOUR
HOLD_OPEN_EXPIRES = NOW + TTL

AMOUNT_MAX = _core.AMOUNT_MAX
ID_MAX = _core.ID_LENGTH_MAX
TEXT_MAX = _core.TEXT_LENGTH_MAX
BATCH_MAX = _core.BATCH_SIZE_MAX
PAGE_MAX = _core.PAGE_SIZE_MAX
I64_PAST = [2**63, -(2**63) - 1]

MEMBERS = ["alice", "bob", "carol", "dave"]
ALICE_CARD = "6222020200112233445"
HOLDS = ["h.open", "h.captured", "h.voided"]

MERCHANT = PointTypeSpec("merchant", priority=0, validity=Validity.rolling(3, "years"),
                         convert_to=(("general", 1, 2),))
GENERAL = PointTypeSpec("general", priority=1)
EMPLOYEE = PointTypeSpec("employee", priority=2, validity=Validity.rolling(3, "years"), transferable=False)
COIN500 = PointTypeSpec("coin", cash=CashRate(500, 100, min_points=5, step_points=5, max_points=500_000))


def seed(ledger: Ledger) -> None:
    """Programme `shop` (merchant → general convertible 2:1, never-expiring general, untransferable
    employee points), programme `bank` (a 500:1 type), members alice/bob/carol(frozen)/dave(bank),
    an open, a captured and a voided hold, a redeem `r1`, a transfer `t1`, a convert `cv1`."""
    cmds: list[Command] = [
        DefineProgramme("programme.shop", "shop", "Shop"),
        DefineProgramme("programme.bank", "bank", "Bank"),
        *(DefinePointType(f"point-type.shop.{t.id}", "shop", t) for t in (MERCHANT, GENERAL, EMPLOYEE)),
        DefinePointType("point-type.bank.coin", "bank", COIN500),
        *(OpenMember(f"member.{m}", m, "shop") for m in ("alice", "bob", "carol")),
        OpenMember("member.dave", "dave", "bank"),
        Credit("c.alice.merchant", "alice", "merchant", 1_000),
        Credit("c.alice.general", "alice", "general", 500),
        Credit("c.alice.employee", "alice", "employee", 300),
        Credit("c.bob.merchant", "bob", "merchant", 100),
        Credit("c.carol.merchant", "carol", "merchant", 100),
        Credit("c.dave.coin", "dave", "coin", 100_000),
        Hold("h.open", "alice", 100, TTL, "merchant"),
        Hold("h.captured", "alice", 50, TTL, "merchant"),
        Capture("cap.1", "h.captured"),
        Hold("h.voided", "alice", 20, TTL, "merchant"),
        Void("void.1", "h.voided"),
        Redeem("r1", "alice", 100, "general"),
        Transfer("t1", "alice", "bob", "merchant", 50),
        Convert("cv1", "alice", "merchant", "general", 100),
        Freeze("fz.carol", "carol", "abuse"),
        BindCard("card.alice", "alice", ALICE_CARD),
    ]
    # one batch, one durable commit: later commands see the earlier ones
    results = ledger.submit(cmds)
    bad = [(c.id, r) for c, r in zip(cmds, results) if not isinstance(r, Receipt)]
    assert not bad, bad


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "data", clock=lambda: NOW)
    seed(led)
    yield led
    led.close()


def snapshot(ledger: Ledger) -> tuple[Any, ...]:
    """Everything a refused command must leave alone."""
    return (
        len(ledger.journal(1, 1000)),
        [ledger.journal(1, 1000)[-1].hash],
        {m: ledger.balances(m, at=NOW) for m in MEMBERS},
        {m: ledger.lots(m, page_size=1000).items for m in MEMBERS},
        {m: ledger.member(m) for m in MEMBERS},  # status and cards
        {card: ledger.find_members(card=card) for card in (ALICE_CARD, "88001234")},
        {h: ledger.hold_state(h) for h in HOLDS},
        ledger.audit(),
    )


def refused(ledger: Ledger, exc: type[PointsError], call: Callable[[Ledger], Any]) -> PointsError:
    """`call` raises exactly `exc` (a subclass is not enough) and nothing changes."""
    before = snapshot(ledger)
    assert before[-1].ok, before[-1].problems
    with pytest.raises(PointsError) as info:
        call(ledger)
    assert type(info.value) is exc, f"expected {exc.__name__}, got {type(info.value).__name__}: {info.value}"
    assert info.value.reason == exc.reason
    assert snapshot(ledger) == before
    return info.value


def case(exc: type[PointsError], call: Callable[[Ledger], Any], id: str) -> Any:
    return pytest.param(exc, call, id=id)


# ----------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------

# Every command that takes an amount, as `amount -> call`.
AMOUNT_CALLS: dict[str, Callable[[int], Callable[[Ledger], Any]]] = {
    "credit": lambda n: lambda L: L.credit("x.credit", "alice", "merchant", n),
    "redeem": lambda n: lambda L: L.redeem("x.redeem", "alice", n, point_type="general"),
    "redeem_all_types": lambda n: lambda L: L.redeem("x.redeem", "alice", n),
    "hold": lambda n: lambda L: L.hold("x.hold", "alice", n, ttl_ms=TTL, point_type="merchant"),
    "capture": lambda n: lambda L: L.capture("x.capture", "h.open", n),
    "transfer": lambda n: lambda L: L.transfer("x.transfer", "alice", "bob", "merchant", n),
    "convert": lambda n: lambda L: L.convert("x.convert", "alice", "merchant", "general", n),
    "reverse": lambda n: lambda L: L.reverse("x.reverse", "r1", amount=n),
}

AMOUNT_CASES = [
    case(exc, make(n), f"{op}-{label}")
    for op, make in AMOUNT_CALLS.items()
    for exc, n, label in [
        (InvalidArgument, 0, "zero"),
        (InvalidArgument, -1, "negative"),
        (InvalidArgument, -AMOUNT_MAX, "very-negative"),
        (LimitExceeded, AMOUNT_MAX + 1, "over-AMOUNT_MAX"),
        (InvalidArgument, 2**63, "2**63"),
        (InvalidArgument, -(2**63) - 1, "-2**63-1"),
        (InvalidArgument, True, "bool-True"),
        (InvalidArgument, False, "bool-False"),
        (InvalidArgument, "100", "str"),
        (InvalidArgument, 100.0, "float"),
    ]
]

OTHER_INT_FIELDS = [
    case(InvalidArgument, lambda L: L.hold("x.hold", "alice", 10, ttl_ms=True), "hold-ttl-bool"),
    case(InvalidArgument, lambda L: L.hold("x.hold", "alice", 10, ttl_ms="3600000"), "hold-ttl-str"),
    case(InvalidArgument, lambda L: L.hold("x.hold", "alice", 10, ttl_ms=2**63), "hold-ttl-past-i64"),
    case(InvalidArgument, lambda L: L.hold("x.hold", "alice", 10, ttl_ms=_core.HOLD_TTL_MS_MIN - 1), "hold-ttl-too-short"),
    case(InvalidArgument, lambda L: L.hold("x.hold", "alice", 10, ttl_ms=_core.HOLD_TTL_MS_MAX + 1), "hold-ttl-too-long"),
    case(InvalidArgument, lambda L: L.hold("x.hold", "alice", 10, ttl_ms=0), "hold-ttl-zero"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "r1", ratio=(True, 2)), "reverse-ratio-bool"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "r1", ratio=("1", "2")), "reverse-ratio-str"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "r1", ratio=(1, 2**63)), "reverse-ratio-past-i64"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "r1", ratio=(0, 2)), "reverse-ratio-zero"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "r1", ratio=(-1, 2)), "reverse-ratio-negative"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "r1", ratio=(1, 0)), "reverse-ratio-den-zero"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "r1", ratio=(3, 2)), "reverse-ratio-over-one"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "r1", ratio=(1, 2), amount=10), "reverse-amount-and-ratio"),
    case(InvalidArgument, lambda L: L.credit("x.credit", "alice", "merchant", 10, effective_at=NOW - 1),
         "credit-effective-before-at"),
    case(InvalidArgument, lambda L: L.credit("x.credit", "alice", "merchant", 10, effective_at=2**63),
         "credit-effective-past-i64"),
    case(InvalidArgument, lambda L: L.credit("x.credit", "alice", "merchant", 10, at=2**63), "at-past-i64"),
    case(InvalidArgument, lambda L: L.execute(Expire("x.expire", 2**63)), "expire-as-of-past-i64"),
]

UNKNOWN_CASES = [
    case(UnknownMember, lambda L: L.credit("x.c", "nobody", "merchant", 10), "credit"),
    case(UnknownMember, lambda L: L.redeem("x.r", "nobody", 10), "redeem"),
    case(UnknownMember, lambda L: L.hold("x.h", "nobody", 10, ttl_ms=TTL), "hold"),
    case(UnknownMember, lambda L: L.transfer("x.t", "nobody", "bob", "merchant", 10), "transfer-from"),
    case(UnknownMember, lambda L: L.transfer("x.t", "alice", "nobody", "merchant", 10), "transfer-to"),
    case(UnknownMember, lambda L: L.convert("x.cv", "nobody", "merchant", "general", 10), "convert"),
    case(UnknownMember, lambda L: L.freeze("x.f", "nobody"), "freeze"),
    case(UnknownMember, lambda L: L.unfreeze("x.u", "nobody"), "unfreeze"),
    case(UnknownMember, lambda L: L.balances("nobody"), "balances"),
    case(UnknownMember, lambda L: L.lots("nobody"), "lots"),
    case(UnknownMember, lambda L: L.history("nobody"), "history"),
    case(UnknownMember, lambda L: L.member("nobody"), "member"),
    case(UnknownProgramme, lambda L: L.open_member("newbie", "noprog"), "open-member"),
    case(UnknownProgramme, lambda L: L.define_point_type("noprog", PointTypeSpec("pts")), "define-type"),
    case(UnknownProgramme, lambda L: L.point_types("noprog"), "point-types"),
    case(UnknownPointType, lambda L: L.credit("x.c", "alice", "nope", 10), "credit"),
    case(UnknownPointType, lambda L: L.credit("x.c", "alice", "coin", 10), "credit-type-of-other-programme"),
    case(UnknownPointType, lambda L: L.redeem("x.r", "alice", 10, point_type="nope"), "redeem"),
    case(UnknownPointType, lambda L: L.hold("x.h", "alice", 10, ttl_ms=TTL, point_type="nope"), "hold"),
    case(UnknownPointType, lambda L: L.transfer("x.t", "alice", "bob", "nope", 10), "transfer"),
    case(UnknownPointType, lambda L: L.convert("x.cv", "alice", "nope", "general", 10), "convert-from"),
    case(UnknownPointType, lambda L: L.convert("x.cv", "alice", "merchant", "nope", 10), "convert-to"),
    case(UnknownPointType, lambda L: L.balances("alice", point_type="nope"), "balances"),
    case(UnknownPointType, lambda L: L.lots("alice", point_type="nope"), "lots"),
    case(UnknownPointType, lambda L: L.history("alice", point_type="nope"), "history"),
    case(UnknownHold, lambda L: L.capture("x.cap", "no.hold"), "capture"),
    case(UnknownHold, lambda L: L.void("x.void", "no.hold"), "void"),
    case(UnknownHold, lambda L: L.hold_state("no.hold"), "hold-state"),
    case(UnknownEntry, lambda L: L.reverse("x.rev", "no.such.command"), "reverse"),
    case(UnknownEntry, lambda L: L.entries_of("no.such.command"), "entries-of"),
    # cards (MA-2, MA-10): one member per card; unbinding needs the card's own member
    case(UnknownMember, lambda L: L.bind_card("x.card", "nobody", "88001234"), "bind-card-member"),
    case(UnknownMember, lambda L: L.unbind_card("x.card", "nobody", ALICE_CARD), "unbind-card-member"),
    case(UnknownCard, lambda L: L.unbind_card("x.card", "bob", ALICE_CARD), "unbind-card-of-another"),
    case(UnknownCard, lambda L: L.unbind_card("x.card", "alice", "88001234"), "unbind-card-unbound"),
    case(CardAlreadyBound, lambda L: L.bind_card("x.card", "bob", ALICE_CARD), "bind-card-of-another"),
    case(CardAlreadyBound, lambda L: L.bind_card("x.card", "alice", ALICE_CARD), "bind-card-twice"),
    case(InvalidArgument, lambda L: L.bind_card("x.card", "bob", ""), "bind-card-empty"),
    case(InvalidArgument, lambda L: L.bind_card("x.card", "bob", "8800123a"), "bind-card-letter"),
    case(InvalidArgument, lambda L: L.bind_card("x.card", "bob", "8800 1234"), "bind-card-space"),
    case(InvalidArgument, lambda L: L.bind_card("x.card", "bob", "８８００１２３４"), "bind-card-fullwidth-digits"),
    case(InvalidArgument, lambda L: L.bind_card("x.card", "bob", "1" * (_core.CARD_NUMBER_LENGTH_MIN - 1)),
         "bind-card-too-short"),
    case(LimitExceeded, lambda L: L.bind_card("x.card", "bob", "1" * (_core.CARD_NUMBER_LENGTH_MAX + 1)),
         "bind-card-too-long"),
    case(LimitExceeded, lambda L: L.unbind_card("x.card", "alice", ALICE_CARD, "r" * (TEXT_MAX + 1)),
         "unbind-card-reason-too-long"),
    case(InvalidArgument, lambda L: L.find_members(card="12ab5678"), "find-card-letter"),
    case(InvalidArgument, lambda L: L.find_members(card="8800123", phone="1"), "find-two-keys"),
    case(InvalidArgument, lambda L: L.find_members(), "find-no-key"),
]

LONG_ID = "i" * (ID_MAX + 1)
BAD_IDS = [("", InvalidArgument, "empty"), (LONG_ID, LimitExceeded, "too-long"),
           ("has space", InvalidArgument, "space"), (" lead", InvalidArgument, "leading-space"),
           ("tab\tid", InvalidArgument, "tab"), ("naïve", InvalidArgument, "latin1"),
           ("积分", InvalidArgument, "cjk"), ("emoji🙂", InvalidArgument, "emoji"),
           ("semi;colon", InvalidArgument, "semicolon"), ("nul\x00", InvalidArgument, "nul")]

# Where an id goes, as `id -> call`.
ID_SLOTS: dict[str, Callable[[str], Callable[[Ledger], Any]]] = {
    "command-id": lambda i: lambda L: L.credit(i, "alice", "merchant", 10),
    "open-member": lambda i: lambda L: L.open_member(i, "shop"),
    "define-programme": lambda i: lambda L: L.define_programme(i, id="x.prog"),
    "define-point-type": lambda i: lambda L: L.define_point_type("shop", PointTypeSpec(i), id="x.type"),
    "convert-target": lambda i: lambda L: L.define_point_type(
        "shop", PointTypeSpec("newtype", convert_to=((i, 1, 1),)), id="x.type"),
    "reverse-target": lambda i: lambda L: L.reverse("x.rev", i),
}

ID_CASES = [
    case(exc, make(bad), f"{slot}-{label}")
    for slot, make in ID_SLOTS.items()
    for bad, exc, label in BAD_IDS
]
# Member ids are also checked where they are looked up (not only at open_member).
ID_CASES += [
    case(LimitExceeded, lambda L: L.credit("x.c", LONG_ID, "merchant", 10), "credit-member-too-long"),
    case(InvalidArgument, lambda L: L.credit("x.c", "", "merchant", 10), "credit-member-empty"),
    case(InvalidArgument, lambda L: L.redeem("x.r", "has space", 10), "redeem-member-space"),
    case(LimitExceeded, lambda L: L.capture("x.cap", LONG_ID), "capture-hold-too-long"),
    case(InvalidArgument, lambda L: L.void("x.void", "bad hold"), "void-hold-space"),
]

LONG_TEXT = "t" * (TEXT_MAX + 1)
LONG_TEXT_CJK = "积" * (TEXT_MAX // 3 + 1)  # 129 bytes in 43 characters: the limit counts bytes
TEXT_CASES = [
    case(LimitExceeded, lambda L: L.define_programme("newprog", LONG_TEXT), "programme-name"),
    case(LimitExceeded, lambda L: L.open_member("newbie", "shop", phone=LONG_TEXT), "member-phone"),
    case(LimitExceeded, lambda L: L.open_member("newbie", "shop", tier=LONG_TEXT), "member-tier"),
    case(LimitExceeded, lambda L: L.open_member("newbie", "shop", kind=LONG_TEXT), "member-kind"),
    case(LimitExceeded, lambda L: L.open_member("newbie", "shop", org=["p", LONG_TEXT]), "member-org-part"),
    case(InvalidArgument, lambda L: L.open_member("newbie", "shop", org=["a", "b", "c", "d", "e"]), "member-org-5-levels"),
    case(LimitExceeded, lambda L: L.credit("x.c", "alice", "merchant", 10, memo=LONG_TEXT), "credit-memo"),
    case(LimitExceeded, lambda L: L.credit("x.c", "alice", "merchant", 10, memo=LONG_TEXT_CJK), "credit-memo-bytes"),
    case(LimitExceeded, lambda L: L.reverse("x.rev", "r1", reason=LONG_TEXT), "reverse-reason"),
    case(LimitExceeded, lambda L: L.freeze("x.f", "alice", LONG_TEXT), "freeze-reason"),
    case(LimitExceeded, lambda L: L.unfreeze("x.u", "carol", LONG_TEXT), "unfreeze-reason"),
] + [
    case(LimitExceeded, (lambda f: lambda L: L.redeem("x.r", "alice", 10, **{f: LONG_TEXT}))(f), f"redeem-{f}")
    for f in ("channel", "merchant", "order_ref", "org")
] + [
    case(LimitExceeded, (lambda f: lambda L: L.hold("x.h", "alice", 10, ttl_ms=TTL, **{f: LONG_TEXT}))(f), f"hold-{f}")
    for f in ("channel", "merchant", "order_ref", "org")
]

STATE_CASES = [
    # holds
    case(HoldNotOpen, lambda L: L.capture("x.cap", "h.captured"), "capture-twice"),
    case(HoldNotOpen, lambda L: L.capture("x.cap", "h.voided"), "capture-after-void"),
    case(HoldNotOpen, lambda L: L.void("x.void", "h.voided"), "void-twice"),
    case(HoldNotOpen, lambda L: L.void("x.void", "h.captured"), "void-after-capture"),
    case(HoldExpired, lambda L: L.capture("x.cap", "h.open", at=HOLD_OPEN_EXPIRES), "capture-at-ttl"),
    case(HoldExpired, lambda L: L.capture("x.cap", "h.open", at=HOLD_OPEN_EXPIRES + DAY), "capture-after-ttl"),
    case(InvalidArgument, lambda L: L.capture("x.cap", "h.open", 101), "capture-more-than-held"),
    case(HoldExpired, lambda L: L.capture("x.cap", "h.open", 1, at=HOLD_OPEN_EXPIRES), "partial-capture-at-ttl"),
    # transfers
    case(InvalidArgument, lambda L: L.transfer("x.t", "alice", "alice", "merchant", 10), "transfer-to-self"),
    case(NotTransferable, lambda L: L.transfer("x.t", "alice", "bob", "employee", 10), "transfer-employee-XF9"),
    case(InvalidArgument, lambda L: L.transfer("x.t", "alice", "dave", "merchant", 10), "transfer-across-programmes"),
    # conversion
    case(InvalidArgument, lambda L: L.convert("x.cv", "alice", "general", "merchant", 10), "convert-without-rate"),
    case(InvalidArgument, lambda L: L.convert("x.cv", "alice", "merchant", "general", 1), "convert-to-zero"),
    # frozen member (RK-4)
    case(MemberFrozen, lambda L: L.redeem("x.r", "carol", 10), "frozen-redeem"),
    case(MemberFrozen, lambda L: L.redeem("x.r", "carol", 10, point_type="merchant"), "frozen-redeem-typed"),
    case(MemberFrozen, lambda L: L.transfer("x.t", "carol", "bob", "merchant", 10), "frozen-transfer"),
    case(MemberFrozen, lambda L: L.hold("x.h", "carol", 10, ttl_ms=TTL), "frozen-hold"),
    case(MemberFrozen, lambda L: L.convert("x.cv", "carol", "merchant", "general", 10), "frozen-convert"),
    # balance (RD-8, RD-13)
    case(InsufficientPoints, lambda L: L.redeem("x.r", "alice", 1_000_000), "redeem-over-balance"),
    case(InsufficientPoints, lambda L: L.redeem("x.r", "alice", 1_000, point_type="employee"), "redeem-over-type-balance"),
    case(InsufficientPoints, lambda L: L.hold("x.h", "alice", 1_000_000, ttl_ms=TTL), "hold-over-balance"),
    case(InsufficientPoints, lambda L: L.transfer("x.t", "alice", "bob", "merchant", 1_000_000), "transfer-over-balance"),
    case(InsufficientPoints, lambda L: L.convert("x.cv", "alice", "merchant", "general", 1_000_000), "convert-over-balance"),
    case(InsufficientPoints, lambda L: L.redeem("x.r", "alice", 10, point_type="merchant", at=NOW + 4 * 366 * DAY),
         "redeem-expired-lots"),
    # cash rules of a 500:1 type (RD-20, T6-T8)
    case(InvalidArgument, lambda L: L.redeem("x.r", "dave", 4), "coin-below-minimum"),
    case(InvalidArgument, lambda L: L.redeem("x.r", "dave", 1_237), "coin-not-a-multiple"),
    case(LimitExceeded, lambda L: L.redeem("x.r", "dave", 500_005), "coin-over-order-maximum"),
    case(InvalidArgument, lambda L: L.hold("x.h", "dave", 7, ttl_ms=TTL), "coin-hold-not-a-multiple"),
    # reversal (EH-9, RK-10)
    case(NotReversible, lambda L: L.reverse("x.rev", "h.open"), "reverse-hold"),
    case(NotReversible, lambda L: L.reverse("x.rev", "void.1"), "reverse-void"),
    case(NotReversible, lambda L: L.reverse("x.rev", "fz.carol"), "reverse-freeze"),
    case(NotReversible, lambda L: L.reverse("x.rev", "member.alice"), "reverse-open-member"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "r1", amount=101), "over-reversal-redeem"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "cap.1", amount=51), "over-reversal-capture"),
    case(InvalidArgument, lambda L: L.reverse("x.rev", "c.alice.general", amount=501), "over-reversal-credit"),
    # duplicates
    case(AlreadyExists, lambda L: L.define_programme("shop", id="x.dup"), "programme"),
    case(AlreadyExists, lambda L: L.define_point_type("shop", PointTypeSpec("merchant"), id="x.dup"), "point-type"),
    case(AlreadyExists, lambda L: L.open_member("alice", "shop", id="x.dup"), "member"),
    case(AlreadyExists, lambda L: L.open_member("alice", "bank", id="x.dup"), "member-other-programme"),
    # idempotency
    case(IdempotencyConflict, lambda L: L.credit("c.alice.merchant", "alice", "merchant", 999), "different-amount"),
    case(IdempotencyConflict, lambda L: L.credit("c.alice.merchant", "bob", "merchant", 1_000), "different-member"),
    case(IdempotencyConflict, lambda L: L.credit("r1", "alice", "general", 100), "different-kind"),
    case(IdempotencyConflict, lambda L: L.redeem("r1", "alice", 100), "different-point-type"),
    case(IdempotencyConflict, lambda L: L.redeem("r1", "alice", 100, point_type="general", channel="pos"),
         "different-channel"),
]

def define_type(**spec: Any) -> Callable[[Ledger], Any]:
    return lambda L: L.define_point_type("shop", PointTypeSpec("v", **spec))


CONFIG_CASES = [
    case(InvalidArgument, define_type(validity=Validity.fixed_date(13, 1)), "validity-month-13"),
    case(InvalidArgument, define_type(validity=Validity.fixed_date(0, 1)), "validity-month-0"),
    case(InvalidArgument, define_type(validity=Validity.fixed_date(2, 30)), "validity-feb-30"),
    case(InvalidArgument, define_type(validity=Validity.fixed_date(12, 32)), "validity-day-32"),
    case(InvalidArgument, define_type(validity=Validity.fixed_date(-1, 1)), "validity-month-negative"),
    case(InvalidArgument, define_type(validity=Validity.rolling(0, "years")), "validity-rolling-zero"),
    case(InvalidArgument, define_type(validity=Validity.rolling(1201, "days")), "validity-rolling-too-long"),
    case(InvalidArgument, define_type(validity=Validity.rolling(1, "weeks")), "validity-unit"),  # type: ignore[arg-type]
    case(InvalidArgument, define_type(validity=Validity("forever")), "validity-kind"),  # type: ignore[arg-type]
    case(InvalidArgument, define_type(cash=CashRate(0, 100)), "cash-points-zero"),
    case(InvalidArgument, define_type(cash=CashRate(1, 0)), "cash-minor-zero"),
    case(InvalidArgument, define_type(cash=CashRate(-2, 100)), "cash-points-negative"),
    case(InvalidArgument, define_type(cash=CashRate(1, 100, min_points=0)), "cash-min-zero"),
    case(InvalidArgument, define_type(cash=CashRate(1, 100, step_points=0)), "cash-step-zero"),
    case(InvalidArgument, define_type(cash=CashRate(1, 100, min_points=10, max_points=5)), "cash-max-below-min"),
    case(InvalidArgument, define_type(cash=CashRate(1, 2_000_000)), "cash-term-too-large"),
    case(InvalidArgument, define_type(cash=CashRate(True, 100)), "cash-bool"),
    case(InvalidArgument, define_type(convert_to=(("general", 0, 1),)), "convert-rate-zero"),
    case(InvalidArgument, define_type(convert_to=(("general", 1, -1),)), "convert-rate-negative"),
    case(InvalidArgument, define_type(priority=2**40), "priority-past-i32"),
    case(InvalidArgument, define_type(transferable=1), "transferable-int"),
]


@pytest.mark.parametrize(("exc", "call"), AMOUNT_CASES)
def test_bad_amount(ledger, exc, call):
    refused(ledger, exc, call)


@pytest.mark.parametrize(("exc", "call"), OTHER_INT_FIELDS)
def test_bad_integer_field(ledger, exc, call):
    refused(ledger, exc, call)


@pytest.mark.parametrize(("exc", "call"), UNKNOWN_CASES)
def test_unknown_reference(ledger, exc, call):
    refused(ledger, exc, call)


@pytest.mark.parametrize(("exc", "call"), ID_CASES)
def test_bad_id(ledger, exc, call):
    refused(ledger, exc, call)


@pytest.mark.parametrize(("exc", "call"), TEXT_CASES)
def test_oversized_text(ledger, exc, call):
    refused(ledger, exc, call)


@pytest.mark.parametrize(("exc", "call"), STATE_CASES)
def test_refused_by_state(ledger, exc, call):
    refused(ledger, exc, call)


@pytest.mark.parametrize(("exc", "call"), CONFIG_CASES)
def test_bad_configuration(ledger, exc, call):
    refused(ledger, exc, call)


# ----------------------------------------------------------------------------------------------
# boundaries: the limits themselves are accepted
# ----------------------------------------------------------------------------------------------


def test_limits_themselves_are_accepted(ledger):
    ok_id = "m" * ID_MAX
    ledger.open_member(ok_id, "shop", phone="p" * TEXT_MAX, org=["a", "b", "c", "d"], id="x" * ID_MAX)
    r = ledger.credit("y" * ID_MAX, ok_id, "general", AMOUNT_MAX, memo="積" * (TEXT_MAX // 3))
    assert r.amount == AMOUNT_MAX
    ledger.redeem("z.1", ok_id, 1, point_type="general", channel="c" * TEXT_MAX, merchant="m" * TEXT_MAX,
                  order_ref="o" * TEXT_MAX, org="g" * TEXT_MAX)
    ledger.hold("z.2", ok_id, 1, ttl_ms=_core.HOLD_TTL_MS_MIN, point_type="general")
    ledger.hold("z.3", ok_id, 1, ttl_ms=_core.HOLD_TTL_MS_MAX, point_type="general")
    assert ledger.balance(ok_id, "general").total == AMOUNT_MAX - 3
    assert len(ledger.journal(1, PAGE_MAX)) <= PAGE_MAX
    assert ledger.lots("alice", page_size=PAGE_MAX).items
    assert ledger.history("alice", page_size=PAGE_MAX).items
    assert ledger.audit().ok


def test_id_charset_accepts_documented_punctuation(ledger):
    # Letters, digits and -_.:@ are allowed (':' and '@' appear in real order references).
    ledger.open_member("Zed-9_x.y:z@w", "shop")
    assert ledger.credit("cmd-9_x.y:z@w", "Zed-9_x.y:z@w", "general", 5).amount == 5


SLASH_CASES = [
    case(InvalidArgument, lambda L: L.open_member("a/b", "shop"), "member"),
    case(InvalidArgument, lambda L: L.define_programme("x/y", id="x.prog"), "programme"),
    case(InvalidArgument, lambda L: L.define_point_type("shop", PointTypeSpec("b/c"), id="x.type"), "point-type"),
]


@pytest.mark.parametrize(("exc", "call"), SLASH_CASES)
def test_slash_refused_in_ids_that_build_account_keys(ledger, exc, call):
    """Regression: '/' separates the parts of an account key (`member/type`), so member 'a/b' with
    type 'c' and member 'a' with type 'b/c' would share one account (a/b spending a's points), and
    the audit and the expiry sweep, which split keys on '/', would fail. Such ids are refused."""
    refused(ledger, exc, call)


def test_slash_allowed_in_command_ids(ledger):
    # Command ids are only idempotency keys: '/' stays allowed there (documented charset).
    assert ledger.credit("import/2024-05-10/row-1", "bob", "general", 1).amount == 1
    assert ledger.audit().ok


def test_writer_survives_a_hold_expiry_past_i64(ledger):
    """Regression: `at + ttl_ms` past i64 is refused (it must not overflow or kill the writer)."""
    refused(ledger, InvalidArgument, lambda L: L.hold("x.h", "alice", 10, ttl_ms=TTL, at=2**63 - 1))
    assert ledger.credit("x.after", "bob", "general", 1).amount == 1


def test_credit_at_a_time_past_the_calendar_is_refused_not_made_eternal(ledger):
    for at in (10**16, 2**63 - 1):
        try:
            ledger.credit(f"x.far.{at}", "alice", "merchant", 10, at=at)
        except InvalidArgument:
            continue
        lots = [lot for lot in ledger.lots("alice", point_type="merchant", page_size=1000).items
                if lot.earned_at == at]
        assert lots and all(lot.expires_at is not None for lot in lots), lots


# ----------------------------------------------------------------------------------------------
# replay and idempotency (AIP-155)
# ----------------------------------------------------------------------------------------------


def test_identical_replay_returns_original_receipt_and_writes_nothing(ledger):
    first = ledger.credit("c.replay", "alice", "general", 42)
    before = snapshot(ledger)
    again = ledger.credit("c.replay", "alice", "general", 42)
    later = ledger.credit("c.replay", "alice", "general", 42, at=NOW + DAY)  # the time is not content
    for r in (again, later):
        assert r.replayed is True
        assert (r.id, r.seq, r.kind, r.amount, r.lots_made) == (first.id, first.seq, first.kind, first.amount,
                                                                  first.lots_made)
    assert first.replayed is False
    assert snapshot(ledger) == before
    assert len(ledger.entries_of("c.replay")) == 1


def test_replay_of_seeded_commands_of_every_kind(ledger):
    before = snapshot(ledger)
    receipts = [
        ledger.define_programme("shop", "Shop"),
        ledger.define_point_type("shop", MERCHANT),
        ledger.open_member("alice", "shop"),
        ledger.redeem("r1", "alice", 100, point_type="general"),
        ledger.hold("h.open", "alice", 100, ttl_ms=TTL, point_type="merchant"),
        ledger.capture("cap.1", "h.captured"),
        ledger.void("void.1", "h.voided"),
        ledger.transfer("t1", "alice", "bob", "merchant", 50),
        ledger.convert("cv1", "alice", "merchant", "general", 100),
        ledger.freeze("fz.carol", "carol", "abuse"),
    ]
    assert all(r.replayed for r in receipts)
    assert snapshot(ledger) == before


def test_replay_inside_one_batch(ledger):
    before = len(ledger.journal(1, 1000))
    a, b = ledger.submit([Credit("c.twice", "bob", "general", 7), Credit("c.twice", "bob", "general", 7)])
    assert isinstance(a, Receipt) and isinstance(b, Receipt)
    assert (a.replayed, b.replayed) == (False, True)
    assert a.seq == b.seq
    assert len(ledger.journal(1, 1000)) == before + 1
    assert ledger.balance("bob", "general").total == 7


def test_refused_command_does_not_consume_its_id(ledger):
    refused(ledger, InsufficientPoints, lambda L: L.redeem("r.retry", "alice", 10_000))
    # The same id is free: a refusal records no idempotency key.
    assert ledger.redeem("r.retry", "alice", 10, point_type="general").replayed is False


# ----------------------------------------------------------------------------------------------
# queries: page sizes and tokens
# ----------------------------------------------------------------------------------------------

QUERY_CASES = [
    case(LimitExceeded, lambda L: L.lots("alice", page_size=PAGE_MAX + 1), "lots-page-size"),
    case(LimitExceeded, lambda L: L.history("alice", page_size=PAGE_MAX + 1), "history-page-size"),
    case(LimitExceeded, lambda L: L.journal(1, PAGE_MAX + 1), "journal-page-size"),
    case(InvalidArgument, lambda L: L.lots("alice", page_token="garbage"), "lots-token-garbage"),
    case(InvalidArgument, lambda L: L.lots("alice", page_token="merchant:x"), "lots-token-bad-id"),
    case(InvalidArgument, lambda L: L.lots("alice", page_token="merchant:-1"), "lots-token-negative"),
    case(InvalidArgument, lambda L: L.history("alice", page_token="garbage"), "history-token-garbage"),
    case(InvalidArgument, lambda L: L.history("alice", page_token="1.2.x"), "history-token-not-numbers"),
    case(InvalidArgument, lambda L: L.history("alice", page_token="1.2"), "history-token-wrong-arity"),
    case(InvalidArgument, lambda L: L.history("alice", point_type="merchant", page_token="1.2"),
         "history-token-wrong-arity-typed"),
    case(InvalidArgument, lambda L: L.history("alice", page_token="-1.-1.-1"), "history-token-negative"),
    case(InvalidArgument, lambda L: L.history("alice", page_token="...."), "history-token-dots"),
    case(InvalidArgument, lambda L: L.history("alice", page_size=-1), "history-page-size-negative"),
    case(InvalidArgument, lambda L: L.lots("alice", page_size=-5), "lots-page-size-negative"),
    case(InvalidArgument, lambda L: L.journal(1, page_size=True), "journal-page-size-bool"),
]


@pytest.mark.parametrize(("exc", "call"), QUERY_CASES)
def test_bad_query(ledger, exc, call):
    refused(ledger, exc, call)


def test_forged_history_token_is_refused(ledger):
    with pytest.raises(InvalidArgument):
        ledger.history("alice", point_type="merchant", page_token="999999")
    page = None
    try:
        page = ledger.history("alice", point_type="merchant", page_token="1")
    except InvalidArgument:
        pass
    if page is not None:
        touching = {"alice/merchant"}
        for e in page.items:
            assert any(p.from_account in touching or p.to_account in touching for p in e.postings), e


# ----------------------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------------------


def good_credit(i: int) -> tuple[Any, ...]:
    return Credit(f"b.credit.{i}", "bob", "general", 1).as_tuple(NOW)


def test_oversized_batch_via_submit_tuples(ledger):
    batch = [good_credit(i) for i in range(BATCH_MAX + 1)]
    refused(ledger, LimitExceeded, lambda L: L.submit_tuples(batch))


def test_oversized_batch_via_submit(ledger):
    batch = [Credit(f"b.credit.{i}", "bob", "general", 1) for i in range(BATCH_MAX + 1)]
    refused(ledger, LimitExceeded, lambda L: L.submit(batch))


def test_empty_batch(ledger):
    before = snapshot(ledger)
    assert ledger.submit([]) == []
    assert ledger.submit_tuples([]) == []
    assert snapshot(ledger) == before


MALFORMED = [
    ("nope", "m.1", NOW),                                              # unknown op
    ("credit", "m.2", NOW, "bob", "general"),                          # missing fields
    ("credit", "m.3", NOW, "bob", "general", "5", None, ""),           # amount is a str
    ("credit", "m.4", NOW, "bob", "general", True, None, ""),          # amount is a bool
    ("credit", "m.5", NOW, "bob", "general", 2**63, None, ""),         # amount past i64
    ("credit", "m.6", "now", "bob", "general", 5, None, ""),           # at is a str
    ("credit", 6, NOW, "bob", "general", 5, None, ""),                 # id is not a str
    ("credit", "m.7", NOW, "bob", 5, 5, None, ""),                     # point type is an int
    ("credit", "m.8", NOW, "bob", "general", 5, "tomorrow", ""),       # effective_at is a str
    ("redeem", "m.9", NOW, "bob", None, 5, "", "", ""),                # order missing a field
    ("reverse", "m.10", NOW, "r1", None, [1, 2], ""),                  # ratio is a list, not a tuple
    ("reverse", "m.11", NOW, "r1", None, (1,), ""),                    # ratio missing its denominator
    ("open_member", "m.12", NOW, "newbie", "shop", "", None, "x", "ordinary", "individual"),  # org not a list
    ("define_point_type", "m.13", NOW, "shop", "v", 0, ("rolling", 1), True, (1, 100, 1, 1, None), []),
    ("define_point_type", "m.14", NOW, "shop", "v", 0, ("none",), "yes", (1, 100, 1, 1, None), []),
    ("define_point_type", "m.15", NOW, "shop", "v", 0, ("none",), True, (1, 100, 1, 1, None), [("g", 1)]),
    (),                                                                # empty tuple
    (None, "m.16", NOW),                                               # op is not a str
    ["credit", "m.17", NOW, "bob", "general", 5, None, ""],            # a list, not a tuple
    "credit",                                                          # not a tuple at all
    None,
    42,
]


def test_malformed_tuples_fail_alone_inside_a_batch(ledger):
    journal_before = len(ledger.journal(1, 1000))
    bob_before = ledger.balance("bob", "general").total
    batch: list[Any] = []
    expect: list[Any] = []
    for i, bad in enumerate(MALFORMED):
        batch.append(good_credit(i))
        expect.append(f"b.credit.{i}")
        batch.append(bad)
        expect.append(InvalidArgument)
    batch.append(good_credit(len(MALFORMED)))
    expect.append(f"b.credit.{len(MALFORMED)}")

    results = ledger.submit_tuples(batch)

    assert len(results) == len(batch)
    seqs = []
    for r, want in zip(results, expect):
        if want is InvalidArgument:
            assert type(r) is InvalidArgument, r
            assert r.reason == "INVALID_ARGUMENT" and r.message
        else:
            assert isinstance(r, Receipt), r
            assert r.id == want and not r.replayed
            seqs.append(r.seq)
    # the good commands were applied, in order, one entry each; the bad ones left no trace
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert len(ledger.journal(1, 1000)) == journal_before + len(seqs)
    assert ledger.balance("bob", "general").total == bob_before + len(seqs)
    for i in range(1, 18):
        with pytest.raises(UnknownEntry):
            ledger.entries_of(f"m.{i}")
    assert ledger.audit().ok


def test_malformed_tuples_across_submit_chunks_keep_their_places(ledger):
    # A batch larger than SUBMIT_CHUNK_COMMANDS is parsed and queued a chunk at a time (the
    # writer applies one chunk while the next is parsed): a malformed tuple in a later chunk
    # still fails alone, and every result stays at its command's index (results are built chunk
    # by chunk as each becomes durable: first, boundary and trailing errors included).
    chunk = _core.SUBMIT_CHUNK_COMMANDS
    n = 2 * chunk + 5
    bad_at = {0, chunk - 1, chunk, chunk + 1, 2 * chunk + 2, n - 2, n - 1}
    batch = [MALFORMED[0] if i in bad_at else (Credit(f"chunk.{i}", "bob" if i % 2 else "alice", "general", 1)
                                               .as_tuple(NOW)) for i in range(n)]
    bob_before, alice_before = ledger.balance("bob", "general").total, ledger.balance("alice", "general").total

    results = ledger.submit_tuples(batch)

    assert len(results) == len(batch)
    for i, r in enumerate(results):
        if i in bad_at:
            assert type(r) is InvalidArgument, (i, r)
        else:
            assert isinstance(r, Receipt) and r.id == f"chunk.{i}", (i, r)
    applied = len(batch) - len(bad_at)
    assert (ledger.balance("bob", "general").total - bob_before
            + ledger.balance("alice", "general").total - alice_before) == applied
    assert ledger.audit().ok
    # nothing well-formed at all: no chunk is queued, every result is its parse error
    assert [type(r) for r in ledger.submit_tuples([MALFORMED[0]] * 3)] == [InvalidArgument] * 3
    assert ledger.submit_tuples([]) == []


def test_batch_results_keep_input_order(ledger):
    journal_before = len(ledger.journal(1, 1000))
    cmds = [
        Credit("o.1", "bob", "general", 100),
        Redeem("o.2", "bob", 10_000, point_type="general"),        # insufficient
        Redeem("o.3", "bob", 60, point_type="general"),            # sees o.1 (same batch)
        Transfer("o.4", "bob", "bob", "general", 1),               # to self
        Redeem("o.5", "carol", 1),                                 # frozen
        Credit("o.6", "nobody", "general", 1),                     # unknown member
        Redeem("o.7", "bob", 50, point_type="general"),            # only 40 left after o.3
        Credit("o.8", "bob", "nope", 1),                           # unknown type
        Credit("c.alice.merchant", "alice", "merchant", 7),        # idempotency conflict
        Credit("o.9", "bob", "general", AMOUNT_MAX + 1),           # limit
        Redeem("o.10", "bob", 40, point_type="general"),
    ]
    want = [None, InsufficientPoints, None, InvalidArgument, MemberFrozen, UnknownMember, InsufficientPoints,
            UnknownPointType, IdempotencyConflict, LimitExceeded, None]
    results = ledger.submit(cmds)
    assert len(results) == len(cmds)
    ok_seqs = []
    for cmd, r, w in zip(cmds, results, want):
        if w is None:
            assert isinstance(r, Receipt) and r.id == cmd.id, (cmd, r)
            ok_seqs.append(r.seq)
        else:
            assert type(r) is w, (cmd, r)
    assert ok_seqs == sorted(ok_seqs)
    assert len(ledger.journal(1, 1000)) == journal_before + 3
    assert ledger.balance("bob", "general").total == 0
    assert ledger.audit().ok


def test_execute_rejects_malformed_tuple(ledger):
    refused(ledger, InvalidArgument, lambda L: L.engine.execute(("credit", "m.x", NOW, "bob")))
    refused(ledger, InvalidArgument, lambda L: L.engine.execute(("transfer_all", "m.x", NOW)))


def test_closed_ledger_refuses_everything(tmp_path):
    ledger = Ledger(tmp_path / "data", clock=lambda: NOW)
    ledger.define_programme("p")
    ledger.close()
    for call in (lambda: ledger.define_programme("q"), lambda: ledger.submit([]),
                 lambda: ledger.journal(), lambda: ledger.audit()):
        with pytest.raises(LedgerClosed) as info:
            call()
        assert info.value.reason == "CLOSED"


# ----------------------------------------------------------------------------------------------
# the exception hierarchy
# ----------------------------------------------------------------------------------------------

REASONS = {
    PointsError: "UNKNOWN",
    InvalidArgument: "INVALID_ARGUMENT",
    LimitExceeded: "LIMIT_EXCEEDED",
    NotFound: "NOT_FOUND",
    UnknownMember: "UNKNOWN_MEMBER",
    UnknownProgramme: "UNKNOWN_PROGRAMME",
    UnknownPointType: "UNKNOWN_POINT_TYPE",
    UnknownHold: "UNKNOWN_HOLD",
    UnknownEntry: "UNKNOWN_ENTRY",
    InvalidRule: "INVALID_RULE",
    UnknownRule: "UNKNOWN_RULE",
    UnknownCard: "UNKNOWN_CARD",
    CardAlreadyBound: "CARD_ALREADY_BOUND",
    AlreadyExists: "ALREADY_EXISTS",
    IdempotencyConflict: "IDEMPOTENCY_CONFLICT",
    Refused: "REFUSED",
    InsufficientPoints: "INSUFFICIENT_POINTS",
    MemberFrozen: "MEMBER_FROZEN",
    HoldNotOpen: "HOLD_NOT_OPEN",
    HoldExpired: "HOLD_EXPIRED",
    NotTransferable: "NOT_TRANSFERABLE",
    NotReversible: "NOT_REVERSIBLE",
    StorageError: "STORAGE",
    LedgerClosed: "CLOSED",
}


def test_every_error_class_has_a_stable_reason_and_derives_from_points_error():
    classes = {obj for _, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, Exception) and obj.__module__ == errors.__name__}
    assert classes == set(REASONS), "a new error class needs its reason pinned here"
    for cls, reason in REASONS.items():
        assert issubclass(cls, PointsError)
        assert cls.reason == reason
        assert cls("msg").reason == reason
        assert cls.__name__ in errors.__all__
    assert len(set(REASONS.values())) == len(REASONS), "reasons are unique"


def test_error_parents():
    assert issubclass(LimitExceeded, InvalidArgument) and issubclass(InvalidArgument, ValueError)
    for cls in (UnknownMember, UnknownProgramme, UnknownPointType, UnknownHold, UnknownEntry, UnknownCard):
        assert issubclass(cls, NotFound) and issubclass(cls, LookupError)
    assert issubclass(CardAlreadyBound, AlreadyExists)
    for cls in (InsufficientPoints, MemberFrozen, HoldNotOpen, HoldExpired, NotTransferable, NotReversible):
        assert issubclass(cls, Refused)


def test_from_code_round_trips_every_concrete_reason():
    for cls, reason in REASONS.items():
        if cls in (PointsError, NotFound, Refused):
            continue
        e = errors.from_code(reason, "why")
        assert type(e) is cls and e.message == "why" and str(e) == "why"
    assert type(errors.from_code("SOMETHING_NEW", "x")) is PointsError


def test_errors_compare_by_class_and_message():
    assert InvalidArgument("a") == InvalidArgument("a")
    assert InvalidArgument("a") != LimitExceeded("a")
    assert hash(UnknownMember("m")) == hash(UnknownMember("m"))


def test_raised_errors_carry_a_message(ledger):
    e = refused(ledger, InsufficientPoints, lambda L: L.redeem("x.r", "bob", 10_000))
    assert "10000" in e.message
    e = refused(ledger, UnknownMember, lambda L: L.credit("x.c", "nobody", "general", 1))
    assert "nobody" in e.message


def test_quote_refusals_are_typed():
    rate = CashRate(500, 100, min_points=5, step_points=5, max_points=500_000)
    for asked in (4, 0, -5):
        with pytest.raises(InvalidArgument) as info:
            rate.quote(asked)
        assert type(info.value) is InvalidArgument
    with pytest.raises(InvalidArgument):
        CashRate(0, 100).quote(10)
