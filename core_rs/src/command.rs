//! Commands (the only way state changes), journal entries and receipts.
use serde::{Deserialize, Serialize};

use crate::model::*;
use crate::rules::{Campaign, EarnPolicy, Event, Rule, TierPolicy};

/// Where and how a redemption happens (RD-1..5); carried by redeem and hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub channel: String,
    pub merchant: String,
    pub order_ref: String,
    pub org: String,
}

/// A one-time code a hold requires before it can be captured (RD-6, RD-7, RK-5). The caller
/// (the gRPC server) makes the code and passes only its keyed hash and a sealed (encrypted)
/// copy for delivery: the clear code never enters the ledger. The hold writes a notification
/// with the sealed code to `outbox` in the same transaction; a sender delivers and deletes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpSpec {
    pub hash: String,
    pub attempts: u32,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    DefineProgramme { programme: String, name: String },
    DefinePointType { programme: String, point_type: PointType },
    OpenMember {
        member: String,
        programme: String,
        phone: String,
        id_hash: Option<String>,
        org: Vec<String>,
        tier: String,
        kind: String,
    },
    Credit { member: String, point_type: String, amount: i64, effective_at: Option<Ms>, memo: String },
    Redeem { member: String, point_type: Option<String>, amount: i64, order: Order },
    Hold {
        member: String,
        point_type: Option<String>,
        amount: i64,
        ttl_ms: i64,
        order: Order,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        otp: Option<OtpSpec>,
    },
    /// `otp`: the keyed hash of the code presented, for a hold that requires one. A wrong code
    /// is recorded (an entry of amount 0 whose cursor is `otp_rejected:<attempts left>`); the
    /// last allowed wrong code voids the hold (cursor `otp_exhausted`).
    Capture {
        hold: String,
        amount: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        otp: Option<String>,
    },
    Void { hold: String },
    Transfer { from: String, to: String, point_type: String, amount: i64 },
    Convert { member: String, from_type: String, to_type: String, amount: i64 },
    /// Refund a redemption/capture (restores lots) or claw back a credit (RK-10, EH-9).
    /// `amount` or `ratio` (num, den: floor(original × num / den)); neither = the whole rest.
    Reverse { target: String, amount: Option<i64>, ratio: Option<(i64, i64)>, reason: String },
    /// Void holds past their TTL and move lots past expiry to breakage, up to a bounded number
    /// of accounts after `after` (an account key); the receipt's cursor continues the sweep.
    Expire { as_of: Ms, after: Option<String> },
    Freeze { member: String, reason: String },
    Unfreeze { member: String, reason: String },
    /// Bind a card number to a member (MA-2, MA-10): a card identifies one member; a member
    /// holds up to CARDS_PER_MEMBER_MAX cards (MA-14).
    BindCard { member: String, card: String },
    /// Unbind a card from its member (lost, replaced): the number may then be bound again.
    UnbindCard { member: String, card: String, reason: String },
    // ----- the rules engine (issue #3): applied by `rules/apply.rs` -----
    /// A new rule (version 1); the receipt's amount is the version.
    DefineRule { rule: Rule },
    /// A new version of an existing rule.
    UpdateRule { rule: Rule },
    /// A new version of the rule, disabled.
    DisableRule { programme: String, rule: String },
    /// A campaign; its budget is moved from issuance to the campaign's budget account.
    DefineCampaign { campaign: Campaign },
    DefineTiers { tiers: TierPolicy },
    SetEarnPolicy { policy: EarnPolicy },
    SetMemberGroups { member: String, groups: Vec<String> },
    /// Operator override of a member's tier (TL-4); None returns it to automatic.
    SetTier { member: String, tier: Option<String>, reason: String },
    /// Automatic upgrade and downgrade of members after `after` (bounded; cursor continues).
    EvaluateTiers { programme: String, after: Option<String> },
    /// Evaluate the programme's rules for an event and post the awards (idempotent by id).
    Earn { event: Event },
}

