"""Helpers for the gRPC tests: a real server on 127.0.0.1 port 0 over a temp data dir with an
injected clock, tokens per role, generated stubs, and ErrorInfo extraction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest import FakeClock
from pypoints.server import App, ServerConfig
from pypoints.server.auth import TokenStore
from pypoints.v1 import (batch_pb2_grpc, ledger_pb2_grpc, members_pb2_grpc, programmes_pb2 as P,
                         programmes_pb2_grpc)
from pypoints.v1 import members_pb2 as M


@dataclass
class Client:
    channel: grpc.Channel
    token: str

    @property
    def md(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")]

    def __post_init__(self) -> None:
        self.members = members_pb2_grpc.MemberServiceStub(self.channel)
        self.programmes = programmes_pb2_grpc.ProgrammeServiceStub(self.channel)
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self.channel)
        self.batch = batch_pb2_grpc.BatchServiceStub(self.channel)

    def call(self, stub: Any, method: str, request: Any, **kw: Any) -> Any:
        return getattr(stub, method)(request, metadata=self.md, timeout=kw.pop("timeout", 10), **kw)


@dataclass
class Server:
    app: App
    data_dir: Path
    clock: FakeClock
    address: str
    tokens: TokenStore

    def client(self, role: str = "admin", scope: str = "") -> Client:
        token, _ = self.tokens.create(role, scope, name=f"test {role}")
        return Client(grpc.insecure_channel(self.address), token)


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[Server]:
    data = tmp_path / "data"
    tokens = TokenStore(data)
    app = App(ServerConfig(data_dir=data, port=0, workers=16), clock=clock).start()
    try:
        yield Server(app, data, clock, f"127.0.0.1:{app.port}", tokens)
    finally:
        app.stop(grace=2)


@pytest.fixture
def admin(server: Server) -> Client:
    return server.client("admin")


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    st = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert st is not None, f"no google.rpc.Status on {err}"
    info = error_details_pb2.ErrorInfo()
    assert st.details and st.details[0].Unpack(info)
    return info


def expect_error(fn: Any, *args: Any, code: grpc.StatusCode, reason: str, field: str | None = None, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        fn(*args, **kw)
    err = ei.value
    assert err.code() == code, (err.code(), err.details())  # type: ignore[attr-defined]
    info = error_info(err)
    assert info.reason == reason, (info.reason, err.details())  # type: ignore[attr-defined]
    assert info.domain == "pypoints.dev"
    if field is not None:
        assert info.metadata["field"] == field, (dict(info.metadata), err.details())  # type: ignore[attr-defined]
    return err


ORG_A = ["Shandong", "Qingdao", "Shinan", "103"]
ORG_B = ["Jiangsu", "Nanjing", "Xuanwu", "305"]


def seed(c: Client, members: tuple[tuple[str, list[str]], ...] = (("m1", ORG_A), ("m2", ORG_A), ("m3", ORG_B))) -> None:
    """Programme `p` with point types general (transferable, converts 2:1 to bonus), bonus and
    staff (not transferable); members with orgs."""
    c.call(c.programmes, "DefineProgramme", P.DefineProgrammeRequest(request_id="prog.p", programme="p", name="P"))
    c.call(c.programmes, "DefinePointType", P.DefinePointTypeRequest(
        request_id="pt.general", programme="p",
        point_type=P.PointType(point_type="general", priority=0, transferable=True,
                               convert_to=[P.ConvertRate(to="bonus", num=1, den=2)])))
    c.call(c.programmes, "DefinePointType", P.DefinePointTypeRequest(
        request_id="pt.bonus", programme="p", point_type=P.PointType(point_type="bonus", priority=1, transferable=True)))
    c.call(c.programmes, "DefinePointType", P.DefinePointTypeRequest(
        request_id="pt.staff", programme="p", point_type=P.PointType(point_type="staff", priority=2, transferable=False)))
    for m, org in members:
        c.call(c.members, "CreateMember", M.CreateMemberRequest(request_id=f"open.{m}", member_id=m, programme="p",
                                                                phone="13800000000", org=org))
