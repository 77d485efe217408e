"""Requirement vectors and scenarios (/work/shared/REQUIREMENTS.md) end to end through the
Python API, one test each; the requirement IDs are in the test names and docstrings.

Deterministic: an injected clock (NOW = 2024-05-10T00:00Z) or explicit `at=`; tmp_path data dirs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import pytest

from pypoints import CashRate, Entry, Ledger, Lot, PointTypeSpec, Validity, to_ms
from pypoints.errors import (
    HoldNotOpen, InsufficientPoints, InvalidArgument, LimitExceeded, MemberFrozen, NotTransferable,
    UnknownEntry,
)

# ----------------------------------------------------------------------------------------------
# shared fixtures (kept in this file on purpose: conftest.py belongs to nobody in particular)
# ----------------------------------------------------------------------------------------------


def ms(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> int:
    return to_ms(datetime(y, m, d, h, mi, tzinfo=timezone.utc))


NOW = ms(2024, 5, 10)
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
ZERO_HASH = bytes(32)


def new_ledger(tmp_path, *types: PointTypeSpec, members: Iterable[str] = ("alice",), programme: str = "p",
               name: str = "data") -> Ledger:
    ledger = Ledger(tmp_path / name, clock=lambda: NOW)
    ledger.define_programme(programme)
    for t in types:
        ledger.define_point_type(programme, t)
    for m in members:
        ledger.open_member(m, programme)
    return ledger


def state(ledger: Ledger, members: Iterable[str]) -> tuple[Any, ...]:
    """What a refused command must not change."""
    members = list(members)
    return (
        len(ledger.journal(1, 1000)),
        {m: ledger.balances(m, at=NOW) for m in members},
        {m: ledger.lots(m, page_size=1000).items for m in members},
        ledger.audit(),
    )


def lots_by_id(ledger: Ledger, member: str, point_type: str | None = None) -> dict[int, Lot]:
    return {lot.id: lot for lot in ledger.lots(member, point_type=point_type, page_size=1000).items}


def net_by_account(entries: Iterable[Entry]) -> dict[tuple[str, str], int]:
    """(point type, account) → Σ postings in − Σ postings out."""
    net: dict[tuple[str, str], int] = defaultdict(int)
    for e in entries:
        for p in e.postings:
            net[(p.point_type, p.from_account)] -= p.amount
            net[(p.point_type, p.to_account)] += p.amount
    return dict(net)


def walk_history(ledger: Ledger, member: str, point_type: str | None, page_size: int) -> tuple[list[Entry], int]:
    entries, pages, token = [], 0, ""
    while True:
        page = ledger.history(member, point_type=point_type, page_size=page_size, page_token=token)
        pages += 1
        assert len(page.items) <= page_size
        entries.extend(page.items)
        token = page.next_page_token
        if not token:
            return entries, pages
        assert len(page.items) == page_size, "only the last page may be short"
        assert pages < 1000


def walk_lots(ledger: Ledger, member: str, point_type: str | None, page_size: int) -> tuple[list[Lot], int]:
    lots, pages, token = [], 0, ""
    while True:
        page = ledger.lots(member, point_type=point_type, page_size=page_size, page_token=token)
        pages += 1
        assert len(page.items) <= page_size
        lots.extend(page.items)
        token = page.next_page_token
        if not token:
            return lots, pages
        assert pages < 1000


THREE_YEARS = Validity.rolling(3, "years")
RATE_500 = CashRate(500, 100, min_points=5, step_points=5, max_points=500_000)


# ----------------------------------------------------------------------------------------------
# value vectors (RD-20)
# ----------------------------------------------------------------------------------------------


def test_t4_rd20_58_points_are_2900_minor_at_2_to_1(tmp_path):
    """T4: 58 pts → 29.00 CNY (2 pts = 1 CNY) = 2,900 fen; the rate round-trips through the
    programme's configuration and a 58-point redemption goes through."""
    rate = CashRate(points=2, minor=100)
    assert rate.quote(58) == (58, 2_900)
    with new_ledger(tmp_path, PointTypeSpec("pts", cash=rate)) as ledger:
        (spec,) = ledger.point_types("p")
        assert spec.cash == rate
        assert spec.cash.quote(58) == (58, 2_900)
        ledger.credit("c1", "alice", "pts", 100)
        r = ledger.redeem("r1", "alice", 58, channel="mall", merchant="m1", order_ref="o-1")
        assert (r.kind, r.amount) == ("redeem", 58)
        assert ledger.balance("alice", "pts").total == 42
        assert ledger.entries_of("r1")[0].command["order"]["channel"] == "mall"


def test_t6_t8_rd20_quote_at_500_to_1():
    """T6–T8: 500 pts = 1 CNY, min 5, step 5, max 500,000 per order: 4 → refused; 5 → 0.01;
    1,237 asked → 1,235 used → 2.47; 750,000 asked → 500,000 = 1,000.00."""
    with pytest.raises(InvalidArgument):
        RATE_500.quote(4)
    assert RATE_500.quote(5) == (5, 1)
    assert RATE_500.quote(1_237) == (1_235, 247)
    assert RATE_500.quote(750_000) == (500_000, 100_000)


