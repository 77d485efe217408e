//! The rule model (ER-31, ER-32): rules, conditions, actions, campaigns, tiers and the earning
//! policy are data, stored in LMDB as msgpack maps and checked here with errors that name the
//! bad field (`rule.when.all[1].amount: min must be <= max`).
use serde::{Deserialize, Serialize};

use crate::error::{LedgerError, Result};
use crate::limits::*;
use crate::model::{check_id, check_key_id, check_text, check_time, Ms, Validity};

/// An earning event (issue #3): something a member did that may earn points.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// deposit, insurance, card_spend, purchase, signup, referral, review, birthday, checkin,
    /// quiz, custom… (free text: rules select kinds by name)
    pub kind: String,
    pub member: String,
    /// Amount in minor units (fen): 10,000.00 CNY = 1_000_000. For a quiz, the correct answers.
    pub amount: i64,
    /// Term in days (deposits, wealth products: ER-1/3/4/7); 0 when not applicable.
    pub term_days: u32,
    pub channel: String,
    pub merchant: String,
    /// Merchant category (ER-6: consumption type).
    pub category: String,
    /// Organisation path province/city/county/outlet (MA-13); empty = the member's.
    pub org: Vec<String>,
    /// Free attributes (card type, product code, referrer, …).
    pub attrs: Vec<(String, String)>,
}

impl Event {
    pub fn check(&self) -> Result<()> {
        let bad = |f: &str, m: String| Err(LedgerError::InvalidArgument(format!("event.{f}: {m}")));
        if let Err(e) = check_key_id("member id", &self.member) {
            return bad("member", e.to_string());
        }
        if self.kind.is_empty() {
            return bad("kind", "must not be empty".into());
        }
        for (f, s) in [("kind", &self.kind), ("channel", &self.channel), ("merchant", &self.merchant), ("category", &self.category)] {
            if s.len() > TEXT_LENGTH_MAX {
                return Err(LedgerError::LimitExceeded(format!("event.{f}: longer than {TEXT_LENGTH_MAX} bytes")));
            }
        }
        if self.amount < 0 || self.amount > EVENT_AMOUNT_MINOR_MAX {
            return bad("amount", format!("must be 0..={EVENT_AMOUNT_MINOR_MAX} minor units, got {}", self.amount));
        }
        if self.term_days > EVENT_TERM_DAYS_MAX {
            return bad("term_days", format!("must be 0..={EVENT_TERM_DAYS_MAX}"));
        }
        if self.org.len() > 4 || self.org.iter().any(|s| s.len() > TEXT_LENGTH_MAX) {
            return bad("org", "is province/city/county/outlet (at most 4 parts of text)".into());
        }
        if self.attrs.len() > EVENT_ATTRS_MAX {
            return Err(LedgerError::LimitExceeded(format!("event.attrs: at most {EVENT_ATTRS_MAX} attributes")));
        }
        for (k, v) in &self.attrs {
            if k.is_empty() || k.len() > ID_LENGTH_MAX || v.len() > TEXT_LENGTH_MAX {
                return bad("attrs", format!("key {k:?} must be 1..={ID_LENGTH_MAX} bytes, values at most {TEXT_LENGTH_MAX}"));
            }
        }
        Ok(())
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Exclusive: applies only when it is the first rule (by priority) to fire, and stops every rule
/// after it. Stackable: adds to the others unless an exclusive rule fired first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stacking {
    #[default]
    Stackable,
    Exclusive,
}

/// Cap windows in programme-local calendar time (ER-30, RK-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Day,
    Month,
    Year,
    Lifetime,
}

impl Window {
    pub fn name(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Month => "month",
            Window::Year => "year",
            Window::Lifetime => "lifetime",
        }
    }
}

/// At most `max` points per member per window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cap {
    pub window: Window,
    pub max: i64,
}

