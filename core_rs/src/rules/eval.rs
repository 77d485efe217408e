//! Evaluation: an event against a compiled rule set and the member's rule state gives the
//! awards (one per rule that fired, cut by caps and budgets) and, when asked, an explanation of
//! every rule. Pure: the ledger posts the awards; a dry run only reports them.
use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::compile::*;
use super::model::*;
use super::state::*;
use crate::model::{Member, Ms, Programme};

/// Points for one rule (one lot when `points` > 0). Ids are shared (`Arc<str>`) with the
/// compiled rule set: an evaluation makes several awards per event, and copying four strings
/// into each was a large share of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Award {
    pub rule: Arc<str>,
    pub version: u32,
    /// the member credited (the inviter, for a referral's inviter award)
    pub member: Arc<str>,
    pub point_type: Arc<str>,
    /// before caps and budget
    pub base: i64,
    /// credited
    pub points: i64,
    pub cuts: Vec<Cut>,
    pub campaign: Option<Arc<str>>,
    /// posted from the campaign's budget account instead of issuance
    pub from_budget: bool,
    pub effective_at: Ms,
    pub expires_at: Option<Ms>,
}

/// What cut an award: `rule:<id>:<window>`, `programme:<window>`, `budget:<campaign>`,
/// `max_award`, and how many points it removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    pub by: String,
    pub n: i64,
}

/// The explanation of one rule for one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub rule: String,
    pub version: u32,
    pub fired: bool,
    pub points: i64,
    pub reason: String,
}

/// A rule's ids as its awards carry them (built once, when the rule set is compiled).
#[derive(Debug, Clone)]
pub struct AwardIds {
    pub rule: Arc<str>,
    pub point_type: Arc<str>,
    pub campaign: Option<Arc<str>>,
}

impl AwardIds {
    pub fn of(r: &Rule) -> AwardIds {
        AwardIds { rule: r.id.as_str().into(), point_type: r.point_type.as_str().into(), campaign: r.campaign.as_deref().map(Arc::from) }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub awards: Vec<Award>,
    pub notes: Vec<Note>,
    /// (from, to) when the event moves the member up a tier (TL-4 automatic upgrade)
    pub tier_change: Option<(String, String)>,
    /// The member's new rule state, when the event changed it (None: unchanged, nothing to write).
    #[serde(skip)]
    pub state: Option<MemberState>,
    /// The referrer's new rule state, when a referral award counted against its caps (ER-30).
    #[serde(skip)]
    pub referrer_state: Option<MemberState>,
}

impl Evaluation {
    pub fn total(&self) -> i64 {
        self.awards.iter().map(|a| a.points).sum()
    }
}

/// Budget left in a campaign's account for a point type (the ledger reads the account).
pub trait Budgets {
    fn left(&mut self, programme: &str, campaign: &str, point_type: &str) -> i64;
}

impl<F: FnMut(&str, &str, &str) -> i64> Budgets for F {
    fn left(&mut self, programme: &str, campaign: &str, point_type: &str) -> i64 {
        self(programme, campaign, point_type)
    }
}

struct Run<'a, B: Budgets> {
    c: &'a Compiled,
    p: &'a Programme,
    at: Ms,
    e: Prepared,
    member: &'a str,
    /// the member's rule state, copied on the first change (most events change nothing)
    st: Cow<'a, MemberState>,
    /// the referrer's rule state, when a referral can pay it: its award is capped by the
    /// referrer's own caps and counts in them (ER-30 holds for every member credited)
    referrer_st: Option<Cow<'a, MemberState>>,
    budgets: B,
    budget_left: Vec<(String, String, i64)>,
    awards: Vec<Award>,
    notes: Vec<Note>,
    explain: bool,
    /// expiry of a lot earned now under a validity (all awards of an event share `at`, and most
    /// share their point type's validity: the calendar arithmetic runs once)
    expiries: Vec<(crate::model::Validity, Option<Ms>)>,
    /// expiry under each point type's own validity, by the awards' shared point type id
    type_expiries: Vec<(Arc<str>, Option<Ms>)>,
}

