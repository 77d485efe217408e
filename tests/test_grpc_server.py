"""The gRPC server (issue #4) through generated stubs against a real server on 127.0.0.1:0:
every method, every error reason with its status code, pagination, idempotent replay,
streaming batches, health, limits and deadlines."""

from __future__ import annotations

import grpc
import msgpack
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpc_support import ORG_A, Client, Server, admin, expect_error, seed, server  # noqa: F401
from pypoints.server import limits
from pypoints.v1 import batch_pb2 as B
from pypoints.v1 import common_pb2 as C
from pypoints.v1 import ledger_pb2 as L
from pypoints.v1 import members_pb2 as M
from pypoints.v1 import programmes_pb2 as P

S = grpc.StatusCode
DAY = 86_400_000


def credit(c: Client, rid: str, member: str = "m1", amount: int = 1_000, point_type: str = "general") -> L.CommandResponse:
    return c.call(c.ledger, "Credit", L.CreditRequest(request_id=rid, member_id=member, point_type=point_type, amount=amount))


def balances(c: Client, member: str) -> dict[str, tuple[int, int, int, int]]:
    r = c.call(c.ledger, "GetBalances", L.GetBalancesRequest(member_id=member))
    return {b.point_type: (b.total, b.available, b.pending, b.held) for b in r.balances}


def test_health_and_every_service_serving(server: Server) -> None:
    h = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
    for name in ["", "pypoints.v1.LedgerService", "pypoints.v1.MemberService", "pypoints.v1.BatchService",
                 "pypoints.v1.ProgrammeService"]:
        assert h.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING


def test_programme_and_member_methods(admin: Client) -> None:
    """ProgrammeService and MemberService: define, list, create, get, freeze, unfreeze (MA-*, RK-4)."""
    seed(admin)
    types = admin.call(admin.programmes, "ListPointTypes", P.ListPointTypesRequest(programme="p")).point_types
    assert [t.point_type for t in types] == ["general", "bonus", "staff"]
    assert types[0].convert_to[0].to == "bonus" and not types[2].transferable
    m = admin.call(admin.members, "GetMember", M.GetMemberRequest(member_id="m1"))
    assert (m.member_id, m.programme, list(m.org), m.status, m.tier) == ("m1", "p", ORG_A, "active", "ordinary")
    created = admin.call(admin.members, "CreateMember", M.CreateMemberRequest(
        request_id="open.m9", member_id="m9", programme="p", id_number="370102199001010001", kind="staff"))
    assert created.member.kind == "staff" and len(created.member.id_hash) == 64  # hashed, never clear (RK-9)
    assert "370102" not in str(created)
    f = admin.call(admin.members, "FreezeMember", M.FreezeMemberRequest(request_id="fz.1", member_id="m1", reason="abuse"))
    assert f.receipt.kind == "freeze"
    assert admin.call(admin.members, "GetMember", M.GetMemberRequest(member_id="m1")).status == "frozen"
    admin.call(admin.members, "UnfreezeMember", M.FreezeMemberRequest(request_id="ufz.1", member_id="m1"))
    assert admin.call(admin.members, "GetMember", M.GetMemberRequest(member_id="m1")).status == "active"


def test_find_members_by_phone_and_id_number(admin: Client, server: Server) -> None:
    """MA-2, MA-14: look members up by bound phone (shared by a household) or ID number (hashed
    first); cards in test_card_methods."""
    seed(admin)
    admin.call(admin.members, "CreateMember", M.CreateMemberRequest(
        request_id="open.m7", member_id="m7", programme="p", phone="13900000007", id_number="370102199001010007"))
    found = admin.call(admin.members, "FindMembers", M.FindMembersRequest(phone="13800000000")).members
    assert [m.member_id for m in found] == ["m1", "m2", "m3"]
    by_id = admin.call(admin.members, "FindMembers", M.FindMembersRequest(id_number=" 370102199001010007 ")).members
    assert [m.member_id for m in by_id] == ["m7"]
    assert admin.call(admin.members, "FindMembers", M.FindMembersRequest(phone="000")).members == []
    op = server.client("operator", "Shandong/Qingdao")
    assert [m.member_id for m in op.call(op.members, "FindMembers", M.FindMembersRequest(phone="13800000000")).members] == ["m1", "m2"]
    expect_error(admin.call, admin.members, "FindMembers", M.FindMembersRequest(),
                 code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="key")


