//! Records stored in LMDB. Values are msgpack maps with short keys and a schema version `v`, so
//! the `msgpack` Python package (or any other tool) can read them from another process.
use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, LedgerError, Result};

/// An account key or point type id: inline up to 24 bytes (`member/type` keys are), so building,
/// copying and comparing one needs no heap allocation and no pointer chase.
pub type AcctKey = compact_str::CompactString;
use crate::limits::*;

pub const SCHEMA_VERSION: u8 = 1;
pub type Ms = i64;

/// How long a lot lives (EX-1, EX-4, EX-5). Times are UTC milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Validity {
    /// Points never expire.
    None,
    /// N days / months / years from the earn time (EX-1: 3 years; EX-4: 1 or 3 years).
    Rolling { count: u32, unit: PeriodUnit },
    /// Everything earned in a year expires at the end of that calendar day (EX-5: year end = 12-31):
    /// expiry is the first instant after `month`-`day` of the earn year, or of the next year when
    /// the lot is earned after that day.
    FixedDate { month: u32, day: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodUnit {
    Days,
    Months,
    Years,
}

impl Validity {
    pub fn check(&self) -> Result<()> {
        match *self {
            Validity::None => Ok(()),
            Validity::Rolling { count, .. } if count == 0 || count > VALIDITY_PERIODS_MAX => {
                invalid(format!("validity count must be 1..={VALIDITY_PERIODS_MAX}"))
            }
            Validity::Rolling { .. } => Ok(()),
            Validity::FixedDate { month, day } => match NaiveDate::from_ymd_opt(2024, month, day) {
                Some(_) => Ok(()),
                None => invalid(format!("no such calendar date {month:02}-{day:02}")),
            },
        }
    }

    /// The instant a lot earned at `earned_at` expires (the lot is expired when now >= expiry).
    pub fn expiry(&self, earned_at: Ms) -> Option<Ms> {
        let earned = Utc.timestamp_millis_opt(earned_at).single()?;
        match *self {
            Validity::None => None,
            Validity::Rolling { count, unit } => {
                let t: Option<DateTime<Utc>> = match unit {
                    PeriodUnit::Days => earned.checked_add_days(chrono::Days::new(count as u64)),
                    PeriodUnit::Months => earned.checked_add_months(Months::new(count)),
                    PeriodUnit::Years => earned.checked_add_months(Months::new(count * 12)),
                };
                t.map(|t| t.timestamp_millis())
            }
            Validity::FixedDate { month, day } => {
                let end_of = |year: i32| -> Option<Ms> {
                    // Feb 29 in a non-leap year falls back to Feb 28.
                    let d = NaiveDate::from_ymd_opt(year, month, day)
                        .or_else(|| NaiveDate::from_ymd_opt(year, month, day - 1))?;
                    let next = d.succ_opt()?.and_hms_opt(0, 0, 0)?;
                    Some(Utc.from_utc_datetime(&next).timestamp_millis())
                };
                let this_year = end_of(earned.year())?;
                if earned_at < this_year { Some(this_year) } else { end_of(earned.year() + 1) }
            }
        }
    }
}

/// Cash value of points (RD-20): `points` points are worth `minor` minor units (2 pts = 100 fen).
/// An order must use at least `min_points`, a multiple of `step_points`, at most `max_points`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashRate {
    pub points: i64,
    pub minor: i64,
    pub min_points: i64,
    pub step_points: i64,
    pub max_points: Option<i64>,
}

impl CashRate {
    pub fn check(&self) -> Result<()> {
        if self.points <= 0 || self.minor <= 0 || self.points > RATE_TERM_MAX || self.minor > RATE_TERM_MAX {
            return invalid(format!("cash rate terms must be 1..={RATE_TERM_MAX}"));
        }
        if self.min_points < 1 || self.step_points < 1 || self.min_points > AMOUNT_MAX || self.step_points > AMOUNT_MAX {
            return invalid("cash rate min_points and step_points must be positive");
        }
        if let Some(m) = self.max_points {
            if m < self.min_points || m > AMOUNT_MAX {
                return invalid("cash rate max_points must be >= min_points");
            }
        }
        Ok(())
    }

    /// Points an order asking for `asked` may use: capped at the maximum, rounded down to the
    /// step; refused below the minimum (T6-T8: 4 → refused, 1,237 → 1,235, 750,000 → 500,000).
    pub fn usable_points(&self, asked: i64) -> Result<i64> {
        if asked <= 0 {
            return invalid("points must be positive");
        }
        let capped = self.max_points.map_or(asked, |m| asked.min(m));
        let used = capped - capped % self.step_points;
        if used < self.min_points {
            return invalid(format!("at least {} points per order", self.min_points));
        }
        Ok(used)
    }

    /// Check an exact order amount against min/step/max (redeem does not round for the caller).
    pub fn check_order(&self, amount: i64) -> Result<()> {
        if amount < self.min_points {
            return invalid(format!("at least {} points per order", self.min_points));
        }
        if amount % self.step_points != 0 {
            return invalid(format!("points must be a multiple of {}", self.step_points));
        }
        if let Some(m) = self.max_points {
            if amount > m {
                return Err(LedgerError::LimitExceeded(format!("at most {m} points per order")));
            }
        }
        Ok(())
    }

    /// Cash value in minor units, rounded down (T4: 58 pts at 2:1.00 → 2,900 fen).
    pub fn cash_minor(&self, points: i64) -> i64 {
        ((points as i128 * self.minor as i128) / self.points as i128) as i64
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvertRate {
    pub to: String,
    pub num: i64,
    pub den: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointType {
    pub id: String,
    /// Lower spends first (RD-12: merchant points before internal points).
    pub priority: i32,
    pub validity: Validity,
    pub transferable: bool,
    pub cash: CashRate,
    pub convert_to: Vec<ConvertRate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Programme {
    pub v: u8,
    pub id: String,
    pub name: String,
    /// Sorted by (priority, id): the spending order.
    pub types: Vec<PointType>,
}

impl Programme {
    pub fn point_type(&self, id: &str) -> Result<&PointType> {
        self.types.iter().find(|t| t.id == id).ok_or_else(|| LedgerError::UnknownPointType(id.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Active,
    Frozen,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub v: u8,
    pub id: String,
    pub programme: String,
    pub phone: String,
    /// blake3 keyed hash of the national ID number, hex (RK-9: never stored in clear).
    pub id_hash: Option<String>,
    /// Organisation path province/city/county/outlet (MA-13).
    pub org: Vec<String>,
    pub tier: String,
    pub kind: String,
    pub status: MemberStatus,
    pub created_at: Ms,
    /// Card numbers bound to the member, in binding order (MA-2, MA-10, MA-14); each also has
    /// its `cards` record, which makes it unique.
    #[serde(default)]
    pub cards: Vec<String>,
}

/// A card bound to a member (`cards` database, keyed by card number): the card's one owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub v: u8,
    pub card: String,
    pub member: String,
    pub bound_at: Ms,
    /// the journal entry that bound it
    pub seq: u64,
}

/// A card number: digits only, CARD_NUMBER_LENGTH_MIN..=CARD_NUMBER_LENGTH_MAX of them. No
/// check digit is required: store and IC cards do not all carry a Luhn digit.
pub fn check_card(card: &str) -> Result<()> {
    if card.is_empty() {
        return invalid("card number must not be empty");
    }
    // ASCII digits first (full-width digits are not digits here), then the length.
    if !card.bytes().all(|b| b.is_ascii_digit()) {
        return invalid("card number may only use the digits 0-9");
    }
    if card.len() > CARD_NUMBER_LENGTH_MAX {
        return Err(LedgerError::LimitExceeded(format!("card number longer than {CARD_NUMBER_LENGTH_MAX} digits")));
    }
    if card.len() < CARD_NUMBER_LENGTH_MIN {
        return invalid(format!("card number must have {CARD_NUMBER_LENGTH_MIN}..={CARD_NUMBER_LENGTH_MAX} digits"));
    }
    Ok(())
}

/// A parcel of points with its own earn time and expiry (EX-1). `s` is the journal entry that
/// created it, so a reversal can restore the same lot with the same expiry.
///
/// Stored as a positional msgpack array `[id, remaining, amount, earned_at, expires_at|nil,
/// effective_at, source_seq]`: accounts carry many lots, and a compact record means more
/// accounts per 4 KiB page, so fewer pages dirtied per commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    pub i: u64,
    /// remaining
    pub r: i64,
    /// original amount
    pub a: i64,
    /// earned at
    pub e: Ms,
    /// expires at (None: never)
    pub x: Option<Ms>,
    /// effective at (EX-7: pending until then)
    pub f: Ms,
    /// source journal seq
    pub s: u64,
    /// the rule (id, version) that produced it (issue #3); stored as an 8th element only when
    /// set, so lots of plain credits keep the 7-element layout
    pub g: Option<Box<(String, u32)>>,
}

impl Serialize for Lot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(if self.g.is_some() { 8 } else { 7 })?;
        t.serialize_element(&self.i)?;
        t.serialize_element(&self.r)?;
        t.serialize_element(&self.a)?;
        t.serialize_element(&self.e)?;
        t.serialize_element(&self.x)?;
        t.serialize_element(&self.f)?;
        t.serialize_element(&self.s)?;
        if let Some(g) = &self.g {
            t.serialize_element(&**g)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Lot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Lot, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Lot;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a lot [id, remaining, amount, earned_at, expires_at, effective_at, source_seq, rule?]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Lot, A::Error> {
                use serde::de::Error;
                let i = a.next_element()?.ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let r = a.next_element()?.ok_or_else(|| A::Error::invalid_length(1, &self))?;
                let am = a.next_element()?.ok_or_else(|| A::Error::invalid_length(2, &self))?;
                let e = a.next_element()?.ok_or_else(|| A::Error::invalid_length(3, &self))?;
                let x = a.next_element()?.ok_or_else(|| A::Error::invalid_length(4, &self))?;
                let f = a.next_element()?.ok_or_else(|| A::Error::invalid_length(5, &self))?;
                let s = a.next_element()?.ok_or_else(|| A::Error::invalid_length(6, &self))?;
                let g: Option<Option<(String, u32)>> = a.next_element()?;
                Ok(Lot { i, r, a: am, e, x, f, s, g: g.flatten().map(Box::new) })
            }
        }
        d.deserialize_seq(V)
    }
}

impl Lot {
    pub fn spendable_at(&self, now: Ms) -> bool {
        self.f <= now && self.x.is_none_or(|x| now < x)
    }
    /// FEFO order: earliest expiry first, never-expiring last, then oldest lot.
    pub fn fefo_key(&self) -> (i64, u64) {
        (self.x.unwrap_or(i64::MAX), self.i)
    }
}

/// A member account (one per member and point type) or a system account (lots empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub v: u8,
    /// balance: for a member account, Σ lot remaining
    pub b: i64,
    /// points currently held out of this account by open holds (informational)
    #[serde(default)]
    pub hd: i64,
    /// last journal seq that touched this account (history chain head), 0 = none
    #[serde(default)]
    pub ls: u64,
    #[serde(default)]
    pub lots: Vec<Lot>,
}

impl Account {
    /// An account no command has touched yet (what a key without a record reads as).
    pub fn empty() -> Account {
        Account { v: SCHEMA_VERSION, ..Default::default() }
    }

    /// A copy for a command to change, with room for one more lot: a credit's new lot then
    /// goes in without growing the list (a reallocation per credit).
    /// The copy's lots go into `lots` (an emptied list from the writer's `ListPool`), given at
    /// least ACCOUNT_LOTS_CAPACITY_MIN: the lists circulate between accounts of different
    /// sizes, and an exact fit made every other copy reallocate (~6% of the writer's samples).
    pub fn clone_with_room(&self, mut lots: Vec<Lot>) -> Account {
        lots.clear();
        lots.reserve((self.lots.len() + 1).max(ACCOUNT_LOTS_CAPACITY_MIN));
        lots.extend_from_slice(&self.lots);
        Account { v: self.v, b: self.b, hd: self.hd, ls: self.ls, lots }
    }

    /// What one command did to this account, `before` → `self` (lots matched by id), or None
    /// when nothing changed. Lots are kept in FEFO order and their keys are unique, so the two
    /// lists merge in one walk.
    pub fn effect_since(&self, before: &Account, key: &AcctKey, lists: &mut ListPool) -> Option<Effect> {
        let (mut d, mut n) = (lists.deltas(), lists.lots());
        let (mut old, mut new) = (before.lots.iter().peekable(), self.lots.iter().peekable());
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(o), Some(l)) if o.i == l.i => {
                    debug_assert_eq!(Lot { r: l.r, ..(*o).clone() }, **l, "only a lot's remaining changes");
                    if o.r != l.r {
                        d.push((o.i, l.r - o.r));
                    }
                    old.next();
                    new.next();
                }
                (Some(o), l) if l.is_none_or(|l| o.fefo_key() < l.fefo_key()) => {
                    d.push((o.i, -o.r));
                    old.next();
                }
                (_, Some(l)) => {
                    n.push((*l).clone());
                    new.next();
                }
                (Some(_), None) => unreachable!("handled above"),
            }
        }
        if self.b == before.b && self.hd == before.hd && d.is_empty() && n.is_empty() {
            lists.keep_deltas(d);
            lists.keep_lots(n);
            return None;
        }
        Some(Effect { a: key.clone(), b: self.b - before.b, hd: self.hd - before.hd, d, n })
    }

    /// Apply one command's effect (the fold `audit` checks: every member account's state is
    /// the fold of its entries' effects). Refuses an effect that does not fit the account.
    pub fn apply_effect(&mut self, fx: &Effect) -> std::result::Result<(), String> {
        // (the audit folds whatever the store holds: overflow is a finding, not a panic)
        let overflow = || "overflows a balance".to_string();
        self.b = self.b.checked_add(fx.b).ok_or_else(overflow)?;
        self.hd = self.hd.checked_add(fx.hd).ok_or_else(overflow)?;
        for (id, delta) in &fx.d {
            let lot = self.lots.iter_mut().find(|l| l.i == *id).ok_or_else(|| format!("changes lot {id}, which the account does not hold"))?;
            lot.r = lot.r.checked_add(*delta).filter(|r| *r >= 0).ok_or_else(|| format!("takes more from lot {id} than it holds"))?;
        }
        self.lots.retain(|l| l.r > 0);
        for lot in &fx.n {
            let key = lot.fefo_key();
            let pos = self.lots.partition_point(|l| l.fefo_key() < key);
            if self.lots.get(pos).is_some_and(|l| l.i == lot.i) {
                return Err(format!("adds lot {}, which the account holds already", lot.i));
            }
            self.lots.insert(pos, lot.clone());
        }
        Ok(())
    }
}

/// What one command did to one member account (carried by its journal entry): balance and held
/// changes, changes of the remaining of lots it held (by lot id; a lot left at 0 is gone), and
/// the lots it gained, as they are after the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub a: AcctKey,
    pub b: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hd: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub d: Vec<(u64, i64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub n: Vec<Lot>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Emptied lists of sealed journal entries, for the writer to fill again. The writer builds
/// an entry's lists and the sealer, on the other core, serialized and freed them: the writer's
/// next allocations then came from memory last written over there, a cache miss each (~11% of
/// the writer's time at 1M members, perf). The sealer sends them back emptied (only reading an
/// entry, it leaves the lists' memory as the writer wrote it), and the writer takes the newest
/// first. Bounded: at most `LIST_POOL_LISTS_MAX` of each kind, none longer than
/// `LIST_POOL_CAPACITY_MAX`.
#[derive(Default)]
pub struct ListPool {
    postings: Vec<Vec<Posting>>,
    consumed: Vec<Vec<Consumed>>,
    links: Vec<Vec<Link>>,
    effects: Vec<Vec<Effect>>,
    deltas: Vec<Vec<(u64, i64)>>,
    lots: Vec<Vec<Lot>>,
}

fn keep<T>(pool: &mut Vec<Vec<T>>, mut list: Vec<T>) {
    if list.capacity() > 0 && list.capacity() <= LIST_POOL_CAPACITY_MAX && pool.len() < LIST_POOL_LISTS_MAX {
        list.clear();
        pool.push(list);
    }
}

/// `more` on top of `pool` (they are the newer lists), up to the bound.
fn absorb<T>(pool: &mut Vec<Vec<T>>, mut more: Vec<Vec<T>>) {
    if pool.is_empty() {
        *pool = more;
    } else {
        more.truncate(LIST_POOL_LISTS_MAX.saturating_sub(pool.len()));
        pool.append(&mut more);
    }
    pool.truncate(LIST_POOL_LISTS_MAX);
}

impl ListPool {
    pub fn postings(&mut self) -> Vec<Posting> {
        self.postings.pop().unwrap_or_default()
    }
    pub fn consumed(&mut self) -> Vec<Consumed> {
        self.consumed.pop().unwrap_or_default()
    }
    pub fn links(&mut self) -> Vec<Link> {
        self.links.pop().unwrap_or_default()
    }
    pub fn effects(&mut self) -> Vec<Effect> {
        self.effects.pop().unwrap_or_default()
    }
    pub fn deltas(&mut self) -> Vec<(u64, i64)> {
        self.deltas.pop().unwrap_or_default()
    }
    pub fn lots(&mut self) -> Vec<Lot> {
        self.lots.pop().unwrap_or_default()
    }
    pub fn keep_postings(&mut self, l: Vec<Posting>) {
        keep(&mut self.postings, l)
    }
    pub fn keep_consumed(&mut self, l: Vec<Consumed>) {
        keep(&mut self.consumed, l)
    }
    pub fn keep_links(&mut self, l: Vec<Link>) {
        keep(&mut self.links, l)
    }
    /// An effect list, and the lists of the effects in it.
    pub fn keep_effects(&mut self, mut l: Vec<Effect>) {
        for e in l.drain(..) {
            self.keep_deltas(e.d);
            self.keep_lots(e.n);
        }
        keep(&mut self.effects, l)
    }
    pub fn keep_deltas(&mut self, l: Vec<(u64, i64)>) {
        keep(&mut self.deltas, l)
    }
    pub fn keep_lots(&mut self, l: Vec<Lot>) {
        keep(&mut self.lots, l)
    }
    /// Add another pool's lists (those sent back by the sealer) on top of this one's.
    pub fn absorb(&mut self, more: ListPool) {
        absorb(&mut self.postings, more.postings);
        absorb(&mut self.consumed, more.consumed);
        absorb(&mut self.links, more.links);
        absorb(&mut self.effects, more.effects);
        absorb(&mut self.deltas, more.deltas);
        absorb(&mut self.lots, more.lots);
    }
    /// Lists held, of every kind.
    pub fn len(&self) -> usize {
        self.postings.len() + self.consumed.len() + self.links.len() + self.effects.len() + self.deltas.len() + self.lots.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A lot slice consumed by a debit: enough to put it back with its original expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumed {
    /// point type (inline: slices are cloned into receipts and entries)
    pub t: AcctKey,
    pub lot: Lot,
    /// amount taken from the lot
    pub n: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    Open,
    Captured,
    Voided,
}

impl HoldState {
    pub fn name(&self) -> &'static str {
        match self {
            HoldState::Open => "open",
            HoldState::Captured => "captured",
            HoldState::Voided => "voided",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub v: u8,
    pub id: String,
    pub member: String,
    pub programme: String,
    pub amount: i64,
    pub captured: i64,
    pub state: HoldState,
    pub expires_at: Ms,
    pub seq: u64,
    pub consumed: Vec<Consumed>,
    /// The one-time code this hold requires before capture (RK-5), when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp: Option<HoldOtp>,
}

/// A hold's code: its keyed hash (never the code) and the wrong attempts still allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldOtp {
    pub hash: String,
    pub left: u32,
}

/// A notification waiting in `outbox` (key: journal seq big-endian ++ hold id) for delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub v: u8,
    pub kind: String,
    pub hold: String,
    pub member: String,
    pub phone: String,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
    pub expires_at: Ms,
}

/// A double-entry posting: `amount` of `point_type` from one account key to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub t: AcctKey,
    pub from: AcctKey,
    pub to: AcctKey,
    pub n: i64,
}

/// A link in an account's history chain: the previous entry that touched this account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub acct: AcctKey,
    pub prev: u64,
}

/// Idempotency record, written in the same transaction as the effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemRecord {
    pub v: u8,
    pub seq: u64,
    #[serde(with = "serde_bytes")]
    pub h: crate::command::Fingerprint,
    /// number of journal entries the command wrote (expire writes one per account)
    pub n: u32,
}

pub fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return invalid(format!("{what} must not be empty"));
    }
    if id.len() > ID_LENGTH_MAX {
        return Err(LedgerError::LimitExceeded(format!("{what} longer than {ID_LENGTH_MAX} bytes")));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@/".contains(&b)) {
        return invalid(format!("{what} {id:?} may only use letters, digits and -_.:@/"));
    }
    Ok(())
}

/// Member, programme and point type ids become parts of account keys (`member/type`,
/// `#programme/kind/type`), so they may not contain the `/` separator: two accounts would share a
/// key, and the expiry sweep and the audit, which split keys on `/`, would fail.
pub fn check_key_id(what: &str, id: &str) -> Result<()> {
    check_id(what, id)?;
    if id.contains('/') {
        return invalid(format!("{what} {id:?} may not contain '/'"));
    }
    Ok(())
}

pub fn check_time(what: &str, t: Ms) -> Result<()> {
    if !(TIME_MS_MIN..=TIME_MS_MAX).contains(&t) {
        return invalid(format!("{what} {t} is outside {TIME_MS_MIN}..={TIME_MS_MAX} (UTC ms, years 1970-9999)"));
    }
    Ok(())
}

