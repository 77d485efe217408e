"""The earning rules engine (issue #3): typed rules, conditions, actions, events, campaigns and
tiers. Rules are data (ER-32): the Rust core stores and versions them in LMDB and evaluates
them inside the same atomic write as the credits they produce.

Amounts of events are in minor units (fen): 99.99 CNY is 9_999. Times are UTC milliseconds;
calendar days, weekdays and cap windows are in the programme's time zone (UTC+8 by default).

    from pypoints.rules import Rule, Rate, Event, Cap
    ledger.define_rule(Rule("shop", "card", Rate(1, 100), "pts", kinds=("card_spend",),
                            pending=True, caps=(Cap("day", 1_000),)))
    result = ledger.earn(Event("pos-000123", "card_spend", "m1", amount=9_999))   # 99 points
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from pypoints.commands import Command
from pypoints.errors import InvalidRule
from pypoints.models import Validity

Window = Literal["day", "month", "year", "lifetime"]


def _int(path: str, v: object, *, optional: bool = False) -> None:
    if optional and v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidRule(f"{path}: must be an int, got {v!r}")


def _strs(path: str, vs: object) -> list[str]:
    if isinstance(vs, str) or not all(isinstance(v, str) for v in vs):  # type: ignore[union-attr]
        raise InvalidRule(f"{path}: must be a sequence of strings, got {vs!r}")
    return list(vs)  # type: ignore[call-overload]


# ----- conditions (ER-31) -----

class Cond:
    """A condition; combine with All, Any, Not."""

    def wire(self, path: str) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class All(Cond):
    conds: tuple[Cond, ...]

    def __init__(self, *conds: Cond) -> None:
        object.__setattr__(self, "conds", tuple(conds))

    def wire(self, path: str) -> Any:
        return {"all": [_cond(c, f"{path}.all[{i}]") for i, c in enumerate(self.conds)]}


@dataclass(frozen=True)
class Any_(Cond):
    conds: tuple[Cond, ...]

    def __init__(self, *conds: Cond) -> None:
        object.__setattr__(self, "conds", tuple(conds))

    def wire(self, path: str) -> Any:
        return {"any": [_cond(c, f"{path}.any[{i}]") for i, c in enumerate(self.conds)]}


@dataclass(frozen=True)
class Not(Cond):
    cond: Cond

    def wire(self, path: str) -> Any:
        return {"not": _cond(self.cond, f"{path}.not")}


def _list_cond(name: str):  # type: ignore[no-untyped-def]
    @dataclass(frozen=True)
    class _C(Cond):
        values: tuple[str, ...]

        def __init__(self, *values: str) -> None:
            object.__setattr__(self, "values", tuple(values))

        def wire(self, path: str) -> Any:
            return {name: _strs(f"{path}.{name}", self.values)}

    return _C


class Tier(_list_cond("tier")):  # type: ignore[misc]
    """The member's tier (before the event) is one of these (TL-2)."""


class Channel(_list_cond("channel")):  # type: ignore[misc]
    pass


class Merchant(_list_cond("merchant")):  # type: ignore[misc]
    pass


class Category(_list_cond("category")):  # type: ignore[misc]
    """Merchant category (ER-6 consumption type)."""


class Group(_list_cond("group")):  # type: ignore[misc]
    """The member's kind (individual/corporate/staff) or one of its groups (MA-8)."""


class Org(_list_cond("org")):  # type: ignore[misc]
    """The event's (or the member's) organisation path lies under this path (MA-13)."""


@dataclass(frozen=True)
class Between(Cond):
    """`start <= at < end` (UTC ms): campaign windows, holidays (CP-3/4)."""

    start: int
    end: int

    def wire(self, path: str) -> Any:
        _int(f"{path}.between.from", self.start)
        _int(f"{path}.between.to", self.end)
        return {"between": {"from": self.start, "to": self.end}}


@dataclass(frozen=True)
class Weekdays(Cond):
    """ISO weekdays, 1 = Monday … 7 = Sunday, in programme time."""

    days: tuple[int, ...]

    def __init__(self, *days: int) -> None:
        object.__setattr__(self, "days", tuple(days))

    def wire(self, path: str) -> Any:
        for i, d in enumerate(self.days):
            _int(f"{path}.weekdays[{i}]", d)
        return {"weekdays": list(self.days)}


