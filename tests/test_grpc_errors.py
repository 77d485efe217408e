"""The exception → status mapping covers every class of pypoints.errors with its stable reason
(including STORAGE and CLOSED, which no request can provoke on a healthy store), the server's
own reasons, and concurrent unary calls share group commits (issue #4 §6)."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpc_support import Client, Server, admin, seed, server  # noqa: F401
from pypoints import errors as e
from pypoints.server.errors import ApiError, status_of
from pypoints.v1 import ledger_pb2 as L

S = grpc.StatusCode
EXPECTED = {
    "INVALID_ARGUMENT": S.INVALID_ARGUMENT, "LIMIT_EXCEEDED": S.INVALID_ARGUMENT,
    "UNKNOWN_MEMBER": S.NOT_FOUND, "UNKNOWN_PROGRAMME": S.NOT_FOUND, "UNKNOWN_POINT_TYPE": S.NOT_FOUND,
    "UNKNOWN_HOLD": S.NOT_FOUND, "UNKNOWN_ENTRY": S.NOT_FOUND, "ALREADY_EXISTS": S.ALREADY_EXISTS,
    "IDEMPOTENCY_CONFLICT": S.ALREADY_EXISTS, "INSUFFICIENT_POINTS": S.FAILED_PRECONDITION,
    "MEMBER_FROZEN": S.FAILED_PRECONDITION, "HOLD_NOT_OPEN": S.FAILED_PRECONDITION,
    "HOLD_EXPIRED": S.FAILED_PRECONDITION, "NOT_TRANSFERABLE": S.FAILED_PRECONDITION,
    "NOT_REVERSIBLE": S.FAILED_PRECONDITION, "STORAGE": S.INTERNAL, "CLOSED": S.UNAVAILABLE,
    "INVALID_RULE": S.INVALID_ARGUMENT, "UNKNOWN_RULE": S.NOT_FOUND,
    "UNKNOWN_CARD": S.NOT_FOUND, "CARD_ALREADY_BOUND": S.ALREADY_EXISTS,
}


def _info(st: grpc.Status) -> error_details_pb2.ErrorInfo:
    proto = rpc_status.from_call(type("Call", (), {"trailing_metadata": lambda self: st.trailing_metadata,
                                                   "code": lambda self: st.code, "details": lambda self: st.details})())
    info = error_details_pb2.ErrorInfo()
    assert proto is not None and proto.details[0].Unpack(info)
    return info


@pytest.mark.parametrize("reason", sorted(e._BY_REASON))
def test_every_exception_class_has_a_status_and_its_reason(reason: str) -> None:
    exc = e.from_code(reason, f"{reason.lower()} happened")
    st, got = status_of(exc, {"happened": "member_id"}, "fallback")
    assert got == reason and st.code == EXPECTED[reason]
    info = _info(st)
    assert (info.reason, info.domain) == (reason, "pypoints.dev")
    if st.code == S.INVALID_ARGUMENT:
        assert info.metadata["field"] == "member_id"


def test_unexpected_exceptions_are_internal_without_details() -> None:
    st, reason = status_of(KeyError("secret"), {}, "")
    assert (st.code, reason) == (S.INTERNAL, "INTERNAL") and "secret" not in st.details


def test_shutting_down_refuses_new_calls(admin: Client, server: Server) -> None:
    seed(admin)
    server.app._stopping.set()  # the first step of stop(): later calls are refused, nothing changes
    try:
        with pytest.raises(grpc.RpcError) as ei:
            admin.call(admin.ledger, "Credit", L.CreditRequest(request_id="late", member_id="m1", point_type="general", amount=1))
        assert ei.value.code() == S.UNAVAILABLE  # type: ignore[attr-defined]
    finally:
        server.app._stopping.clear()
    assert server.app.ledger.balances("m1")[0].total == 0


def test_concurrent_unary_calls_share_group_commits(admin: Client, server: Server) -> None:
    """32 clients at once: the core's writer coalesces their commands into fewer commits; the
    handlers wait for the writer without the GIL (otherwise nothing could coalesce)."""
    seed(admin)
    s0 = server.app.ledger.writer_stats()

    def one(i: int) -> int:
        r = admin.call(admin.ledger, "Credit", L.CreditRequest(request_id=f"cc{i}", member_id=f"m{1 + i % 3}",
                                                               point_type="general", amount=1))
        return r.receipt.amount

    with futures.ThreadPoolExecutor(32) as pool:
        assert sum(pool.map(one, range(320))) == 320
    s1 = server.app.ledger.writer_stats()
    commands, groups = s1["commands"] - s0["commands"], s1["groups"] - s0["groups"]
    assert commands == 320 and groups < commands, (commands, groups)


def test_api_error_carries_field() -> None:
    st, reason = status_of(ApiError(S.INVALID_ARGUMENT, "OTP_REQUIRED", "give the code", "otp"), {}, "")
    assert reason == "OTP_REQUIRED" and _info(st).metadata["field"] == "otp"
