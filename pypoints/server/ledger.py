"""LedgerService: credit, redeem, holds (with optional OTP), capture, void, transfer, convert,
reverse; balances, holds, lots and history pages. Each mutating call is one command whose
client id is the request_id, so a replay returns the original receipt from the core's
idempotency record (nothing is applied twice)."""

from __future__ import annotations

from typing import Any

import grpc

from pypoints.models import Entry
from pypoints.server.base import Servicer, opt, page_size, receipt_pb, require, rpc
from pypoints.server.errors import invalid
from pypoints.v1 import common_pb2
from pypoints.v1 import ledger_pb2 as pb
from pypoints.v1 import ledger_pb2_grpc

TRANSFER_FIELDS = {"member id": "from_member_id", "cannot transfer to the same member": "to_member_id",
                   "members belong to different programmes": "to_member_id"}
CONVERT_FIELDS = {"cannot be converted": "to_type", "converts to zero": "amount"}


def order_args(o: Any) -> dict[str, str]:
    return {"channel": o.channel, "merchant": o.merchant, "order_ref": o.order_ref, "org": o.org}


def entry_pb(e: Entry) -> pb.Entry:
    return pb.Entry(
        seq=e.seq, request_id=e.id, kind=e.kind, at=e.at, amount=e.amount, credited=e.credited,
        postings=[pb.Posting(point_type=p.point_type, from_account=p.from_account, to_account=p.to_account,
                             amount=p.amount) for p in e.postings],
        lots_used=[common_pb2.LotSlice(point_type=t, lot_id=i, amount=n) for t, i, n in e.lots_used],
        lots_made=[common_pb2.LotSlice(point_type=t, lot_id=i, amount=n) for t, i, n in e.lots_made],
        hash=e.hash, prev_hash=e.prev_hash)


class LedgerServicer(Servicer, ledger_pb2_grpc.LedgerServiceServicer):
    def _done(self, r: Any) -> pb.CommandResponse:
        return pb.CommandResponse(receipt=receipt_pb(r))

    @rpc("ledger.credit", default_field="member_id")
    def Credit(self, req: pb.CreditRequest, context: grpc.ServicerContext, who: Any) -> pb.CommandResponse:
        return self._done(self.app.ledger.credit(require(req.request_id, "request_id"), require(req.member_id, "member_id"),
                                                 require(req.point_type, "point_type"), req.amount,
                                                 effective_at=opt(req, "effective_at"), memo=req.memo))

    @rpc("ledger.redeem", default_field="member_id")
    def Redeem(self, req: pb.RedeemRequest, context: grpc.ServicerContext, who: Any) -> pb.CommandResponse:
        return self._done(self.app.ledger.redeem(require(req.request_id, "request_id"), require(req.member_id, "member_id"),
                                                 req.amount, point_type=opt(req, "point_type"), **order_args(req.order)))

    @rpc("ledger.hold", default_field="member_id")
    def Hold(self, req: pb.HoldRequest, context: grpc.ServicerContext, who: Any) -> pb.CommandResponse:
        require(req.request_id, "request_id")
        require(req.member_id, "member_id")
        if req.require_otp:
            return self._done(self.app.otp.hold(req))
        return self._done(self.app.ledger.hold(req.request_id, req.member_id, req.amount, ttl_ms=req.ttl_ms,
                                               point_type=opt(req, "point_type"), **order_args(req.order)))

    @rpc("ledger.capture", default_field="hold_id")
    def Capture(self, req: pb.CaptureRequest, context: grpc.ServicerContext, who: Any) -> pb.CommandResponse:
        require(req.request_id, "request_id")
        require(req.hold_id, "hold_id")
        return self._done(self.app.otp.capture(req))

    @rpc("ledger.void", default_field="hold_id")
    def Void(self, req: pb.VoidRequest, context: grpc.ServicerContext, who: Any) -> pb.CommandResponse:
        return self._done(self.app.ledger.void(require(req.request_id, "request_id"), require(req.hold_id, "hold_id")))

    @rpc("ledger.transfer", default_field="from_member_id", fields=TRANSFER_FIELDS)
    def Transfer(self, req: pb.TransferRequest, context: grpc.ServicerContext, who: Any) -> pb.CommandResponse:
        return self._done(self.app.ledger.transfer(require(req.request_id, "request_id"),
                                                   require(req.from_member_id, "from_member_id"),
                                                   require(req.to_member_id, "to_member_id"),
                                                   require(req.point_type, "point_type"), req.amount))

    @rpc("ledger.convert", default_field="member_id", fields=CONVERT_FIELDS)
    def Convert(self, req: pb.ConvertRequest, context: grpc.ServicerContext, who: Any) -> pb.CommandResponse:
        return self._done(self.app.ledger.convert(require(req.request_id, "request_id"), require(req.member_id, "member_id"),
                                                  require(req.from_type, "from_type"), require(req.to_type, "to_type"),
                                                  req.amount))

    @rpc("ledger.reverse", default_field="target_id")
    def Reverse(self, req: pb.ReverseRequest, context: grpc.ServicerContext, who: Any) -> pb.CommandResponse:
        ratio = (req.ratio.num, req.ratio.den) if req.HasField("ratio") else None
        return self._done(self.app.ledger.reverse(require(req.request_id, "request_id"), require(req.target_id, "target_id"),
                                                  amount=opt(req, "amount"), ratio=ratio, reason=req.reason))

    @rpc("ledger.balances", default_field="member_id")
    def GetBalances(self, req: pb.GetBalancesRequest, context: grpc.ServicerContext, who: Any) -> pb.GetBalancesResponse:
        rows = self.app.ledger.balances(require(req.member_id, "member_id"), point_type=opt(req, "point_type"))
        return pb.GetBalancesResponse(balances=[pb.Balance(point_type=b.point_type, total=b.total, available=b.available,
                                                           pending=b.pending, held=b.held) for b in rows])

    @rpc("ledger.get_hold", default_field="hold_id")
    def GetHold(self, req: pb.GetHoldRequest, context: grpc.ServicerContext, who: Any) -> pb.HoldState:
        h = self.app.ledger.hold_state(require(req.hold_id, "hold_id"))
        state = pb.HoldState(hold_id=h.id, member_id=h.member, amount=h.amount, captured=h.captured,
                             state=h.state, expires_at=h.expires_at)
        self.app.otp.describe(state)
        return state

    @rpc("ledger.lots", default_field="member_id")
    def ListLots(self, req: pb.ListLotsRequest, context: grpc.ServicerContext, who: Any) -> pb.ListLotsResponse:
        page = self.app.ledger.lots(require(req.member_id, "member_id"), point_type=opt(req, "point_type"),
                                    page_size=page_size(req.page_size), page_token=req.page_token)
        return pb.ListLotsResponse(
            lots=[pb.Lot(point_type=lot.point_type, lot_id=lot.id, remaining=lot.remaining, amount=lot.amount,
                         earned_at=lot.earned_at, expires_at=lot.expires_at, effective_at=lot.effective_at,
                         source_seq=lot.source_seq) for lot in page.items],
            next_page_token=page.next_page_token)

    @rpc("ledger.history", default_field="member_id")
    def ListHistory(self, req: pb.ListHistoryRequest, context: grpc.ServicerContext, who: Any) -> pb.ListHistoryResponse:
        page = self.app.ledger.history(require(req.member_id, "member_id"), point_type=opt(req, "point_type"),
                                       page_size=page_size(req.page_size), page_token=req.page_token)
        return pb.ListHistoryResponse(entries=[entry_pb(e) for e in page.items], next_page_token=page.next_page_token)


__all__ = ["LedgerServicer", "invalid"]
