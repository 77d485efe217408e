//! The earning rules engine (issue #3, REQUIREMENTS §4–§6): rules are data (ER-32), evaluated in
//! Rust inside the same atomic write as the credits they produce.
//!
//! - `model`: rules, conditions, actions, campaigns, tiers, the earning policy; validation that
//!   names the bad field.
//! - `compile`: the compiled, interned form the writer caches per programme.
//! - `eval`: evaluation of an event (awards, caps, budgets, multipliers, tiers, explanations).
//! - `state`: per-member rule state (cap counters, check-in streak, referral, qualification).
//! - `ledger/rules_apply` (in `apply.rs`, a child module of `ledger`): the commands' effects
//!   through the ledger's overlay, so awards are ordinary lots and postings.
pub mod compile;
pub mod eval;
pub mod model;
pub mod state;

use heed::RoTxn;

pub use compile::Compiled;
pub use eval::{evaluate, referral_pending, Award, Cut, Evaluation, Note};
pub use model::*;
pub use state::MemberState;

use crate::error::{LedgerError, Result};
use crate::model::{check_key_id, Member, Ms, Programme};
use crate::store::{decode, get, Store};

/// Keys in the `rules` database (text, so `mdb_dump` stays readable):
/// `r/<programme>/<rule>/<version:010>` → Rule (every version kept), `c/<programme>/<campaign>`
/// → Campaign, `t/<programme>` → TierPolicy, `e/<programme>` → EarnPolicy.
pub fn rule_key(programme: &str, rule: &str, version: u32) -> Vec<u8> {
    format!("r/{programme}/{rule}/{version:010}").into_bytes()
}
pub fn campaign_key(programme: &str, campaign: &str) -> Vec<u8> {
    format!("c/{programme}/{campaign}").into_bytes()
}
pub fn tiers_key(programme: &str) -> Vec<u8> {
    format!("t/{programme}").into_bytes()
}
pub fn policy_key(programme: &str) -> Vec<u8> {
    format!("e/{programme}").into_bytes()
}

/// Every version of one rule, oldest first.
pub fn rule_versions(store: &Store, txn: &RoTxn<'_>, programme: &str, rule: &str) -> Result<Vec<Rule>> {
    let prefix = format!("r/{programme}/{rule}/");
    let mut out = vec![];
    for item in store.rules.prefix_iter(txn, prefix.as_bytes())? {
        let (_, v) = item?;
        out.push(decode::<Rule>(v)?);
    }
    Ok(out)
}

pub fn latest_rule(store: &Store, txn: &RoTxn<'_>, programme: &str, rule: &str) -> Result<Option<Rule>> {
    let prefix = format!("r/{programme}/{rule}/");
    match store.rules.prefix_iter(txn, prefix.as_bytes())?.last() {
        Some(item) => Ok(Some(decode(item?.1)?)),
        None => Ok(None),
    }
}

/// The latest version of every rule of a programme (disabled ones included), by rule id.
pub fn current_rules(store: &Store, txn: &RoTxn<'_>, programme: &str) -> Result<Vec<Rule>> {
    let prefix = format!("r/{programme}/");
    let mut out: Vec<Rule> = vec![];
    for item in store.rules.prefix_iter(txn, prefix.as_bytes())? {
        let (_, v) = item?;
        let r: Rule = decode(v)?;
        match out.last_mut() {
            Some(last) if last.id == r.id => *last = r,
            _ => out.push(r),
        }
    }
    Ok(out)
}

pub fn campaigns(store: &Store, txn: &RoTxn<'_>, programme: &str) -> Result<Vec<Campaign>> {
    let prefix = format!("c/{programme}/");
    let mut out = vec![];
    for item in store.rules.prefix_iter(txn, prefix.as_bytes())? {
        out.push(decode(item?.1)?);
    }
    Ok(out)
}

pub fn tiers(store: &Store, txn: &RoTxn<'_>, programme: &str) -> Result<Option<TierPolicy>> {
    get(&store.rules, txn, &tiers_key(programme))
}

pub fn policy(store: &Store, txn: &RoTxn<'_>, programme: &str) -> Result<Option<EarnPolicy>> {
    get(&store.rules, txn, &policy_key(programme))
}

/// Load a programme's rule set from the store and compile it.
pub fn load(store: &Store, txn: &RoTxn<'_>, programme: &str) -> Result<Compiled> {
    Ok(Compiled::build(programme, policy(store, txn, programme)?, tiers(store, txn, programme)?, campaigns(store, txn, programme)?, current_rules(store, txn, programme)?))
}

pub fn member_state(store: &Store, txn: &RoTxn<'_>, member: &str) -> Result<MemberState> {
    Ok(crate::store::get_logged(store, txn, crate::store::LogTag::RuleState, member.as_bytes())?.unwrap_or_default())
}

pub fn budget_left(store: &Store, txn: &RoTxn<'_>, programme: &str, campaign: &str, point_type: &str) -> i64 {
    crate::store::get_account(store, txn, budget_account(programme, campaign, point_type).as_bytes()).ok().flatten().map_or(0, |a| a.b)
}

/// Evaluate an event against the committed state without posting anything (issue #3 §6): which
/// rules fired, which did not and why, what caps and budgets cut.
pub fn dry_run(store: &Store, at: Ms, event: &Event) -> Result<Evaluation> {
    crate::model::check_time("at", at)?;
    event.check()?;
    let txn = store.read_txn()?;
    let m: Member = get(&store.members, &txn, event.member.as_bytes())?.ok_or_else(|| LedgerError::UnknownMember(event.member.clone()))?;
    let p: Programme = get(&store.programmes, &txn, m.programme.as_bytes())?.ok_or_else(|| LedgerError::UnknownProgramme(m.programme.clone()))?;
    let c = load(store, &txn, &p.id)?;
    let st = member_state(store, &txn, &m.id)?;
    let referrer_st = match &st.referrer {
        Some(r) if referral_pending(&st) => Some(member_state(store, &txn, r)?),
        _ => None,
    };
    let budgets = |prog: &str, camp: &str, t: &str| budget_left(store, &txn, prog, camp, t);
    Ok(evaluate(&c, &p, at, event, &m, &st, referrer_st.as_ref(), budgets, true))
}

/// What a campaign has granted and has left (CP-13 live monitoring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignStatus {
    pub campaign: Campaign,
    pub granted: i64,
    pub left: i64,
}

pub fn campaign_status(store: &Store, programme: &str, campaign: &str) -> Result<CampaignStatus> {
    check_key_id("campaign id", campaign)?;
    let txn = store.read_txn()?;
    let c: Campaign = get(&store.rules, &txn, &campaign_key(programme, campaign))?.ok_or_else(|| LedgerError::UnknownRule(format!("campaign {campaign:?}")))?;
    let (granted, left) = match &c.budget {
        Some(b) => {
            let left = budget_left(store, &txn, programme, campaign, &b.point_type);
            (b.points - left, left)
        }
        None => (0, 0),
    };
    Ok(CampaignStatus { campaign: c, granted, left })
}