/// A condition tree over the dimensions of ER-31.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    /// The member's tier (before this event) is one of these.
    Tier(Vec<String>),
    /// `from <= at < to` (UTC ms): a campaign or holiday window.
    Between { from: Ms, to: Ms },
    /// ISO weekdays 1 = Monday … 7 = Sunday, in programme time.
    Weekdays(Vec<u8>),
    /// Days of the month 1..=31 in programme time (member day: the 18th).
    MonthDays(Vec<u8>),
    /// Minutes after local midnight, `from <= t < to`; from > to wraps past midnight.
    TimeOfDay { from: u32, to: u32 },
    /// The event's organisation path (or the member's) lies in this subtree.
    Org(Vec<String>),
    Channel(Vec<String>),
    Merchant(Vec<String>),
    Category(Vec<String>),
    /// Event amount in minor units, inclusive bounds.
    Amount { min: Option<i64>, max: Option<i64> },
    /// Term in days, inclusive bounds.
    Term { min: Option<u32>, max: Option<u32> },
    /// The member's kind (individual, corporate, staff) or one of its groups (MA-8).
    Group(Vec<String>),
    /// Attribute `key` has one of `values` (any value when `values` is empty).
    Attr { key: String, values: Vec<String> },
    /// Attribute `key` is an integer within inclusive bounds.
    AttrRange { key: String, min: Option<i64>, max: Option<i64> },
    /// The member has not made a purchase before this event.
    FirstPurchase,
}