@dataclass(frozen=True)
class MonthDays(Cond):
    """Days of the month (member day: the 18th)."""

    days: tuple[int, ...]

    def __init__(self, *days: int) -> None:
        object.__setattr__(self, "days", tuple(days))

    def wire(self, path: str) -> Any:
        for i, d in enumerate(self.days):
            _int(f"{path}.month_days[{i}]", d)
        return {"month_days": list(self.days)}


@dataclass(frozen=True)
class TimeOfDay(Cond):
    """Minutes after local midnight, `start <= t < end`; start > end wraps past midnight."""

    start: int
    end: int

    def wire(self, path: str) -> Any:
        _int(f"{path}.time_of_day.from", self.start)
        _int(f"{path}.time_of_day.to", self.end)
        return {"time_of_day": {"from": self.start, "to": self.end}}


@dataclass(frozen=True)
class Amount(Cond):
    """Event amount in minor units, inclusive bounds."""

    min: int | None = None
    max: int | None = None

    def wire(self, path: str) -> Any:
        _int(f"{path}.amount.min", self.min, optional=True)
        _int(f"{path}.amount.max", self.max, optional=True)
        return {"amount": {"min": self.min, "max": self.max}}


@dataclass(frozen=True)
class Term(Cond):
    """Term in days, inclusive bounds."""

    min: int | None = None
    max: int | None = None

    def wire(self, path: str) -> Any:
        _int(f"{path}.term.min", self.min, optional=True)
        _int(f"{path}.term.max", self.max, optional=True)
        return {"term": {"min": self.min, "max": self.max}}


@dataclass(frozen=True)
class Attr(Cond):
    """Attribute `key` is one of `values` (present, when no values)."""

    key: str
    values: tuple[str, ...] = ()

    def wire(self, path: str) -> Any:
        return {"attr": {"key": self.key, "values": _strs(f"{path}.attr.values", self.values)}}


@dataclass(frozen=True)
class AttrRange(Cond):
    key: str
    min: int | None = None
    max: int | None = None

    def wire(self, path: str) -> Any:
        _int(f"{path}.attr_range.min", self.min, optional=True)
        _int(f"{path}.attr_range.max", self.max, optional=True)
        return {"attr_range": {"key": self.key, "min": self.min, "max": self.max}}


@dataclass(frozen=True)
class FirstPurchase(Cond):
    """The member has not purchased before this event."""

    def wire(self, path: str) -> Any:
        return "first_purchase"


def _cond(c: object, path: str) -> Any:
    if not isinstance(c, Cond):
        raise InvalidRule(f"{path}: must be a condition, got {c!r}")
    return c.wire(path)


_LIST_CONDS: dict[str, type] = {"tier": Tier, "channel": Channel, "merchant": Merchant,
                                "category": Category, "group": Group, "org": Org}


def cond_from_wire(w: Any) -> Cond:
    if w == "first_purchase":
        return FirstPurchase()
    (k, v), = w.items()
    if k == "all":
        return All(*(cond_from_wire(x) for x in v))
    if k == "any":
        return Any_(*(cond_from_wire(x) for x in v))
    if k == "not":
        return Not(cond_from_wire(v))
    if k in _LIST_CONDS:
        return _LIST_CONDS[k](*v)  # type: ignore[no-any-return]
    if k == "between":
        return Between(v["from"], v["to"])
    if k == "weekdays":
        return Weekdays(*v)
    if k == "month_days":
        return MonthDays(*v)
    if k == "time_of_day":
        return TimeOfDay(v["from"], v["to"])
    if k == "amount":
        return Amount(v["min"], v["max"])
    if k == "term":
        return Term(v["min"], v["max"])
    if k == "attr":
        return Attr(v["key"], tuple(v["values"]))
    if k == "attr_range":
        return AttrRange(v["key"], v["min"], v["max"])
    raise ValueError(f"unknown condition {k!r}")


# ----- actions -----

class Action:
    name = ""

    def wire(self, path: str) -> Any:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}  # type: ignore[attr-defined]
        for k, v in d.items():
            if k != "of":
                _int(f"{path}.{self.name}.{k}", v)
        return {self.name: d}


@dataclass(frozen=True)
class Rate(Action):
    """floor(amount × points / per_minor): 1 point per full 1.00 CNY = Rate(1, 100) (ER-5, T12);
    insurance 10,000 CNY → 5 = Rate(5, 1_000_000) (ER-2)."""

    points: int
    per_minor: int
    name = "rate"


