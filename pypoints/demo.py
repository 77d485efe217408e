"""`pypoints demo`: a demo programme and a realistic day of work through the engine.

Deterministic: the day is fixed and every command id derives from it, so running the demo again
on the same data directory replays (idempotently) instead of doubling anything."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pypoints import commands as c
from pypoints.errors import PointsError
from pypoints.ledger import Ledger
from pypoints.models import CashRate, PointTypeSpec, Validity, to_ms

PROGRAMME = "postbank"
DAY = datetime(2026, 11, 23, tzinfo=timezone.utc)
MEMBERS = 1_000
ORGS = [("Shandong", "Qingdao", "Shinan", "103"), ("Shandong", "Jinan", "Lixia", "201"),
        ("Jiangsu", "Nanjing", "Xuanwu", "305")]
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

POINT_TYPES = [
    # RD-12: merchant points are spent before internal points.
    PointTypeSpec("merchant", 0, Validity.rolling(1, "years"), True, CashRate(2, 100),
                  convert_to=(("internal", 1, 2),)),
    # RD-20: 500 points = 1.00 CNY, at least 5, multiples of 5, at most 500,000 per order.
    PointTypeSpec("internal", 1, Validity.rolling(3, "years"), True,
                  CashRate(500, 100, 5, 5, 500_000)),
    # EX-4, XF-9: employee points last 3 years and cannot be transferred.
    PointTypeSpec("employee", 2, Validity.fixed_date(12, 31), False, CashRate(100, 100)),
]


@dataclass
class DayReport:
    applied: Counter[str] = field(default_factory=Counter)
    replayed: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    def add(self, cmds: list[c.Command], results: list[Any]) -> None:
        for cmd, r in zip(cmds, results):
            if isinstance(r, PointsError):
                self.refused[f"{cmd.op}: {r.reason}"] += 1
            elif r.replayed:
                self.replayed[cmd.op] += 1
            else:
                self.applied[cmd.op] += 1


def member_id(i: int) -> str:
    return f"m{i:05d}"


def card_number(i: int) -> str:
    """The demo's 19-digit bank card of member i (card holders: i = 1, 5, 9, ...)."""
    return f"62220202{i:011d}"