impl<B: Budgets> Run<'_, B> {
    fn note(&mut self, r: &Rule, fired: bool, points: i64, reason: impl FnOnce() -> String) {
        if self.explain {
            self.notes.push(Note { rule: r.id.clone(), version: r.version, fired, points, reason: reason() });
        }
    }

    /// The expiry of a lot earned now under `v` (computed once per validity per event).
    fn expiry(&mut self, v: &crate::model::Validity) -> Option<Ms> {
        match self.expiries.iter().find(|(w, _)| w == v) {
            Some((_, x)) => *x,
            None => {
                let x = v.expiry(self.at);
                self.expiries.push((v.clone(), x));
                x
            }
        }
    }

    fn window_index(&self, w: Window) -> i64 {
        match w {
            Window::Day => self.e.day,
            Window::Month => self.e.month,
            Window::Year => self.e.year,
            Window::Lifetime => 0,
        }
    }

    /// The rule state that caps an award to `member`: the event member's, or the referrer's.
    fn state_of(&self, member: &str) -> Option<&MemberState> {
        if member == self.member {
            return Some(&self.st);
        }
        self.referrer_st.as_deref().filter(|_| self.st.referrer.as_deref() == Some(member))
    }

    /// Cut `n` by the caps of `scope` (a rule id, or "*" for the programme's) in state `st`.
    fn capped(&self, st: &MemberState, scope: &str, caps: &[Cap], n: i64, cuts: &mut Vec<Cut>) -> i64 {
        let mut n = n;
        for cap in caps {
            let used = st.used(scope, cap.window, self.window_index(cap.window));
            let left = (cap.max - used).max(0);
            if n > left {
                let by = if scope == "*" { format!("programme:{}", cap.window.name()) } else { format!("rule:{scope}:{}", cap.window.name()) };
                cuts.push(Cut { by, n: n - left });
                n = left;
            }
        }
        n
    }

    /// Count `n` awarded to `member` in the caps of `scope`.
    fn count(&mut self, member: &str, scope: &str, caps: &[Cap], n: i64) {
        for cap in caps {
            let idx = self.window_index(cap.window);
            let st = if member == self.member { self.st.to_mut() } else { self.referrer_st.as_mut().expect("a capped award has a state").to_mut() };
            st.add(scope, cap.window, idx, n);
        }
    }

    fn budget(&mut self, campaign: &str, t: &str) -> &mut i64 {
        let pos = match self.budget_left.iter().position(|(c, tt, _)| c == campaign && tt == t) {
            Some(i) => i,
            None => {
                let left = self.budgets.left(&self.c.programme, campaign, t);
                self.budget_left.push((campaign.to_string(), t.to_string(), left));
                self.budget_left.len() - 1
            }
        };
        &mut self.budget_left[pos].2
    }

    /// Turn a rule's base points into an award for `member`: max per event, the rule's caps and
    /// the programme's caps in `member`'s own state, then the campaign budget.
    #[allow(clippy::too_many_arguments)]
    fn award(&mut self, r: &Rule, ids: &AwardIds, budget: Option<&Budget>, member: &Arc<str>, version: u32, base: i64, pending: bool, validity: Option<&crate::model::Validity>) -> i64 {
        let (rule_id, point_type) = (&*ids.rule, &*ids.point_type);
        let mut cuts = vec![];
        let mut n = base;
        if let Some(m) = r.max_award {
            if n > m {
                cuts.push(Cut { by: "max_award".into(), n: n - m });
                n = m;
            }
        }
        // (the compiled set outlives the run: no need to copy its caps)
        let c: &Compiled = self.c;
        let capped = match self.state_of(member) {
            Some(st) => {
                n = self.capped(st, rule_id, &r.caps, n, &mut cuts);
                n = self.capped(st, "*", &c.policy.caps, n, &mut cuts);
                true
            }
            None => false,
        };
        let mut from_budget = false;
        if let (Some(b), Some(camp)) = (budget, r.campaign.as_deref()) {
            if b.point_type == point_type {
                from_budget = true;
                let left = self.budget(camp, point_type);
                if n > *left {
                    let cut = n - *left;
                    n = *left;
                    cuts.push(Cut { by: format!("budget:{camp}"), n: cut });
                }
                *self.budget(camp, point_type) -= n;
            }
        }
        if capped && n > 0 {
            self.count(member, rule_id, &r.caps, n);
            self.count(member, "*", &c.policy.caps, n);
        }
        let expires_at = match validity {
            Some(v) => self.expiry(v),
            // The point type's validity: awards of one type share its expiry, found by the
            // compiled rule set's shared id (pointer equality, no string compare).
            None => match self.type_expiries.iter().find(|(t, _)| Arc::ptr_eq(t, &ids.point_type)) {
                Some((_, x)) => *x,
                None => {
                    let p: &Programme = self.p;
                    let x = p.point_type(point_type).ok().and_then(|t| self.expiry(&t.validity));
                    self.type_expiries.push((ids.point_type.clone(), x));
                    x
                }
            },
        };
        self.awards.push(Award {
            rule: ids.rule.clone(),
            version,
            member: member.clone(),
            point_type: ids.point_type.clone(),
            base,
            points: n,
            cuts,
            campaign: ids.campaign.clone(),
            from_budget,
            effective_at: if pending { self.c.next_day(self.at) } else { self.at },
            expires_at,
        });
        n
    }
}