@dataclass(frozen=True)
class AmountTerm(Action):
    """floor(amount × term_days × points / (per_minor × per_days)) (ER-1, T1):
    AmountTerm(16, 1_000_000, 365): 10,000 CNY × 1 year → 16."""

    points: int
    per_minor: int
    per_days: int = 365
    name = "amount_term"


@dataclass(frozen=True)
class Fixed(Action):
    """A fixed bonus (sign-up, review, birthday)."""

    points: int
    name = "fixed"


@dataclass(frozen=True)
class Multiplier(Action):
    """num/den × what the rate rules (or the rules in `of`) credited; the extra is its own lot
    (double points = Multiplier(2, 1), CP-1..3)."""

    num: int
    den: int = 1
    of: tuple[str, ...] = ()
    name = "multiplier"

    def wire(self, path: str) -> Any:
        _int(f"{path}.multiplier.num", self.num)
        _int(f"{path}.multiplier.den", self.den)
        return {"multiplier": {"num": self.num, "den": self.den, "of": _strs(f"{path}.multiplier.of", self.of)}}


@dataclass(frozen=True)
class Checkin(Action):
    """Daily check-in: `daily` points, `bonus` more every `streak`-th consecutive day (ER-17, T16)."""

    daily: int
    streak: int = 7
    bonus: int = 0
    name = "checkin"


@dataclass(frozen=True)
class Referral(Action):
    """Inviter and invitee, on the invitee's first purchase after signing up with a `referrer`
    attribute (ER-15)."""

    inviter: int
    invitee: int
    name = "referral"


_ACTIONS: dict[str, type] = {"rate": Rate, "amount_term": AmountTerm, "fixed": Fixed,
                             "multiplier": Multiplier, "checkin": Checkin, "referral": Referral}


def action_from_wire(w: dict[str, Any]) -> Action:
    (k, v), = w.items()
    if k == "multiplier":
        return Multiplier(v["num"], v["den"], tuple(v["of"]))
    return _ACTIONS[k](**v)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Cap:
    """At most `max` points per member per window (ER-30, RK-1)."""

    window: Window
    max: int

    def wire(self, path: str) -> dict[str, Any]:
        _int(f"{path}.max", self.max)
        if self.window not in ("day", "month", "year", "lifetime"):
            raise InvalidRule(f"{path}.window: must be day, month, year or lifetime, got {self.window!r}")
        return {"window": self.window, "max": self.max}


def _validity_wire(v: Validity) -> dict[str, Any]:
    if v.kind == "rolling":
        return {"kind": "rolling", "count": v.count, "unit": v.unit}
    if v.kind == "fixed_date":
        return {"kind": "fixed_date", "month": v.month, "day": v.day}
    return {"kind": "none"}


def _validity_from_wire(w: dict[str, Any] | None) -> Validity | None:
    if w is None:
        return None
    return Validity(w["kind"], w.get("count", 0), w.get("unit", "years"), w.get("month", 12), w.get("day", 31))


@dataclass(frozen=True)
class Rule:
    """An earning rule. `kinds` empty = every event kind. Higher `priority` is decided first;
    an `exclusive` rule applies only if it is the first to fire and stops the rest."""

    programme: str
    id: str
    action: Action
    point_type: str
    kinds: tuple[str, ...] = ()
    when: Cond | None = None
    priority: int = 0
    stacking: Literal["stackable", "exclusive"] = "stackable"
    validity: Validity | None = None
    """Validity of the lots it creates; None = the point type's."""
    pending: bool = False
    """EX-7: points take effect at the start of the next programme day."""
    caps: tuple[Cap, ...] = ()
    max_award: int | None = None
    campaign: str | None = None
    name: str = ""
    enabled: bool = True
    version: int = 0
    """Set by the ledger (1 on define, +1 on each update)."""

    def wire(self) -> dict[str, Any]:
        if not isinstance(self.action, Action):
            raise InvalidRule(f"rule.action: must be an action (Rate, Fixed, …), got {self.action!r}")
        if self.stacking not in ("stackable", "exclusive"):
            raise InvalidRule(f"rule.stacking: must be stackable or exclusive, got {self.stacking!r}")
        _int("rule.priority", self.priority)
        _int("rule.max_award", self.max_award, optional=True)
        return {
            "programme": self.programme, "id": self.id, "version": 0, "name": self.name,
            "enabled": self.enabled, "kinds": _strs("rule.kinds", self.kinds), "priority": self.priority,
            "stacking": self.stacking,
            "when": None if self.when is None else _cond(self.when, "rule.when"),
            "action": self.action.wire("rule.action"), "point_type": self.point_type,
            "validity": None if self.validity is None else _validity_wire(self.validity),
            "pending": bool(self.pending),
            "caps": [c.wire(f"rule.caps[{i}]") for i, c in enumerate(self.caps)],
            "max_award": self.max_award, "campaign": self.campaign,
        }

    def pack(self) -> bytes:
        return msgpack.packb(self.wire())

    @staticmethod
    def from_wire(w: dict[str, Any]) -> Rule:
        return Rule(
            w["programme"], w["id"], action_from_wire(w["action"]), w["point_type"], tuple(w["kinds"]),
            None if w["when"] is None else cond_from_wire(w["when"]), w["priority"], w["stacking"],
            _validity_from_wire(w["validity"]), w["pending"],
            tuple(Cap(c["window"], c["max"]) for c in w["caps"]), w["max_award"], w["campaign"],
            w["name"], w["enabled"], w["version"],
        )