def test_card_methods(admin: Client, server: Server) -> None:
    """MA-2 (find by card at the till), MA-10 (a bank card number as identifier), MA-14 (several
    cards): BindCard, UnbindCard, FindMembers by card, idempotent replay, every refusal."""
    seed(admin)
    bank_card, store_card = "6222020200112233445", "88001234"
    b = admin.call(admin.members, "BindCard", M.BindCardRequest(request_id="card.1", member_id="m1", card=bank_card))
    assert b.receipt.kind == "bind_card" and list(b.member.cards) == [bank_card]
    admin.call(admin.members, "BindCard", M.BindCardRequest(request_id="card.2", member_id="m1", card=store_card))
    again = admin.call(admin.members, "BindCard", M.BindCardRequest(request_id="card.1", member_id="m1", card=bank_card))
    assert again.receipt.replayed and again.receipt.seq == b.receipt.seq
    found = admin.call(admin.members, "FindMembers", M.FindMembersRequest(card=bank_card)).members
    assert [(m.member_id, list(m.cards)) for m in found] == [("m1", [bank_card, store_card])]
    assert admin.call(admin.members, "GetMember", M.GetMemberRequest(member_id="m1")).cards == [bank_card, store_card]
    assert admin.call(admin.members, "FindMembers", M.FindMembersRequest(card="99990000")).members == []
    # one member per card; unbinding needs the card's own member
    expect_error(admin.call, admin.members, "BindCard", M.BindCardRequest(request_id="card.3", member_id="m2", card=bank_card),
                 code=S.ALREADY_EXISTS, reason="CARD_ALREADY_BOUND")
    expect_error(admin.call, admin.members, "UnbindCard", M.UnbindCardRequest(request_id="card.4", member_id="m2", card=bank_card),
                 code=S.NOT_FOUND, reason="UNKNOWN_CARD")
    expect_error(admin.call, admin.members, "BindCard", M.BindCardRequest(request_id="card.1", member_id="m2", card=store_card),
                 code=S.ALREADY_EXISTS, reason="IDEMPOTENCY_CONFLICT")
    expect_error(admin.call, admin.members, "BindCard", M.BindCardRequest(request_id="card.5", member_id="nobody", card="88001299"),
                 code=S.NOT_FOUND, reason="UNKNOWN_MEMBER")
    for bad, reason in [("8800123a", "INVALID_ARGUMENT"), ("1234567", "INVALID_ARGUMENT"), ("1" * 20, "LIMIT_EXCEEDED")]:
        expect_error(admin.call, admin.members, "BindCard", M.BindCardRequest(request_id="card.6", member_id="m2", card=bad),
                     code=S.INVALID_ARGUMENT, reason=reason, field="card")
        expect_error(admin.call, admin.members, "FindMembers", M.FindMembersRequest(card=bad),
                     code=S.INVALID_ARGUMENT, reason=reason, field="card")
    for req, field in [(M.BindCardRequest(member_id="m2", card="88001299"), "request_id"),
                       (M.BindCardRequest(request_id="card.7", card="88001299"), "member_id"),
                       (M.BindCardRequest(request_id="card.7", member_id="m2"), "card")]:
        expect_error(admin.call, admin.members, "BindCard", req, code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field=field)
    # lost card: unbind; the number no longer finds anyone and may be bound again
    u = admin.call(admin.members, "UnbindCard", M.UnbindCardRequest(request_id="card.8", member_id="m1", card=store_card,
                                                                    reason="lost"))
    assert u.receipt.kind == "unbind_card" and list(u.member.cards) == [bank_card]
    assert admin.call(admin.members, "FindMembers", M.FindMembersRequest(card=store_card)).members == []
    admin.call(admin.members, "BindCard", M.BindCardRequest(request_id="card.9", member_id="m2", card=store_card))
    assert [m.member_id for m in admin.call(admin.members, "FindMembers", M.FindMembersRequest(card=store_card)).members] == ["m2"]
    assert server.app.ledger.audit().ok


