"""Typed values the API returns and the programme configuration it takes. Points are ints;
cash is int minor units (fen/cents); times are int UTC milliseconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic, Literal, TypeVar

from pypoints import _core

T = TypeVar("T")


def to_ms(t: int | datetime) -> int:
    """UTC milliseconds from an int (already ms) or an aware datetime (naive = UTC)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return int(t.timestamp() * 1000)
    if isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"time must be int milliseconds or datetime, got {type(t).__name__}")
    return t


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@dataclass(frozen=True)
class Validity:
    """How long a lot lives (EX-1, EX-4, EX-5)."""

    kind: Literal["none", "rolling", "fixed_date"] = "none"
    count: int = 0
    unit: Literal["days", "months", "years"] = "years"
    month: int = 12
    day: int = 31

    @staticmethod
    def never() -> Validity:
        return Validity("none")

    @staticmethod
    def rolling(count: int, unit: Literal["days", "months", "years"]) -> Validity:
        return Validity("rolling", count=count, unit=unit)

    @staticmethod
    def fixed_date(month: int = 12, day: int = 31) -> Validity:
        return Validity("fixed_date", month=month, day=day)

    def as_tuple(self) -> tuple[Any, ...]:
        if self.kind == "rolling":
            return ("rolling", self.count, self.unit)
        if self.kind == "fixed_date":
            return ("fixed_date", self.month, self.day)
        return (self.kind,)


@dataclass(frozen=True)
class CashRate:
    """`points` points are worth `minor` minor units; an order uses at least `min_points`, a
    multiple of `step_points`, at most `max_points` (RD-20)."""

    points: int = 1
    minor: int = 100
    min_points: int = 1
    step_points: int = 1
    max_points: int | None = None

    def as_tuple(self) -> tuple[int, int, int, int, int | None]:
        return (self.points, self.minor, self.min_points, self.step_points, self.max_points)

    def quote(self, asked: int) -> tuple[int, int]:
        """(points used, cash value in minor units), rounded down; InvalidArgument below the
        minimum (T6-T8: 1,237 asked → (1,235, 247))."""
        return _core.quote_cash(asked, *self.as_tuple())


@dataclass(frozen=True)
class PointTypeSpec:
    id: str
    priority: int = 0
    validity: Validity = field(default_factory=Validity.never)
    transferable: bool = True
    cash: CashRate = field(default_factory=CashRate)
    convert_to: tuple[tuple[str, int, int], ...] = ()
    """(target type, num, den): `amount` converts to floor(amount × num / den)."""


@dataclass(frozen=True)
class Balance:
    point_type: str
    total: int
    available: int
    pending: int
    held: int


@dataclass(frozen=True)
class Lot:
    point_type: str
    id: int
    remaining: int
    amount: int
    earned_at: int
    expires_at: int | None
    effective_at: int
    source_seq: int


@dataclass(frozen=True)
class Posting:
    point_type: str
    from_account: str
    to_account: str
    amount: int


@dataclass(frozen=True)
class Entry:
    """One immutable journal entry."""

    seq: int
    id: str
    kind: str
    at: int
    amount: int
    credited: int
    postings: tuple[Posting, ...]
    lots_used: tuple[tuple[str, int, int], ...]
    lots_made: tuple[tuple[str, int, int], ...]
    command: dict[str, Any]
    hash: bytes
    prev_hash: bytes

    @staticmethod
    def from_record(r: dict[str, Any]) -> Entry:
        return Entry(
            seq=r["seq"], id=r["id"], kind=r["cmd"]["op"], at=r["at"], amount=r["amount"],
            credited=r["credited"],
            postings=tuple(Posting(p["t"], p["from"], p["to"], p["n"]) for p in r["po"]),
            lots_used=tuple((c["t"], c["lot"][0], c["n"]) for c in r["used"]),
            lots_made=tuple((c["t"], c["lot"][0], c["n"]) for c in r["made"]),
            command=r["cmd"], hash=r["h"], prev_hash=r["ph"],
        )


@dataclass(frozen=True)
class Member:
    id: str
    programme: str
    phone: str
    id_hash: str | None
    org: tuple[str, ...]
    tier: str
    kind: str
    status: str
    created_at: int
    # card numbers bound to the member, in binding order (MA-14: several cards, one identity)
    cards: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hold:
    id: str
    member: str
    amount: int
    captured: int
    state: str
    expires_at: int


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str
    """Empty when this is the last page (AIP-158)."""


@dataclass(frozen=True)
class AuditReport:
    entries: int
    accounts: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems
