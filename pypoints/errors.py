"""The exception hierarchy. Owned by Python, raised from Rust: the core reports a stable
reason code (also the gRPC ErrorInfo reason) and `from_code` picks the class."""

from __future__ import annotations


class PointsError(Exception):
    """Base of every pypoints error. `reason` is stable and machine-readable."""

    reason = "UNKNOWN"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.message == other.message  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.message))


class InvalidArgument(PointsError, ValueError):
    reason = "INVALID_ARGUMENT"


class LimitExceeded(InvalidArgument):
    reason = "LIMIT_EXCEEDED"


class InvalidRule(InvalidArgument):
    """A rule, campaign, tier or policy definition is invalid; the message names the field."""

    reason = "INVALID_RULE"


class NotFound(PointsError, LookupError):
    reason = "NOT_FOUND"


class UnknownMember(NotFound):
    reason = "UNKNOWN_MEMBER"


class UnknownProgramme(NotFound):
    reason = "UNKNOWN_PROGRAMME"


class UnknownPointType(NotFound):
    reason = "UNKNOWN_POINT_TYPE"


class UnknownHold(NotFound):
    reason = "UNKNOWN_HOLD"


class UnknownEntry(NotFound):
    reason = "UNKNOWN_ENTRY"


class UnknownRule(NotFound):
    reason = "UNKNOWN_RULE"


class UnknownCard(NotFound):
    """The card number is not bound (to the member named, for an unbind)."""

    reason = "UNKNOWN_CARD"


class AlreadyExists(PointsError):
    reason = "ALREADY_EXISTS"


class CardAlreadyBound(AlreadyExists):
    """The card number is bound already: a card identifies one member (MA-2, MA-10)."""

    reason = "CARD_ALREADY_BOUND"


class IdempotencyConflict(PointsError):
    """The command id was used before with different content."""

    reason = "IDEMPOTENCY_CONFLICT"


class Refused(PointsError):
    """A valid request the ledger's state does not allow."""

    reason = "REFUSED"


class InsufficientPoints(Refused):
    reason = "INSUFFICIENT_POINTS"


class MemberFrozen(Refused):
    reason = "MEMBER_FROZEN"


class HoldNotOpen(Refused):
    reason = "HOLD_NOT_OPEN"


class HoldExpired(Refused):
    reason = "HOLD_EXPIRED"


class NotTransferable(Refused):
    reason = "NOT_TRANSFERABLE"


class NotReversible(Refused):
    reason = "NOT_REVERSIBLE"


class StorageError(PointsError):
    reason = "STORAGE"


class LedgerClosed(PointsError):
    reason = "CLOSED"


_BY_REASON: dict[str, type[PointsError]] = {
    cls.reason: cls
    for cls in [
        InvalidArgument, LimitExceeded, UnknownMember, UnknownProgramme, UnknownPointType,
        UnknownHold, UnknownEntry, AlreadyExists, IdempotencyConflict, InsufficientPoints,
        MemberFrozen, HoldNotOpen, HoldExpired, NotTransferable, NotReversible, StorageError,
        LedgerClosed, InvalidRule, UnknownRule, UnknownCard, CardAlreadyBound,
    ]
}


def from_code(code: str, message: str) -> PointsError:
    """Called by the Rust core to build the exception for a reason code."""
    return _BY_REASON.get(code, PointsError)(message)


__all__ = [name for name, obj in globals().items() if isinstance(obj, type) and issubclass(obj, PointsError)]
__all__ += ["from_code"]