/// floor(a·b·c / d) for non-negative a, b, c and positive d, capped at AMOUNT_MAX (exact: the
/// product is taken in i128 when it does not fit i64, which is rare and costs a 128-bit divide).
fn floor_mul(a: i64, b: i64, c: i64, d: i64) -> i64 {
    let v = match a.checked_mul(b).and_then(|x| x.checked_mul(c)) {
        Some(x) => (x / d) as i128,
        None => (a as i128 * b as i128 * c as i128) / d as i128,
    };
    v.min(crate::limits::AMOUNT_MAX as i128) as i64
}

/// Awards and accepted rules are pre-sized for this many: growing past it moves every award.
const AWARDS_PER_EVENT_TYPICAL: usize = 8;

/// Evaluate `ev` (at `at`) for member `m` with rule state `st`; `referrer_st` is the rule state
/// of `st.referrer` when a referral can still pay it (`referral_pending`). `explain` fills `notes`.
#[allow(clippy::too_many_arguments)] // the event, the member, the states and the budgets: all inputs, no hidden state
pub fn evaluate<B: Budgets>(c: &Compiled, p: &Programme, at: Ms, ev: &Event, m: &Member, st: &MemberState, referrer_st: Option<&MemberState>, budgets: B, explain: bool) -> Evaluation {
    let e = c.prepare(at, ev, m, &st.groups, st.purchases);
    // the member's id once per evaluation, shared by its awards
    let member: Arc<str> = m.id.as_str().into();
    let mut run = Run { c, p, at, e, member: &m.id, st: Cow::Borrowed(st), referrer_st: referrer_st.map(Cow::Borrowed), budgets, budget_left: vec![], awards: Vec::with_capacity(AWARDS_PER_EVENT_TYPICAL), notes: vec![], explain, expiries: vec![], type_expiries: vec![] };
    let kind = run.e.kind;
    // (index into c.rules, award index) of accepted base awards
    let mut accepted: Vec<(usize, usize)> = Vec::with_capacity(AWARDS_PER_EVENT_TYPICAL);
    let mut exclusive: Option<usize> = None;
    let mut multipliers: Vec<usize> = vec![];
    let mut checked_in = false;
    let mut referral_paid = false;
    // Posting only looks at the rules that can fire at the event's merchant; a dry run explains
    // every rule of the kind (the others fail their merchant condition, with no side effect).
    let candidates = if explain { c.candidates(kind) } else { c.candidates_at(kind, run.e.merchant) };
    for &i in candidates {
        let cr = &c.rules[i as usize];
        let r = &cr.rule;
        if let Some((a, b)) = cr.window {
            if !(a <= at && at < b) {
                run.note(r, false, 0, || format!("campaign {:?} is not running at {at}", r.campaign.as_deref().unwrap_or("")));
                continue;
            }
        }
        if let Some(cond) = &cr.cond {
            if !cond.eval(&run.e) {
                if run.explain {
                    let why = cond.explain(r.when.as_ref().unwrap(), &run.e, "when").unwrap_or_default();
                    run.note(r, false, 0, || why);
                }
                continue;
            }
        }
        if matches!(r.action, Action::Multiplier { .. }) {
            multipliers.push(i as usize);
            continue;
        }
        if let Some(x) = exclusive {
            run.note(r, false, 0, || format!("excluded: exclusive rule {:?} fired first", c.rules[x].rule.id));
            continue;
        }
        if r.stacking == Stacking::Exclusive && !accepted.is_empty() {
            run.note(r, false, 0, || format!("exclusive, but rule {:?} fired first", c.rules[accepted[0].0].rule.id));
            continue;
        }
        let amount = run.e.amount;
        let base = match &r.action {
            Action::Rate { points, per_minor } => floor_mul(amount, *points, 1, *per_minor),
            Action::AmountTerm { points, per_minor, per_days } => {
                floor_mul(amount, run.e.term as i64, *points, *per_minor * *per_days)
            }
            Action::Fixed { points } => *points,
            Action::Checkin { daily, streak, bonus } => {
                if checked_in || run.st.last_checkin == Some(run.e.day) {
                    run.note(r, false, 0, || "already checked in today".into());
                    continue;
                }
                let s = if run.st.last_checkin == Some(run.e.day - 1) { run.st.streak + 1 } else { 1 };
                let st = run.st.to_mut();
                st.streak = s;
                st.last_checkin = Some(run.e.day);
                checked_in = true;
                daily + if s % streak == 0 { *bonus } else { 0 }
            }
            Action::Referral { inviter, invitee } => {
                let why = if referral_paid || run.st.referral_paid {
                    Some("the referral was already paid")
                } else if run.st.referrer.is_none() {
                    Some("the member signed up without a referrer")
                } else if run.st.purchases > 0 {
                    Some("not the member's first purchase")
                } else {
                    None
                };
                if let Some(why) = why {
                    run.note(r, false, 0, || why.into());
                    continue;
                }
                referral_paid = true;
                run.st.to_mut().referral_paid = true;
                let inviter_id = run.st.referrer.clone().unwrap();
                let budget = cr.budget.clone();
                let ai = run.awards.len();
                let inviter_arc: Arc<str> = inviter_id.as_str().into();
                let a = run.award(r, &cr.ids, budget.as_ref(), &member, r.version, *invitee, r.pending, r.validity.as_ref());
                let b = run.award(r, &cr.ids, budget.as_ref(), &inviter_arc, r.version, *inviter, r.pending, r.validity.as_ref());
                run.note(r, true, a + b, || format!("first purchase after a referral by {inviter_id:?}: {a} to the member, {b} to the inviter"));
                accepted.push((i as usize, ai));
                if r.stacking == Stacking::Exclusive {
                    exclusive = Some(i as usize);
                }
                continue;
            }
            Action::Multiplier { .. } => unreachable!(),
        };
        if base <= 0 {
            run.note(r, false, 0, || "conditions hold but the award rounds to 0 points".into());
            continue;
        }
        let ai = run.awards.len();
        let n = run.award(r, &cr.ids, cr.budget.as_ref(), &member, r.version, base, r.pending, r.validity.as_ref());
        // (only an explanation reads them)
        let cuts = if run.explain { run.awards[ai].cuts.clone() } else { vec![] };
        run.note(r, true, n, || {
            if cuts.is_empty() { format!("{base} points") } else { format!("{base} points, cut to {n} by {}", cuts.iter().map(|c| format!("{} (-{})", c.by, c.n)).collect::<Vec<_>>().join(", ")) }
        });
        accepted.push((i as usize, ai));
        if r.stacking == Stacking::Exclusive {
            exclusive = Some(i as usize);
        }
    }
    // Multipliers (CP-1..3) on what the base rules credited, with their own stacking.
    let mut mult_taken: Option<usize> = None;
    let mut mult_exclusive = false;
    for i in multipliers {
        let cr = &c.rules[i];
        let r = &cr.rule;
        let Action::Multiplier { num, den, of } = &r.action else { unreachable!() };
        if mult_exclusive || (r.stacking == Stacking::Exclusive && mult_taken.is_some()) {
            run.note(r, false, 0, || format!("excluded by multiplier {:?} (exclusive stacking)", c.rules[mult_taken.unwrap()].rule.id));
            continue;
        }
        let base: i64 = accepted
            .iter()
            .filter(|(ri, _)| {
                let br = &c.rules[*ri].rule;
                if of.is_empty() { br.action.is_rate() } else { of.iter().any(|o| o == &br.id) }
            })
            .map(|(_, ai)| &run.awards[*ai])
            .filter(|a| *a.point_type == *r.point_type && *a.member == *m.id)
            .map(|a| a.points)
            .sum();
        let bonus = floor_mul(base, num - den, 1, *den);
        if bonus <= 0 {
            run.note(r, false, 0, || "no rate award of its point type to multiply".into());
            continue;
        }
        let n = run.award(r, &cr.ids, cr.budget.as_ref(), &member, r.version, bonus, r.pending, r.validity.as_ref());
        run.note(r, true, n, || format!("x{num}/{den} of {base}: {bonus} extra points, {n} credited"));
        mult_taken.get_or_insert(i);
        if r.stacking == Stacking::Exclusive {
            mult_exclusive = true;
        }
    }
    // Tier multiplier (TL-2) on the rate awards of the tiers' point type.
    let mut tier_change = None;
    if let Some(t) = &c.tiers {
        if let Some(rank) = t.rank(&m.tier) {
            let lvl = &t.levels[rank];
            if lvl.num > lvl.den {
                let base: i64 = accepted
                    .iter()
                    .filter(|(ri, _)| c.rules[*ri].rule.action.is_rate())
                    .map(|(_, ai)| &run.awards[*ai])
                    .filter(|a| *a.point_type == *t.point_type && *a.member == *m.id)
                    .map(|a| a.points)
                    .sum();
                let bonus = floor_mul(base, lvl.num - lvl.den, 1, lvl.den);
                if bonus > 0 {
                    let id = tier_rule_id(&lvl.name);
                    let pseudo = Rule {
                        programme: c.programme.clone(),
                        id: id.clone(),
                        version: t.version,
                        name: String::new(),
                        enabled: true,
                        kinds: vec![],
                        priority: 0,
                        stacking: Stacking::Stackable,
                        when: None,
                        action: Action::Fixed { points: bonus },
                        point_type: t.point_type.clone(),
                        validity: None,
                        pending: false,
                        caps: vec![],
                        max_award: None,
                        campaign: None,
                    };
                    // The tier bonus lands with the lots it multiplies (same pending state).
                    let pending = accepted.iter().any(|(ri, _)| c.rules[*ri].rule.pending && c.rules[*ri].rule.point_type == t.point_type);
                    let ids = AwardIds::of(&pseudo);
                    let n = run.award(&pseudo, &ids, None, &member, t.version, bonus, pending, None);
                    run.note(&pseudo, true, n, || format!("tier {} x{}/{} of {base}: {bonus} extra points, {n} credited", lvl.name, lvl.num, lvl.den));
                }
            }
        }
        // Qualification (TL-1, TL-5): points earned by this member, or spend, this month.
        let earned: i64 = run.awards.iter().filter(|a| *a.member == *m.id).map(|a| a.points).sum();
        let spend = if t.counts_as_spend(&ev.kind) { ev.amount } else { 0 };
        let month = run.e.month;
        run.st.to_mut().qualify(month, earned, spend, t.window_months);
        // The referrer's award counts towards its own qualification (its tier moves at its next
        // event or evaluation).
        if let (Some(r), Some(rst)) = (run.st.referrer.clone(), run.referrer_st.as_mut()) {
            let earned: i64 = run.awards.iter().filter(|a| *a.member == *r).map(|a| a.points).sum();
            if earned > 0 {
                rst.to_mut().qualify(month, earned, 0, t.window_months);
            }
        }
        if !run.st.tier_override {
            let total = run.st.qualifying(t.basis, month, t.window_months);
            let level = t.level_for(total);
            let current = t.rank(&m.tier);
            if current.is_none_or(|c| level > c) && t.levels[level].name != m.tier {
                tier_change = Some((m.tier.clone(), t.levels[level].name.clone()));
            }
        }
    }
    // Member facts later events depend on (ER-15).
    if ev.kind == "signup" && run.st.referrer.is_none() && run.st.purchases == 0 {
        if let Some(r) = ev.attr("referrer") {
            run.st.to_mut().referrer = Some(r.to_string());
        }
    }
    // Only "any purchase yet" matters (ER-15, first-purchase conditions): counting on would change
    // the member's state, and so write it, on every purchase.
    if ev.kind == "purchase" && run.st.purchases == 0 {
        run.st.to_mut().purchases = 1;
    }
    if explain {
        for (id, v) in &c.disabled {
            run.notes.push(Note { rule: id.clone(), version: *v, fired: false, points: 0, reason: "disabled".into() });
        }
    }
    let state = match run.st {
        Cow::Owned(new) if new != *st => Some(new),
        _ => None,
    };
    let referrer_state = match (run.referrer_st, referrer_st) {
        (Some(Cow::Owned(new)), Some(old)) if new != *old => Some(new),
        _ => None,
    };
    Evaluation { awards: run.awards, notes: run.notes, tier_change, state, referrer_state }
}

/// Whether a referral can still pay `st`'s referrer (ER-15: the member named one at sign-up and
/// has not purchased yet): only then does an evaluation need the referrer's rule state.
pub fn referral_pending(st: &MemberState) -> bool {
    st.referrer.is_some() && !st.referral_paid && st.purchases == 0
}

#[cfg(test)]
mod tests {
    use super::floor_mul;

    #[test]
    fn floor_mul_is_exact_on_both_paths_and_capped() {
        // ER-5 / T12: 99.99 CNY at 1 point per 1.00 CNY is 99 points (floor)
        assert_eq!(floor_mul(9_999, 1, 1, 100), 99);
        // ER-1 / T1: 10,000 CNY (minor units) for 365 days at 16 points per 10,000 CNY-year
        assert_eq!(floor_mul(1_000_000, 365, 16, 1_000_000 * 365), 16);
        // a product past i64 takes the 128-bit path and stays exact
        let big = i64::MAX / 3;
        assert_eq!(floor_mul(big, 6, 1, 4), (big as i128 * 6 / 4).min(crate::limits::AMOUNT_MAX as i128) as i64);
        assert_eq!(floor_mul(big, 6, 1, 1 << 40), ((big as i128 * 6) >> 40) as i64);
    }
}
