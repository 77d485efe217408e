"""MemberService: create, get, find, freeze/unfreeze members (MA-*, RK-4)."""

from __future__ import annotations

from typing import Any

import grpc

from pypoints.models import Member
from pypoints.server.auth import in_org
from pypoints.server.base import Servicer, receipt_pb, require, rpc
from pypoints.server.errors import ApiError, invalid
from pypoints.v1 import members_pb2 as pb
from pypoints.v1 import members_pb2_grpc


def member_pb(m: Member) -> pb.Member:
    return pb.Member(member_id=m.id, programme=m.programme, phone=m.phone, id_hash=m.id_hash or "",
                     org=list(m.org), tier=m.tier, kind=m.kind, status=m.status, created_at=m.created_at,
                     cards=list(m.cards))


class MemberServicer(Servicer, members_pb2_grpc.MemberServiceServicer):
    @rpc("members.create", default_field="member_id")
    def CreateMember(self, req: pb.CreateMemberRequest, context: grpc.ServicerContext, who: Any) -> pb.CreateMemberResponse:
        require(req.request_id, "request_id")
        require(req.member_id, "member_id")
        require(req.programme, "programme")
        r = self.app.ledger.open_member(req.member_id, req.programme, id=req.request_id, phone=req.phone,
                                        id_number=req.id_number or None, org=tuple(req.org),
                                        tier=req.tier or "ordinary", kind=req.kind or "individual")
        return pb.CreateMemberResponse(receipt=receipt_pb(r), member=member_pb(self.app.ledger.member(req.member_id)))

    @rpc("members.get", default_field="member_id")
    def GetMember(self, req: pb.GetMemberRequest, context: grpc.ServicerContext, who: Any) -> pb.Member:
        return member_pb(self.app.ledger.member(require(req.member_id, "member_id")))

    @rpc("members.find", default_field="phone", fields={"phone": "phone", "id_hash": "id_number", "card": "card"})
    def FindMembers(self, req: pb.FindMembersRequest, context: grpc.ServicerContext, who: Any) -> pb.FindMembersResponse:
        key = req.WhichOneof("key")
        if key is None:
            raise invalid("key", "give phone, id_number or card")
        value = getattr(req, key)
        if not value:
            raise invalid(key, f"{key} must not be empty")
        found = self.app.ledger.find_members(**{key: value})
        if who.role in ("operator", "shopkeeper"):  # only members inside the token's subtree
            found = [m for m in found if in_org(m.org, who.scope)]
        return pb.FindMembersResponse(members=[member_pb(m) for m in found])

    @rpc("members.freeze", default_field="member_id")
    def FreezeMember(self, req: pb.FreezeMemberRequest, context: grpc.ServicerContext, who: Any) -> pb.FreezeMemberResponse:
        require(req.request_id, "request_id")
        r = self.app.ledger.freeze(req.request_id, require(req.member_id, "member_id"), req.reason)
        return pb.FreezeMemberResponse(receipt=receipt_pb(r))

    @rpc("members.unfreeze", default_field="member_id")
    def UnfreezeMember(self, req: pb.FreezeMemberRequest, context: grpc.ServicerContext, who: Any) -> pb.FreezeMemberResponse:
        require(req.request_id, "request_id")
        r = self.app.ledger.unfreeze(req.request_id, require(req.member_id, "member_id"), req.reason)
        return pb.FreezeMemberResponse(receipt=receipt_pb(r))

    @rpc("members.bind_card", default_field="card", fields={"member id": "member_id", "already holds": "member_id"})
    def BindCard(self, req: pb.BindCardRequest, context: grpc.ServicerContext, who: Any) -> pb.BindCardResponse:
        require(req.request_id, "request_id")
        require(req.card, "card")
        r = self.app.ledger.bind_card(req.request_id, require(req.member_id, "member_id"), req.card)
        return pb.BindCardResponse(receipt=receipt_pb(r), member=member_pb(self.app.ledger.member(req.member_id)))

    @rpc("members.unbind_card", default_field="card", fields={"member id": "member_id", "reason": "reason"})
    def UnbindCard(self, req: pb.UnbindCardRequest, context: grpc.ServicerContext, who: Any) -> pb.BindCardResponse:
        require(req.request_id, "request_id")
        require(req.card, "card")
        r = self.app.ledger.unbind_card(req.request_id, require(req.member_id, "member_id"), req.card, req.reason)
        return pb.BindCardResponse(receipt=receipt_pb(r), member=member_pb(self.app.ledger.member(req.member_id)))
