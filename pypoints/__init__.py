"""pypoints: a high-throughput loyalty-points ledger (Rust core over LMDB)."""

from pypoints import errors
from pypoints._core import Receipt
from pypoints.commands import (
    BindCard, Capture, Command, Convert, Credit, DefinePointType, DefineProgramme, Expire, Freeze,
    Hold, OpenMember, Redeem, Reverse, Transfer, UnbindCard, Unfreeze, Void,
)
from pypoints.errors import *  # noqa: F403
from pypoints.ledger import Ledger, system_clock
from pypoints.models import (
    AuditReport, Balance, CashRate, Entry, Lot, Member, Page, PointTypeSpec, Validity, from_ms, to_ms,
)

__all__ = [
    "Ledger", "Receipt", "system_clock", "errors",
    "Command", "DefineProgramme", "DefinePointType", "OpenMember", "Credit", "Redeem", "Hold",
    "Capture", "Void", "Transfer", "Convert", "Reverse", "Expire", "Freeze", "Unfreeze",
    "BindCard", "UnbindCard",
    "AuditReport", "Balance", "CashRate", "Entry", "Lot", "Member", "Page", "PointTypeSpec",
    "Validity", "from_ms", "to_ms",
    *errors.__all__,
]
