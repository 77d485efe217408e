"""Bearer tokens and roles (RL-1..11): each role allowed and refused; a refused call gets
PERMISSION_DENIED and changes nothing (RL-10); tokens are stored hashed and revocable."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import msgpack
import pytest
from click.testing import CliRunner

from grpc_support import ORG_A, ORG_B, Client, Server, admin, expect_error, seed, server  # noqa: F401
from pypoints.cli import main
from pypoints.v1 import batch_pb2 as B
from pypoints.v1 import common_pb2 as C
from pypoints.v1 import ledger_pb2 as L
from pypoints.v1 import members_pb2 as M
from pypoints.v1 import programmes_pb2 as P

S = grpc.StatusCode


@pytest.fixture
def seeded(server: Server, admin: Client) -> Server:
    seed(admin)
    for m in ("m1", "m2", "m3"):
        admin.call(admin.ledger, "Credit", L.CreditRequest(request_id=f"seed.{m}", member_id=m, point_type="general", amount=1_000))
    admin.call(admin.ledger, "Hold", L.HoldRequest(request_id="hold.shop", member_id="m1", amount=10, ttl_ms=600_000,
                                                   order=C.Order(merchant="shop-1")))
    admin.call(admin.ledger, "Hold", L.HoldRequest(request_id="hold.other", member_id="m1", amount=10, ttl_ms=600_000,
                                                   order=C.Order(merchant="shop-2")))
    admin.call(admin.ledger, "Redeem", L.RedeemRequest(request_id="red.other", member_id="m1", amount=10,
                                                       order=C.Order(merchant="shop-2")))
    return server


def state(server: Server) -> tuple[int, Any]:
    """Journal length and all balances: a refused call must leave both unchanged."""
    led = server.app.ledger
    return len(led.journal(1, page_size=1_000)), [led.balances(m) for m in ("m1", "m2", "m3")]


def denied(server: Server, fn: Callable[..., Any], *args: Any) -> None:
    before = state(server)
    expect_error(fn, *args, code=S.PERMISSION_DENIED, reason="PERMISSION_DENIED")
    assert state(server) == before


def credit(to: str, rid: str) -> L.CreditRequest:
    return L.CreditRequest(request_id=rid, member_id=to, point_type="general", amount=5)


def test_auditor_reads_only(seeded: Server) -> None:
    a = seeded.client("auditor")
    assert a.call(a.ledger, "GetBalances", L.GetBalancesRequest(member_id="m3")).balances
    assert a.call(a.ledger, "ListHistory", L.ListHistoryRequest(member_id="m1")).entries
    assert a.call(a.members, "GetMember", M.GetMemberRequest(member_id="m1")).member_id == "m1"
    denied(seeded, a.call, a.ledger, "Credit", credit("m1", "a.1"))
    denied(seeded, a.call, a.members, "FreezeMember", M.FreezeMemberRequest(request_id="a.2", member_id="m1"))
    denied(seeded, a.call, a.programmes, "DefineProgramme", P.DefineProgrammeRequest(request_id="a.3", programme="q"))
    denied(seeded, a.call, a.members, "BindCard", M.BindCardRequest(request_id="a.4", member_id="m1", card="88001234"))
    assert a.call(a.members, "FindMembers", M.FindMembersRequest(card="88001234")).members == []


def test_upstream_earns_and_credits_only(seeded: Server) -> None:
    u = seeded.client("upstream")
    assert u.call(u.ledger, "Credit", credit("m3", "u.1")).receipt.amount == 5
    out = list(u.batch.SubmitBatches(iter([B.CommandBatch(batch_id="u", commands=msgpack.packb(
        [("credit", "u.b1", seeded.clock.now, "m2", "general", 7, None, "")]))]), metadata=u.md, timeout=10))
    assert out[0].applied == 1
    far_past = seeded.clock.now - 8 * 24 * 3_600_000
    expect_error(lambda: list(u.batch.SubmitBatches(iter([B.CommandBatch(batch_id="old", commands=msgpack.packb(
        [("credit", "u.old", far_past, "m2", "general", 7, None, "")]))]), metadata=u.md, timeout=10)),
        code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="commands")
    denied(seeded, u.call, u.ledger, "Redeem", L.RedeemRequest(request_id="u.2", member_id="m1", amount=1))
    denied(seeded, u.call, u.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1"))
    denied(seeded, u.call, u.members, "BindCard", M.BindCardRequest(request_id="u.3", member_id="m1", card="88001234"))
    denied(seeded, lambda: list(u.batch.SubmitBatches(iter([B.CommandBatch(batch_id="u2", commands=msgpack.packb(
        [("credit", "u.b2", seeded.clock.now, "m2", "general", 7, None, ""),
         ("redeem", "u.b3", seeded.clock.now, "m2", None, 7, "", "", "", "")]))]), metadata=u.md, timeout=10)))


def test_operator_by_organisation_subtree(seeded: Server) -> None:
    """An operator of Shandong/Qingdao serves m1, m2 (Qingdao) and not m3 (Nanjing) (MA-13, RL-3)."""
    o = seeded.client("operator", "Shandong/Qingdao")
    assert o.call(o.ledger, "Credit", credit("m1", "o.1")).receipt.amount == 5
    assert o.call(o.ledger, "Transfer", L.TransferRequest(request_id="o.2", from_member_id="m1", to_member_id="m2",
                                                          point_type="general", amount=1)).receipt.kind == "transfer"
    assert o.call(o.members, "CreateMember", M.CreateMemberRequest(request_id="o.3", member_id="m4", programme="p",
                                                                   org=ORG_A)).member.member_id == "m4"
    assert o.call(o.ledger, "Capture", L.CaptureRequest(request_id="o.cap", hold_id="hold.shop")).receipt.amount == 10
    assert o.call(o.programmes, "ListPointTypes", P.ListPointTypesRequest(programme="p")).point_types
    seeded.app.ledger.transfer("t.out", "m1", "m3", "general", 2)  # across the scope boundary
    denied(seeded, o.call, o.ledger, "Reverse", L.ReverseRequest(request_id="o.rev", target_id="t.out"))
    denied(seeded, o.call, o.ledger, "Credit", credit("m3", "o.4"))
    denied(seeded, o.call, o.ledger, "GetBalances", L.GetBalancesRequest(member_id="m3"))
    denied(seeded, o.call, o.ledger, "Transfer", L.TransferRequest(request_id="o.5", from_member_id="m1", to_member_id="m3",
                                                                   point_type="general", amount=1))
    denied(seeded, o.call, o.members, "CreateMember", M.CreateMemberRequest(request_id="o.6", member_id="m5", programme="p", org=ORG_B))
    denied(seeded, o.call, o.programmes, "DefineProgramme", P.DefineProgrammeRequest(request_id="o.7", programme="q"))
    # cards (MA-2): bound and unbound for members of the subtree only; a lookup shows only them
    assert o.call(o.members, "BindCard", M.BindCardRequest(request_id="o.8", member_id="m1", card="88001234")).member.cards
    seeded.app.ledger.bind_card("card.m3", "m3", "88003333")
    denied(seeded, o.call, o.members, "BindCard", M.BindCardRequest(request_id="o.9", member_id="m3", card="88001235"))
    denied(seeded, o.call, o.members, "UnbindCard", M.UnbindCardRequest(request_id="o.10", member_id="m3", card="88003333"))
    assert o.call(o.members, "FindMembers", M.FindMembersRequest(card="88003333")).members == []
    assert [m.member_id for m in o.call(o.members, "FindMembers", M.FindMembersRequest(card="88001234")).members] == ["m1"]
    assert o.call(o.members, "UnbindCard", M.UnbindCardRequest(request_id="o.11", member_id="m1", card="88001234")).receipt.seq
    assert seeded.app.ledger.member("m3").cards == ("88003333",)


def test_merchant_own_orders_only(seeded: Server) -> None:
    """A merchant redeems, holds, captures and refunds its own orders only (RL-5)."""
    mc = seeded.client("merchant", "shop-1")
    r = mc.call(mc.ledger, "Redeem", L.RedeemRequest(request_id="mc.1", member_id="m2", amount=3, order=C.Order(merchant="shop-1")))
    assert r.receipt.amount == 3
    assert mc.call(mc.ledger, "Reverse", L.ReverseRequest(request_id="mc.1.refund", target_id="mc.1")).receipt.amount == 3
    assert mc.call(mc.ledger, "Capture", L.CaptureRequest(request_id="mc.cap", hold_id="hold.shop", amount=4)).receipt.amount == 4
    assert mc.call(mc.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1")).balances
    denied(seeded, mc.call, mc.ledger, "Redeem", L.RedeemRequest(request_id="mc.2", member_id="m2", amount=3,
                                                                 order=C.Order(merchant="shop-2")))
    denied(seeded, mc.call, mc.ledger, "Capture", L.CaptureRequest(request_id="mc.3", hold_id="hold.other"))
    denied(seeded, mc.call, mc.ledger, "Void", L.VoidRequest(request_id="mc.4", hold_id="hold.other"))
    denied(seeded, mc.call, mc.ledger, "Reverse", L.ReverseRequest(request_id="mc.5", target_id="red.other"))
    denied(seeded, mc.call, mc.ledger, "Credit", credit("m1", "mc.6"))
    denied(seeded, mc.call, mc.members, "BindCard", M.BindCardRequest(request_id="mc.7", member_id="m1", card="88001234"))


def test_shopkeeper_proxy_redemption_for_outlet_members_only(seeded: Server) -> None:
    """RL-1: an outlet shopkeeper may only do proxy redemption, for the outlet's members."""
    sk = seeded.client("shopkeeper", "/".join(ORG_A))
    assert sk.call(sk.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1")).balances
    r = sk.call(sk.ledger, "Redeem", L.RedeemRequest(request_id="sk.1", member_id="m1", amount=5,
                                                     order=C.Order(channel="proxy", merchant="outlet-103")))
    assert r.receipt.amount == 5
    denied(seeded, sk.call, sk.ledger, "Redeem", L.RedeemRequest(request_id="sk.2", member_id="m1", amount=5,
                                                                 order=C.Order(channel="mall")))
    denied(seeded, sk.call, sk.ledger, "Redeem", L.RedeemRequest(request_id="sk.3", member_id="m3", amount=5,
                                                                 order=C.Order(channel="proxy")))
    denied(seeded, sk.call, sk.ledger, "Hold", L.HoldRequest(request_id="sk.4", member_id="m1", amount=5, ttl_ms=60_000))
    denied(seeded, sk.call, sk.ledger, "Credit", credit("m1", "sk.5"))
    denied(seeded, sk.call, sk.ledger, "Transfer", L.TransferRequest(request_id="sk.6", from_member_id="m1",
                                                                     to_member_id="m2", point_type="general", amount=1))
    # MA-2: at the till the shopkeeper finds the member by card (only the outlet's members), but
    # does not bind cards
    seeded.app.ledger.bind_card("card.m1", "m1", "88001111")
    seeded.app.ledger.bind_card("card.m3", "m3", "88003333")
    assert [m.member_id for m in sk.call(sk.members, "FindMembers", M.FindMembersRequest(card="88001111")).members] == ["m1"]
    assert sk.call(sk.members, "FindMembers", M.FindMembersRequest(card="88003333")).members == []
    denied(seeded, sk.call, sk.members, "BindCard", M.BindCardRequest(request_id="sk.7", member_id="m1", card="88001112"))


def test_admin_may_do_everything(seeded: Server, admin: Client) -> None:
    assert admin.call(admin.programmes, "DefineProgramme", P.DefineProgrammeRequest(request_id="adm.q", programme="q")).receipt.seq


def test_tokens_hashed_created_and_revoked_by_cli(seeded: Server) -> None:
    """`pypoints token create/list/revoke`: only hashes on disk; a revoked token is refused at once."""
    runner = CliRunner()
    res = runner.invoke(main, ["token", "create", "--data-dir", str(seeded.data_dir), "--role", "auditor", "--name", "ops"])
    assert res.exit_code == 0, res.output
    token = res.output.strip().splitlines()[-1]
    token_id = token.split("_")[1]
    stored = (seeded.data_dir / "tokens.json").read_text()
    assert token not in stored and token_id in stored
    assert all(len(t["hash"]) == 64 for t in json.loads(stored)["tokens"])
    c = Client(grpc.insecure_channel(seeded.address), token)
    assert c.call(c.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1")).balances
    assert "auditor" in runner.invoke(main, ["token", "list", "--data-dir", str(seeded.data_dir)]).output
    res = runner.invoke(main, ["token", "revoke", "--data-dir", str(seeded.data_dir), token_id])
    assert res.exit_code == 0, res.output
    expect_error(c.call, c.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1"),
                 code=S.UNAUTHENTICATED, reason="UNAUTHENTICATED")
    bad = runner.invoke(main, ["token", "create", "--data-dir", str(seeded.data_dir), "--role", "merchant"])
    assert bad.exit_code != 0 and "scope" in bad.output
