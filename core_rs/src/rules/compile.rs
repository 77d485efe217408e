//! The compiled form of a programme's rule set: strings interned to integers, rules sorted by
//! priority and indexed by event kind, condition trees over integer comparisons. Built when a
//! rule, campaign, tier or policy command commits and cached by the writer per programme.
use rustc_hash::FxHashMap;

use super::model::*;
use crate::model::{Member, Ms};

pub const NONE: u32 = u32::MAX;
pub const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone)]
pub enum CCond {
    All(Box<[CCond]>),
    Any(Box<[CCond]>),
    Not(Box<CCond>),
    Tier(Box<[u32]>),
    Between(Ms, Ms),
    /// bit d set for ISO weekday d
    Weekdays(u8),
    /// bit d set for day of month d
    MonthDays(u32),
    TimeOfDay(u32, u32),
    /// the org prefix of this depth (1..=4) is this symbol
    Org(u8, u32),
    Channel(Box<[u32]>),
    Merchant(Box<[u32]>),
    Category(Box<[u32]>),
    Amount(i64, i64),
    Term(u32, u32),
    Group(Box<[u32]>),
    Attr(u32, Box<[u32]>),
    AttrRange(u32, i64, i64),
    FirstPurchase,
}

#[derive(Debug, Clone)]
pub struct CRule {
    pub rule: Rule,
    /// the rule's id, point type and campaign, shared by its awards without copying
    pub ids: super::eval::AwardIds,
    pub cond: Option<CCond>,
    /// the campaign's window, when the rule belongs to one
    pub window: Option<(Ms, Ms)>,
    pub budget: Option<Budget>,
}

/// A programme's active rules, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub programme: String,
    pub policy: EarnPolicy,
    pub tiers: Option<TierPolicy>,
    pub campaigns: Vec<Campaign>,
    pub rules: Vec<CRule>,
    /// disabled rules (latest version), kept for explanations
    pub disabled: Vec<(String, u32)>,
    syms: FxHashMap<Box<str>, u32>,
    by_kind: FxHashMap<u32, Box<[u32]>>,
    any_kind: Box<[u32]>,
    /// Rules that can only fire for certain merchants (their condition requires a merchant set
    /// at the top level): per (kind, merchant), that kind's candidates minus the rules that
    /// require other merchants. Posting evaluates only these; a dry run, which explains every
    /// rule, walks the whole kind list. Programmes write per-merchant rules, so this turns 100
    /// condition checks per event into a handful.
    by_kind_merchant: FxHashMap<(u32, u32), Box<[u32]>>,
    /// per kind: the candidates that require no merchant (events at merchants no rule names)
    by_kind_open: FxHashMap<u32, Box<[u32]>>,
    /// the event and member dimensions some active rule's condition reads (`prepare` resolves
    /// only these: each is a string lookup, and most rule sets use a few)
    uses: Uses,
    pub tz_ms: i64,
}

/// Which dimensions the conditions of a rule set read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uses {
    pub tier: bool,
    pub org: bool,
    pub channel: bool,
    pub category: bool,
    pub groups: bool,
    pub attrs: bool,
}

impl Uses {
    fn add(&mut self, c: &CCond) {
        match c {
            CCond::All(cs) | CCond::Any(cs) => cs.iter().for_each(|c| self.add(c)),
            CCond::Not(c) => self.add(c),
            CCond::Tier(_) => self.tier = true,
            CCond::Org(..) => self.org = true,
            CCond::Channel(_) => self.channel = true,
            CCond::Category(_) => self.category = true,
            CCond::Group(_) => self.groups = true,
            CCond::Attr(..) | CCond::AttrRange(..) => self.attrs = true,
            CCond::Between(..) | CCond::Weekdays(_) | CCond::MonthDays(_) | CCond::TimeOfDay(..) | CCond::Merchant(_) | CCond::Amount(..) | CCond::Term(..) | CCond::FirstPurchase => {}
        }
    }
}

/// An event with everything the conditions look at resolved once.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub kind: u32,
    pub channel: u32,
    pub merchant: u32,
    pub category: u32,
    pub tier: u32,
    pub groups: Vec<u32>,
    pub org: [u32; 4],
    pub attrs: Vec<(u32, u32, Option<i64>)>,
    pub amount: i64,
    pub term: u32,
    pub at: Ms,
    pub weekday: u8,
    pub month_day: u8,
    pub minute: u32,
    pub day: i64,
    pub month: i64,
    pub year: i64,
    pub first_purchase: bool,
}

struct Interner<'a>(&'a mut FxHashMap<Box<str>, u32>);