def test_ledger_methods(admin: Client, server: Server) -> None:
    """Credit, redeem, hold, capture, void, transfer, convert, reverse, balances, hold state (RD-*, XF-*, RK-10)."""
    seed(admin)
    c1 = credit(admin, "c1", amount=1_000)
    assert (c1.receipt.kind, c1.receipt.amount, c1.receipt.replayed) == ("credit", 1_000, False)
    assert c1.receipt.lots_made[0].point_type == "general"
    r = admin.call(admin.ledger, "Redeem", L.RedeemRequest(request_id="r1", member_id="m1", amount=100,
                                                           order=C.Order(channel="mall", merchant="shop", order_ref="o1")))
    assert r.receipt.kind == "redeem" and r.receipt.lots_used[0].amount == 100
    h = admin.call(admin.ledger, "Hold", L.HoldRequest(request_id="h1", member_id="m1", amount=200, ttl_ms=60_000))
    assert h.receipt.kind == "hold"
    assert balances(admin, "m1")["general"] == (700, 700, 0, 200)  # total excludes held
    hs = admin.call(admin.ledger, "GetHold", L.GetHoldRequest(hold_id="h1"))
    assert (hs.member_id, hs.amount, hs.state, hs.expires_at) == ("m1", 200, "open", server.clock.now + 60_000)
    cap = admin.call(admin.ledger, "Capture", L.CaptureRequest(request_id="cap1", hold_id="h1", amount=150))
    assert cap.receipt.kind == "capture" and cap.receipt.amount == 150
    admin.call(admin.ledger, "Hold", L.HoldRequest(request_id="h2", member_id="m1", amount=50, ttl_ms=60_000))
    v = admin.call(admin.ledger, "Void", L.VoidRequest(request_id="v2", hold_id="h2"))
    assert v.receipt.kind == "void"
    t = admin.call(admin.ledger, "Transfer", L.TransferRequest(request_id="t1", from_member_id="m1", to_member_id="m2",
                                                               point_type="general", amount=100))
    assert t.receipt.kind == "transfer"
    cv = admin.call(admin.ledger, "Convert", L.ConvertRequest(request_id="cv1", member_id="m1", from_type="general",
                                                              to_type="bonus", amount=100))
    assert cv.receipt.kind == "convert" and cv.receipt.credited == 50
    rv = admin.call(admin.ledger, "Reverse", L.ReverseRequest(request_id="r1.refund", target_id="r1", amount=40, reason="return"))
    assert rv.receipt.kind == "reverse" and rv.receipt.amount == 40
    rv2 = admin.call(admin.ledger, "Reverse", L.ReverseRequest(request_id="c1.claw", target_id="c1",
                                                               ratio=L.Ratio(num=1, den=10), reason="refund 10%"))
    assert rv2.receipt.amount == 100
    b = balances(admin, "m1")
    assert b["general"] == (1_000 - 100 - 150 - 100 - 100 + 40 - 100, ) * 2 + (0, 0)
    assert b["bonus"] == (50, 50, 0, 0)
    assert balances(admin, "m2")["general"] == (100, 100, 0, 0)
    only = admin.call(admin.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1", point_type="bonus"))
    assert [x.point_type for x in only.balances] == ["bonus"]
    assert server.app.ledger.audit().ok


def test_effective_at_makes_points_pending(admin: Client, server: Server) -> None:
    seed(admin)
    admin.call(admin.ledger, "Credit", L.CreditRequest(request_id="c.future", member_id="m1", point_type="general",
                                                       amount=10, effective_at=server.clock.now + DAY, memo="card"))
    assert balances(admin, "m1")["general"] == (10, 0, 10, 0)


def test_idempotent_replay_returns_the_original_response(admin: Client) -> None:
    """Every mutating request carries a request id; a replay returns the original response and
    changes nothing; the same id with other content is IDEMPOTENCY_CONFLICT."""
    seed(admin)
    first = credit(admin, "c1", amount=500)
    again = credit(admin, "c1", amount=500)
    assert again.receipt.replayed and not first.receipt.replayed
    again.receipt.replayed = False
    assert again == first
    r1 = admin.call(admin.ledger, "Redeem", L.RedeemRequest(request_id="r1", member_id="m1", amount=100))
    r2 = admin.call(admin.ledger, "Redeem", L.RedeemRequest(request_id="r1", member_id="m1", amount=100))
    assert r2.receipt.replayed and r2.receipt.seq == r1.receipt.seq and r2.receipt.lots_used == r1.receipt.lots_used
    m1 = admin.call(admin.members, "CreateMember", M.CreateMemberRequest(request_id="open.m1", member_id="m1", programme="p",
                                                                         phone="13800000000", org=ORG_A))
    assert m1.receipt.replayed
    assert balances(admin, "m1")["general"] == (400, 400, 0, 0)
    expect_error(credit, admin, "c1", amount=501, code=S.ALREADY_EXISTS, reason="IDEMPOTENCY_CONFLICT")


def test_every_error_reason_maps_to_its_status(admin: Client, server: Server) -> None:
    """Each reason of the exception hierarchy reaches the client as a status code with ErrorInfo."""
    seed(admin)
    credit(admin, "c1", amount=100)
    credit(admin, "s1", amount=100, point_type="staff")
    L_ = admin.ledger
    call = admin.call
    # INVALID_ARGUMENT names the field
    expect_error(call, L_, "Redeem", L.RedeemRequest(request_id="x1", member_id="m1", amount=-1),
                 code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="amount")
    expect_error(call, L_, "Redeem", L.RedeemRequest(request_id="", member_id="m1", amount=1),
                 code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="request_id")
    expect_error(call, L_, "Redeem", L.RedeemRequest(request_id="bad id!", member_id="m1", amount=1),
                 code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="request_id")
    expect_error(call, L_, "Hold", L.HoldRequest(request_id="x2", member_id="m1", amount=1, ttl_ms=5),
                 code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="ttl_ms")
    expect_error(call, L_, "ListLots", L.ListLotsRequest(member_id="m1", page_size=-1),
                 code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="page_size")
    expect_error(call, L_, "ListLots", L.ListLotsRequest(member_id="m1", page_token="garbage"),
                 code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="page_token")
    expect_error(call, L_, "Transfer", L.TransferRequest(request_id="x3", from_member_id="m1", to_member_id="m1",
                                                         point_type="general", amount=1),
                 code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="to_member_id")
    # LIMIT_EXCEEDED
    expect_error(call, L_, "ListHistory", L.ListHistoryRequest(member_id="m1", page_size=limits.PAGE_SIZE_MAX + 1),
                 code=S.INVALID_ARGUMENT, reason="LIMIT_EXCEEDED", field="page_size")
    expect_error(credit, admin, "x4", amount=10**13, code=S.INVALID_ARGUMENT, reason="LIMIT_EXCEEDED", field="amount")
    expect_error(credit, admin, "x" * 65, code=S.INVALID_ARGUMENT, reason="LIMIT_EXCEEDED", field="request_id")
    # NOT_FOUND
    expect_error(credit, admin, "x5", member="nobody", code=S.NOT_FOUND, reason="UNKNOWN_MEMBER")
    expect_error(call, admin.members, "GetMember", M.GetMemberRequest(member_id="nobody"), code=S.NOT_FOUND, reason="UNKNOWN_MEMBER")
    expect_error(call, admin.members, "CreateMember", M.CreateMemberRequest(request_id="o.x", member_id="mx", programme="nope"),
                 code=S.NOT_FOUND, reason="UNKNOWN_PROGRAMME")
    expect_error(credit, admin, "x6", point_type="nope", code=S.NOT_FOUND, reason="UNKNOWN_POINT_TYPE")
    expect_error(call, L_, "Capture", L.CaptureRequest(request_id="x7", hold_id="nohold"), code=S.NOT_FOUND, reason="UNKNOWN_HOLD")
    expect_error(call, L_, "Reverse", L.ReverseRequest(request_id="x8", target_id="nothing"), code=S.NOT_FOUND, reason="UNKNOWN_ENTRY")
    # ALREADY_EXISTS
    expect_error(call, admin.members, "CreateMember", M.CreateMemberRequest(request_id="open.again", member_id="m1", programme="p"),
                 code=S.ALREADY_EXISTS, reason="ALREADY_EXISTS")
    # FAILED_PRECONDITION
    expect_error(call, L_, "Redeem", L.RedeemRequest(request_id="x9", member_id="m1", amount=10_000),
                 code=S.FAILED_PRECONDITION, reason="INSUFFICIENT_POINTS")
    expect_error(call, L_, "Transfer", L.TransferRequest(request_id="x10", from_member_id="m1", to_member_id="m2",
                                                         point_type="staff", amount=1),
                 code=S.FAILED_PRECONDITION, reason="NOT_TRANSFERABLE")
    expect_error(call, L_, "Reverse", L.ReverseRequest(request_id="x11", target_id="open.m1"),
                 code=S.FAILED_PRECONDITION, reason="NOT_REVERSIBLE")
    call(L_, "Hold", L.HoldRequest(request_id="h1", member_id="m1", amount=10, ttl_ms=60_000))
    call(L_, "Void", L.VoidRequest(request_id="v1", hold_id="h1"))
    expect_error(call, L_, "Capture", L.CaptureRequest(request_id="x12", hold_id="h1"),
                 code=S.FAILED_PRECONDITION, reason="HOLD_NOT_OPEN")
    call(L_, "Hold", L.HoldRequest(request_id="h2", member_id="m1", amount=10, ttl_ms=60_000))
    server.clock.advance(60_001)
    expect_error(call, L_, "Capture", L.CaptureRequest(request_id="x13", hold_id="h2"),
                 code=S.FAILED_PRECONDITION, reason="HOLD_EXPIRED")
    call(admin.members, "FreezeMember", M.FreezeMemberRequest(request_id="fz", member_id="m1"))
    expect_error(call, L_, "Redeem", L.RedeemRequest(request_id="x14", member_id="m1", amount=1),
                 code=S.FAILED_PRECONDITION, reason="MEMBER_FROZEN")
    # auth
    expect_error(admin.ledger.GetBalances, L.GetBalancesRequest(member_id="m1"), code=S.UNAUTHENTICATED, reason="UNAUTHENTICATED")
    expect_error(admin.ledger.GetBalances, L.GetBalancesRequest(member_id="m1"), metadata=[("authorization", "Bearer nope")],
                 code=S.UNAUTHENTICATED, reason="UNAUTHENTICATED")
    aud = server.client("auditor")
    expect_error(credit, aud, "x15", code=S.PERMISSION_DENIED, reason="PERMISSION_DENIED")
    # nothing refused above changed m1's points (h2's 10 stay held until the expire sweep)
    assert balances(admin, "m1")["general"] == (90, 90, 0, 10)
    assert server.app.ledger.audit().ok


class _Ctx:
    """A servicer context whose deadline has passed."""

    def __init__(self) -> None:
        self.status: grpc.Status | None = None

    def time_remaining(self) -> float:
        return 0.0

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return []

    def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise grpc.RpcError()


def test_expired_deadline_is_refused_before_the_ledger(admin: Client, server: Server) -> None:
    """Deadlines are honoured: a call with no time left gets DEADLINE_EXCEEDED and applies nothing."""
    from pypoints.server.ledger import LedgerServicer

    seed(admin)
    ctx = _Ctx()
    with pytest.raises(grpc.RpcError):
        LedgerServicer(server.app).Credit(L.CreditRequest(request_id="late", member_id="m1", point_type="general",
                                                          amount=5), ctx)
    assert ctx.status is not None and ctx.status.code == S.DEADLINE_EXCEEDED
    assert "DEADLINE_EXCEEDED" in str(ctx.status.trailing_metadata)
    assert balances(admin, "m1") == {"general": (0, 0, 0, 0), "bonus": (0, 0, 0, 0), "staff": (0, 0, 0, 0)}
    # and through the wire: a generous deadline works
    assert credit(admin, "in-time").receipt.amount == 1_000


def test_pagination_covers_every_item_exactly_once(admin: Client) -> None:
    """ListLots and ListHistory with page_size/page_token: every item once, tokens end empty."""
    seed(admin)
    cmds = [("credit", f"c{i}", 1_700_000_000_000, "m1", "general", i + 1, None, "") for i in range(137)]
    out = list(admin.batch.SubmitBatches(iter([B.CommandBatch(batch_id="b", commands=msgpack.packb(cmds))]),
                                         metadata=admin.md, timeout=30))
    assert out[0].applied == 137
    for size in (1, 7, 50, 1000):
        seen, token = [], ""
        while True:
            page = admin.call(admin.ledger, "ListLots", L.ListLotsRequest(member_id="m1", page_size=size, page_token=token))
            assert len(page.lots) <= size
            seen += [lot.lot_id for lot in page.lots]
            token = page.next_page_token
            if not token:
                break
        assert sorted(seen) == list(range(1, 138)) and len(seen) == len(set(seen))
    seen_seq, token = [], ""
    while True:
        page = admin.call(admin.ledger, "ListHistory", L.ListHistoryRequest(member_id="m1", page_size=9, page_token=token))
        seen_seq += [e.seq for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert len(seen_seq) == 137 == len(set(seen_seq))  # the 137 credits (open_member posts nothing)
    assert seen_seq == sorted(seen_seq, reverse=True)
    default = admin.call(admin.ledger, "ListHistory", L.ListHistoryRequest(member_id="m1"))
    assert len(default.entries) == limits.PAGE_SIZE_DEFAULT and default.next_page_token
    e = default.entries[0]
    assert e.kind == "credit" and e.postings and len(e.hash) == 32 and len(e.prev_hash) == 32


def test_streaming_batches_one_result_per_batch(admin: Client, server: Server) -> None:
    """SubmitBatches: a stream of batches, one result per batch in order, per-command outcomes,
    replays counted, and each batch is one call into the core (group commit)."""
    seed(admin)
    now = server.clock.now

    def batches():  # type: ignore[no-untyped-def]
        yield B.CommandBatch(batch_id="b1", commands=msgpack.packb(
            [("credit", f"b1.{i}", now, "m1", "general", 10, None, "") for i in range(100)]))
        yield B.CommandBatch(batch_id="b2", commands=msgpack.packb(
            [("redeem", "b2.0", now, "m1", None, 5, "mall", "", "", ""),
             ("redeem", "b2.1", now, "m1", None, 10**6, "mall", "", "", ""),
             ("credit", "b1.0", now, "m1", "general", 10, None, ""),
             ("nonsense", "b2.3", now)]))
    stats0 = server.app.ledger.writer_stats()
    out = list(admin.batch.SubmitBatches(batches(), metadata=admin.md, timeout=30))
    assert [r.batch_id for r in out] == ["b1", "b2"]
    assert (out[0].applied, out[0].replayed, out[0].refused) == (100, 0, 0)
    assert (out[1].applied, out[1].replayed, out[1].refused) == (1, 1, 2)
    res = msgpack.unpackb(out[1].results)
    assert res[0][0] == 0 and res[0][3] == 5
    assert res[1][:2] == [1, "INSUFFICIENT_POINTS"]
    assert res[2][0] == 0 and res[2][2] is True
    assert res[3][:2] == [1, "INVALID_ARGUMENT"]
    stats1 = server.app.ledger.writer_stats()
    assert stats1["groups"] - stats0["groups"] <= 2  # one group commit per batch (at most)
    assert balances(admin, "m1")["general"] == (995, 995, 0, 0)


def test_streaming_batch_limits_and_garbage(admin: Client) -> None:
    seed(admin)
    expect_error(lambda: list(admin.batch.SubmitBatches(iter([B.CommandBatch(batch_id="g", commands=b"\xc1")]),
                                                        metadata=admin.md, timeout=10)),
                 code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="commands")
    too_many = msgpack.packb([("void", f"v{i}", 0, "h") for i in range(limits.BATCH_COMMANDS_MAX + 1)])
    expect_error(lambda: list(admin.batch.SubmitBatches(iter([B.CommandBatch(batch_id="big", commands=too_many)]),
                                                        metadata=admin.md, timeout=30)),
                 code=S.INVALID_ARGUMENT, reason="LIMIT_EXCEEDED", field="commands")


def test_message_size_limit_is_explicit(admin: Client) -> None:
    """A message over MESSAGE_BYTES_MAX is refused by grpc with RESOURCE_EXHAUSTED."""
    big = B.CommandBatch(batch_id="huge", commands=b"\x90" * (limits.MESSAGE_BYTES_MAX + 1))
    with pytest.raises(grpc.RpcError) as ei:
        list(admin.batch.SubmitBatches(iter([big]), metadata=admin.md, timeout=30))
    assert ei.value.code() == S.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
