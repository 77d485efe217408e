"""Server reflection (issue #4 §2): a client with no generated stubs lists the services and
calls a method using only descriptors fetched from the server."""

from __future__ import annotations

from pathlib import Path

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import FakeClock
from pypoints.server import App, ServerConfig
from pypoints.server.auth import TokenStore


def test_reflection_lists_services_and_drives_a_call(tmp_path: Path, clock: FakeClock) -> None:
    data = tmp_path / "data"
    token, _ = TokenStore(data).create("admin")
    app = App(ServerConfig(data_dir=data, port=0), clock=clock).start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"pypoints.v1.MemberService", "pypoints.v1.LedgerService", "pypoints.v1.BatchService",
                "pypoints.v1.ProgrammeService", "pypoints.v1.RuleService", "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection"} <= services
        pool = descriptor_pool.DescriptorPool(db)
        svc = pool.FindServiceByName("pypoints.v1.ProgrammeService")
        assert {m.name for m in svc.methods} == {"DefineProgramme", "DefinePointType", "ListPointTypes"}
        method = svc.FindMethodByName("DefineProgramme")
        Req = message_factory.GetMessageClass(method.input_type)
        Resp = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary("/pypoints.v1.ProgrammeService/DefineProgramme",
                                   request_serializer=Req.SerializeToString, response_deserializer=Resp.FromString)
        resp = call(Req(request_id="prog.r", programme="r", name="via reflection"),
                    metadata=[("authorization", f"Bearer {token}")], timeout=10)
        assert resp.receipt.kind == "define_programme" and resp.receipt.seq == 1
        ledger = pool.FindServiceByName("pypoints.v1.LedgerService")
        assert {"Credit", "Redeem", "Hold", "Capture", "Void", "Transfer", "Convert", "Reverse", "GetBalances",
                "GetHold", "ListLots", "ListHistory"} == {m.name for m in ledger.methods}
    finally:
        app.stop(grace=1)