@dataclass(frozen=True)
class Campaign:
    """A time window and an optional budget of `budget` points of `budget_type` (CP-4/5, CP-13).
    The budget is a bounded system account; once spent the campaign stops granting."""

    programme: str
    id: str
    start: int
    end: int
    budget: int | None = None
    budget_type: str = ""
    name: str = ""

    def pack(self) -> bytes:
        _int("campaign.start", self.start)
        _int("campaign.end", self.end)
        _int("campaign.budget", self.budget, optional=True)
        b = None if self.budget is None else {"point_type": self.budget_type, "points": self.budget}
        return msgpack.packb({"programme": self.programme, "id": self.id, "name": self.name,
                              "start": self.start, "end": self.end, "budget": b})


@dataclass(frozen=True)
class TierLevel:
    name: str
    threshold: int
    """Qualifying points earned (or spend, minor units) over the window; the first is 0."""
    num: int = 1
    den: int = 1
    """Earning multiplier num/den on rate rules (TL-2)."""


@dataclass(frozen=True)
class Tiers:
    """Levels by points earned or spend over the current and previous months (TL-1..5)."""

    programme: str
    levels: tuple[TierLevel, ...]
    basis: Literal["points", "spend"] = "points"
    window_months: int = 12
    point_type: str = ""
    """Point type of the tier multiplier's extra lots."""
    spend_kinds: tuple[str, ...] = ()
    """Event kinds counted as spend (default purchase, card_spend)."""
    version: int = 0
    """Assigned by the ledger: 1 on the first definition, +1 on each one after."""

    @staticmethod
    def from_wire(w: dict[str, Any]) -> Tiers:
        levels = tuple(TierLevel(lv["name"], lv["threshold"], lv["num"], lv["den"]) for lv in w["levels"])
        return Tiers(w["programme"], levels, w["basis"], w["window_months"], w.get("point_type", ""),
                     tuple(w.get("spend_kinds", ())), w.get("version", 0))

    def pack(self) -> bytes:
        _int("tiers.window_months", self.window_months)
        levels = []
        for i, lv in enumerate(self.levels):
            for k in ("threshold", "num", "den"):
                _int(f"tiers.levels[{i}].{k}", getattr(lv, k))
            levels.append({"name": lv.name, "threshold": lv.threshold, "num": lv.num, "den": lv.den})
        return msgpack.packb({"programme": self.programme, "version": self.version, "basis": self.basis,
                              "window_months": self.window_months, "levels": levels,
                              "spend_kinds": _strs("tiers.spend_kinds", self.spend_kinds),
                              "point_type": self.point_type})


@dataclass(frozen=True)
class Event:
    """An earning event; `id` is its idempotency key (a replay returns the original result)."""

    id: str
    kind: str
    member: str
    amount: int = 0
    """Minor units (fen); for a quiz, the correct answers."""
    term_days: int = 0
    channel: str = ""
    merchant: str = ""
    category: str = ""
    org: tuple[str, ...] = ()
    attrs: tuple[tuple[str, str], ...] = ()

    def fields(self) -> tuple[Any, ...]:
        return (self.kind, self.member, self.amount, self.term_days, self.channel, self.merchant,
                self.category, list(self.org), [tuple(a) for a in self.attrs])


# ----- commands (for Ledger.submit batches) -----

