"""Python exceptions → gRPC status code + google.rpc.ErrorInfo with a stable reason.

The reason is the `PointsError.reason` of the exception (INSUFFICIENT_POINTS, UNKNOWN_MEMBER, …)
or one of the server's own (UNAUTHENTICATED, PERMISSION_DENIED, DEADLINE_EXCEEDED, OTP_*,
SHUTTING_DOWN, INTERNAL). For INVALID_ARGUMENT the ErrorInfo metadata `field` names the request
field. Clients read it with `grpc_status.rpc_status.from_call(err)`."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from pypoints import errors as e

DOMAIN = "pypoints.dev"

# Most specific class first: the first isinstance match wins.
_CODES: list[tuple[type[e.PointsError], grpc.StatusCode]] = [
    (e.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),  # includes LimitExceeded
    (e.NotFound, grpc.StatusCode.NOT_FOUND),
    (e.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (e.IdempotencyConflict, grpc.StatusCode.ALREADY_EXISTS),
    (e.Refused, grpc.StatusCode.FAILED_PRECONDITION),
    (e.StorageError, grpc.StatusCode.INTERNAL),
    (e.LedgerClosed, grpc.StatusCode.UNAVAILABLE),
]


class ApiError(Exception):
    """An error raised by the server layer itself (auth, deadlines, OTP, bad request shape)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.field = code, reason, message, field


def invalid(field: str, message: str, reason: str = "INVALID_ARGUMENT") -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, reason, message, field)


def code_of(exc: e.PointsError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def field_of(message: str, fields: dict[str, str], default: str) -> str:
    """The request field a core validation message is about: the core starts its messages with
    what it checked ("member id must not be empty", "amount must be positive, …")."""
    low = message.lower()
    for phrase, field in fields.items():
        if low.startswith(phrase) or phrase in low:
            return field
    return default


def status_for(code: grpc.StatusCode, reason: str, message: str, field: str = "") -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    if field:
        info.metadata["field"] = field
    detail = any_pb2.Any()
    detail.Pack(info)
    st = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return rpc_status.to_status(st)


def status_of(exc: BaseException, fields: dict[str, str], default_field: str) -> tuple[grpc.Status, str]:
    """(grpc status, reason) for any exception a handler raised."""
    if isinstance(exc, ApiError):
        return status_for(exc.code, exc.reason, exc.message, exc.field), exc.reason
    if isinstance(exc, e.PointsError):
        code = code_of(exc)
        field = field_of(exc.message, fields, default_field) if code == grpc.StatusCode.INVALID_ARGUMENT else ""
        return status_for(code, exc.reason, exc.message, field), exc.reason
    return status_for(grpc.StatusCode.INTERNAL, "INTERNAL", f"internal error: {type(exc).__name__}"), "INTERNAL"