/// What a rule awards when its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// floor(amount × points / per_minor): 1 point per full 1.00 CNY is {points 1, per_minor 100}
    /// (ER-5, T12: 99.99 → 99); insurance 10,000 CNY → 5 is {5, 1_000_000} (ER-2).
    Rate { points: i64, per_minor: i64 },
    /// floor(amount × term_days × points / (per_minor × per_days)) (ER-1, T1):
    /// {16, 1_000_000, 365}: 10,000 CNY × 1 y → 16, 50,000 × 1 y → 80, 10,000 × 3 y → 48.
    AmountTerm { points: i64, per_minor: i64, per_days: i64 },
    /// A fixed bonus (sign-up, review, birthday, ER-13/14/16).
    Fixed { points: i64 },
    /// Multiplies what the rate rules (or the rules listed in `of`) awarded for this event:
    /// the extra floor(base × (num − den) / den) is its own lot (CP-1..3: double points = 2/1).
    Multiplier { num: i64, den: i64, of: Vec<String> },
    /// Daily check-in (ER-17, T16): `daily` points, plus `bonus` on every `streak`-th
    /// consecutive day; a missed day resets the streak; a second check-in in a day earns nothing.
    Checkin { daily: i64, streak: u32, bonus: i64 },
    /// Referral (ER-15): on the invitee's first purchase, when it signed up with a `referrer`
    /// attribute, `inviter` points to the referrer and `invitee` points to the member.
    Referral { inviter: i64, invitee: i64 },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Rate { .. } => "rate",
            Action::AmountTerm { .. } => "amount_term",
            Action::Fixed { .. } => "fixed",
            Action::Multiplier { .. } => "multiplier",
            Action::Checkin { .. } => "checkin",
            Action::Referral { .. } => "referral",
        }
    }
    /// Rules whose award scales with the amount: the ones multipliers and tiers apply to.
    pub fn is_rate(&self) -> bool {
        matches!(self, Action::Rate { .. } | Action::AmountTerm { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub programme: String,
    pub id: String,
    /// Assigned by the ledger: 1 on define, +1 on every update or disable.
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Event kinds the rule applies to; empty = every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Higher first; ties by rule id.
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub stacking: Stacking,
    #[serde(default)]
    pub when: Option<Cond>,
    pub action: Action,
    pub point_type: String,
    /// Validity of the lots it creates; None = the point type's.
    #[serde(default)]
    pub validity: Option<Validity>,
    /// EX-7: the lots take effect at the start of the next programme day.
    #[serde(default)]
    pub pending: bool,
    /// Per-member caps of this rule (ER-30).
    #[serde(default)]
    pub caps: Vec<Cap>,
    /// At most this many points per event (quiz: 5 × 10 = 50).
    #[serde(default)]
    pub max_award: Option<i64>,
    /// The campaign it belongs to: active only in the campaign's window, paid from its budget.
    #[serde(default)]
    pub campaign: Option<String>,
}

fn yes() -> bool {
    true
}

fn rule_err<T>(path: &str, msg: impl std::fmt::Display) -> Result<T> {
    Err(LedgerError::InvalidRule(format!("{path}: {msg}")))
}

fn check_list(path: &str, xs: &[String]) -> Result<()> {
    if xs.is_empty() {
        return rule_err(path, "must list at least one value");
    }
    if xs.len() > RULE_LIST_VALUES_MAX {
        return rule_err(path, format!("at most {RULE_LIST_VALUES_MAX} values"));
    }
    for (i, x) in xs.iter().enumerate() {
        if x.is_empty() || x.len() > TEXT_LENGTH_MAX {
            return rule_err(&format!("{path}[{i}]"), format!("must be 1..={TEXT_LENGTH_MAX} bytes"));
        }
    }
    Ok(())
}

fn check_points(path: &str, n: i64, zero_ok: bool) -> Result<()> {
    if n < 0 || (!zero_ok && n == 0) || n > AMOUNT_MAX {
        return rule_err(path, format!("must be {}..={AMOUNT_MAX}, got {n}", if zero_ok { 0 } else { 1 }));
    }
    Ok(())
}

fn check_factor(path: &str, n: i64) -> Result<()> {
    if !(1..=RATE_TERM_MAX).contains(&n) {
        return rule_err(path, format!("must be 1..={RATE_TERM_MAX}, got {n}"));
    }
    Ok(())
}

fn check_range<T: PartialOrd + Copy>(path: &str, min: Option<T>, max: Option<T>) -> Result<()> {
    if let (Some(a), Some(b)) = (min, max) {
        if a > b {
            return rule_err(path, "min must be <= max");
        }
    }
    Ok(())
}

impl Cond {
    /// Check the tree; `nodes` counts conditions for the per-rule limit.
    pub fn check(&self, path: &str, depth: usize, nodes: &mut usize) -> Result<()> {
        *nodes += 1;
        if *nodes > CONDITIONS_PER_RULE_MAX {
            return Err(LedgerError::LimitExceeded(format!("{path}: a rule has at most {CONDITIONS_PER_RULE_MAX} conditions")));
        }
        if depth > CONDITION_DEPTH_MAX {
            return Err(LedgerError::LimitExceeded(format!("{path}: conditions nest at most {CONDITION_DEPTH_MAX} deep")));
        }
        match self {
            Cond::All(cs) | Cond::Any(cs) => {
                let name = if matches!(self, Cond::All(_)) { "all" } else { "any" };
                if cs.is_empty() {
                    return rule_err(&format!("{path}.{name}"), "must hold at least one condition");
                }
                for (i, c) in cs.iter().enumerate() {
                    c.check(&format!("{path}.{name}[{i}]"), depth + 1, nodes)?;
                }
            }
            Cond::Not(c) => c.check(&format!("{path}.not"), depth + 1, nodes)?,
            Cond::Tier(xs) => check_list(&format!("{path}.tier"), xs)?,
            Cond::Channel(xs) => check_list(&format!("{path}.channel"), xs)?,
            Cond::Merchant(xs) => check_list(&format!("{path}.merchant"), xs)?,
            Cond::Category(xs) => check_list(&format!("{path}.category"), xs)?,
            Cond::Group(xs) => check_list(&format!("{path}.group"), xs)?,
            Cond::Org(xs) => {
                check_list(&format!("{path}.org"), xs)?;
                if xs.len() > 4 {
                    return rule_err(&format!("{path}.org"), "is a path of at most 4 parts (province/city/county/outlet)");
                }
            }
            Cond::Between { from, to } => {
                let p = format!("{path}.between");
                check_time(&format!("{p}.from"), *from).or_else(|e| rule_err(&p, e))?;
                check_time(&format!("{p}.to"), *to).or_else(|e| rule_err(&p, e))?;
                if from >= to {
                    return rule_err(&p, "from must be before to");
                }
            }
            Cond::Weekdays(ds) => {
                if ds.is_empty() || ds.iter().any(|d| !(1..=7).contains(d)) {
                    return rule_err(&format!("{path}.weekdays"), "must list ISO weekdays 1 (Monday)..=7 (Sunday)");
                }
            }
            Cond::MonthDays(ds) => {
                if ds.is_empty() || ds.iter().any(|d| !(1..=31).contains(d)) {
                    return rule_err(&format!("{path}.month_days"), "must list days 1..=31");
                }
            }
            Cond::TimeOfDay { from, to } => {
                if *from >= 1440 || *to > 1440 || from == to {
                    return rule_err(&format!("{path}.time_of_day"), "from and to are minutes 0..=1440 after local midnight, from != to");
                }
            }
            Cond::Amount { min, max } => {
                let p = format!("{path}.amount");
                if min.is_some_and(|m| m < 0) || max.is_some_and(|m| m < 0) {
                    return rule_err(&p, "bounds must not be negative");
                }
                check_range(&p, *min, *max)?;
            }
            Cond::Term { min, max } => check_range(&format!("{path}.term"), *min, *max)?,
            Cond::Attr { key, values } => {
                let p = format!("{path}.attr");
                if key.is_empty() || key.len() > ID_LENGTH_MAX {
                    return rule_err(&format!("{p}.key"), format!("must be 1..={ID_LENGTH_MAX} bytes"));
                }
                if !values.is_empty() {
                    check_list(&format!("{p}.values"), values)?;
                }
            }
            Cond::AttrRange { key, min, max } => {
                let p = format!("{path}.attr_range");
                if key.is_empty() || key.len() > ID_LENGTH_MAX {
                    return rule_err(&format!("{p}.key"), format!("must be 1..={ID_LENGTH_MAX} bytes"));
                }
                if min.is_none() && max.is_none() {
                    return rule_err(&p, "needs min or max");
                }
                check_range(&p, *min, *max)?;
            }
            Cond::FirstPurchase => {}
        }
        Ok(())
    }
}

pub fn check_caps(path: &str, caps: &[Cap]) -> Result<()> {
    if caps.len() > CAPS_PER_RULE_MAX {
        return Err(LedgerError::LimitExceeded(format!("{path}: at most {CAPS_PER_RULE_MAX} caps")));
    }
    for (i, c) in caps.iter().enumerate() {
        check_points(&format!("{path}[{i}].max"), c.max, false)?;
        if caps[..i].iter().any(|d| d.window == c.window) {
            return rule_err(&format!("{path}[{i}].window"), format!("{} is capped twice", c.window.name()));
        }
    }
    Ok(())
}

impl Rule {
    /// Everything that can be checked without the ledger's state (point types and campaigns are
    /// checked by the ledger when the rule is defined).
    pub fn check(&self) -> Result<()> {
        let wrap = |f: &str, r: Result<()>| r.or_else(|e| rule_err(&format!("rule.{f}"), e));
        wrap("programme", check_key_id("programme id", &self.programme))?;
        wrap("id", check_key_id("rule id", &self.id))?;
        wrap("point_type", check_key_id("point type id", &self.point_type))?;
        if let Some(c) = &self.campaign {
            wrap("campaign", check_key_id("campaign id", c))?;
        }
        wrap("name", check_text("name", &self.name))?;
        if self.kinds.len() > RULE_LIST_VALUES_MAX {
            return rule_err("rule.kinds", format!("at most {RULE_LIST_VALUES_MAX} kinds"));
        }
        if !self.kinds.is_empty() {
            check_list("rule.kinds", &self.kinds)?;
        }
        if let Some(v) = &self.validity {
            wrap("validity", v.check())?;
        }
        check_caps("rule.caps", &self.caps)?;
        if let Some(m) = self.max_award {
            check_points("rule.max_award", m, false)?;
        }
        if let Some(c) = &self.when {
            let mut nodes = 0;
            c.check("rule.when", 1, &mut nodes)?;
        }
        let p = format!("rule.action.{}", self.action.name());
        match &self.action {
            Action::Rate { points, per_minor } => {
                check_factor(&format!("{p}.points"), *points)?;
                check_factor(&format!("{p}.per_minor"), *per_minor)?;
            }
            Action::AmountTerm { points, per_minor, per_days } => {
                check_factor(&format!("{p}.points"), *points)?;
                check_factor(&format!("{p}.per_minor"), *per_minor)?;
                check_factor(&format!("{p}.per_days"), *per_days)?;
            }
            Action::Fixed { points } => check_points(&format!("{p}.points"), *points, false)?,
            Action::Multiplier { num, den, of } => {
                check_factor(&format!("{p}.num"), *num)?;
                check_factor(&format!("{p}.den"), *den)?;
                if num <= den {
                    return rule_err(&format!("{p}.num"), "must be greater than den (a multiplier above 1)");
                }
                if !of.is_empty() {
                    check_list(&format!("{p}.of"), of)?;
                }
                if of.iter().any(|r| r == &self.id) {
                    return rule_err(&format!("{p}.of"), "a multiplier cannot multiply itself");
                }
            }
            Action::Checkin { daily, streak, bonus } => {
                check_points(&format!("{p}.daily"), *daily, true)?;
                check_points(&format!("{p}.bonus"), *bonus, true)?;
                if *streak == 0 || *streak > 366 {
                    return rule_err(&format!("{p}.streak"), "must be 1..=366 days");
                }
            }
            Action::Referral { inviter, invitee } => {
                check_points(&format!("{p}.inviter"), *inviter, true)?;
                check_points(&format!("{p}.invitee"), *invitee, true)?;
            }
        }
        Ok(())
    }
}

/// A campaign (CP-1..5, CP-13): a time window and an optional budget in points that its rules
/// draw from. The budget is a bounded system account `#programme/budget:<campaign>/<type>`,
/// funded from issuance when the campaign is defined and debited in the same write as each award.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub programme: String,
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub start: Ms,
    pub end: Ms,
    #[serde(default)]
    pub budget: Option<Budget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub point_type: String,
    pub points: i64,
}

impl Campaign {
    pub fn check(&self) -> Result<()> {
        let wrap = |f: &str, r: Result<()>| r.or_else(|e| rule_err(&format!("campaign.{f}"), e));
        wrap("programme", check_key_id("programme id", &self.programme))?;
        wrap("id", check_key_id("campaign id", &self.id))?;
        wrap("name", check_text("name", &self.name))?;
        wrap("start", check_time("start", self.start))?;
        wrap("end", check_time("end", self.end))?;
        if self.start >= self.end {
            return rule_err("campaign.end", "must be after start");
        }
        if let Some(b) = &self.budget {
            wrap("budget.point_type", check_key_id("point type id", &b.point_type))?;
            check_points("campaign.budget.points", b.points, false)?;
        }
        Ok(())
    }
}

pub fn budget_account(programme: &str, campaign: &str, point_type: &str) -> crate::model::AcctKey {
    compact_str::format_compact!("#{programme}/budget:{campaign}/{point_type}")
}

/// What tiers are computed from (TL-5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierBasis {
    /// Points earned through rules (not the balance: spending does not demote).
    #[default]
    Points,
    /// Amount spent (minor units) in events of the spend kinds.
    Spend,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierLevel {
    pub name: String,
    /// Qualifying points or spend over the window; the first level's must be 0.
    pub threshold: i64,
    /// Earning multiplier num/den on rate rules (TL-2); 1/1 = none.
    pub num: i64,
    pub den: i64,
}

/// Levels by points earned or spend over a rolling window of calendar months (TL-1..5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPolicy {
    pub programme: String,
    #[serde(default)]
    pub version: u32,
    pub basis: TierBasis,
    /// The current month and the `window_months − 1` before it.
    pub window_months: u32,
    /// Ascending thresholds.
    pub levels: Vec<TierLevel>,
    /// Event kinds that count as spend.
    #[serde(default)]
    pub spend_kinds: Vec<String>,
    /// The rule id the tier bonus lots record: `tier:<name>`.
    #[serde(default)]
    pub point_type: String,
}