def test_t6_t8_rd20_redeem_on_500_to_1_type_refuses_4_and_non_multiples(tmp_path):
    """T6–T8 / RD-20 / RD-21 through redeem: a redemption is an exact amount (no rounding for the
    caller): 4 and 1,237 are refused (InvalidArgument), more than 500,000 is LimitExceeded,
    5, 1,235 and 500,000 go through; refusals change nothing."""
    with new_ledger(tmp_path, PointTypeSpec("coin", cash=RATE_500)) as ledger:
        ledger.credit("c1", "alice", "coin", 1_000_000)
        before = state(ledger, ["alice"])
        for n, exc in [(4, InvalidArgument), (1_237, InvalidArgument), (6, InvalidArgument),
                       (750_000, LimitExceeded), (500_005, LimitExceeded)]:
            with pytest.raises(exc) as info:
                ledger.redeem(f"bad.{n}", "alice", n)
            assert type(info.value) is exc
            assert state(ledger, ["alice"]) == before
        for n in (5, 1_235, 500_000):
            assert ledger.redeem(f"ok.{n}", "alice", n, point_type="coin").amount == n
        assert ledger.balance("alice", "coin").total == 1_000_000 - 5 - 1_235 - 500_000
        assert ledger.audit().ok


def test_t11_rd20_388_points_are_388_minor_at_100_to_1(tmp_path):
    """T11: 100 pts = 1 CNY; spend 388 CNY → 388 pts; 388 pts → 3.88 CNY = 388 fen."""
    rate = CashRate(points=100, minor=100)
    assert rate.quote(388) == (388, 388)
    with new_ledger(tmp_path, PointTypeSpec("pts", cash=rate)) as ledger:
        ledger.credit("earn.388", "alice", "pts", 388, memo="spend 388 CNY")
        r = ledger.redeem("r1", "alice", 388)
        assert r.amount == 388
        assert ledger.point_types("p")[0].cash.quote(r.amount) == (388, 388)
        assert ledger.balance("alice", "pts").total == 0


# ----------------------------------------------------------------------------------------------
# clawback, validity and expiry
# ----------------------------------------------------------------------------------------------


def test_t13_rk10_proportional_clawback(tmp_path):
    """T13 / RK-10: spend 1,000 → 1,000 pts; refund 400 of the 1,000 → reverse ratio (400, 1000)
    removes 400 from the credited lot (a new compensating entry, EH-9)."""
    with new_ledger(tmp_path, PointTypeSpec("pts")) as ledger:
        c = ledger.credit("earn.1000", "alice", "pts", 1_000)
        (lot_id,) = [i for _, i, _ in c.lots_made]
        r = ledger.reverse("refund.400", "earn.1000", ratio=(400, 1_000), reason="refund 400 of 1,000 CNY")
        assert (r.kind, r.amount) == ("reverse", 400)
        assert r.lots_used == [("pts", lot_id, 400)]
        assert ledger.balance("alice", "pts").total == 600
        assert lots_by_id(ledger, "alice")[lot_id].remaining == 600
        (e,) = ledger.entries_of("refund.400")
        assert [(p.from_account, p.to_account, p.amount) for p in e.postings] == [
            ("alice/pts", "#p/issuance/pts", 400)]
        # the original credit entry is untouched; only 600 are left to reverse
        assert ledger.entries_of("earn.1000")[0].amount == 1_000
        with pytest.raises(InvalidArgument):
            ledger.reverse("refund.too.much", "earn.1000", amount=601)
        assert ledger.reverse("refund.rest", "earn.1000").amount == 600
        assert ledger.balance("alice", "pts").total == 0
        assert ledger.audit().ok


def test_t14_ex1_lot_expires_three_years_after_earning(tmp_path):
    """T14 / EX-1: earned 2024-05-10 → the lot expires at 2027-05-10; spendable until the instant
    before, not at it (swept or not)."""
    with new_ledger(tmp_path, PointTypeSpec("pts", validity=THREE_YEARS)) as ledger:
        ledger.credit("c1", "alice", "pts", 1_000, at=ms(2024, 5, 10))
        (lot,) = ledger.lots("alice").items
        assert lot.earned_at == ms(2024, 5, 10)
        assert lot.expires_at == ms(2027, 5, 10)
        assert ledger.balance("alice", "pts", at=ms(2027, 5, 10) - 1).available == 1_000
        b = ledger.balance("alice", "pts", at=ms(2027, 5, 10))
        assert (b.total, b.available) == (1_000, 0)
        with pytest.raises(InsufficientPoints):
            ledger.redeem("r.late", "alice", 1, at=ms(2027, 5, 10))
        assert ledger.redeem("r.last.minute", "alice", 1, at=ms(2027, 5, 10) - 1).amount == 1


def test_t14_ex2_expire_sweep_moves_lot_to_breakage_on_the_day(tmp_path):
    """T14 / EX-2: `expire` as of 2027-05-09 leaves the lot; as of 2027-05-10 it moves the lot to
    breakage; rerunning the sweep with the same id is a replay."""
    with new_ledger(tmp_path, PointTypeSpec("pts", validity=THREE_YEARS)) as ledger:
        c = ledger.credit("c1", "alice", "pts", 1_000, at=ms(2024, 5, 10))
        (lot_id,) = [i for _, i, _ in c.lots_made]
        early = ledger.expire("sweep.2027-05-09", ms(2027, 5, 9))
        assert sum(r.amount for r in early) == 0
        assert lots_by_id(ledger, "alice")[lot_id].remaining == 1_000

        sweep = ledger.expire("sweep.2027-05-10", ms(2027, 5, 10))
        assert sum(r.amount for r in sweep) == 1_000
        assert [s for r in sweep for s in r.lots_used] == [("pts", lot_id, 1_000)]
        assert ledger.lots("alice").items == []
        assert ledger.balance("alice", "pts", at=ms(2027, 5, 10)).total == 0
        postings = [(p.from_account, p.to_account, p.amount) for e in ledger.entries_of("sweep.2027-05-10")
                    for p in e.postings]
        assert postings == [("alice/pts", "#p/breakage/pts", 1_000)]

        n = len(ledger.journal(1, 1000))
        again = ledger.expire("sweep.2027-05-10", ms(2027, 5, 10))
        assert all(r.replayed for r in again) and [r.seq for r in again] == [r.seq for r in sweep]
        assert len(ledger.journal(1, 1000)) == n
        assert ledger.audit().ok