pub fn check_text(what: &str, s: &str) -> Result<()> {
    if s.len() > TEXT_LENGTH_MAX {
        return Err(LedgerError::LimitExceeded(format!("{what} longer than {TEXT_LENGTH_MAX} bytes")));
    }
    Ok(())
}

pub fn check_amount(amount: i64) -> Result<()> {
    if amount <= 0 {
        return invalid(format!("amount must be positive, got {amount}"));
    }
    if amount > AMOUNT_MAX {
        return Err(LedgerError::LimitExceeded(format!("amount {amount} exceeds {AMOUNT_MAX}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    fn ms(y: i32, m: u32, d: u32) -> Ms {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap().timestamp_millis()
    }

    #[test]
    fn t14_three_years_from_earn_date() {
        let v = Validity::Rolling { count: 3, unit: PeriodUnit::Years };
        assert_eq!(v.expiry(ms(2024, 5, 10)), Some(ms(2027, 5, 10)));
    }

    #[test]
    fn ex5_year_end() {
        let v = Validity::FixedDate { month: 12, day: 31 };
        assert_eq!(v.expiry(ms(2024, 5, 10)), Some(ms(2025, 1, 1)));
        assert_eq!(v.expiry(ms(2024, 12, 31) + 5), Some(ms(2025, 1, 1)));
        assert_eq!(v.expiry(ms(2025, 1, 1)), Some(ms(2026, 1, 1)));
    }

    #[test]
    fn rd20_t6_t8_500_to_1() {
        let r = CashRate { points: 500, minor: 100, min_points: 5, step_points: 5, max_points: Some(500_000) };
        assert!(r.usable_points(4).is_err());
        assert_eq!(r.usable_points(5).unwrap(), 5);
        assert_eq!(r.cash_minor(5), 1);
        assert_eq!(r.usable_points(1_237).unwrap(), 1_235);
        assert_eq!(r.cash_minor(1_235), 247);
        assert_eq!(r.usable_points(750_000).unwrap(), 500_000);
        assert_eq!(r.cash_minor(500_000), 100_000);
    }

    #[test]
    fn t4_two_to_one() {
        let r = CashRate { points: 2, minor: 100, min_points: 1, step_points: 1, max_points: None };
        assert_eq!(r.cash_minor(58), 2_900);
    }

    #[test]
    fn a_list_pool_hands_back_kept_lists_emptied_and_keeps_a_bounded_number() {
        let lot = Lot { i: 1, r: 5, a: 5, e: 0, x: None, f: 0, s: 1, g: None };
        let mut pool = ListPool::default();
        let mut kept = Vec::with_capacity(4);
        kept.push(lot.clone());
        let ptr = kept.as_ptr();
        pool.keep_lots(kept);
        let again = pool.lots();
        assert!(again.is_empty() && again.capacity() == 4 && again.as_ptr() == ptr, "the same list, emptied");
        assert_eq!(pool.lots().capacity(), 0, "an empty pool hands out new lists");
        // an effect list brings the lists of its effects back with it
        let fx = vec![Effect { a: AcctKey::from("m/a"), b: 5, hd: 0, d: vec![(1, -5)], n: vec![lot.clone()] }];
        pool.keep_effects(fx);
        assert_eq!((pool.effects().capacity(), pool.deltas().capacity(), pool.lots().capacity()), (1, 1, 1));
        // lists without room, and lists past the capacity bound, are not kept
        pool.keep_postings(Vec::new());
        pool.keep_postings(Vec::with_capacity(LIST_POOL_CAPACITY_MAX + 1));
        assert!(pool.is_empty());
        // at most LIST_POOL_LISTS_MAX of a kind, also when absorbing another pool
        let mut other = ListPool::default();
        for _ in 0..LIST_POOL_LISTS_MAX + 10 {
            pool.keep_links(Vec::with_capacity(1));
            other.keep_links(Vec::with_capacity(1));
        }
        assert_eq!(pool.len(), LIST_POOL_LISTS_MAX);
        pool.links();
        pool.absorb(other);
        assert_eq!(pool.len(), LIST_POOL_LISTS_MAX);
    }
}