impl TierPolicy {
    pub fn check(&self) -> Result<()> {
        let wrap = |f: &str, r: Result<()>| r.or_else(|e| rule_err(&format!("tiers.{f}"), e));
        wrap("programme", check_key_id("programme id", &self.programme))?;
        if self.window_months == 0 || self.window_months > TIER_WINDOW_MONTHS_MAX {
            return rule_err("tiers.window_months", format!("must be 1..={TIER_WINDOW_MONTHS_MAX}"));
        }
        if self.levels.is_empty() || self.levels.len() > TIER_LEVELS_MAX {
            return rule_err("tiers.levels", format!("must hold 1..={TIER_LEVELS_MAX} levels"));
        }
        for (i, l) in self.levels.iter().enumerate() {
            let p = format!("tiers.levels[{i}]");
            if l.name.is_empty() || l.name.len() > TEXT_LENGTH_MAX {
                return rule_err(&format!("{p}.name"), format!("must be 1..={TEXT_LENGTH_MAX} bytes"));
            }
            if self.levels[..i].iter().any(|m| m.name == l.name) {
                return rule_err(&format!("{p}.name"), format!("{:?} is listed twice", l.name));
            }
            if i == 0 && l.threshold != 0 {
                return rule_err(&format!("{p}.threshold"), "the first level starts at 0");
            }
            if i > 0 && l.threshold <= self.levels[i - 1].threshold {
                return rule_err(&format!("{p}.threshold"), "thresholds must increase");
            }
            check_factor(&format!("{p}.num"), l.num)?;
            check_factor(&format!("{p}.den"), l.den)?;
            if l.num < l.den {
                return rule_err(&format!("{p}.num"), "a tier multiplier is at least 1 (num >= den)");
            }
        }
        if self.levels.iter().any(|l| l.num > l.den) {
            wrap("point_type", check_key_id("point type id", &self.point_type))?;
        }
        if !self.spend_kinds.is_empty() {
            check_list("tiers.spend_kinds", &self.spend_kinds)?;
        }
        Ok(())
    }

