//! The rules engine's commands applied by the ledger's single writer. This file is a child module
//! of `ledger` (`#[path]` in ledger.rs) so it works through the writer's own overlay: awards
//! are ordinary lots and postings (`acct`, `post`, `insert_lot`, `Draft`), journaled,
//! hash-chained and audited like any credit, in the same write as the event's idempotency record.
use std::sync::Arc;
// (the writer's caches move to its thread with the ledger: Arc, as ledger.rs's members)
use std::sync::Arc as Rc;

use rustc_hash::FxHashMap;

use super::{Draft, Ledger, Work};
use crate::command::{Command, EarnNote, Envelope};
use crate::error::{LedgerError, Result};
use crate::limits::*;
use crate::model::*;
use crate::rules::{self, *};
use crate::store::*;
use heed::RwTxn;

/// The writer's rule caches: compiled rule sets per programme (rebuilt after a rule command
/// commits) and member rule states (read through, and written back once per group, like
/// accounts; bounded by RULE_STATE_CACHE_ENTRIES_MAX).
#[derive(Default)]
pub(super) struct RulesCache {
    compiled: FxHashMap<String, Arc<Compiled>>,
    states: FxHashMap<String, Rc<MemberState>>,
    dirty: Vec<String>,
}

impl RulesCache {
    pub(super) fn clear(&mut self) {
        self.compiled.clear();
        self.states.clear();
        self.dirty.clear();
    }
}

/// One command's pending rule changes.
#[derive(Default)]
pub(super) struct RulesWork {
    states: Vec<(String, MemberState)>,
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    changed: Vec<String>,
}

fn rule_err<T>(msg: String) -> Result<T> {
    Err(LedgerError::InvalidRule(msg))
}

impl Ledger {
    fn compiled(&self, txn: &RwTxn<'_>, programme: &str) -> Result<Arc<Compiled>> {
        if let Some(c) = self.rules.borrow().compiled.get(programme) {
            return Ok(c.clone());
        }
        let c = Arc::new(rules::load(&self.store, txn, programme)?);
        self.rules.borrow_mut().compiled.insert(programme.to_string(), c.clone());
        Ok(c)
    }

    /// The member's rule state (shared: a command that changes it clones it).
    fn rule_state(&self, txn: &RwTxn<'_>, w: &Work, member: &str) -> Result<Rc<MemberState>> {
        if let Some((_, s)) = w.rules.states.iter().rev().find(|(m, _)| m == member) {
            return Ok(Rc::new(s.clone()));
        }
        if let Some(s) = self.rules.borrow().states.get(member) {
            return Ok(s.clone());
        }
        let st: Rc<MemberState> = Rc::new(crate::store::get_logged_known(&self.store, txn, &self.logged, crate::store::LogTag::RuleState, member.as_bytes())?.unwrap_or_default());
        // Read-through, like accounts and members: a member's next event finds its state here
        // instead of descending the B-tree (or the state log) again. Committed state only: a
        // command's own changes stay in its Work until they commit (`flush_rules`).
        self.rules.borrow_mut().states.insert(member.to_string(), st.clone());
        Ok(st)
    }

    fn put_rule_record<T: serde::Serialize>(w: &mut Work, key: Vec<u8>, v: &T, programme: &str) {
        w.rules.puts.push((key, encode(v)));
        w.rules.changed.push(programme.to_string());
    }

    fn check_rule_refs(&self, txn: &RwTxn<'_>, p: &Programme, rule: &Rule) -> Result<()> {
        if p.point_type(&rule.point_type).is_err() {
            return rule_err(format!("rule.point_type: unknown point type {:?} in programme {:?}", rule.point_type, p.id));
        }
        if let Some(c) = &rule.campaign {
            if get::<Campaign>(&self.store.rules, txn, &campaign_key(&p.id, c))?.is_none() {
                return rule_err(format!("rule.campaign: unknown campaign {c:?}"));
            }
        }
        Ok(())
    }