impl Interner<'_> {
    fn sym(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.0.get(s) {
            return i;
        }
        let i = self.0.len() as u32;
        self.0.insert(s.into(), i);
        i
    }
    fn set(&mut self, xs: &[String]) -> Box<[u32]> {
        let mut v: Vec<u32> = xs.iter().map(|x| self.sym(x)).collect();
        v.sort_unstable();
        v.dedup();
        v.into_boxed_slice()
    }
    fn cond(&mut self, c: &Cond) -> CCond {
        match c {
            Cond::All(cs) => CCond::All(cs.iter().map(|c| self.cond(c)).collect()),
            Cond::Any(cs) => CCond::Any(cs.iter().map(|c| self.cond(c)).collect()),
            Cond::Not(c) => CCond::Not(Box::new(self.cond(c))),
            Cond::Tier(xs) => CCond::Tier(self.set(xs)),
            Cond::Between { from, to } => CCond::Between(*from, *to),
            Cond::Weekdays(ds) => CCond::Weekdays(ds.iter().fold(0u8, |m, d| m | 1 << d)),
            Cond::MonthDays(ds) => CCond::MonthDays(ds.iter().fold(0u32, |m, d| m | 1 << d)),
            Cond::TimeOfDay { from, to } => CCond::TimeOfDay(*from, *to),
            Cond::Org(path) => CCond::Org(path.len() as u8, self.sym(&org_key(path))),
            Cond::Channel(xs) => CCond::Channel(self.set(xs)),
            Cond::Merchant(xs) => CCond::Merchant(self.set(xs)),
            Cond::Category(xs) => CCond::Category(self.set(xs)),
            Cond::Amount { min, max } => CCond::Amount(min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX)),
            Cond::Term { min, max } => CCond::Term(min.unwrap_or(0), max.unwrap_or(u32::MAX)),
            Cond::Group(xs) => CCond::Group(self.set(xs)),
            Cond::Attr { key, values } => CCond::Attr(self.sym(key), self.set(values)),
            Cond::AttrRange { key, min, max } => CCond::AttrRange(self.sym(key), min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX)),
            Cond::FirstPurchase => CCond::FirstPurchase,
        }
    }
}

fn org_key<S: AsRef<str>>(path: &[S]) -> String {
    let mut s = String::from("\u{1f}org");
    for p in path {
        s.push('\u{1f}');
        s.push_str(p.as_ref());
    }
    s
}

#[inline]
fn has(set: &[u32], x: u32) -> bool {
    x != NONE && set.contains(&x)
}

impl CCond {
    #[inline]
    pub fn eval(&self, e: &Prepared) -> bool {
        match self {
            CCond::All(cs) => cs.iter().all(|c| c.eval(e)),
            CCond::Any(cs) => cs.iter().any(|c| c.eval(e)),
            CCond::Not(c) => !c.eval(e),
            CCond::Tier(s) => has(s, e.tier),
            CCond::Between(a, b) => *a <= e.at && e.at < *b,
            CCond::Weekdays(m) => m & (1 << e.weekday) != 0,
            CCond::MonthDays(m) => m & (1 << e.month_day) != 0,
            CCond::TimeOfDay(a, b) => {
                if a < b { *a <= e.minute && e.minute < *b } else { e.minute >= *a || e.minute < *b }
            }
            CCond::Org(depth, s) => e.org[*depth as usize - 1] == *s,
            CCond::Channel(s) => has(s, e.channel),
            CCond::Merchant(s) => has(s, e.merchant),
            CCond::Category(s) => has(s, e.category),
            CCond::Amount(a, b) => *a <= e.amount && e.amount <= *b,
            CCond::Term(a, b) => *a <= e.term && e.term <= *b,
            CCond::Group(s) => e.groups.iter().any(|g| has(s, *g)),
            CCond::Attr(k, vs) => e.attrs.iter().any(|(ak, av, _)| ak == k && (vs.is_empty() || has(vs, *av))),
            CCond::AttrRange(k, a, b) => e.attrs.iter().any(|(ak, _, n)| ak == k && n.is_some_and(|n| *a <= n && n <= *b)),
            CCond::FirstPurchase => e.first_purchase,
        }
    }

    /// Why the condition fails, as a path into the source condition (`when.all[1].channel`).
    pub fn explain(&self, src: &Cond, e: &Prepared, path: &str) -> Option<String> {
        if self.eval(e) {
            return None;
        }
        match (self, src) {
            (CCond::All(cs), Cond::All(ss)) => {
                cs.iter().zip(ss).enumerate().find_map(|(i, (c, s))| c.explain(s, e, &format!("{path}.all[{i}]")))
            }
            (CCond::Any(_), Cond::Any(_)) => Some(format!("{path}.any: no alternative holds")),
            (CCond::Not(_), Cond::Not(_)) => Some(format!("{path}.not: the negated condition holds")),
            _ => Some(format!("{path}.{}: {}", cond_name(src), describe(src, e))),
        }
    }
}

fn cond_name(c: &Cond) -> &'static str {
    match c {
        Cond::All(_) => "all",
        Cond::Any(_) => "any",
        Cond::Not(_) => "not",
        Cond::Tier(_) => "tier",
        Cond::Between { .. } => "between",
        Cond::Weekdays(_) => "weekdays",
        Cond::MonthDays(_) => "month_days",
        Cond::TimeOfDay { .. } => "time_of_day",
        Cond::Org(_) => "org",
        Cond::Channel(_) => "channel",
        Cond::Merchant(_) => "merchant",
        Cond::Category(_) => "category",
        Cond::Amount { .. } => "amount",
        Cond::Term { .. } => "term",
        Cond::Group(_) => "group",
        Cond::Attr { .. } => "attr",
        Cond::AttrRange { .. } => "attr_range",
        Cond::FirstPurchase => "first_purchase",
    }
}

fn describe(c: &Cond, e: &Prepared) -> String {
    match c {
        Cond::Tier(xs) => format!("member tier is not one of {xs:?}"),
        Cond::Between { from, to } => format!("time {} is outside [{from}, {to})", e.at),
        Cond::Weekdays(ds) => format!("weekday {} is not one of {ds:?}", e.weekday),
        Cond::MonthDays(ds) => format!("day of month {} is not one of {ds:?}", e.month_day),
        Cond::TimeOfDay { from, to } => format!("local minute {} is outside [{from}, {to})", e.minute),
        Cond::Org(p) => format!("organisation is not under {p:?}"),
        Cond::Channel(xs) => format!("channel is not one of {xs:?}"),
        Cond::Merchant(xs) => format!("merchant is not one of {xs:?}"),
        Cond::Category(xs) => format!("category is not one of {xs:?}"),
        Cond::Amount { min, max } => format!("amount {} is outside {min:?}..={max:?}", e.amount),
        Cond::Term { min, max } => format!("term {} days is outside {min:?}..={max:?}", e.term),
        Cond::Group(xs) => format!("member is in none of the groups {xs:?}"),
        Cond::Attr { key, values } => format!("attribute {key:?} is missing or not one of {values:?}"),
        Cond::AttrRange { key, min, max } => format!("attribute {key:?} is missing, not an integer or outside {min:?}..={max:?}"),
        Cond::FirstPurchase => "the member has purchased before".into(),
        _ => "does not hold".into(),
    }
}

/// Calendar fields of an instant in a fixed-offset zone: (day index, weekday 1..=7, day of
/// month, minute of day, month index year*12+m-1, year).
pub fn calendar(at: Ms, tz_ms: i64) -> (i64, u8, u8, u32, i64, i64) {
    use chrono::Datelike;
    let local = at + tz_ms;
    let day = local.div_euclid(DAY_MS);
    let minute = (local.rem_euclid(DAY_MS) / 60_000) as u32;
    // 1970-01-01 was a Thursday (ISO 4).
    let weekday = ((day + 3).rem_euclid(7) + 1) as u8;
    let date = chrono::DateTime::from_timestamp_millis(day * DAY_MS).map(|d| d.date_naive()).unwrap_or_default();
    let month = date.year() as i64 * 12 + date.month0() as i64;
    (day, weekday, date.day() as u8, minute, month, date.year() as i64)
}

impl Compiled {
    pub fn build(programme: &str, policy: Option<EarnPolicy>, tiers: Option<TierPolicy>, campaigns: Vec<Campaign>, rules: Vec<Rule>) -> Compiled {
        let policy = policy.unwrap_or_else(|| EarnPolicy::default_for(programme));
        let mut syms = FxHashMap::default();
        let mut intern = Interner(&mut syms);
        let mut active = vec![];
        let mut disabled = vec![];
        for r in rules {
            if !r.enabled {
                disabled.push((r.id.clone(), r.version));
                continue;
            }
            let camp = r.campaign.as_ref().and_then(|c| campaigns.iter().find(|k| &k.id == c));
            let cond = r.when.as_ref().map(|c| intern.cond(c));
            for k in &r.kinds {
                intern.sym(k);
            }
            active.push(CRule { window: camp.map(|c| (c.start, c.end)), budget: camp.and_then(|c| c.budget.clone()), cond, ids: super::eval::AwardIds::of(&r), rule: r });
        }
        // Higher priority first, then rule id: the order of stacking decisions.
        active.sort_by(|a, b| b.rule.priority.cmp(&a.rule.priority).then_with(|| a.rule.id.cmp(&b.rule.id)));
        let mut by_kind: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        let mut any_kind = vec![];
        for (i, r) in active.iter().enumerate() {
            if r.rule.kinds.is_empty() {
                any_kind.push(i as u32);
            }
        }
        for (i, r) in active.iter().enumerate() {
            for k in &r.rule.kinds {
                let s = intern.sym(k);
                by_kind.entry(s).or_default().push(i as u32);
            }
        }
        // Each kind's list holds its own rules and the any-kind rules, in rule order.
        let by_kind = by_kind
            .into_iter()
            .map(|(k, mut v)| {
                v.extend_from_slice(&any_kind);
                v.sort_unstable();
                v.dedup();
                (k, v.into_boxed_slice())
            })
            .collect();
        let (by_kind_merchant, by_kind_open) = merchant_index(&active, &by_kind);
        let mut uses = Uses::default();
        active.iter().filter_map(|r| r.cond.as_ref()).for_each(|c| uses.add(c));
        let tz_ms = policy.tz_offset_min as i64 * 60_000;
        Compiled {
            programme: programme.to_string(),
            policy,
            tiers,
            campaigns,
            rules: active,
            disabled,
            syms,
            by_kind,
            any_kind: any_kind.into_boxed_slice(),
            by_kind_merchant,
            by_kind_open,
            uses,
            tz_ms,
        }
    }

    #[inline]
    pub fn sym(&self, s: &str) -> u32 {
        if s.is_empty() {
            return NONE;
        }
        self.syms.get(s).copied().unwrap_or(NONE)
    }

    /// Rule indexes (in evaluation order) that apply to an event kind.
    pub fn candidates(&self, kind: u32) -> &[u32] {
        self.by_kind.get(&kind).map(|v| &v[..]).unwrap_or(&self.any_kind)
    }

    /// The candidates of an event kind that can fire at this merchant (a subsequence of
    /// `candidates(kind)`: the rules left out require another merchant and cannot fire).
    pub fn candidates_at(&self, kind: u32, merchant: u32) -> &[u32] {
        if let Some(v) = self.by_kind_merchant.get(&(kind, merchant)) {
            return v;
        }
        match self.by_kind_open.get(&kind) {
            Some(v) => v,
            None => self.candidates(kind),
        }
    }

    /// Resolve the event once for every condition. Dimensions no active condition reads are
    /// left unresolved (NONE / empty): `CCond::eval` and `explain` only read the dimension of a
    /// condition that exists, so the outcome is the same.
    pub fn prepare(&self, at: Ms, ev: &Event, m: &Member, groups: &[String], purchases: u32) -> Prepared {
        let (day, weekday, month_day, minute, month, year) = calendar(at, self.tz_ms);
        let u = self.uses;
        let mut org = [NONE; 4];
        if u.org {
            let org_src: &[String] = if ev.org.is_empty() { &m.org } else { &ev.org };
            let mut key = String::with_capacity(4 + org_src.iter().take(4).map(|p| p.len() + 1).sum::<usize>());
            key.push_str("\u{1f}org");
            for (i, p) in org_src.iter().take(4).enumerate() {
                key.push('\u{1f}');
                key.push_str(p);
                org[i] = self.sym(&key);
            }
        }
        let gs = if u.groups {
            let mut gs = Vec::with_capacity(1 + groups.len());
            gs.push(self.sym(&m.kind));
            gs.extend(groups.iter().map(|g| self.sym(g)));
            gs
        } else {
            vec![]
        };
        let attrs = if u.attrs {
            ev.attrs
                .iter()
                .filter_map(|(k, v)| {
                    let ks = self.sym(k);
                    (ks != NONE).then(|| (ks, self.sym(v), v.trim().parse::<i64>().ok()))
                })
                .collect()
        } else {
            vec![]
        };
        let dim = |used: bool, s: &str| if used { self.sym(s) } else { NONE };
        Prepared {
            kind: self.sym(&ev.kind),
            channel: dim(u.channel, &ev.channel),
            merchant: self.sym(&ev.merchant),
            category: dim(u.category, &ev.category),
            tier: dim(u.tier, &m.tier),
            groups: gs,
            org,
            attrs,
            amount: ev.amount,
            term: ev.term_days,
            at,
            weekday,
            month_day,
            minute,
            day,
            month,
            year,
            first_purchase: purchases == 0,
        }
    }