def test_ex5_year_end_validity(tmp_path):
    """EX-5: a fixed-date (12-31) type clears everything earned in a year at the end of that year:
    earned 2024-05-10 and 2024-12-31 12:00 expire 2025-01-01; earned 2025-01-01 lives to 2026."""
    with new_ledger(tmp_path, PointTypeSpec("pts", validity=Validity.fixed_date(12, 31))) as ledger:
        ledger.credit("c.may", "alice", "pts", 100, at=ms(2024, 5, 10))
        ledger.credit("c.nye", "alice", "pts", 200, at=ms(2024, 12, 31, 12))
        ledger.credit("c.jan", "alice", "pts", 400, at=ms(2025, 1, 1))
        expiry = {e.id: e.lots_made[0][1] for e in ledger.journal(1, 1000) if e.kind == "credit"}
        lots = lots_by_id(ledger, "alice")
        assert lots[expiry["c.may"]].expires_at == ms(2025, 1, 1)
        assert lots[expiry["c.nye"]].expires_at == ms(2025, 1, 1)
        assert lots[expiry["c.jan"]].expires_at == ms(2026, 1, 1)
        assert ledger.balance("alice", "pts", at=ms(2024, 12, 31, 23, 59)).available == 300

        assert sum(r.amount for r in ledger.expire("ye.1", ms(2024, 12, 31, 23, 59))) == 0
        assert ledger.balance("alice", "pts", at=ms(2025, 1, 1)).total == 700
        assert sum(r.amount for r in ledger.expire("ye.2", ms(2025, 1, 1))) == 300
        b = ledger.balance("alice", "pts", at=ms(2025, 1, 1))
        assert (b.total, b.available) == (400, 400)
        assert set(lots_by_id(ledger, "alice")) == {expiry["c.jan"]}
        assert ledger.audit().ok


def test_ex7_pending_credit_spendable_from_the_next_day(tmp_path):
    """EX-7 / T12: card points take effect the day after posting: pending (not spendable) today,
    spendable tomorrow."""
    with new_ledger(tmp_path, PointTypeSpec("pts")) as ledger:
        ledger.credit("card.spend", "alice", "pts", 1_000, effective_at=NOW + DAY)
        b = ledger.balance("alice", "pts")
        assert (b.total, b.available, b.pending) == (1_000, 0, 1_000)
        before = state(ledger, ["alice"])
        with pytest.raises(InsufficientPoints):
            ledger.redeem("r.today", "alice", 1)
        with pytest.raises(InsufficientPoints):
            ledger.hold("h.today", "alice", 1, ttl_ms=HOUR)
        with pytest.raises(InsufficientPoints):
            ledger.redeem("r.just.before", "alice", 1, at=NOW + DAY - 1)
        assert state(ledger, ["alice"]) == before
        b = ledger.balance("alice", "pts", at=NOW + DAY)
        assert (b.total, b.available, b.pending) == (1_000, 1_000, 0)
        assert ledger.redeem("r.tomorrow", "alice", 1_000, at=NOW + DAY).amount == 1_000
        assert ledger.audit().ok


# ----------------------------------------------------------------------------------------------
# redemption scenarios
# ----------------------------------------------------------------------------------------------


def test_scenario3_rd8_proxy_redemption_refuses_what_the_balance_does_not_cover(tmp_path):
    """Scenario 3 / RD-8 / RD-13: balance 1,500; a 2,000-point item is refused with
    InsufficientPoints and nothing changes; a 1,200-point item succeeds."""
    with new_ledger(tmp_path, PointTypeSpec("pts")) as ledger:
        ledger.credit("c1", "alice", "pts", 1_500)
        before = state(ledger, ["alice"])
        with pytest.raises(InsufficientPoints) as info:
            ledger.redeem("proxy.2000", "alice", 2_000, channel="proxy", merchant="station-7")
        assert "2000" in info.value.message and "1500" in info.value.message
        assert state(ledger, ["alice"]) == before
        with pytest.raises(UnknownEntry):
            ledger.entries_of("proxy.2000")
        r = ledger.redeem("proxy.1200", "alice", 1_200, channel="proxy", merchant="station-7")
        assert r.amount == 1_200
        assert ledger.balance("alice", "pts").total == 300
        assert ledger.audit().ok


def test_scenario6_rd12_merchant_points_first_then_internal(tmp_path):
    """Scenario 6 / RD-12 / PT-1: 300 merchant + 5,000 internal; redeeming 1,000 uses 300 merchant
    then 700 internal. The order is configuration: with priorities swapped internal goes first."""
    merchant = PointTypeSpec("merchant", priority=0)
    internal = PointTypeSpec("internal", priority=1)
    with new_ledger(tmp_path, internal, merchant) as ledger:  # definition order does not matter
        m = ledger.credit("c.m", "alice", "merchant", 300).lots_made[0][1]
        i = ledger.credit("c.i", "alice", "internal", 5_000).lots_made[0][1]
        assert [b.point_type for b in ledger.balances("alice")] == ["merchant", "internal"]
        r = ledger.redeem("pos.1000", "alice", 1_000, channel="pos")
        assert r.lots_used == [("merchant", m, 300), ("internal", i, 700)]
        totals = {b.point_type: b.total for b in ledger.balances("alice")}
        assert totals == {"merchant": 0, "internal": 4_300}
        (e,) = ledger.entries_of("pos.1000")
        assert [(p.point_type, p.to_account, p.amount) for p in e.postings] == [
            ("merchant", "#p/redemption/merchant", 300), ("internal", "#p/redemption/internal", 700)]

    swapped = [PointTypeSpec("merchant", priority=1), PointTypeSpec("internal", priority=0)]
    with new_ledger(tmp_path, *swapped, name="swapped") as ledger:
        ledger.credit("c.m", "alice", "merchant", 300)
        ledger.credit("c.i", "alice", "internal", 5_000)
        r = ledger.redeem("pos.1000", "alice", 1_000)
        assert [(t, n) for t, _, n in r.lots_used] == [("internal", 1_000)]