    /// Apply a rules command (`Command::is_rules`).
    pub(super) fn run_rules(&self, txn: &RwTxn<'_>, w: &mut Work, env: &Envelope) -> Result<()> {
        let at = env.at;
        match &env.cmd {
            Command::DefineRule { rule } | Command::UpdateRule { rule } => {
                rule.check()?;
                let p = self.programme_ref(&rule.programme)?;
                self.check_rule_refs(txn, p, rule)?;
                let latest = rules::latest_rule(&self.store, txn, &p.id, &rule.id)?;
                let version = match (&env.cmd, latest) {
                    (Command::DefineRule { .. }, Some(_)) => return Err(LedgerError::AlreadyExists(format!("rule {:?} exists (update it)", rule.id))),
                    (Command::DefineRule { .. }, None) => {
                        let c = self.compiled(txn, &p.id)?;
                        if c.rules.len() + c.disabled.len() >= RULES_PER_PROGRAMME_MAX {
                            return Err(LedgerError::LimitExceeded(format!("a programme has at most {RULES_PER_PROGRAMME_MAX} rules")));
                        }
                        1
                    }
                    (_, None) => return Err(LedgerError::UnknownRule(rule.id.clone())),
                    (_, Some(prev)) => prev.version + 1,
                };
                let mut r = rule.clone();
                r.version = version;
                Self::put_rule_record(w, rule_key(&p.id, &r.id, version), &r, &p.id);
                w.draft().amount = version as i64;
            }
            Command::DisableRule { programme, rule } => {
                self.programme_ref(programme)?;
                check_key_id("rule id", rule)?;
                let mut r = rules::latest_rule(&self.store, txn, programme, rule)?.ok_or_else(|| LedgerError::UnknownRule(rule.clone()))?;
                r.version += 1;
                r.enabled = false;
                Self::put_rule_record(w, rule_key(programme, rule, r.version), &r, programme);
                w.draft().amount = r.version as i64;
            }
            Command::DefineCampaign { campaign } => {
                campaign.check()?;
                let p = self.programme_ref(&campaign.programme)?;
                let key = campaign_key(&p.id, &campaign.id);
                if get::<Campaign>(&self.store.rules, txn, &key)?.is_some() {
                    return Err(LedgerError::AlreadyExists(format!("campaign {:?} exists", campaign.id)));
                }
                if rules::campaigns(&self.store, txn, &p.id)?.len() >= CAMPAIGNS_PER_PROGRAMME_MAX {
                    return Err(LedgerError::LimitExceeded(format!("a programme has at most {CAMPAIGNS_PER_PROGRAMME_MAX} campaigns")));
                }
                if let Some(b) = &campaign.budget {
                    if p.point_type(&b.point_type).is_err() {
                        return rule_err(format!("campaign.budget.point_type: unknown point type {:?}", b.point_type));
                    }
                    // Fund the bounded budget account from issuance (PT-11): awards draw it down.
                    let pid = p.id.clone();
                    self.post(txn, w, &b.point_type, &system_account(&pid, SystemAccount::Issuance, &b.point_type), &budget_account(&pid, &campaign.id, &b.point_type), b.points)?;
                    w.draft().amount = b.points;
                }
                Self::put_rule_record(w, key, campaign, &campaign.programme);
            }
            Command::DefineTiers { tiers } => {
                tiers.check()?;
                let p = self.programme_ref(&tiers.programme)?;
                if tiers.levels.iter().any(|l| l.num > l.den) && p.point_type(&tiers.point_type).is_err() {
                    return rule_err(format!("tiers.point_type: unknown point type {:?}", tiers.point_type));
                }
                let mut t = tiers.clone();
                t.version = rules::tiers(&self.store, txn, &p.id)?.map_or(1, |x| x.version + 1);
                w.draft().amount = t.version as i64;
                Self::put_rule_record(w, tiers_key(&p.id), &t, &tiers.programme);
            }
            Command::SetEarnPolicy { policy } => {
                policy.check()?;
                self.programme_ref(&policy.programme)?;
                Self::put_rule_record(w, policy_key(&policy.programme), policy, &policy.programme);
            }
            Command::SetMemberGroups { member, groups } => {
                if groups.len() > MEMBER_GROUPS_MAX {
                    return Err(LedgerError::LimitExceeded(format!("a member is in at most {MEMBER_GROUPS_MAX} groups")));
                }
                for g in groups {
                    check_id("group", g)?;
                }
                self.member(txn, w, member)?;
                let mut st = MemberState::clone(&*self.rule_state(txn, w, member)?);
                st.groups = groups.clone();
                w.rules.states.push((member.clone(), st));
            }
            Command::SetTier { member, tier, reason } => {
                check_text("reason", reason)?;
                let m = self.member(txn, w, member)?;
                let c = self.compiled(txn, &m.programme)?;
                let mut st = MemberState::clone(&*self.rule_state(txn, w, member)?);
                let new_tier = match tier {
                    Some(t) => {
                        check_text("tier", t)?;
                        if let Some(tp) = &c.tiers {
                            if tp.rank(t).is_none() {
                                return invalid_tier(t, tp);
                            }
                        }
                        st.tier_override = true;
                        t.clone()
                    }
                    None => {
                        // Back to automatic: the tier the qualification gives now.
                        let tp = c.tiers.as_ref().ok_or_else(|| LedgerError::InvalidArgument(format!("programme {:?} has no tiers", m.programme)))?;
                        st.tier_override = false;
                        let (_, _, _, _, month, _) = compile::calendar(at, c.tz_ms);
                        tp.levels[tp.level_for(st.qualifying(tp.basis, month, tp.window_months))].name.clone()
                    }
                };
                w.rules.states.push((member.clone(), st));
                if new_tier != m.tier {
                    let mut mm = Member::clone(&m);
                    mm.tier = new_tier;
                    w.members.push(mm);
                }
            }
            Command::EvaluateTiers { programme, after } => self.evaluate_tiers(txn, w, at, programme, after.as_deref())?,
            Command::Earn { event } => self.earn(txn, w, at, event)?,
            other => return Err(LedgerError::InvalidArgument(format!("{} is not a rules command", other.kind()))),
        }
        Ok(())
    }