@dataclass(frozen=True)
class Earn(Command):
    event: Event = field(default=None)  # type: ignore[assignment]
    op = "earn"

    @staticmethod
    def of(event: Event) -> Earn:
        return Earn(event.id, event)

    def fields(self) -> tuple[Any, ...]:
        return self.event.fields()


@dataclass(frozen=True)
class DefineRule(Command):
    rule: Rule = field(default=None)  # type: ignore[assignment]
    update: bool = False

    @property
    def op(self) -> str:  # type: ignore[override]
        return "update_rule" if self.update else "define_rule"

    def fields(self) -> tuple[Any, ...]:
        return (self.rule.pack(),)


@dataclass(frozen=True)
class RecordCommand(Command):
    """define_campaign / define_tiers / set_earn_policy with a packed record."""

    kind: str = ""
    packed: bytes = b""

    @property
    def op(self) -> str:  # type: ignore[override]
        return self.kind

    def fields(self) -> tuple[Any, ...]:
        return (self.packed,)


@dataclass(frozen=True)
class PlainCommand(Command):
    kind: str = ""
    args: tuple[Any, ...] = ()

    @property
    def op(self) -> str:  # type: ignore[override]
        return self.kind

    def fields(self) -> tuple[Any, ...]:
        return self.args


# ----- results -----

@dataclass(frozen=True)
class Award:
    rule: str
    version: int
    member: str
    point_type: str
    base: int
    """Before caps and budget."""
    points: int
    """Credited (a lot when > 0)."""
    cuts: tuple[tuple[str, int], ...]
    """(what cut it: rule:<id>:<window> / programme:<window> / budget:<campaign> / max_award, points)."""
    campaign: str | None
    effective_at: int
    expires_at: int | None


@dataclass(frozen=True)
class Note:
    rule: str
    version: int
    fired: bool
    points: int
    reason: str


@dataclass(frozen=True)
class DryRun:
    awards: list[Award]
    notes: list[Note]
    """Every rule looked at: fired or not, and why."""
    tier_change: tuple[str, str] | None

    @property
    def total(self) -> int:
        return sum(a.points for a in self.awards)

    @staticmethod
    def from_record(r: dict[str, Any]) -> DryRun:
        awards = [Award(a["rule"], a["version"], a["member"], a["point_type"], a["base"], a["points"],
                        tuple((c["by"], c["n"]) for c in a["cuts"]), a["campaign"], a["effective_at"],
                        a["expires_at"]) for a in r["awards"]]
        notes = [Note(n["rule"], n["version"], n["fired"], n["points"], n["reason"]) for n in r["notes"]]
        tc = r.get("tier_change")
        return DryRun(awards, notes, None if tc is None else (tc[0], tc[1]))


@dataclass(frozen=True)
class EarnedLot:
    rule: str
    version: int
    member: str
    point_type: str
    lot: int
    points: int


@dataclass(frozen=True)
class EarnResult:
    """What an earn posted: one lot per rule that fired, and what caps and budgets cut."""

    id: str
    seq: int
    points: int
    lots: list[EarnedLot]
    cuts: list[tuple[str, str, int]]
    """(rule, what cut it, points cut)."""
    zero: list[str]
    """Rules that fired but were cut to nothing."""
    tier_change: tuple[str, str] | None
    replayed: bool

    @property
    def capped(self) -> bool:
        return bool(self.cuts)


@dataclass(frozen=True)
class CampaignStatus:
    """Live monitoring of a campaign (CP-13)."""

    programme: str
    id: str
    start: int
    end: int
    budget: int | None
    granted: int
    left: int


def earn_result(receipt: Any, entry: dict[str, Any]) -> EarnResult:
    lots = []
    for c in entry["made"]:
        lot = c["lot"]
        rule, version = lot[7] if len(lot) > 7 else ("", 0)
        # the credited account is the posting's target for this lot's point type and amount
        lots.append(EarnedLot(rule, version, "", c["t"], lot[0], c["n"]))
    targets = [p["to"] for p in entry["po"]]
    lots = [EarnedLot(l.rule, l.version, targets[i].split("/")[0] if i < len(targets) else "", l.point_type,
                      l.lot, l.points) for i, l in enumerate(lots)]
    note = entry.get("note") or {}
    tier = note.get("tier")
    return EarnResult(receipt.id, receipt.seq, receipt.amount, lots,
                      [tuple(c) for c in note.get("cuts", [])],  # type: ignore[misc]
                      list(note.get("zero", [])), None if tier is None else (tier[0], tier[1]),
                      receipt.replayed)
