"""What every RPC handler shares: the `rpc` decorator (shutdown gate, deadline check,
authentication and authorisation, exception → status mapping, metrics, one structured log
line per refused call) and proto conversions of the ledger's values."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from pypoints.server import limits
from pypoints.server.errors import ApiError, invalid, status_of
from pypoints.v1 import common_pb2

if TYPE_CHECKING:
    from pypoints.server.app import App
    from pypoints.server.auth import Principal

log = logging.getLogger("pypoints.server")
F = TypeVar("F", bound=Callable[..., Any])

#: Core validation phrases → request field, shared by every method (methods add their own).
COMMON_FIELDS = {
    "command id": "request_id",
    "member id": "member_id",
    "hold id": "hold_id",
    "target id": "target_id",
    "point type id": "point_type",
    "programme id": "programme",
    "amount": "amount",
    "points must": "amount",
    "at least": "amount",
    "ttl_ms": "ttl_ms",
    "effective_at": "effective_at",
    "memo": "memo",
    "reason": "reason",
    "page size": "page_size",
    "page token": "page_token",
    "organisation path": "org",
    "member field": "org",
    "capture": "amount",
    "ratio": "ratio",
    "give amount or ratio": "amount",
    "name": "name",
}


class Servicer:
    def __init__(self, app: App) -> None:
        self.app = app


def rpc(action: str, *, default_field: str = "", fields: dict[str, str] | None = None) -> Callable[[F], F]:
    """Wrap a unary handler `fn(self, request, context, principal)`."""
    table = {**(fields or {}), **COMMON_FIELDS}

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Servicer, request: Any, context: grpc.ServicerContext) -> Any:
            app = self.app
            start = time.perf_counter()
            reason = "OK"
            app.metrics.in_flight.inc()
            try:
                app.gate(context)
                principal = app.auth.authenticate(context)
                app.auth.authorize(principal, action, request, app)
                return fn(self, request, context, principal)
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                if isinstance(exc, grpc.RpcError):
                    raise
                st, reason = status_of(exc, table, default_field)
                if reason == "INTERNAL":
                    log.exception("internal error in %s", action)
                elif log.isEnabledFor(logging.INFO):
                    log.info("refused", extra={"event": "refused", "method": action, "reason": reason,
                                               "code": st.code.name})
                context.abort_with_status(st)
                raise  # unreachable: abort_with_status raises
            finally:
                app.metrics.in_flight.dec()
                app.metrics.observe(action, reason, time.perf_counter() - start)
        return wrapper  # type: ignore[return-value]
    return deco


def require(value: str, field: str) -> str:
    if not value:
        raise invalid(field, f"{field} is required")
    return value


def page_size(n: int) -> int:
    if n < 0:
        raise invalid("page_size", f"page_size must be >= 0 (0 = default {limits.PAGE_SIZE_DEFAULT}), got {n}")
    if n > limits.PAGE_SIZE_MAX:
        raise invalid("page_size", f"page_size at most {limits.PAGE_SIZE_MAX}, got {n}", "LIMIT_EXCEEDED")
    return n


def opt(msg: Any, field: str) -> Any:
    """The value of a proto3 `optional` field, or None when absent."""
    return getattr(msg, field) if msg.HasField(field) else None


def receipt_pb(r: Any) -> common_pb2.Receipt:
    return common_pb2.Receipt(
        request_id=r.id, seq=r.seq, kind=r.kind, amount=r.amount, credited=r.credited,
        lots_used=[common_pb2.LotSlice(point_type=t, lot_id=i, amount=n) for t, i, n in r.lots_used],
        lots_made=[common_pb2.LotSlice(point_type=t, lot_id=i, amount=n) for t, i, n in r.lots_made],
        entries=r.entries, replayed=r.replayed,
    )


__all__ = ["ApiError", "Servicer", "rpc", "require", "page_size", "opt", "receipt_pb", "log"]