    /// Automatic upgrade and downgrade (TL-4) of up to TIER_EVALUATIONS_PER_COMMAND_MAX members
    /// after `after`; the receipt's cursor continues the sweep. Operator overrides are left alone.
    fn evaluate_tiers(&self, txn: &RwTxn<'_>, w: &mut Work, at: Ms, programme: &str, after: Option<&str>) -> Result<()> {
        self.programme_ref(programme)?;
        let c = self.compiled(txn, programme)?;
        let tp = c.tiers.as_ref().ok_or_else(|| LedgerError::InvalidArgument(format!("programme {programme:?} has no tiers")))?;
        let (_, _, _, _, month, _) = compile::calendar(at, c.tz_ms);
        let start = match after.filter(|a| !a.is_empty()) {
            Some(a) => std::ops::Bound::Excluded(a.as_bytes()),
            None => std::ops::Bound::Unbounded,
        };
        let mut cursor = None;
        let mut changed = 0i64;
        let mut ids = vec![];
        for (seen, item) in self.store.members.range(txn, &(start, std::ops::Bound::Unbounded))?.enumerate() {
            let (k, _) = item?;
            if seen == TIER_EVALUATIONS_PER_COMMAND_MAX {
                cursor = ids.last().cloned();
                break;
            }
            ids.push(String::from_utf8_lossy(k).into_owned());
        }
        for id in ids {
            let m = self.member(txn, w, &id)?;
            if m.programme != programme {
                continue;
            }
            let st = self.rule_state(txn, w, &id)?;
            if st.tier_override {
                continue;
            }
            let level = &tp.levels[tp.level_for(st.qualifying(tp.basis, month, tp.window_months))].name;
            if *level != m.tier {
                let mut mm = Member::clone(&m);
                mm.tier = level.clone();
                w.members.push(mm);
                changed += 1;
            }
        }
        let d = w.draft();
        d.amount = changed;
        d.cursor = cursor;
        Ok(())
    }

