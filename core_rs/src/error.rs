use thiserror::Error;

/// Every way a command or query can fail. `code()` is the stable machine-readable reason that the
/// Python exception hierarchy (pypoints/errors.py) and the gRPC ErrorInfo reason are keyed on.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LedgerError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("unknown member {0:?}")]
    UnknownMember(String),
    #[error("unknown programme {0:?}")]
    UnknownProgramme(String),
    #[error("unknown point type {0:?}")]
    UnknownPointType(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("insufficient points: requested {requested}, available {available}")]
    InsufficientPoints { requested: i64, available: i64 },
    #[error("member {0:?} is frozen")]
    MemberFrozen(String),
    #[error("command id {0:?} was already used with different content")]
    IdempotencyConflict(String),
    #[error("unknown hold {0:?}")]
    UnknownHold(String),
    #[error("hold {id:?} is {state}")]
    HoldNotOpen { id: String, state: String },
    #[error("hold {0:?} has expired")]
    HoldExpired(String),
    #[error("point type {0:?} is not transferable")]
    NotTransferable(String),
    #[error("unknown command id {0:?}")]
    UnknownEntry(String),
    #[error("{0}")]
    NotReversible(String),
    /// A rule, campaign, tier or policy definition is invalid; the message names the field.
    #[error("{0}")]
    InvalidRule(String),
    #[error("unknown rule {0:?}")]
    UnknownRule(String),
    /// The card is not bound (to the member named, for an unbind).
    #[error("{0}")]
    UnknownCard(String),
    /// The card is bound already (to this member or another: cards identify one member).
    #[error("{0}")]
    CardAlreadyBound(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("the ledger is closed")]
    Closed,
}

impl LedgerError {
    pub fn code(&self) -> &'static str {
        use LedgerError::*;
        match self {
            InvalidArgument(_) => "INVALID_ARGUMENT",
            LimitExceeded(_) => "LIMIT_EXCEEDED",
            UnknownMember(_) => "UNKNOWN_MEMBER",
            UnknownProgramme(_) => "UNKNOWN_PROGRAMME",
            UnknownPointType(_) => "UNKNOWN_POINT_TYPE",
            AlreadyExists(_) => "ALREADY_EXISTS",
            InsufficientPoints { .. } => "INSUFFICIENT_POINTS",
            MemberFrozen(_) => "MEMBER_FROZEN",
            IdempotencyConflict(_) => "IDEMPOTENCY_CONFLICT",
            UnknownHold(_) => "UNKNOWN_HOLD",
            HoldNotOpen { .. } => "HOLD_NOT_OPEN",
            HoldExpired(_) => "HOLD_EXPIRED",
            NotTransferable(_) => "NOT_TRANSFERABLE",
            UnknownEntry(_) => "UNKNOWN_ENTRY",
            NotReversible(_) => "NOT_REVERSIBLE",
            InvalidRule(_) => "INVALID_RULE",
            UnknownRule(_) => "UNKNOWN_RULE",
            UnknownCard(_) => "UNKNOWN_CARD",
            CardAlreadyBound(_) => "CARD_ALREADY_BOUND",
            Storage(_) => "STORAGE",
            Closed => "CLOSED",
        }
    }
}

impl From<heed::Error> for LedgerError {
    fn from(e: heed::Error) -> Self {
        LedgerError::Storage(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, LedgerError>;

pub fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(LedgerError::InvalidArgument(msg.into()))
}
