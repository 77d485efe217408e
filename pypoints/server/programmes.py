"""ProgrammeService: programmes and point types (PT-*, RL-7: admin only)."""

from __future__ import annotations

from typing import Any

import grpc

from pypoints.models import CashRate, PointTypeSpec, Validity
from pypoints.server.base import Servicer, opt, receipt_pb, require, rpc
from pypoints.server.errors import invalid
from pypoints.v1 import programmes_pb2 as pb
from pypoints.v1 import programmes_pb2_grpc

FIELDS = {"validity": "point_type.validity", "no such calendar date": "point_type.validity",
          "cash rate": "point_type.cash", "convert": "point_type.convert_to",
          "at most": "point_type"}


def spec_of(p: pb.PointType) -> PointTypeSpec:
    v = p.validity
    if v.kind in ("", "none"):
        validity = Validity.never()
    elif v.kind == "rolling":
        validity = Validity.rolling(v.count, v.unit or "years")  # type: ignore[arg-type]
    elif v.kind == "fixed_date":
        validity = Validity.fixed_date(v.month or 12, v.day or 31)
    else:
        raise invalid("point_type.validity.kind", f"validity kind {v.kind!r} is not none, rolling or fixed_date")
    cash = CashRate(p.cash.points or 1, p.cash.minor or 100, p.cash.min_points or 1, p.cash.step_points or 1,
                    opt(p.cash, "max_points")) if p.HasField("cash") else CashRate()
    return PointTypeSpec(require(p.point_type, "point_type.point_type"), p.priority, validity, p.transferable,
                         cash, tuple((c.to, c.num, c.den) for c in p.convert_to))


def point_type_pb(s: PointTypeSpec) -> pb.PointType:
    v = s.validity
    return pb.PointType(
        point_type=s.id, priority=s.priority,
        validity=pb.Validity(kind=v.kind, count=v.count, unit=v.unit, month=v.month, day=v.day),
        transferable=s.transferable,
        cash=pb.CashRate(points=s.cash.points, minor=s.cash.minor, min_points=s.cash.min_points,
                         step_points=s.cash.step_points, max_points=s.cash.max_points),
        convert_to=[pb.ConvertRate(to=t, num=n, den=d) for t, n, d in s.convert_to])


class ProgrammeServicer(Servicer, programmes_pb2_grpc.ProgrammeServiceServicer):
    @rpc("programmes.define", default_field="programme", fields=FIELDS)
    def DefineProgramme(self, req: pb.DefineProgrammeRequest, context: grpc.ServicerContext, who: Any) -> pb.DefineProgrammeResponse:
        require(req.request_id, "request_id")
        r = self.app.ledger.define_programme(require(req.programme, "programme"), req.name, id=req.request_id)
        return pb.DefineProgrammeResponse(receipt=receipt_pb(r))

    @rpc("programmes.define_point_type", default_field="point_type", fields=FIELDS)
    def DefinePointType(self, req: pb.DefinePointTypeRequest, context: grpc.ServicerContext, who: Any) -> pb.DefinePointTypeResponse:
        require(req.request_id, "request_id")
        r = self.app.ledger.define_point_type(require(req.programme, "programme"), spec_of(req.point_type), id=req.request_id)
        return pb.DefinePointTypeResponse(receipt=receipt_pb(r))

    @rpc("programmes.list_point_types", default_field="programme")
    def ListPointTypes(self, req: pb.ListPointTypesRequest, context: grpc.ServicerContext, who: Any) -> pb.ListPointTypesResponse:
        types = self.app.ledger.point_types(require(req.programme, "programme"))
        return pb.ListPointTypesResponse(point_types=[point_type_pb(s) for s in types])