impl Command {
    pub fn kind(&self) -> &'static str {
        use Command::*;
        match self {
            DefineProgramme { .. } => "define_programme",
            DefinePointType { .. } => "define_point_type",
            OpenMember { .. } => "open_member",
            Credit { .. } => "credit",
            Redeem { .. } => "redeem",
            Hold { .. } => "hold",
            Capture { .. } => "capture",
            Void { .. } => "void",
            Transfer { .. } => "transfer",
            Convert { .. } => "convert",
            Reverse { .. } => "reverse",
            Expire { .. } => "expire",
            Freeze { .. } => "freeze",
            Unfreeze { .. } => "unfreeze",
            BindCard { .. } => "bind_card",
            UnbindCard { .. } => "unbind_card",
            DefineRule { .. } => "define_rule",
            UpdateRule { .. } => "update_rule",
            DisableRule { .. } => "disable_rule",
            DefineCampaign { .. } => "define_campaign",
            DefineTiers { .. } => "define_tiers",
            SetEarnPolicy { .. } => "set_earn_policy",
            SetMemberGroups { .. } => "set_member_groups",
            SetTier { .. } => "set_tier",
            EvaluateTiers { .. } => "evaluate_tiers",
            Earn { .. } => "earn",
        }
    }

    /// Commands of the rules engine (applied by `rules/apply.rs`).
    pub fn is_rules(&self) -> bool {
        use Command::*;
        matches!(
            self,
            DefineRule { .. } | UpdateRule { .. } | DisableRule { .. } | DefineCampaign { .. } | DefineTiers { .. }
                | SetEarnPolicy { .. } | SetMemberGroups { .. } | SetTier { .. } | EvaluateTiers { .. } | Earn { .. }
        )
    }

    /// Idempotency fingerprint: the command's content, not its timestamp, so a client retrying
    /// with a fresh clock still gets the original result.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut bytes = Vec::with_capacity(256);
        crate::msgpack::write_compact(&mut bytes, self).expect("commands always serialize");
        debug_assert_eq!(bytes, rmp_serde::to_vec(self).expect("commands always serialize"), "msgpack.rs writes what rmp_serde writes");
        let mut fp = [0; 16];
        fp.copy_from_slice(&blake3::hash(&bytes).as_bytes()[..16]);
        fp
    }
}

/// A command's content hash (16 bytes of blake3): an id replayed with other content is refused.
pub type Fingerprint = [u8; 16];

/// A command with its client-chosen id (the idempotency key) and its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub at: Ms,
    pub cmd: Command,
}

/// One immutable journal record. `h` = blake3 of the entry serialized with `h` absent; `ph` is
/// the previous entry's `h`, so editing any entry breaks the chain (RK-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub v: u8,
    pub seq: u64,
    pub id: String,
    /// index of this entry within its command (expire writes several)
    pub n: u32,
    pub at: Ms,
    pub cmd: Command,
    pub po: Vec<Posting>,
    /// lots debited, in the order they were taken
    pub used: Vec<Consumed>,
    /// lots created (with their point type)
    pub made: Vec<Consumed>,
    pub amount: i64,
    pub credited: i64,
    pub cursor: Option<String>,
    pub links: Vec<Link>,
    /// Earn commands only, when something is worth recording: caps and budgets that cut awards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<EarnNote>,
    /// What the command did to each member account it changed, on the command's last entry in
    /// that account's history (so every account state is the fold of its entries' effects;
    /// `audit` checks it). None in entries written before effects were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fx: Option<Vec<Effect>>,
    #[serde(with = "serde_bytes")]
    pub ph: Vec<u8>,
    #[serde(with = "serde_bytes", default, skip_serializing_if = "Vec::is_empty")]
    pub h: Vec<u8>,
}

impl Entry {
    pub fn kind(&self) -> &'static str {
        self.cmd.kind()
    }
    pub fn compute_hash(&self) -> Vec<u8> {
        debug_assert!(self.h.is_empty());
        let bytes = crate::store::encode(self);
        blake3::hash(&bytes).as_bytes().to_vec()
    }
}

/// What an earn recorded beyond its lots (issue #3: "when a cap cuts an award, the result says so").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarnNote {
    /// (rule id, what cut it: `rule:<id>:<window>` / `programme:<window>` / `budget:<campaign>` /
    /// `max_award`, points cut)
    pub cuts: Vec<(String, String, i64)>,
    /// rules that fired but were cut to zero (no lot)
    pub zero: Vec<String>,
    /// (from, to): automatic tier upgrade
    pub tier: Option<(String, String)>,
}

/// What a successful command returns. `replayed` is true when the id had been applied before
/// and this is the original result (AIP-155 semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub id: String,
    pub seq: u64,
    pub kind: &'static str,
    pub amount: i64,
    pub credited: i64,
    pub lots_used: Vec<(AcctKey, u64, i64)>,
    pub lots_made: Vec<(AcctKey, u64, i64)>,
    pub entries: u32,
    pub cursor: Option<String>,
    pub replayed: bool,
}

impl Receipt {
    /// The receipt of a command from the entries it wrote (one, or one per account for expire).
    pub fn from_entries(es: &[Entry], replayed: bool) -> Receipt {
        let e = &es[0];
        // sized up front: collecting a flat_map grew each list from empty (all receipts of
        // `writer_bench 20000 20000 4`: 141 M → 104 M instructions, callgrind)
        let slices = |pick: fn(&Entry) -> &Vec<Consumed>| {
            let mut out = Vec::with_capacity(es.iter().map(|e| pick(e).len()).sum());
            for c in es.iter().flat_map(pick) {
                out.push((c.t.clone(), c.lot.i, c.n));
            }
            out
        };
        Receipt {
            id: e.id.clone(),
            seq: e.seq,
            kind: e.kind(),
            amount: es.iter().map(|e| e.amount).sum(),
            credited: es.iter().map(|e| e.credited).sum(),
            lots_used: slices(|e| &e.used),
            lots_made: slices(|e| &e.made),
            entries: es.len() as u32,
            cursor: es[es.len() - 1].cursor.clone(),
            replayed,
        }
    }
}