    fn earn(&self, txn: &RwTxn<'_>, w: &mut Work, at: Ms, event: &Event) -> Result<()> {
        event.check()?;
        let m = self.active_member(txn, w, &event.member)?;
        let p = self.programme_ref(&m.programme)?;
        if event.kind == "signup" {
            if let Some(r) = event.attr("referrer") {
                let bad = |msg: &str| Err(LedgerError::InvalidArgument(format!("event.attrs.referrer: {msg}")));
                if r == m.id {
                    return bad("a member cannot refer itself");
                }
                match self.member(txn, w, r) {
                    Ok(inv) if inv.programme == m.programme => {}
                    Ok(_) => return bad("the referrer belongs to another programme"),
                    Err(_) => return bad(&format!("unknown member {r:?}")),
                }
            }
        }
        let c = self.compiled(txn, &p.id)?;
        let st = self.rule_state(txn, w, &m.id)?;
        let referrer_st = match &st.referrer {
            Some(r) if rules::referral_pending(&st) => Some(self.rule_state(txn, w, r)?),
            _ => None,
        };
        let ev = {
            let budgets = |prog: &str, camp: &str, t: &str| -> i64 {
                let key = budget_account(prog, camp, t);
                match w.accounts.iter().find(|(k, _)| *k == key) {
                    Some((_, a)) => a.b,
                    None => match self.accounts.borrow().get(key.as_str()) {
                        Some(a) => a.b,
                        None => rules::budget_left(&self.store, txn, prog, camp, t),
                    },
                }
            };
            evaluate(&c, p, at, event, &m, &st, referrer_st.as_deref(), budgets, false)
        };
        let mut made = Vec::with_capacity(ev.awards.len());
        let mut total = 0i64;
        for a in &ev.awards {
            if a.points <= 0 {
                continue;
            }
            let key = member_account(&a.member, &a.point_type);
            let i = self.acct(txn, w, &key)?;
            let lot = Lot {
                i: w.new_lot_id(),
                r: a.points,
                a: a.points,
                e: at,
                x: a.expires_at,
                f: a.effective_at,
                s: w.seq0,
                g: Some(Box::new((a.rule.to_string(), a.version))),
            };
            Self::insert_lot(&mut w.accounts[i].1, lot.clone())?;
            let from = match (&a.campaign, a.from_budget) {
                (Some(camp), true) => budget_account(&p.id, camp, &a.point_type),
                _ => system_account(&p.id, SystemAccount::Issuance, &a.point_type),
            };
            self.post(txn, w, &a.point_type, &from, &key, a.points)?;
            made.push(Consumed { t: AcctKey::from(&*a.point_type), lot, n: a.points });
            total += a.points;
        }
        let cuts: Vec<(String, String, i64)> = ev.awards.iter().flat_map(|a| a.cuts.iter().map(|c| (a.rule.to_string(), c.by.clone(), c.n))).collect();
        let zero: Vec<String> = ev.awards.iter().filter(|a| a.points == 0).map(|a| a.rule.to_string()).collect();
        if let Some((_, to)) = &ev.tier_change {
            let mut mm = Member::clone(&m);
            mm.tier = to.clone();
            w.members.push(mm);
        }
        let note = (!cuts.is_empty() || ev.tier_change.is_some() || !zero.is_empty()).then(|| EarnNote { cuts, zero, tier: ev.tier_change.clone() });
        // Write the member's rule state back only when the event changed it (most earns under
        // uncapped rules do not): each write dirties a B-tree page at group commit.
        if let Some(changed) = ev.state {
            w.rules.states.push((m.id.clone(), changed));
        }
        if let (Some(changed), Some(r)) = (ev.referrer_state, &st.referrer) {
            w.rules.states.push((r.clone(), changed));
        }
        let d: &mut Draft = w.draft();
        d.made = made;
        d.amount = total;
        d.note = note;
        Ok(())
    }

    /// After a command's entries are written: its rule records go to the transaction (rare,
    /// operator commands), its member states to the write-behind cache.
    pub(super) fn flush_rules(&mut self, txn: &mut RwTxn<'_>, rw: RulesWork) -> Result<()> {
        for (k, v) in &rw.puts {
            self.store.rules.put(txn, k, v)?;
        }
        let mut cache = self.rules.borrow_mut();
        for p in rw.changed {
            cache.compiled.remove(&p);
        }
        for (m, s) in rw.states {
            cache.dirty.push(m.clone());
            cache.states.insert(m, Rc::new(s));
        }
        Ok(())
    }

    /// The member rule states the group changed, once each, encoded for the state log.
    pub(super) fn rules_dirty_states(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut cache = self.rules.borrow_mut();
        let mut dirty = std::mem::take(&mut cache.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        dirty.into_iter().map(|k| {
            let v = encode(&cache.states[&k]);
            (k, v)
        }).collect()
    }

    /// Start the rule state cache over when it outgrows RULE_STATE_CACHE_ENTRIES_MAX (once the
    /// group's states are logged, like the account cache).
    pub(super) fn trim_rule_states(&mut self) {
        let mut cache = self.rules.borrow_mut();
        if cache.states.len() > RULE_STATE_CACHE_ENTRIES_MAX {
            cache.states.clear();
        }
    }
}

fn invalid_tier<T>(t: &str, tp: &TierPolicy) -> Result<T> {
    Err(LedgerError::InvalidArgument(format!("tier {t:?} is not one of {:?}", tp.levels.iter().map(|l| &l.name).collect::<Vec<_>>())))
}
