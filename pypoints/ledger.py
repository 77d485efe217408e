"""`Ledger`: the typed Python API over the Rust engine. Batch jobs use it in-process; the gRPC
server wraps it. Mutations go through one writer thread with group commit; reads are LMDB
snapshots. Every heavy call releases the GIL inside the core."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack

from pypoints import _core
from pypoints import commands as c
from pypoints import rules as r
from pypoints.errors import InvalidArgument, PointsError
from pypoints.models import (
    AuditReport, Balance, Entry, Hold, Lot, Member, Page, PointTypeSpec, to_ms,
)

Clock = Callable[[], int]
Result = _core.Receipt | PointsError


def system_clock() -> int:
    """Wall-clock UTC milliseconds. Tests inject their own clock."""
    return time.time_ns() // 1_000_000


def _unpack(b: bytes) -> dict[str, Any]:
    return msgpack.unpackb(b, raw=False)


class Ledger:
    """A points ledger stored in `path` (one LMDB environment).

    `durability="sync"` (default) fsyncs every group commit before any result returns;
    `"no_sync_bulk_load"` skips fsync and is only for initial loads that can be redone.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock = system_clock,
                 durability: str = "sync", map_size_bytes: int | None = None) -> None:
        kwargs: dict[str, Any] = {"durability": durability}
        if map_size_bytes is not None:
            kwargs["map_size_bytes"] = map_size_bytes
        self.engine = _core.Engine(os.fspath(path), **kwargs)
        self.path = os.fspath(path)
        self.clock = clock

    # ----- lifecycle -----

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- commands -----

    def _at(self, at: int | None) -> int:
        return self.clock() if at is None else to_ms(at)

    def execute(self, command: c.Command, *, at: int | None = None) -> _core.Receipt:
        """Apply one command durably; raise its typed error (nothing changes on error)."""
        return self.engine.execute(command.as_tuple(self._at(at)))

    def submit(self, commands: Sequence[c.Command], *, at: int | None = None) -> list[Result]:
        """Apply a batch; one Receipt or PointsError per command, in order. Each command is
        atomic on its own; the batch shares one durable commit."""
        now = self._at(at)
        return self.engine.submit([cmd.as_tuple(now) for cmd in commands])

    def submit_tuples(self, commands: list[tuple[Any, ...]]) -> list[Result]:
        """The fastest path: command tuples `(op, id, at_ms, ...)` as `Command.as_tuple` builds."""
        return self.engine.submit(commands)

    def define_programme(self, programme: str, name: str = "", *, id: str | None = None) -> _core.Receipt:
        return self.execute(c.DefineProgramme(id or f"programme.{programme}", programme, name))

    def define_point_type(self, programme: str, spec: PointTypeSpec, *, id: str | None = None) -> _core.Receipt:
        return self.execute(c.DefinePointType(id or f"point-type.{programme}.{spec.id}", programme, spec))

    def open_member(self, member: str, programme: str, *, id: str | None = None, phone: str = "",
                    id_number: str | None = None, org: Iterable[str] = (), tier: str = "ordinary",
                    kind: str = "individual", at: int | None = None) -> _core.Receipt:
        cmd = c.OpenMember(id or f"member.{member}", member, programme, phone, id_number,
                           tuple(org), tier, kind)
        return self.execute(cmd, at=at)

    def credit(self, id: str, member: str, point_type: str, amount: int, *,
               effective_at: int | None = None, memo: str = "", at: int | None = None) -> _core.Receipt:
        eff = None if effective_at is None else to_ms(effective_at)
        return self.execute(c.Credit(id, member, point_type, amount, eff, memo), at=at)

    def redeem(self, id: str, member: str, amount: int, *, point_type: str | None = None,
               channel: str = "", merchant: str = "", order_ref: str = "", org: str = "",
               at: int | None = None) -> _core.Receipt:
        return self.execute(c.Redeem(id, member, amount, point_type, channel, merchant, order_ref, org), at=at)

    def hold(self, id: str, member: str, amount: int, *, ttl_ms: int, point_type: str | None = None,
             channel: str = "", merchant: str = "", order_ref: str = "", org: str = "",
             at: int | None = None) -> _core.Receipt:
        cmd = c.Hold(id, member, amount, ttl_ms, point_type, channel, merchant, order_ref, org)
        return self.execute(cmd, at=at)

    def capture(self, id: str, hold: str, amount: int | None = None, *, at: int | None = None) -> _core.Receipt:
        return self.execute(c.Capture(id, hold, amount), at=at)

    def void(self, id: str, hold: str, *, at: int | None = None) -> _core.Receipt:
        return self.execute(c.Void(id, hold), at=at)

    def transfer(self, id: str, from_member: str, to_member: str, point_type: str, amount: int, *,
                 at: int | None = None) -> _core.Receipt:
        return self.execute(c.Transfer(id, from_member, to_member, point_type, amount), at=at)

    def convert(self, id: str, member: str, from_type: str, to_type: str, amount: int, *,
                at: int | None = None) -> _core.Receipt:
        return self.execute(c.Convert(id, member, from_type, to_type, amount), at=at)

    def reverse(self, id: str, target: str, *, amount: int | None = None,
                ratio: tuple[int, int] | None = None, reason: str = "", at: int | None = None) -> _core.Receipt:
        return self.execute(c.Reverse(id, target, amount, ratio, reason), at=at)

    def freeze(self, id: str, member: str, reason: str = "", *, at: int | None = None) -> _core.Receipt:
        return self.execute(c.Freeze(id, member, reason), at=at)

    def unfreeze(self, id: str, member: str, reason: str = "", *, at: int | None = None) -> _core.Receipt:
        return self.execute(c.Unfreeze(id, member, reason), at=at)

    def bind_card(self, id: str, member: str, card: str, *, at: int | None = None) -> _core.Receipt:
        """Bind a card number to a member (MA-2, MA-10). A card identifies one member: binding a
        bound card raises CardAlreadyBound; a member holds at most CARDS_PER_MEMBER_MAX cards."""
        return self.execute(c.BindCard(id, member, card), at=at)

    def unbind_card(self, id: str, member: str, card: str, reason: str = "", *,
                    at: int | None = None) -> _core.Receipt:
        """Unbind a card from its member; UnknownCard when the member does not hold it."""
        return self.execute(c.UnbindCard(id, member, card, reason), at=at)

    def expire(self, id: str, as_of: int, *, at: int | None = None) -> list[_core.Receipt]:
        """Void holds past their TTL and move expired lots to breakage (EX-2). Runs as many
        bounded commands as needed, with ids `id`, `id.1`, `id.2`…, so a rerun is idempotent."""
        receipts = []
        after: str | None = None
        n = 0
        while True:
            r = self.execute(c.Expire(id if n == 0 else f"{id}.{n}", to_ms(as_of), after), at=at)
            receipts.append(r)
            if r.cursor is None:
                return receipts
            after, n = r.cursor, n + 1

    # ----- earning rules (issue #3) -----

    def define_rule(self, rule: r.Rule, *, id: str | None = None, at: int | None = None) -> int:
        """Store a new rule (version 1); InvalidRule names the bad field. Returns the version."""
        return self.execute(r.DefineRule(id or f"rule.{rule.programme}.{rule.id}.1", rule), at=at).amount

    def update_rule(self, rule: r.Rule, *, id: str, at: int | None = None) -> int:
        """A new version of an existing rule, effective at once (ER-32). Returns the version."""
        return self.execute(r.DefineRule(id, rule, update=True), at=at).amount

    def disable_rule(self, programme: str, rule: str, *, id: str, at: int | None = None) -> int:
        return self.execute(r.PlainCommand(id, "disable_rule", (programme, rule)), at=at).amount

    def rules(self, programme: str) -> list[r.Rule]:
        """The latest version of every rule of the programme (disabled ones included)."""
        return [r.Rule.from_wire(_unpack(b)) for b in self.engine.rules(programme)]

    def rule_versions(self, programme: str, rule: str) -> list[r.Rule]:
        return [r.Rule.from_wire(_unpack(b)) for b in self.engine.rules(programme, rule)]

    def define_campaign(self, campaign: r.Campaign, *, id: str | None = None, at: int | None = None) -> _core.Receipt:
        """A campaign; its budget moves from issuance into a bounded budget account."""
        cmd = r.RecordCommand(id or f"campaign.{campaign.programme}.{campaign.id}", "define_campaign", campaign.pack())
        return self.execute(cmd, at=at)

    def campaign_status(self, programme: str, campaign: str) -> r.CampaignStatus:
        b, granted, left = self.engine.campaign_status(programme, campaign)
        k = _unpack(b)
        budget = k["budget"]["points"] if k["budget"] else None
        return r.CampaignStatus(programme, campaign, k["start"], k["end"], budget, granted, left)

    def define_tiers(self, tiers: r.Tiers, *, id: str, at: int | None = None) -> int:
        """Tier levels (a new version each time). Returns the version."""
        return self.execute(r.RecordCommand(id, "define_tiers", tiers.pack()), at=at).amount

    def tiers(self, programme: str) -> r.Tiers | None:
        """The programme's current tier levels (with their version), None when it has none.
        UnknownProgramme for a programme that does not exist."""
        b = self.engine.tiers(programme)
        return None if b is None else r.Tiers.from_wire(_unpack(b))

    def set_earn_policy(self, programme: str, *, tz_offset_min: int = 480, caps: Sequence[r.Cap] = (),
                        id: str, at: int | None = None) -> _core.Receipt:
        """Programme time zone for calendar days and per-member caps over all rules (ER-30)."""
        rec = {"programme": programme, "tz_offset_min": tz_offset_min,
               "caps": [cap.wire(f"policy.caps[{i}]") for i, cap in enumerate(caps)]}
        return self.execute(r.RecordCommand(id, "set_earn_policy", msgpack.packb(rec)), at=at)

    def set_member_groups(self, member: str, groups: Sequence[str], *, id: str, at: int | None = None) -> _core.Receipt:
        return self.execute(r.PlainCommand(id, "set_member_groups", (member, list(groups))), at=at)

    def set_tier(self, member: str, tier: str | None, *, id: str, reason: str = "",
                 at: int | None = None) -> _core.Receipt:
        """Operator override (TL-4); None returns the member to automatic tiering."""
        return self.execute(r.PlainCommand(id, "set_tier", (member, tier, reason)), at=at)

    def evaluate_tiers(self, id: str, programme: str, *, at: int | None = None) -> int:
        """Automatic upgrade and downgrade of every member (bounded commands `id`, `id.1`, …).
        Returns how many members changed tier."""
        changed, after, n = 0, None, 0
        while True:
            rc = self.execute(r.PlainCommand(id if n == 0 else f"{id}.{n}", "evaluate_tiers", (programme, after)), at=at)
            changed += rc.amount
            if rc.cursor is None:
                return changed
            after, n = rc.cursor, n + 1

    def earn(self, event: r.Event, *, at: int | None = None) -> r.EarnResult:
        """Evaluate the programme's rules for an event and post one lot per rule that fired, in
        one atomic command idempotent by `event.id`."""
        receipt = self.execute(r.Earn.of(event), at=at)
        entry = _unpack(self.engine.entries_of(event.id)[0])
        return r.earn_result(receipt, entry)

    def dry_run(self, event: r.Event, *, at: int | None = None) -> r.DryRun:
        """Evaluate without posting: which rules fired, which did not and why, what caps cut."""
        return r.DryRun.from_record(_unpack(self.engine.dry_run(r.Earn.of(event).as_tuple(self._at(at)))))

    def rule_state(self, member: str) -> dict[str, Any]:
        """A member's rule state (cap counters, check-in streak, referral, tier qualification)."""
        return _unpack(self.engine.rule_state(member))

    # ----- queries (snapshot reads; never wait for the writer) -----

    @staticmethod
    def _page_size(page_size: int) -> int:
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 0:
            raise InvalidArgument(f"page_size must be an int >= 0 (0 = default), got {page_size!r}")
        return page_size

    def balances(self, member: str, *, point_type: str | None = None, at: int | None = None) -> list[Balance]:
        rows = self.engine.balances(member, point_type, self._at(at))
        return [Balance(*r) for r in rows]

    def balance(self, member: str, point_type: str, *, at: int | None = None) -> Balance:
        return self.balances(member, point_type=point_type, at=at)[0]

    def lots(self, member: str, *, point_type: str | None = None, page_size: int = 0,
             page_token: str = "") -> Page[Lot]:
        rows, token = self.engine.lots(member, point_type, self._page_size(page_size), page_token)
        return Page([Lot(*r) for r in rows], token)

    def history(self, member: str, *, point_type: str | None = None, page_size: int = 0,
                page_token: str = "") -> Page[Entry]:
        rows, token = self.engine.history(member, point_type, self._page_size(page_size), page_token)
        return Page([Entry.from_record(_unpack(b)) for b in rows], token)

    def entries_of(self, id: str) -> list[Entry]:
        return [Entry.from_record(_unpack(b)) for b in self.engine.entries_of(id)]

    def journal(self, from_seq: int = 1, page_size: int = 0) -> list[Entry]:
        return [Entry.from_record(_unpack(b)) for b in self.engine.journal(from_seq, self._page_size(page_size))]

    def member(self, id: str) -> Member:
        return self._member(_unpack(self.engine.member(id)))

    @staticmethod
    def _member(r: dict[str, Any]) -> Member:
        return Member(r["id"], r["programme"], r["phone"], r["id_hash"], tuple(r["org"]), r["tier"],
                      r["kind"], r["status"], r["created_at"], tuple(r.get("cards", ())))

    def find_members(self, *, phone: str | None = None, id_number: str | None = None,
                     card: str | None = None) -> list[Member]:
        """Members bound to a phone number, a national ID number or a card (MA-2, MA-14), by
        member id; a card finds at most one. The ID number is hashed first, like at sign-up (RK-9)."""
        given = [(k, v) for k, v in (("phone", phone), ("id_number", id_number), ("card", card)) if v is not None]
        if len(given) != 1:
            raise InvalidArgument("give exactly one of phone, id_number or card")
        kind, value = given[0]
        if kind == "id_number":
            kind, value = "id_hash", _core.hash_id_number(value)
        return [self._member(_unpack(b)) for b in self.engine.find_members(kind, value)]

    def hold_state(self, id: str) -> Hold:
        r = _unpack(self.engine.hold(id))
        return Hold(r["id"], r["member"], r["amount"], r["captured"], r["state"], r["expires_at"])

    def point_types(self, programme: str) -> list[PointTypeSpec]:
        from pypoints.models import CashRate, Validity

        p = _unpack(self.engine.programme(programme))
        out = []
        for t in p["types"]:
            v = t["validity"]
            validity = Validity(v["kind"], v.get("count", 0), v.get("unit", "years"),
                                v.get("month", 12), v.get("day", 31))
            cash = CashRate(**t["cash"])
            conv = tuple((x["to"], x["num"], x["den"]) for x in t["convert_to"])
            out.append(PointTypeSpec(t["id"], t["priority"], validity, t["transferable"], cash, conv))
        return out

    def checkpoint(self) -> None:
        """Write every account state the state log holds back into the B-trees, in one commit
        after every batch submitted before it. Call it at the end of a bulk load: otherwise the
        rolling merge pays the load's log back during the first batches that follow."""
        self.engine.checkpoint()

    def writer_stats(self) -> dict[str, int]:
        """The writer's counters since the engine opened: `groups` (commits), `commands`,
        `apply_ns` / `flush_ns` / `commit_ns` (time applying, logging accounts, committing with
        fsync), `checkpoints`, `room_ns` (time keeping zeroed room at the end of the data
        file while idle, so commits need not grow it), `merged_keys` and `merge_cycles` (the
        state log's write-back into the B-trees), and two gauges as the last commit left them:
        `log_records` and `log_states` (the state log's size)."""
        return self.engine.stats()

    def audit(self) -> AuditReport:
        entries, accounts, problems = self.engine.audit()
        return AuditReport(entries, accounts, problems)

    def preallocate(self, size_bytes: int) -> int:
        """Zero-fill the data file `size_bytes` past its used part, ahead of time (as
        TigerBeetle formats its data file): commits then overwrite blocks that exist instead of
        growing the file, which makes a growing commit several times slower on ext4 (bench/README,
        session 24). The writer waits for one 64 MiB chunk at a time, not for all of it. Returns
        the bytes written (0 when the file is that long already)."""
        if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 0:
            raise InvalidArgument(f"size_bytes must be an int >= 0, got {size_bytes!r}")
        return self.engine.preallocate(size_bytes)

    def backup(self, dest_dir: str | os.PathLike[str]) -> None:
        self.engine.backup(os.fspath(dest_dir))