    pub fn rank(&self, tier: &str) -> Option<usize> {
        self.levels.iter().position(|l| l.name == tier)
    }

    /// The level a qualifying total reaches.
    pub fn level_for(&self, total: i64) -> usize {
        self.levels.iter().rposition(|l| l.threshold <= total).unwrap_or(0)
    }

    pub fn counts_as_spend(&self, kind: &str) -> bool {
        if self.spend_kinds.is_empty() {
            kind == "purchase" || kind == "card_spend"
        } else {
            self.spend_kinds.iter().any(|k| k == kind)
        }
    }
}

/// Programme-wide earning settings: the calendar's time zone and per-member caps over all rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarnPolicy {
    pub programme: String,
    /// Minutes east of UTC for calendar days, weekdays and cap windows (China: +480).
    pub tz_offset_min: i32,
    #[serde(default)]
    pub caps: Vec<Cap>,
}

impl EarnPolicy {
    pub fn default_for(programme: &str) -> EarnPolicy {
        EarnPolicy { programme: programme.to_string(), tz_offset_min: TZ_OFFSET_MIN_DEFAULT, caps: vec![] }
    }
    pub fn check(&self) -> Result<()> {
        check_key_id("programme id", &self.programme).or_else(|e| rule_err("policy.programme", e))?;
        if !(-14 * 60..=14 * 60).contains(&self.tz_offset_min) {
            return rule_err("policy.tz_offset_min", "must be within ±14 hours (±840 minutes)");
        }
        check_caps("policy.caps", &self.caps)
    }
}

/// Rule ids the ledger uses for awards that no stored rule produced.
pub fn tier_rule_id(tier: &str) -> String {
    format!("tier:{tier}")
}

pub fn check_rule_ref(what: &str, id: &str) -> Result<()> {
    check_id(what, id)
}