def run_day(ledger: Ledger) -> DayReport:
    rng = random.Random(20261123)
    rep = DayReport()
    t0 = to_ms(DAY)

    def batch(cmds: list[c.Command], hour: float) -> list[Any]:
        results = ledger.submit(cmds, at=t0 + int(hour * HOUR_MS))
        rep.add(cmds, results)
        return results

    batch([c.DefineProgramme("programme.postbank", PROGRAMME, "Postal savings points exchange")], 0)
    batch([c.DefinePointType(f"point-type.postbank.{t.id}", PROGRAMME, t) for t in POINT_TYPES], 0)
    batch([c.OpenMember(f"member.{member_id(i)}", member_id(i), PROGRAMME, f"1380000{i:04d}",
                        f"37010219900101{i:04d}", ORGS[i % len(ORGS)],
                        "gold" if i % 10 == 0 else "ordinary", "staff" if i % 50 == 0 else "individual")
           for i in range(MEMBERS)], 0.5)
    # MA-10: card holders get their bank card bound as an identifier (found by card at a till, MA-2).
    batch([c.BindCard(f"card.{member_id(i)}", member_id(i), card_number(i)) for i in range(1, MEMBERS, 4)], 0.75)
    # Scenario 1: the nightly upstream file: deposits (10,000 CNY × 1 y → 16) and insurance (→ 5).
    nightly = [c.Credit(f"d20261123.deposit.{i}", member_id(i), "internal", 16 * rng.randint(1, 40), memo="deposit")
               for i in range(MEMBERS)]
    nightly += [c.Credit(f"d20261123.insurance.{i}", member_id(i), "internal", 5 * rng.randint(1, 10), memo="insurance")
                for i in range(0, MEMBERS, 3)]
    batch(nightly, 1)
    # Partner merchant spend: 1 CNY = 1 point (ER-12); card spend takes effect tomorrow (EX-7).
    batch([c.Credit(f"d20261123.partner.{i}", member_id(i), "merchant", rng.randint(50, 400), memo="partner spend")
           for i in range(0, MEMBERS, 2)], 9)
    tomorrow = t0 + DAY_MS
    batch([c.Credit(f"d20261123.card.{i}", member_id(i), "merchant", rng.randint(10, 999),
                    effective_at=tomorrow, memo="card spend") for i in range(1, MEMBERS, 4)], 10)
    batch([c.Credit(f"d20261123.staff.{i}", member_id(i), "employee", 1_000, memo="staff award")
           for i in range(0, MEMBERS, 50)], 10.5)
    # Mall and shopkeeper redemptions across types by priority (RD-12); some cannot be covered.
    redeems = [c.Redeem(f"d20261123.mall.{i}", member_id(i), 5 * rng.randint(20, 120), channel="mall",
                        merchant="mall-01", order_ref=f"MO{i:06d}", org="/".join(ORGS[i % 3]))
               for i in range(0, MEMBERS, 3)]
    batch(redeems, 12)
    # Shopkeeper checkout with OTP: hold, then capture (partly), void, or let the TTL lapse.
    holds = [c.Hold(f"d20261123.otp.{i}", member_id(i), 100, ttl_ms=5 * 60_000, channel="shopkeeper",
                    merchant=f"shop-{i % 7}", order_ref=f"SO{i:06d}") for i in range(0, 60)]
    results = batch(holds, 13)
    held = [h.id for h, r in zip(holds, results) if not isinstance(r, PointsError)]
    batch([c.Capture(f"{h}.capture", h, 60 if k % 3 == 0 else None) for k, h in enumerate(held[:30])], 13.05)
    batch([c.Void(f"{h}.void", h) for h in held[30:45]], 13.05)
    # Refunds restore the same lots (RD-17); a returned purchase claws back its points (RK-10).
    refunds = [c.Reverse(f"{r.id}.refund", r.id, amount=50, reason="item returned") for r in redeems[:40]]
    batch(refunds, 15)
    batch([c.Reverse(f"d20261123.partner.{i}.clawback", f"d20261123.partner.{i}", ratio=(400, 1000),
                     reason="refund 400 of 1,000") for i in range(0, 40, 2)], 15.5)
    # Gifts and conversions (XF-1, XF-2); employee points cannot be gifted (XF-9).
    batch([c.Transfer(f"d20261123.gift.{i}", member_id(i), member_id(i + 1), "internal", 16)
           for i in range(100, 140)], 16)
    batch([c.Transfer("d20261123.gift.staff", member_id(0), member_id(1), "employee", 100)], 16)
    batch([c.Convert(f"d20261123.convert.{i}", member_id(i), "merchant", "internal", 20)
           for i in range(200, 240, 2)], 16.5)
    # Risk control: an abusive member is frozen and cannot redeem (RK-4).
    batch([c.Freeze("d20261123.freeze.m00999", member_id(999), "abuse"),
           c.Redeem("d20261123.mall.frozen", member_id(999), 10)], 17)
    # Close of day: holds past their TTL void themselves, nothing has expired yet (EX-2).
    for r in ledger.expire("d20261123.expire", t0 + DAY_MS - 1, at=t0 + DAY_MS - 1):
        rep.applied["expire"] += 0 if r.replayed else 1
    return rep


def run(data_dir: Path) -> tuple[Ledger, DayReport]:
    # Balances are shown at the end of the demo day: card points stay pending until tomorrow.
    ledger = Ledger(data_dir, clock=lambda: to_ms(DAY + timedelta(hours=23, minutes=59)))
    return ledger, run_day(ledger)
