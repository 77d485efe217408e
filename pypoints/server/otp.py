"""One-time codes for holds (RD-6, RD-7, RK-5). Placeholder until the core stores OTP holds:
a hold that requires a code is refused with UNIMPLEMENTED; captures of plain holds pass through."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from pypoints.server.errors import ApiError

if TYPE_CHECKING:
    from pypoints.server.app import App


class Otp:
    def __init__(self, app: App) -> None:
        self.app = app

    def hold(self, req: Any) -> Any:
        raise ApiError(grpc.StatusCode.UNIMPLEMENTED, "NOT_IMPLEMENTED", "OTP holds are not implemented yet", "require_otp")

    def capture(self, req: Any) -> Any:
        amount = req.amount if req.HasField("amount") else None
        return self.app.ledger.capture(req.request_id, req.hold_id, amount)

    def describe(self, state: Any) -> None:
        pass
