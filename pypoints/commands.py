"""Commands: each carries a client-chosen `id` (the idempotency key) and an optional time
`at` (UTC ms; the ledger's clock stamps it when absent). `as_tuple` is the wire form the Rust
core parses; build tuples directly for the fastest batch path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pypoints import _core
from pypoints.models import PointTypeSpec


@dataclass(frozen=True)
class Command:
    id: str

    op = ""

    def fields(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def as_tuple(self, at: int) -> tuple[Any, ...]:
        return (self.op, self.id, at, *self.fields())


@dataclass(frozen=True)
class DefineProgramme(Command):
    programme: str
    name: str = ""
    op = "define_programme"

    def fields(self) -> tuple[Any, ...]:
        return (self.programme, self.name)


@dataclass(frozen=True)
class DefinePointType(Command):
    programme: str
    spec: PointTypeSpec
    op = "define_point_type"

    def fields(self) -> tuple[Any, ...]:
        s = self.spec
        return (self.programme, s.id, s.priority, s.validity.as_tuple(), s.transferable,
                s.cash.as_tuple(), [tuple(c) for c in s.convert_to])


@dataclass(frozen=True)
class OpenMember(Command):
    member: str
    programme: str
    phone: str = ""
    id_number: str | None = None
    """Hashed before it leaves Python (RK-9)."""
    org: tuple[str, ...] = ()
    tier: str = "ordinary"
    kind: str = "individual"
    op = "open_member"

    def fields(self) -> tuple[Any, ...]:
        h = _core.hash_id_number(self.id_number) if self.id_number else None
        return (self.member, self.programme, self.phone, h, list(self.org), self.tier, self.kind)


@dataclass(frozen=True)
class Credit(Command):
    member: str
    point_type: str
    amount: int
    effective_at: int | None = None
    memo: str = ""
    op = "credit"

    def fields(self) -> tuple[Any, ...]:
        return (self.member, self.point_type, self.amount, self.effective_at, self.memo)


@dataclass(frozen=True)
class Redeem(Command):
    member: str
    amount: int
    point_type: str | None = None
    """None: spend every type of the programme by priority (RD-12)."""
    channel: str = ""
    merchant: str = ""
    order_ref: str = ""
    org: str = ""
    op = "redeem"

    def fields(self) -> tuple[Any, ...]:
        return (self.member, self.point_type, self.amount, self.channel, self.merchant,
                self.order_ref, self.org)


@dataclass(frozen=True)
class Hold(Command):
    member: str
    amount: int
    ttl_ms: int
    point_type: str | None = None
    channel: str = ""
    merchant: str = ""
    order_ref: str = ""
    org: str = ""
    op = "hold"

    def fields(self) -> tuple[Any, ...]:
        return (self.member, self.point_type, self.amount, self.ttl_ms, self.channel,
                self.merchant, self.order_ref, self.org)


@dataclass(frozen=True)
class Capture(Command):
    hold: str
    amount: int | None = None
    op = "capture"

    def fields(self) -> tuple[Any, ...]:
        return (self.hold, self.amount)


@dataclass(frozen=True)
class Void(Command):
    hold: str
    op = "void"

    def fields(self) -> tuple[Any, ...]:
        return (self.hold,)


@dataclass(frozen=True)
class Transfer(Command):
    from_member: str
    to_member: str
    point_type: str
    amount: int
    op = "transfer"

    def fields(self) -> tuple[Any, ...]:
        return (self.from_member, self.to_member, self.point_type, self.amount)


@dataclass(frozen=True)
class Convert(Command):
    member: str
    from_type: str
    to_type: str
    amount: int
    op = "convert"

    def fields(self) -> tuple[Any, ...]:
        return (self.member, self.from_type, self.to_type, self.amount)


@dataclass(frozen=True)
class Reverse(Command):
    target: str
    """Client id of the redeem, capture (refund) or credit (clawback) to reverse."""
    amount: int | None = None
    ratio: tuple[int, int] | None = None
    reason: str = ""
    op = "reverse"

    def fields(self) -> tuple[Any, ...]:
        return (self.target, self.amount, self.ratio, self.reason)


@dataclass(frozen=True)
class Expire(Command):
    as_of: int
    after: str | None = None
    op = "expire"

    def fields(self) -> tuple[Any, ...]:
        return (self.as_of, self.after)


@dataclass(frozen=True)
class Freeze(Command):
    member: str
    reason: str = ""
    op = "freeze"

    def fields(self) -> tuple[Any, ...]:
        return (self.member, self.reason)


@dataclass(frozen=True)
class Unfreeze(Command):
    member: str
    reason: str = ""
    op = "unfreeze"

    def fields(self) -> tuple[Any, ...]:
        return (self.member, self.reason)


@dataclass(frozen=True)
class BindCard(Command):
    """Bind a card number (digits, 8-19 of them) to a member: MA-2, MA-10, MA-14."""

    member: str
    card: str
    op = "bind_card"

    def fields(self) -> tuple[Any, ...]:
        return (self.member, self.card)


@dataclass(frozen=True)
class UnbindCard(Command):
    """Unbind a card from its member (lost or replaced); the number may be bound again."""

    member: str
    card: str
    reason: str = ""
    op = "unbind_card"

    def fields(self) -> tuple[Any, ...]:
        return (self.member, self.card, self.reason)