def test_ex11_fefo_earliest_expiry_first_across_lots(tmp_path):
    """EX-11: within a type, lots are consumed earliest-expiry-first, not oldest-created-first: a
    lot gifted later by bob keeps bob's earlier expiry (XF-1) and is spent before alice's own."""
    with new_ledger(tmp_path, PointTypeSpec("pts", validity=THREE_YEARS), members=["alice", "bob"]) as ledger:
        a1 = ledger.credit("a.mar", "alice", "pts", 200, at=ms(2024, 3, 1)).lots_made[0][1]
        a2 = ledger.credit("a.apr", "alice", "pts", 300, at=ms(2024, 4, 1)).lots_made[0][1]
        ledger.credit("b.jan", "bob", "pts", 100, at=ms(2024, 1, 1))
        gift = ledger.transfer("gift", "bob", "alice", "pts", 100).lots_made[0][1]
        assert gift > a2  # created last...
        listed = ledger.lots("alice").items
        assert [lot.id for lot in listed] == [gift, a1, a2]  # ...but listed (and spent) first
        assert [lot.expires_at for lot in listed] == [ms(2027, 1, 1), ms(2027, 3, 1), ms(2027, 4, 1)]
        r = ledger.redeem("r1", "alice", 250)
        assert r.lots_used == [("pts", gift, 100), ("pts", a1, 150)]
        h = ledger.hold("h1", "alice", 100, ttl_ms=HOUR)
        assert h.lots_used == [("pts", a1, 50), ("pts", a2, 50)]
        assert {i: lot.remaining for i, lot in lots_by_id(ledger, "alice").items()} == {a2: 250}
        # one posting per account drawn from, however many of its lots: the lots are in `used`
        postings = {cmd: [(p.from_account, p.to_account, p.amount) for p in ledger.entries_of(cmd)[0].postings]
                    for cmd in ("r1", "h1")}
        assert postings == {"r1": [("alice/pts", "#p/redemption/pts", 250)], "h1": [("alice/pts", "#p/holds/pts", 100)]}
        assert ledger.balance("alice", "pts").held == 100
        assert ledger.audit().ok


def test_capture_void_and_refund_post_once_per_account_pair(tmp_path):
    """ST-15 / EX-11: a capture, a void and a refund that each span two lots of one type post once
    between the two accounts (the lots are in the entry's `used`/`made`), and a refund restores
    each lot with its original expiry (RD-8)."""
    with new_ledger(tmp_path, PointTypeSpec("pts", validity=THREE_YEARS)) as ledger:
        a1 = ledger.credit("a.mar", "alice", "pts", 100, at=ms(2024, 3, 1)).lots_made[0][1]
        a2 = ledger.credit("a.apr", "alice", "pts", 300, at=ms(2024, 4, 1)).lots_made[0][1]
        a3 = ledger.credit("a.may", "alice", "pts", 200, at=ms(2024, 5, 1)).lots_made[0][1]
        assert ledger.hold("h1", "alice", 150, ttl_ms=HOUR).lots_used == [("pts", a1, 100), ("pts", a2, 50)]
        ledger.capture("cap1", "h1")
        assert ledger.hold("h2", "alice", 300, ttl_ms=HOUR).lots_used == [("pts", a2, 250), ("pts", a3, 50)]
        ledger.void("void2", "h2")
        refund = ledger.reverse("ref.cap1", "cap1")
        assert sorted(refund.lots_made) == sorted([("pts", a1, 100), ("pts", a2, 50)])

        def postings(cmd):
            return [(p.from_account, p.to_account, p.amount) for p in ledger.entries_of(cmd)[0].postings]

        assert postings("cap1") == [("#p/holds/pts", "#p/redemption/pts", 150)]
        assert postings("void2") == [("#p/holds/pts", "alice/pts", 300)]
        assert postings("ref.cap1") == [("#p/redemption/pts", "alice/pts", 150)]
        lots = lots_by_id(ledger, "alice")
        assert {i: (lot.remaining, lot.expires_at) for i, lot in lots.items()} == {
            a1: (100, ms(2027, 3, 1)), a2: (300, ms(2027, 4, 1)), a3: (200, ms(2027, 5, 1))}
        b = ledger.balance("alice", "pts")
        assert (b.total, b.held) == (600, 0)
        assert ledger.audit().ok


def test_scenario11_rk4_freeze_blocks_redemption_unfreeze_restores(tmp_path):
    """Scenario 11 / RK-4 / EH-2: a frozen member cannot redeem, hold, capture or transfer (each
    MemberFrozen, nothing changes); unfreezing restores redemption."""
    with new_ledger(tmp_path, PointTypeSpec("pts"), members=["alice", "bob"]) as ledger:
        ledger.credit("c1", "alice", "pts", 1_000)
        ledger.hold("h.before", "alice", 100, ttl_ms=HOUR)
        ledger.freeze("fz", "alice", "abuse: daily cap hit")
        assert ledger.member("alice").status == "frozen"
        before = state(ledger, ["alice", "bob"])
        for call in (lambda: ledger.redeem("r.frozen", "alice", 10),
                     lambda: ledger.hold("h.frozen", "alice", 10, ttl_ms=HOUR),
                     lambda: ledger.capture("cap.frozen", "h.before"),
                     lambda: ledger.transfer("t.frozen", "alice", "bob", "pts", 10)):
            with pytest.raises(MemberFrozen):
                call()
            assert state(ledger, ["alice", "bob"]) == before
        ledger.unfreeze("ufz", "alice", "verified")
        assert ledger.member("alice").status == "active"
        assert ledger.redeem("r.after", "alice", 10).amount == 10
        assert ledger.capture("cap.after", "h.before").amount == 100
        assert ledger.balance("alice", "pts").total == 890
        assert ledger.audit().ok


def test_scenario12_xf1_xf2_xf9_gift_convert_and_untransferable_employee_points(tmp_path):
    """Scenario 12: A gifts 2,000 merchant points to B; B's lot keeps A's earn date and expiry
    (XF-1); B converts merchant → general at the type's convert_to rate (XF-2); employee points
    cannot be transferred (XF-9, NotTransferable, nothing changes)."""
    types = [
        PointTypeSpec("merchant", priority=0, validity=THREE_YEARS, convert_to=(("general", 1, 2),)),
        PointTypeSpec("general", priority=1),
        PointTypeSpec("employee", priority=2, validity=THREE_YEARS, transferable=False),
    ]
    with new_ledger(tmp_path, *types, members=["a", "b"]) as ledger:
        src = ledger.credit("c.a", "a", "merchant", 3_000, at=ms(2024, 1, 15)).lots_made[0][1]
        ledger.credit("c.a.emp", "a", "employee", 500)

        g = ledger.transfer("gift", "a", "b", "merchant", 2_000)
        assert g.lots_used == [("merchant", src, 2_000)]
        ((_, made, n),) = g.lots_made
        assert n == 2_000
        b_lot = lots_by_id(ledger, "b", "merchant")[made]
        a_lot = lots_by_id(ledger, "a", "merchant")[src]
        assert (b_lot.earned_at, b_lot.expires_at) == (a_lot.earned_at, a_lot.expires_at) == (
            ms(2024, 1, 15), ms(2027, 1, 15))
        assert ledger.balance("a", "merchant").total == 1_000
        assert ledger.balance("b", "merchant").total == 2_000
        (e,) = ledger.entries_of("gift")
        assert [(p.from_account, p.to_account, p.amount) for p in e.postings] == [("a/merchant", "b/merchant", 2_000)]

        ((to, num, den),) = next(t for t in ledger.point_types("p") if t.id == "merchant").convert_to
        assert to == "general"
        cv = ledger.convert("xchg", "b", "merchant", "general", 1_000)
        assert (cv.amount, cv.credited) == (1_000, 1_000 * num // den) == (1_000, 500)
        assert ledger.balance("b", "merchant").total == 1_000
        assert ledger.balance("b", "general").total == 500

        before = state(ledger, ["a", "b"])
        with pytest.raises(NotTransferable):
            ledger.transfer("gift.emp", "a", "b", "employee", 100)
        with pytest.raises(InvalidArgument):  # no conversion path out of employee points either
            ledger.convert("xchg.emp", "a", "employee", "general", 100)
        assert state(ledger, ["a", "b"]) == before
        assert ledger.audit().ok


def test_eh9_xf1_xf2_reversing_a_gift_and_a_conversion_undoes_both_sides(tmp_path):
    """EH-9: a gift sent by mistake and a conversion the member regrets are reversed by new,
    linked entries: the receiver gives back the gifted lots, the sender gets its own lots back
    with their original expiry; a conversion reversed in two parts claws back exactly what it
    credited (XF-2, rounding down each time but never losing a point overall)."""
    types = [
        PointTypeSpec("merchant", priority=0, validity=THREE_YEARS, convert_to=(("general", 1, 2),)),
        PointTypeSpec("general", priority=1),
    ]
    with new_ledger(tmp_path, *types, members=["a", "b"]) as ledger:
        ledger.credit("c.a", "a", "merchant", 3_001, at=ms(2024, 1, 15))
        a_before = ledger.lots("a", point_type="merchant").items
        ledger.transfer("gift", "a", "b", "merchant", 2_000)
        r = ledger.reverse("gift.undo", "gift", reason="sent to the wrong member")
        assert (r.kind, r.amount) == ("reverse", 2_000)
        assert ledger.lots("a", point_type="merchant").items == a_before
        assert ledger.balance("b", "merchant").total == 0
        (e,) = ledger.entries_of("gift.undo")
        assert [(p.from_account, p.to_account, p.amount) for p in e.postings] == [("b/merchant", "a/merchant", 2_000)]

        cv = ledger.convert("xchg", "a", "merchant", "general", 3_001)
        assert cv.credited == 1_500
        first = ledger.reverse("xchg.undo.1", "xchg", amount=1_001)
        rest = ledger.reverse("xchg.undo.2", "xchg")
        assert (first.credited, rest.credited) == (500, 1_000)  # floor(1001 / 2), then the rest
        assert ledger.balance("a", "general").total == 0
        assert ledger.lots("a", point_type="merchant").items == a_before
        assert ledger.audit().ok


# ----------------------------------------------------------------------------------------------
# holds and refunds
# ----------------------------------------------------------------------------------------------


def test_hold_partial_capture_returns_remainder_to_the_same_lots(tmp_path):
    """RD-6/RD-17 two-phase redemption: hold 600 over two lots, capture 300; the uncaptured 300
    go back into the same lot ids with their original expiry; refunding the capture (EH-9)
    restores the rest."""
    with new_ledger(tmp_path, PointTypeSpec("pts", validity=THREE_YEARS)) as ledger:
        l1 = ledger.credit("c.jan", "alice", "pts", 400, at=ms(2024, 1, 1)).lots_made[0][1]
        l2 = ledger.credit("c.mar", "alice", "pts", 500, at=ms(2024, 3, 1)).lots_made[0][1]
        original = lots_by_id(ledger, "alice")

        h = ledger.hold("h1", "alice", 600, ttl_ms=HOUR, channel="mall")
        assert h.lots_used == [("pts", l1, 400), ("pts", l2, 200)]
        b = ledger.balance("alice", "pts")
        assert (b.total, b.available, b.held) == (300, 300, 600)
        assert ledger.hold_state("h1").state == "open"

        cap = ledger.capture("cap1", "h1", 300, at=NOW + MINUTE)
        assert cap.amount == 300
        assert cap.lots_used == [("pts", l1, 300)]
        hs = ledger.hold_state("h1")
        assert (hs.state, hs.amount, hs.captured) == ("captured", 600, 300)
        b = ledger.balance("alice", "pts")
        assert (b.total, b.held) == (600, 0)
        lots = lots_by_id(ledger, "alice")
        assert set(lots) == {l1, l2}
        assert (lots[l1].remaining, lots[l2].remaining) == (100, 500)
        for i in (l1, l2):
            assert (lots[i].expires_at, lots[i].earned_at, lots[i].amount) == (
                original[i].expires_at, original[i].earned_at, original[i].amount)

        ref = ledger.reverse("refund.cap1", "cap1", reason="order cancelled")
        assert ref.amount == 300
        assert lots_by_id(ledger, "alice") == original
        assert ledger.audit().ok


def test_hold_ttl_auto_void_by_expire(tmp_path):
    """EX-2 / hold TTL: an open hold past its TTL is voided by the `expire` sweep and its points
    return to the member; a capture afterwards is refused (HoldNotOpen)."""
    with new_ledger(tmp_path, PointTypeSpec("pts")) as ledger:
        lot = ledger.credit("c1", "alice", "pts", 1_000).lots_made[0][1]
        ledger.hold("h1", "alice", 400, ttl_ms=HOUR)
        assert sum(r.amount for r in ledger.expire("sweep.early", NOW + HOUR - 1)) == 0
        assert ledger.hold_state("h1").state == "open"

        ledger.expire("sweep.ttl", NOW + HOUR)
        assert ledger.hold_state("h1").state == "voided"
        b = ledger.balance("alice", "pts")
        assert (b.total, b.available, b.held) == (1_000, 1_000, 0)
        assert {i: lt.remaining for i, lt in lots_by_id(ledger, "alice").items()} == {lot: 1_000}
        (e,) = ledger.entries_of("sweep.ttl")
        assert [(p.from_account, p.to_account, p.amount) for p in e.postings] == [("#p/holds/pts", "alice/pts", 400)]
        with pytest.raises(HoldNotOpen):
            ledger.capture("cap.late", "h1", at=NOW + HOUR - 1)
        assert ledger.audit().ok


def test_hold_voided_and_lot_expired_in_the_same_sweep(tmp_path):
    """EX-2: a hold past its TTL whose lots are also past expiry: the sweep voids the hold and
    moves all the points to breakage in one go (regression: the sweep used to read the lots from
    the store, not from the overlay the void had just written, losing a partly held lot's
    balance and leaving a fully held lot unexpired)."""
    with new_ledger(tmp_path, PointTypeSpec("pts", validity=Validity.rolling(1, "days")),
                    members=["alice", "bob"]) as ledger:
        ledger.credit("c.a", "alice", "pts", 1_000)
        ledger.hold("h.a", "alice", 400, ttl_ms=HOUR)   # partly held lot
        ledger.credit("c.b", "bob", "pts", 500)
        ledger.hold("h.b", "bob", 500, ttl_ms=HOUR)     # fully held lot
        sweep = ledger.expire("sweep", NOW + 2 * DAY)
        assert ledger.hold_state("h.a").state == ledger.hold_state("h.b").state == "voided"
        assert ledger.audit().ok, ledger.audit().problems
        for m in ("alice", "bob"):
            assert ledger.balance(m, "pts", at=NOW + 2 * DAY).total == 0
            assert ledger.lots(m).items == []
        breakage = net_by_account(ledger.journal(1, 1000))[("pts", "#p/breakage/pts")]
        assert breakage == 1_500
        assert sum(len(r.lots_used) for r in sweep) > 0


def test_rd17_eh9_refund_of_a_redeem_restores_the_same_lots_with_original_expiry(tmp_path):
    """RD-17 / EH-9: a redemption is final; a refund is a new compensating entry that puts the
    points back into the very lots they came from (last taken first), expiry unchanged; the
    original redeem entry is never edited; over-reversal is refused."""
    with new_ledger(tmp_path, PointTypeSpec("pts", validity=THREE_YEARS)) as ledger:
        l1 = ledger.credit("c.jan", "alice", "pts", 400, at=ms(2024, 1, 1)).lots_made[0][1]
        l2 = ledger.credit("c.mar", "alice", "pts", 500, at=ms(2024, 3, 1)).lots_made[0][1]
        original = lots_by_id(ledger, "alice")

        r = ledger.redeem("r1", "alice", 600)
        assert r.lots_used == [("pts", l1, 400), ("pts", l2, 200)]
        assert set(lots_by_id(ledger, "alice")) == {l2}  # l1 fully spent
        redeem_entry = ledger.entries_of("r1")

        part = ledger.reverse("refund.1", "r1", amount=250)
        assert part.lots_made == [("pts", l2, 200), ("pts", l1, 50)]
        lots = lots_by_id(ledger, "alice")
        assert (lots[l1].remaining, lots[l2].remaining) == (50, 500)
        assert lots[l1].expires_at == original[l1].expires_at == ms(2027, 1, 1)

        rest = ledger.reverse("refund.2", "r1")
        assert rest.amount == 350 and rest.lots_made == [("pts", l1, 350)]
        assert lots_by_id(ledger, "alice") == original
        assert ledger.entries_of("r1") == redeem_entry
        with pytest.raises(InvalidArgument):
            ledger.reverse("refund.3", "r1", amount=1)
        kinds = [e.kind for e in ledger.journal(1, 1000)]
        assert kinds[-3:] == ["redeem", "reverse", "reverse"]
        assert ledger.audit().ok


# ----------------------------------------------------------------------------------------------
# queries (RP-5)
# ----------------------------------------------------------------------------------------------


def history_world(tmp_path) -> Ledger:
    types = [PointTypeSpec("merchant", priority=0, convert_to=(("general", 1, 1),)),
             PointTypeSpec("general", priority=1)]
    ledger = new_ledger(tmp_path, *types, members=["alice", "bob"])
    ledger.credit("h.1", "alice", "merchant", 500)
    ledger.credit("h.2", "bob", "merchant", 100)          # not alice's
    ledger.credit("h.3", "alice", "general", 700)
    ledger.redeem("h.4", "alice", 600)                    # touches both of alice's accounts
    ledger.transfer("h.5", "bob", "alice", "merchant", 50)
    ledger.hold("h.6", "alice", 20, ttl_ms=HOUR, point_type="general")
    ledger.void("h.7", "h.6")
    ledger.convert("h.8", "alice", "merchant", "general", 50)  # both accounts again
    ledger.freeze("h.9", "bob")                           # no postings
    ledger.credit("h.10", "alice", "merchant", 5)
    ledger.reverse("h.11", "h.4", amount=10)
    ledger.credit("h.12", "bob", "general", 1)            # not alice's
    return ledger


def expected_history(ledger: Ledger, accounts: set[str]) -> list[int]:
    return sorted((e.seq for e in ledger.journal(1, 1000)
                   if any({p.from_account, p.to_account} & accounts for p in e.postings)), reverse=True)


@pytest.mark.parametrize("page_size", [1, 2, 3, 100])
def test_rp5_history_pagination_member_wide_newest_first(tmp_path, page_size):
    """RP-5: a member's history, newest first, walked page by page with tokens, every entry that
    touches any of the member's accounts exactly once."""
    with history_world(tmp_path) as ledger:
        want = expected_history(ledger, {"alice/merchant", "alice/general"})
        assert len(want) == 9
        got, pages = walk_history(ledger, "alice", None, page_size)
        assert [e.seq for e in got] == want
        assert pages == max(1, -(-len(want) // page_size))
        assert {e.id for e in got} == {"h.1", "h.3", "h.4", "h.5", "h.6", "h.7", "h.8", "h.10", "h.11"}
        by_seq = {e.seq: e for e in ledger.journal(1, 1000)}
        assert all(e == by_seq[e.seq] for e in got)


@pytest.mark.parametrize("page_size", [1, 2, 4])
def test_rp5_history_pagination_per_point_type(tmp_path, page_size):
    """RP-5: history restricted to one point type walks only that account's entries."""
    with history_world(tmp_path) as ledger:
        for t in ("merchant", "general"):
            want = expected_history(ledger, {f"alice/{t}"})
            got, _ = walk_history(ledger, "alice", t, page_size)
            assert [e.seq for e in got] == want
        merchant_ids = [e.id for e in walk_history(ledger, "alice", "merchant", page_size)[0]]
        assert merchant_ids == ["h.10", "h.8", "h.5", "h.4", "h.1"]  # h.11 refunds into general (last taken first)
        bob, _ = walk_history(ledger, "bob", None, page_size)
        assert [e.id for e in bob] == ["h.12", "h.5", "h.2"]


def test_lots_pagination(tmp_path):
    """Lots of a member: every type in spending order, FEFO within a type, walked with tokens."""
    types = [PointTypeSpec("merchant", priority=0, validity=THREE_YEARS), PointTypeSpec("general", priority=1)]
    with new_ledger(tmp_path, *types) as ledger:
        for i, day in enumerate([5, 1, 3, 2, 4]):
            ledger.credit(f"m.{i}", "alice", "merchant", 10 + i, at=ms(2024, 1, day))
        for i in range(3):
            ledger.credit(f"g.{i}", "alice", "general", 100 + i)
        everything = ledger.lots("alice", page_size=1000)
        assert everything.next_page_token == ""
        assert len(everything.items) == 8
        assert [lot.point_type for lot in everything.items] == ["merchant"] * 5 + ["general"] * 3
        merchant_expiry = [lot.expires_at for lot in everything.items[:5]]
        assert merchant_expiry == sorted(merchant_expiry)
        assert [lot.expires_at for lot in everything.items[5:]] == [None] * 3
        for size in (1, 2, 3, 7, 8):
            got, pages = walk_lots(ledger, "alice", None, size)
            assert got == everything.items
            assert pages == -(-8 // size)
        got, _ = walk_lots(ledger, "alice", "general", 2)
        assert got == everything.items[5:]
        assert ledger.lots("alice").items == everything.items  # default page size covers it


def test_entries_of_returns_what_a_command_wrote(tmp_path):
    """entries_of(id): one entry for an ordinary command, one per touched account for a sweep
    (same id, consecutive seqs, as many as the receipt says)."""
    with new_ledger(tmp_path, PointTypeSpec("pts", validity=Validity.rolling(10, "days")),
                    members=["alice", "bob", "carol"]) as ledger:
        c = ledger.credit("c.alice", "alice", "pts", 10, memo="welcome")
        ledger.credit("c.bob", "bob", "pts", 20)
        ledger.credit("c.carol", "carol", "pts", 30, at=NOW + 5 * DAY)
        (e,) = ledger.entries_of("c.alice")
        assert (e.seq, e.id, e.kind, e.amount, e.at) == (c.seq, "c.alice", "credit", 10, NOW)
        assert e.command["memo"] == "welcome" and e.command["member"] == "alice"
        assert e.lots_made == tuple(c.lots_made)

        (sweep,) = ledger.expire("sweep", NOW + 10 * DAY)
        es = ledger.entries_of("sweep")
        assert len(es) == sweep.entries == 2
        assert {e.id for e in es} == {"sweep"} and {e.kind for e in es} == {"expire"}
        assert [e.seq for e in es] == [sweep.seq, sweep.seq + 1]
        assert sorted(e.amount for e in es) == [10, 20]
        with pytest.raises(UnknownEntry):
            ledger.entries_of("never.sent")


# ----------------------------------------------------------------------------------------------
# ledger invariants over a busy ledger (ST-15, RK-8)
# ----------------------------------------------------------------------------------------------


def busy_world(tmp_path) -> Ledger:
    """Every kind of command: credits, a multi-type redeem, refunds, clawback, holds captured,
    voided and timed out, a gift, a conversion and an expiry sweep over several accounts."""
    types = [PointTypeSpec("merchant", priority=0, validity=Validity.rolling(1, "years"),
                           convert_to=(("general", 1, 2),)),
             PointTypeSpec("general", priority=1)]
    ledger = new_ledger(tmp_path, *types, members=["alice", "bob", "carol"])
    ledger.credit("c1", "alice", "merchant", 1_000, at=ms(2024, 1, 1))
    ledger.credit("c2", "alice", "general", 2_000)
    ledger.credit("c3", "bob", "merchant", 500)
    ledger.credit("c4", "carol", "merchant", 300)
    ledger.redeem("r1", "alice", 1_200)                          # 1,000 merchant + 200 general
    ledger.reverse("ref1", "r1", amount=300)                     # 200 general + 100 merchant back
    ledger.hold("h1", "bob", 200, ttl_ms=HOUR, point_type="merchant")
    ledger.capture("cap1", "h1", 150)
    ledger.hold("h2", "alice", 100, ttl_ms=HOUR)
    ledger.void("v2", "h2")
    ledger.transfer("t1", "bob", "alice", "merchant", 100)
    ledger.convert("cv1", "alice", "merchant", "general", 100)   # → 50 general
    ledger.reverse("claw1", "c2", ratio=(1, 4))                  # −500 general
    ledger.hold("h3", "carol", 100, ttl_ms=HOUR)
    ledger.expire("sweep1", NOW + DAY)                           # h3 times out
    ledger.expire("sweep2", ms(2025, 6, 1))                      # every merchant lot is past expiry
    return ledger


def test_st15_double_entry_every_point_type_sums_to_zero(tmp_path):
    """ST-15 / RK-8: every posting is positive and moves points between two different accounts;
    over the whole journal Σ per point type is zero, and each member account's postings add up to
    its balance (which its lots hold)."""
    with busy_world(tmp_path) as ledger:
        journal = ledger.journal(1, 1000)
        assert ledger.audit().ok
        per_type: dict[str, int] = defaultdict(int)
        for e in journal:
            for p in e.postings:
                assert p.amount > 0 and p.from_account != p.to_account
        net = net_by_account(journal)
        for (t, _), n in net.items():
            per_type[t] += n
        assert per_type and all(s == 0 for s in per_type.values()), per_type
        for m in ("alice", "bob", "carol"):
            for b in ledger.balances(m, at=ms(2025, 6, 1)):
                assert net.get((b.point_type, f"{m}/{b.point_type}"), 0) == b.total
                lots = ledger.lots(m, point_type=b.point_type, page_size=1000).items
                assert sum(lot.remaining for lot in lots) == b.total
        totals = {(m, b.point_type): b.total for m in ("alice", "bob", "carol") for b in ledger.balances(m)}
        assert totals == {("alice", "merchant"): 0, ("alice", "general"): 1_550, ("bob", "merchant"): 0,
                          ("bob", "general"): 0, ("carol", "merchant"): 0, ("carol", "general"): 0}
        assert net[("merchant", "#p/breakage/merchant")] == 100 + 250 + 300
        assert net[("merchant", "#p/redemption/merchant")] == 1_000 - 100 + 150
        assert net[("general", "#p/redemption/general")] == 0
        assert net[("general", "#p/issuance/general")] == -2_000 + 500
        assert len(ledger.entries_of("sweep2")) == 3


def test_rk8_hash_chain_links_every_entry_to_the_previous(tmp_path):
    """RK-8: each journal entry's prev_hash is the previous entry's hash (the first one's is 32
    zero bytes); seqs are 1..N without gaps; every query returns the same hashes."""
    with busy_world(tmp_path) as ledger:
        journal = ledger.journal(1, 1000)
        assert [e.seq for e in journal] == list(range(1, len(journal) + 1))
        assert journal[0].prev_hash == ZERO_HASH
        for prev, e in zip(journal, journal[1:]):
            assert e.prev_hash == prev.hash, f"chain broken at {e.seq}"
        assert all(len(e.hash) == 32 for e in journal)
        assert len({e.hash for e in journal}) == len(journal)
        # paging the journal from the middle continues the same chain
        tail = ledger.journal(10, 5)
        assert tail == journal[9:14]
        by_seq = {e.seq: e.hash for e in journal}
        for e in ledger.history("alice", page_size=1000).items + ledger.entries_of("sweep2"):
            assert by_seq[e.seq] == e.hash
        report = ledger.audit()
        assert report.ok and report.entries == len(journal)