    /// Start of the next programme-local day after `at` (EX-7: pending until then).
    pub fn next_day(&self, at: Ms) -> Ms {
        ((at + self.tz_ms).div_euclid(DAY_MS) + 1) * DAY_MS - self.tz_ms
    }
}

/// The merchants a condition requires, when it requires one at the top level (a merchant set,
/// or an `all` with one among its parts); None when it can fire anywhere.
fn required_merchants(c: &CCond) -> Option<&[u32]> {
    match c {
        CCond::Merchant(s) => Some(s),
        CCond::All(parts) => parts.iter().find_map(required_merchants),
        _ => None,
    }
}

type MerchantIndex = (FxHashMap<(u32, u32), Box<[u32]>>, FxHashMap<u32, Box<[u32]>>);

fn merchant_index(rules: &[CRule], by_kind: &FxHashMap<u32, Box<[u32]>>) -> MerchantIndex {
    let mut at: FxHashMap<(u32, u32), Box<[u32]>> = FxHashMap::default();
    let mut open: FxHashMap<u32, Box<[u32]>> = FxHashMap::default();
    for (&kind, list) in by_kind {
        let req = |i: u32| rules[i as usize].cond.as_ref().and_then(required_merchants);
        let mut merchants: Vec<u32> = list.iter().filter_map(|&i| req(i)).flatten().copied().collect();
        merchants.sort_unstable();
        merchants.dedup();
        for mch in merchants {
            let v: Vec<u32> = list.iter().copied().filter(|&i| req(i).is_none_or(|s| s.contains(&mch))).collect();
            at.insert((kind, mch), v.into_boxed_slice());
        }
        open.insert(kind, list.iter().copied().filter(|&i| req(i).is_none()).collect());
    }
    (at, open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_in_china_time() {
        // 2024-05-10T16:30Z is 2024-05-11 00:30 in UTC+8, a Saturday.
        let at = chrono::DateTime::parse_from_rfc3339("2024-05-10T16:30:00Z").unwrap().timestamp_millis();
        let (_, wd, md, minute, month, year) = calendar(at, 480 * 60_000);
        assert_eq!((wd, md, minute, year), (6, 11, 30, 2024));
        assert_eq!(month, 2024 * 12 + 4);
    }

    fn rule(id: &str, when: Cond) -> Rule {
        Rule {
            programme: "p".into(),
            id: id.into(),
            version: 1,
            name: String::new(),
            enabled: true,
            kinds: vec![],
            priority: 0,
            stacking: Stacking::Stackable,
            when: Some(when),
            action: Action::Fixed { points: 1 },
            point_type: "pts".into(),
            validity: None,
            pending: false,
            caps: vec![],
            max_award: None,
            campaign: None,
        }
    }

    #[test]
    fn prepare_resolves_only_the_dimensions_some_condition_reads() {
        let m = Member { v: 1, id: "m1".into(), programme: "p".into(), phone: String::new(), id_hash: None, org: vec!["Jiangsu".into()], tier: "gold".into(), kind: "individual".into(), status: crate::model::MemberStatus::Active, created_at: 0, cards: vec![] };
        let ev = Event { kind: "purchase".into(), member: "m1".into(), amount: 100, term_days: 0, channel: "app".into(), merchant: "shop".into(), category: "5411".into(), org: vec![], attrs: vec![("card".into(), "platinum".into())] };
        let s = |x: &str| vec![x.to_string()];
        let narrow = Compiled::build("p", None, None, vec![], vec![rule("a", Cond::Merchant(s("shop")))]);
        assert_eq!(narrow.uses, Uses::default());
        let e = narrow.prepare(0, &ev, &m, &[], 0);
        assert_eq!((e.channel, e.category, e.tier, e.org, e.groups.len(), e.attrs.len()), (NONE, NONE, NONE, [NONE; 4], 0, 0));
        assert_ne!(e.merchant, NONE, "the merchant index always needs the merchant");
        let all = Cond::All(vec![
            Cond::Channel(s("app")),
            Cond::Any(vec![Cond::Category(s("5411")), Cond::Not(Box::new(Cond::Tier(s("gold"))))]),
            Cond::Org(s("Jiangsu")),
            Cond::Group(s("individual")),
            Cond::Attr { key: "card".into(), values: s("platinum") },
        ]);
        let wide = Compiled::build("p", None, None, vec![], vec![rule("b", all.clone())]);
        assert_eq!(wide.uses, Uses { tier: true, org: true, channel: true, category: true, groups: true, attrs: true });
        let e = wide.prepare(0, &ev, &m, &[], 0);
        assert!(wide.rules[0].cond.as_ref().unwrap().eval(&e), "every dimension resolved: the condition holds");
    }
}
