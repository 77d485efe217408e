//! The earning rules engine (issue #3) through the engine and LMDB: test vectors T1, T2, T11,
//! T12, T16, every condition dimension, stacking, caps at window boundaries, campaign budgets
//! under 16 concurrent threads, tiers, referral ordering, dry-run explanations, versioning, and
//! a property test that posted credits equal the dry run and the audit passes.
mod common;

use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use pypoints_core::audit::audit;
use pypoints_core::command::{Command, EarnNote, Entry, Receipt};
use pypoints_core::model::*;
use pypoints_core::query;
use pypoints_core::rules::*;

const CNY: i64 = 100; // minor units per yuan
const P: &str = "shop";
const T: &str = "pts";
/// UTC+8 offset in ms: calendar days in these tests are China Standard Time.
const TZ: i64 = 8 * HOUR;

/// Local (UTC+8) midnight of a date.
fn local(y: i32, m: u32, d: u32) -> Ms {
    ms(y, m, d) - TZ
}

fn rule(id: &str, kinds: &[&str], action: Action) -> Rule {
    Rule {
        programme: P.into(),
        id: id.into(),
        version: 0,
        name: String::new(),
        enabled: true,
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        priority: 0,
        stacking: Stacking::Stackable,
        when: None,
        action,
        point_type: T.into(),
        validity: None,
        pending: false,
        caps: vec![],
        max_award: None,
        campaign: None,
    }
}

fn rate(points: i64, per_minor: i64) -> Action {
    Action::Rate { points, per_minor }
}

fn fixed(points: i64) -> Action {
    Action::Fixed { points }
}

fn ev(kind: &str, member: &str, amount: i64) -> Event {
    Event { kind: kind.into(), member: member.into(), amount, ..Default::default() }
}

fn strs(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

fn earn(e: Event) -> Command {
    Command::Earn { event: e }
}

fn define(r: Rule) -> Command {
    Command::DefineRule { rule: r }
}

/// A programme `shop` with one never-expiring type `pts`, members a, b, c.
fn fx() -> Fx {
    fx_on(Fx::new())
}

fn fx_on(fx: Fx) -> Fx {
    let at = t0();
    fx.ok(at, define_programme(P));
    fx.ok(at, define_type(P, pt(T, 0, Validity::None, true, plain_rate(), vec![])));
    for m in ["a", "b", "c"] {
        fx.ok(at, open_member(m, P));
    }
    fx
}

fn note_of(fx: &Fx, id: &str) -> Option<EarnNote> {
    let es: Vec<Entry> = query::entries_of(fx.store(), id).unwrap();
    es[0].note.clone()
}

fn earned(fx: &Fx, at: Ms, e: Event) -> Receipt {
    fx.ok(at, earn(e)).1
}

/// (rule id, version, points) of the lots an earn made.
fn made(fx: &Fx, id: &str) -> Vec<(String, u32, i64)> {
    let es: Vec<Entry> = query::entries_of(fx.store(), id).unwrap();
    es[0].made.iter().map(|c| {
        let g = c.lot.g.as_ref().expect("earned lots record their rule");
        (g.0.clone(), g.1, c.n)
    }).collect()
}

fn dry(fx: &Fx, at: Ms, e: &Event) -> Evaluation {
    dry_run(fx.store(), at, e).unwrap()
}

fn clean(fx: &Fx) {
    let r = audit(fx.store()).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

// ===== test vectors =====

#[test]
fn t1_er1_deposit_amount_times_term() {
    let fx = fx();
    let at = t0();
    fx.ok(at, define(rule("deposit", &["deposit"], Action::AmountTerm { points: 16, per_minor: 10_000 * CNY, per_days: 365 })));
    let dep = |amount_cny: i64, days: u32| Event { term_days: days, ..ev("deposit", "a", amount_cny * CNY) };
    assert_eq!(earned(&fx, at, dep(10_000, 365)).amount, 16);
    assert_eq!(earned(&fx, at, dep(50_000, 365)).amount, 80);
    assert_eq!(earned(&fx, at, dep(10_000, 3 * 365)).amount, 48);
    assert_eq!(fx.total("a", T), 16 + 80 + 48);
    clean(&fx);
}

#[test]
fn t2_er2_insurance_10000_gives_5() {
    let fx = fx();
    fx.ok(t0(), define(rule("insurance", &["insurance"], rate(5, 10_000 * CNY))));
    assert_eq!(earned(&fx, t0(), ev("insurance", "a", 10_000 * CNY)).amount, 5);
    // Scenario 1: a deposit and an insurance purchase in the same nightly file → 16 + 5 = 21.
    fx.ok(t0(), define(rule("deposit", &["deposit"], Action::AmountTerm { points: 16, per_minor: 10_000 * CNY, per_days: 365 })));
    earned(&fx, t0(), Event { term_days: 365, ..ev("deposit", "b", 10_000 * CNY) });
    earned(&fx, t0(), ev("insurance", "b", 10_000 * CNY));
    assert_eq!(fx.total("b", T), 21);
}

#[test]
fn t11_100_to_1_programme_spend_388_gives_388() {
    let fx = fx();
    fx.ok(t0(), define(rule("spend", &["purchase"], rate(1, CNY))));
    assert_eq!(earned(&fx, t0(), ev("purchase", "a", 388 * CNY)).amount, 388);
}

#[test]
fn t12_er5_ex7_floor_and_pending_until_next_day() {
    let fx = fx();
    let mut r = rule("card", &["card_spend"], rate(1, CNY));
    r.pending = true;
    fx.ok(t0(), define(r));
    let at = local(2024, 5, 10) + 15 * HOUR; // 15:00 China time
    let rc = earned(&fx, at, ev("card_spend", "a", 9_999));
    assert_eq!(rc.amount, 99, "99.99 CNY → 99 points");
    let b = fx.bal("a", T, at);
    assert_eq!((b.total, b.available, b.pending), (99, 0, 99));
    // Effective from the next local midnight.
    let next = local(2024, 5, 11);
    assert_eq!(fx.lots("a", T)[0].f, next);
    assert_eq!(fx.bal("a", T, next - 1).available, 0);
    assert_eq!(fx.bal("a", T, next).available, 99);
    // Scenario 8: 1,000.50 → 1,000.
    assert_eq!(earned(&fx, at, ev("card_spend", "a", 100_050)).amount, 1_000);
}

#[test]
fn t16_er17_checkin_streak_bonus_on_7th_day_and_reset() {
    let fx = fx();
    fx.ok(t0(), define(rule("checkin", &["checkin"], Action::Checkin { daily: 5, streak: 7, bonus: 50 })));
    let day = |d: u32| local(2024, 6, d) + 9 * HOUR;
    let mut got = vec![];
    for d in 1..=7 {
        got.push(earned(&fx, day(d), ev("checkin", "a", 0)).amount);
    }
    assert_eq!(got, [5, 5, 5, 5, 5, 5, 55]);
    // Twice in a day: nothing the second time (and the dry run says why).
    let e = ev("checkin", "a", 0);
    assert_eq!(dry(&fx, day(7) + HOUR, &e).notes[0].reason, "already checked in today");
    assert_eq!(earned(&fx, day(7) + HOUR, e).amount, 0);
    // Day 8 continues (8 of 7: no bonus); day 9 missed → day 10 starts over at 1.
    assert_eq!(earned(&fx, day(8), ev("checkin", "a", 0)).amount, 5);
    let mut got = vec![];
    for d in 10..=16 {
        got.push(earned(&fx, day(d), ev("checkin", "a", 0)).amount);
    }
    assert_eq!(got, [5, 5, 5, 5, 5, 5, 55], "a missed day resets the streak");
    // Local days: 23:30 and 00:30 China time are consecutive days even though both are the
    // same UTC day.
    assert_eq!(earned(&fx, local(2024, 7, 1) + 23 * HOUR + 30 * MINUTE, ev("checkin", "b", 0)).amount, 5);
    assert_eq!(earned(&fx, local(2024, 7, 2) + 30 * MINUTE, ev("checkin", "b", 0)).amount, 5);
    clean(&fx);
}

#[test]
fn er24_quiz_5_times_10() {
    let fx = fx();
    let mut r = rule("quiz", &["quiz"], rate(10, 1));
    r.max_award = Some(50);
    r.caps = vec![Cap { window: Window::Day, max: 50 }];
    fx.ok(t0(), define(r));
    assert_eq!(earned(&fx, t0(), ev("quiz", "a", 5)).amount, 50);
    assert_eq!(earned(&fx, t0() + HOUR, ev("quiz", "a", 5)).amount, 0, "one quiz's worth a day");
    assert_eq!(earned(&fx, t0() + DAY, ev("quiz", "b", 7)).amount, 50, "at most 5 × 10 per quiz");
}

#[test]
fn er13_er14_er16_fixed_bonuses_signup_review_birthday() {
    let fx = fx();
    let mut signup = rule("signup", &["signup"], fixed(100));
    signup.caps = vec![Cap { window: Window::Lifetime, max: 100 }];
    fx.ok(t0(), define(signup));
    fx.ok(t0(), define(rule("review", &["review"], fixed(10))));
    let mut bday = rule("birthday", &["birthday"], fixed(88));
    bday.caps = vec![Cap { window: Window::Year, max: 88 }];
    fx.ok(t0(), define(bday));
    assert_eq!(earned(&fx, t0(), ev("signup", "a", 0)).amount, 100);
    assert_eq!(earned(&fx, t0() + 400 * DAY, ev("signup", "a", 0)).amount, 0, "once per member");
    assert_eq!(earned(&fx, t0(), ev("review", "a", 0)).amount, 10);
    assert_eq!(earned(&fx, t0(), ev("birthday", "a", 0)).amount, 88);
    assert_eq!(earned(&fx, t0() + DAY, ev("birthday", "a", 0)).amount, 0, "once a year");
}

// ===== conditions (ER-31) =====

/// A rule with one condition: (event that matches, event that does not).
fn check_condition(when: Cond, yes: (Ms, Event), no: (Ms, Event)) {
    let fx = fx();
    let mut r = rule("r", &[], fixed(7));
    r.when = Some(when.clone());
    fx.ok(t0(), define(r));
    let (at, e) = yes;
    assert_eq!(earned(&fx, at, e).amount, 7, "{when:?} should hold");
    let (at, e) = no;
    let d = dry(&fx, at, &e);
    assert!(!d.notes[0].fired, "{when:?} should fail");
    assert!(d.notes[0].reason.starts_with("when."), "{}", d.notes[0].reason);
    assert_eq!(earned(&fx, at, e).amount, 0);
}

#[test]
fn er31_every_condition_dimension() {
    let e = |f: fn(&mut Event)| {
        let mut x = ev("purchase", "a", 100 * CNY);
        f(&mut x);
        x
    };
    let at = local(2024, 5, 13) + 10 * HOUR; // Monday 10:00 China time, the 13th
    let base = e(|_| {});
    // tier and member group: er31_tier_and_group_conditions_fail_for_other_members
    // date window
    check_condition(Cond::Between { from: at - HOUR, to: at + HOUR }, (at, base.clone()), (at + 2 * HOUR, base.clone()));
    // weekdays (ISO: 1 = Monday)
    check_condition(Cond::Weekdays(vec![1]), (at, base.clone()), (at + DAY, base.clone()));
    // days of month (member day)
    check_condition(Cond::MonthDays(vec![13]), (at, base.clone()), (at + DAY, base.clone()));
    // time of day, also wrapping past midnight
    check_condition(Cond::TimeOfDay { from: 9 * 60, to: 11 * 60 }, (at, base.clone()), (at + 2 * HOUR, base.clone()));
    check_condition(Cond::TimeOfDay { from: 22 * 60, to: 2 * 60 }, (at + 13 * HOUR, base.clone()), (at, base.clone()));
    // organisation subtree (event org, else the member's Shandong/Qingdao)
    check_condition(Cond::Org(strs(&["Shandong"])), (at, base.clone()), (at, e(|x| x.org = strs(&["Jiangsu", "Nanjing"]))));
    check_condition(Cond::Org(strs(&["Shandong", "Qingdao", "Shinan"])), (at, e(|x| x.org = strs(&["Shandong", "Qingdao", "Shinan", "103"]))), (at, base.clone()));
    // channel, merchant, category
    check_condition(Cond::Channel(strs(&["pos", "app"])), (at, e(|x| x.channel = "app".into())), (at, e(|x| x.channel = "web".into())));
    check_condition(Cond::Merchant(strs(&["m-1"])), (at, e(|x| x.merchant = "m-1".into())), (at, e(|x| x.merchant = "m-2".into())));
    check_condition(Cond::Category(strs(&["5411"])), (at, e(|x| x.category = "5411".into())), (at, base.clone()));
    // amount range, term
    check_condition(Cond::Amount { min: Some(100 * CNY), max: Some(200 * CNY) }, (at, base.clone()), (at, e(|x| x.amount = 9_999)));
    check_condition(Cond::Term { min: Some(365), max: None }, (at, e(|x| x.term_days = 365)), (at, e(|x| x.term_days = 90)));
    // attributes
    check_condition(Cond::Attr { key: "card".into(), values: strs(&["gold", "platinum"]) }, (at, e(|x| x.attrs = vec![("card".into(), "gold".into())])), (at, e(|x| x.attrs = vec![("card".into(), "classic".into())])));
    check_condition(Cond::AttrRange { key: "age".into(), min: Some(18), max: Some(30) }, (at, e(|x| x.attrs = vec![("age".into(), "20".into())])), (at, e(|x| x.attrs = vec![("age".into(), "31".into())])));
    // all / any / not
    let combo = Cond::All(vec![
        Cond::Any(vec![Cond::Channel(strs(&["pos"])), Cond::Channel(strs(&["app"]))]),
        Cond::Not(Box::new(Cond::Merchant(strs(&["blocked"])))),
    ]);
    check_condition(combo, (at, e(|x| x.channel = "pos".into())), (at, e(|x| {
        x.channel = "pos".into();
        x.merchant = "blocked".into();
    })));
}

#[test]
fn er31_tier_and_group_conditions_fail_for_other_members() {
    let fx = fx();
    fx.ok(t0(), Command::SetMemberGroups { member: "b".into(), groups: strs(&["vip"]) });
    fx.ok(t0(), Command::SetTier { member: "c".into(), tier: Some("gold".into()), reason: "counter upgrade".into() });
    let mut r = rule("gold", &[], fixed(3));
    r.when = Some(Cond::Tier(strs(&["gold"])));
    fx.ok(t0(), define(r));
    let mut r = rule("vip", &[], fixed(5));
    r.when = Some(Cond::Group(strs(&["vip"])));
    fx.ok(t0(), define(r));
    assert_eq!(earned(&fx, t0(), ev("x", "a", 0)).amount, 0);
    assert_eq!(earned(&fx, t0(), ev("x", "b", 0)).amount, 5);
    assert_eq!(earned(&fx, t0(), ev("x", "c", 0)).amount, 3);
}

// ===== stacking, multipliers, priority =====

#[test]
fn stacking_exclusive_and_stackable_by_priority() {
    let fx = fx();
    let mut base = rule("base", &["purchase"], rate(1, CNY));
    base.priority = 10;
    let mut extra = rule("extra", &["purchase"], fixed(20));
    extra.priority = 5;
    let mut excl = rule("promo", &["purchase"], rate(3, CNY));
    excl.priority = 20;
    excl.stacking = Stacking::Exclusive;
    excl.when = Some(Cond::Merchant(strs(&["partner"])));
    for r in [base, extra, excl] {
        fx.ok(t0(), define(r));
    }
    // Not at the partner: base + extra stack.
    let (id, rc) = fx.ok(t0(), earn(ev("purchase", "a", 100 * CNY)));
    assert_eq!(rc.amount, 120);
    assert_eq!(made(&fx, &id), [("base".into(), 1, 100), ("extra".into(), 1, 20)]);
    // At the partner: the exclusive rule fires first and stops the others (ER-21/22).
    let e = Event { merchant: "partner".into(), ..ev("purchase", "a", 100 * CNY) };
    let d = dry(&fx, t0(), &e);
    let reasons: Vec<_> = d.notes.iter().map(|n| (n.rule.as_str(), n.fired, n.reason.as_str())).collect();
    assert_eq!(reasons[0], ("promo", true, "300 points"));
    assert!(reasons[1].2.contains("exclusive rule \"promo\" fired first"), "{reasons:?}");
    let (id, rc) = fx.ok(t0(), earn(e));
    assert_eq!(rc.amount, 300);
    assert_eq!(made(&fx, &id), [("promo".into(), 1, 300)]);
    // An exclusive rule below a stackable one that fired does not apply.
    let fx = fx_with(&[("hi", 10, Stacking::Stackable, 1), ("lo", 5, Stacking::Exclusive, 50)]);
    assert_eq!(earned(&fx, t0(), ev("purchase", "a", 100 * CNY)).amount, 100);
}

fn fx_with(rules: &[(&str, i32, Stacking, i64)]) -> Fx {
    let fx = fx();
    for (id, prio, st, pts) in rules {
        let mut r = rule(id, &["purchase"], rate(*pts, CNY));
        r.priority = *prio;
        r.stacking = *st;
        fx.ok(t0(), define(r));
    }
    fx
}

#[test]
fn cp1_cp3_double_points_and_member_day_multipliers() {
    let fx = fx();
    fx.ok(t0(), define(rule("spend", &["purchase"], rate(1, CNY))));
    fx.ok(t0(), define(rule("signup", &["signup"], fixed(100))));
    let mut double = rule("double", &["purchase", "signup"], Action::Multiplier { num: 2, den: 1, of: vec![] });
    double.when = Some(Cond::MonthDays(vec![18])); // member day: the 18th
    fx.ok(t0(), define(double));
    let member_day = local(2024, 5, 18) + 12 * HOUR;
    let (id, rc) = fx.ok(member_day, earn(ev("purchase", "a", 250 * CNY)));
    assert_eq!(rc.amount, 500);
    assert_eq!(made(&fx, &id), [("spend".into(), 1, 250), ("double".into(), 1, 250)]);
    assert_eq!(earned(&fx, member_day + DAY, ev("purchase", "a", 250 * CNY)).amount, 250);
    // Fixed bonuses are not multiplied.
    assert_eq!(earned(&fx, member_day, ev("signup", "b", 0)).amount, 100);
    // Two stackable multipliers each add their extra; an exclusive one stands alone.
    let mut holiday = rule("holiday", &["purchase"], Action::Multiplier { num: 3, den: 2, of: strs(&["spend"]) });
    holiday.when = Some(Cond::Between { from: member_day - DAY, to: member_day + DAY });
    holiday.priority = -1;
    fx.ok(t0(), define(holiday));
    assert_eq!(earned(&fx, member_day, ev("purchase", "c", 100 * CNY)).amount, 100 + 100 + 50);
}

// ===== caps (ER-30, RK-1) =====

#[test]
fn er30_rk1_caps_per_day_month_year_at_local_boundaries() {
    let fx = fx();
    let mut r = rule("spend", &["purchase"], rate(1, CNY));
    r.caps = vec![Cap { window: Window::Day, max: 100 }, Cap { window: Window::Month, max: 250 }, Cap { window: Window::Year, max: 400 }];
    fx.ok(t0(), define(r));
    let e = || ev("purchase", "a", 80 * CNY);
    // Day: 80 + 20 (cut 60) on 2024-01-31 local; the cap resets at local midnight, which is
    // 16:00 UTC the day before.
    let d31 = local(2024, 1, 31);
    assert_eq!(earned(&fx, d31 + HOUR, e()).amount, 80);
    let (id, rc) = fx.ok(d31 + 23 * HOUR + 59 * MINUTE, earn(e()));
    assert_eq!(rc.amount, 20);
    assert_eq!(note_of(&fx, &id).unwrap().cuts, [("spend".into(), "rule:spend:day".into(), 60)]);
    assert_eq!(earned(&fx, d31 + 23 * HOUR + 59 * MINUTE + 59_999, e()).amount, 0, "still the same local day");
    // Month: February is a new month (and a new day): 80 + 80 + 80 (cut to 90 for the month).
    let f1 = local(2024, 2, 1);
    assert_eq!(earned(&fx, f1, e()).amount, 80);
    assert_eq!(earned(&fx, f1 + DAY, e()).amount, 80);
    let (id, rc) = fx.ok(f1 + 2 * DAY, earn(e()));
    assert_eq!(rc.amount, 80);
    let (id2, rc2) = fx.ok(f1 + 3 * DAY, earn(e()));
    assert_eq!(rc2.amount, 10);
    assert!(note_of(&fx, &id).is_none());
    assert_eq!(note_of(&fx, &id2).unwrap().cuts, [("spend".into(), "rule:spend:month".into(), 70)]);
    // Year: 100 + 250 = 350 so far; March gives 50 more, then nothing until local new year.
    assert_eq!(earned(&fx, local(2024, 3, 1), e()).amount, 50);
    let (id, rc) = fx.ok(local(2024, 4, 1), earn(e()));
    assert_eq!(rc.amount, 0);
    assert_eq!(note_of(&fx, &id).unwrap().zero, ["spend"]);
    assert_eq!(earned(&fx, local(2025, 1, 1) - 1, e()).amount, 0);
    assert_eq!(earned(&fx, local(2025, 1, 1), e()).amount, 80);
    clean(&fx);
}

#[test]
fn er30_programme_caps_across_rules() {
    let fx = fx();
    fx.ok(t0(), define(rule("spend", &["purchase"], rate(1, CNY))));
    fx.ok(t0(), define(rule("bonus", &["purchase"], fixed(50))));
    fx.ok(t0(), Command::SetEarnPolicy { policy: EarnPolicy { programme: P.into(), tz_offset_min: 480, caps: vec![Cap { window: Window::Day, max: 120 }] } });
    let (id, rc) = fx.ok(t0(), earn(ev("purchase", "a", 100 * CNY)));
    assert_eq!(rc.amount, 120);
    // Same priority: rule id order, so "bonus" (50) comes first and "spend" (100) is cut to 70.
    assert_eq!(note_of(&fx, &id).unwrap().cuts, [("spend".into(), "programme:day".into(), 30)]);
    assert_eq!(earned(&fx, t0() + HOUR, ev("purchase", "a", 100 * CNY)).amount, 0);
    assert_eq!(earned(&fx, t0() + HOUR, ev("purchase", "b", 10 * CNY)).amount, 60, "caps are per member");
}

// ===== campaigns and budgets (CP-4/5, CP-13, PT-11) =====

fn campaign(id: &str, budget: Option<i64>) -> Campaign {
    Campaign { programme: P.into(), id: id.into(), name: String::new(), start: t0(), end: t0() + 30 * DAY, budget: budget.map(|n| Budget { point_type: T.into(), points: n }) }
}

#[test]
fn cp4_campaign_window_and_budget_account() {
    let fx = fx();
    fx.ok(t0(), Command::DefineCampaign { campaign: campaign("spring", Some(1_000)) });
    let mut r = rule("spring-bonus", &["purchase"], fixed(300));
    r.campaign = Some("spring".into());
    fx.ok(t0(), define(r));
    assert_eq!(fx.account(&budget_account(P, "spring", T)).unwrap().b, 1_000);
    assert_eq!(earned(&fx, t0() - 1, ev("purchase", "a", 0)).amount, 0, "before the campaign");
    for m in ["a", "b", "c"] {
        assert_eq!(earned(&fx, t0() + HOUR, ev("purchase", m, 0)).amount, 300);
    }
    let (id, rc) = fx.ok(t0() + HOUR, earn(ev("purchase", "a", 0)));
    assert_eq!(rc.amount, 100, "the budget's last 100");
    assert_eq!(note_of(&fx, &id).unwrap().cuts, [("spring-bonus".into(), "budget:spring".into(), 200)]);
    assert_eq!(earned(&fx, t0() + HOUR, ev("purchase", "b", 0)).amount, 0, "spent: it stops granting");
    let st = campaign_status(fx.store(), P, "spring").unwrap();
    assert_eq!((st.granted, st.left), (1_000, 0));
    assert_eq!(earned(&fx, t0() + 31 * DAY, ev("purchase", "a", 0)).amount, 0);
    clean(&fx);
}

#[test]
fn cp_budget_never_exceeded_with_16_concurrent_threads() {
    let fx = fx();
    let budget = 10_000;
    fx.ok(t0(), Command::DefineCampaign { campaign: campaign("rush", Some(budget)) });
    let mut r = rule("rush-bonus", &["purchase"], rate(1, CNY));
    r.campaign = Some("rush".into());
    fx.ok(t0(), define(r));
    let members: Vec<String> = (0..64).map(|i| format!("m{i}")).collect();
    for m in &members {
        fx.ok(t0(), open_member(m, P));
    }
    let engine = Arc::clone(&fx.engine);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let engine = Arc::clone(&engine);
            let members = members.clone();
            std::thread::spawn(move || {
                let mut got = 0;
                for i in 0..40 {
                    let batch: Vec<_> = (0..5)
                        .map(|j| {
                            let m = &members[(t * 7 + i * 5 + j) % members.len()];
                            envelope(&format!("t{t}-{i}-{j}"), t0() + HOUR, earn(ev("purchase", m, (7 + (i + j) as i64 % 50) * CNY)))
                        })
                        .collect();
                    for r in engine.submit(batch).unwrap() {
                        got += r.unwrap().amount;
                    }
                }
                got
            })
        })
        .collect();
    let total: i64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, budget, "demand exceeds the budget: exactly the budget is granted");
    assert_eq!(fx.account(&budget_account(P, "rush", T)).unwrap().b, 0);
    let sum: i64 = members.iter().map(|m| fx.total(m, T)).sum();
    assert_eq!(sum, budget);
    clean(&fx);
}

// ===== tiers (TL-1..5) =====

fn tiers(basis: TierBasis) -> TierPolicy {
    let lvl = |name: &str, threshold: i64, num: i64, den: i64| TierLevel { name: name.into(), threshold, num, den };
    TierPolicy {
        programme: P.into(),
        version: 0,
        basis,
        window_months: 12,
        levels: vec![lvl("ordinary", 0, 1, 1), lvl("silver", 1_000, 1, 1), lvl("gold", 5_000, 3, 2)],
        spend_kinds: vec![],
        point_type: T.into(),
    }
}

#[test]
fn tl1_tl4_upgrade_by_points_earned_then_downgrade_at_evaluation() {
    let fx = fx();
    fx.ok(t0(), Command::DefineTiers { tiers: tiers(TierBasis::Points) });
    fx.ok(t0(), define(rule("spend", &["purchase"], rate(1, CNY))));
    let at = local(2024, 5, 20);
    assert_eq!(earned(&fx, at, ev("purchase", "a", 999 * CNY)).amount, 999);
    assert_eq!(query::member(fx.store(), "a").unwrap().tier, "ordinary");
    let (id, _) = fx.ok(at, earn(ev("purchase", "a", CNY)));
    assert_eq!(note_of(&fx, &id).unwrap().tier, Some(("ordinary".into(), "silver".into())));
    assert_eq!(query::member(fx.store(), "a").unwrap().tier, "silver");
    // Earned, not balance: spending does not demote.
    fx.ok(at, redeem("a", Some(T), 900));
    earned(&fx, at, ev("purchase", "a", 4_000 * CNY));
    assert_eq!(query::member(fx.store(), "a").unwrap().tier, "gold");
    // Gold earns ×1.5: the extra half is its own lot under rule tier:gold (TL-2).
    let (id, rc) = fx.ok(at, earn(ev("purchase", "a", 100 * CNY)));
    assert_eq!(rc.amount, 150);
    assert_eq!(made(&fx, &id), [("spend".into(), 1, 100), ("tier:gold".into(), 1, 50)]);
    // A year later the window holds nothing: evaluation downgrades to ordinary.
    let later = local(2025, 6, 1);
    let (_, rc) = fx.ok(later, Command::EvaluateTiers { programme: P.into(), after: None });
    assert_eq!(rc.amount, 1, "one member changed");
    assert_eq!(query::member(fx.store(), "a").unwrap().tier, "ordinary");
    clean(&fx);
}

#[test]
fn tl5_tiers_by_spend_and_operator_override() {
    let fx = fx();
    fx.ok(t0(), Command::DefineTiers { tiers: tiers(TierBasis::Spend) });
    let at = local(2024, 5, 20);
    earned(&fx, at, ev("purchase", "a", 1_000)); // no rules: spend still qualifies
    assert_eq!(query::member(fx.store(), "a").unwrap().tier, "silver");
    // Operator override: gold, and evaluation leaves it alone (TL-4, TL-9 counter upgrade).
    fx.ok(at, Command::SetTier { member: "a".into(), tier: Some("gold".into()), reason: "counter".into() });
    fx.ok(at, Command::EvaluateTiers { programme: P.into(), after: None });
    assert_eq!(query::member(fx.store(), "a").unwrap().tier, "gold");
    // Back to automatic: the qualification decides again.
    fx.ok(at, Command::SetTier { member: "a".into(), tier: None, reason: "review".into() });
    assert_eq!(query::member(fx.store(), "a").unwrap().tier, "silver");
    assert_eq!(fx.refused(at, Command::SetTier { member: "a".into(), tier: Some("diamond".into()), reason: String::new() }).code(), "INVALID_ARGUMENT");
}

// ===== referral (ER-15) =====

#[test]
fn er15_referral_pays_both_on_first_purchase_only() {
    let fx = fx();
    fx.ok(t0(), define(rule("ref", &["purchase"], Action::Referral { inviter: 200, invitee: 100 })));
    let signup = |m: &str, referrer: &str| Event { attrs: vec![("referrer".into(), referrer.into())], ..ev("signup", m, 0) };
    // A referrer must be a member of the programme, not the member itself.
    assert_eq!(fx.refused(t0(), earn(signup("b", "nobody"))).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.refused(t0(), earn(signup("b", "b"))).code(), "INVALID_ARGUMENT");
    // Registering alone pays nothing.
    assert_eq!(earned(&fx, t0(), signup("b", "a")).amount, 0);
    assert_eq!((fx.total("a", T), fx.total("b", T)), (0, 0));
    // The first purchase pays both.
    let (id, rc) = fx.ok(t0() + DAY, earn(ev("purchase", "b", 10 * CNY)));
    assert_eq!(rc.amount, 300);
    assert_eq!(made(&fx, &id), [("ref".into(), 1, 100), ("ref".into(), 1, 200)]);
    assert_eq!((fx.total("a", T), fx.total("b", T)), (200, 100));
    // The second purchase does not.
    let d = dry(&fx, t0() + 2 * DAY, &ev("purchase", "b", 10 * CNY));
    assert_eq!(d.notes[0].reason, "the referral was already paid");
    assert_eq!(earned(&fx, t0() + 2 * DAY, ev("purchase", "b", 10 * CNY)).amount, 0);
    // A member who bought before naming a referrer is not a referral's first purchase.
    earned(&fx, t0(), ev("purchase", "c", 10 * CNY));
    earned(&fx, t0(), signup("c", "a"));
    assert_eq!(earned(&fx, t0() + DAY, ev("purchase", "c", 10 * CNY)).amount, 0);
    assert_eq!(fx.total("a", T), 200);
    clean(&fx);
}

#[test]
fn er15_er30_the_inviters_award_is_capped_by_the_inviters_own_caps() {
    let fx = fx();
    fx.ok(t0(), open_member("d", P));
    // The referral rule caps what one member earns from it per day; the programme caps every
    // member's day at 250 points.
    let referral = Rule { caps: vec![Cap { window: Window::Day, max: 300 }], ..rule("ref", &["purchase"], Action::Referral { inviter: 200, invitee: 100 }) };
    fx.ok(t0(), define(referral));
    fx.ok(t0(), define(rule("daily", &["checkin"], fixed(100))));
    fx.ok(t0(), Command::SetEarnPolicy { policy: EarnPolicy { programme: P.into(), tz_offset_min: 480, caps: vec![Cap { window: Window::Day, max: 250 }] } });
    let signup = |m: &str| Event { attrs: vec![("referrer".into(), "a".into())], ..ev("signup", m, 0) };
    for m in ["b", "c", "d"] {
        earned(&fx, t0(), signup(m));
    }
    let day = t0() + DAY;
    // a's first inviter award fits both caps.
    let (_, rc) = fx.ok(day, earn(ev("purchase", "b", 10 * CNY)));
    assert_eq!((rc.amount, fx.total("a", T)), (300, 200));
    // The second would take a to 400 referral points and 400 points today: the rule cap (300)
    // cuts it to 100, and the programme cap (250 a day) to 50. The invitee is not cut.
    let d = dry(&fx, day, &ev("purchase", "c", 10 * CNY));
    assert_eq!(d.awards.iter().map(|a| (&*a.member, a.points)).collect::<Vec<_>>(), [("c", 100), ("a", 50)]);
    assert_eq!(d.awards[1].cuts.iter().map(|c| (c.by.as_str(), c.n)).collect::<Vec<_>>(), [("rule:ref:day", 100), ("programme:day", 50)]);
    let (id, rc) = fx.ok(day, earn(ev("purchase", "c", 10 * CNY)));
    assert_eq!((rc.amount, fx.total("a", T), fx.total("c", T)), (150, 250, 100));
    assert_eq!(note_of(&fx, &id).unwrap().cuts, [("ref".into(), "rule:ref:day".into(), 100), ("ref".into(), "programme:day".into(), 50)]);
    // The award counted in a's own state: a's day is full, for its own earns too.
    assert_eq!(earned(&fx, day, ev("checkin", "a", 0)).amount, 0);
    assert_eq!(earned(&fx, day, ev("purchase", "d", 10 * CNY)).amount, 100, "a gets nothing more today");
    assert_eq!(fx.total("a", T), 250);
    // A new day starts a's counters over.
    assert_eq!(earned(&fx, day + DAY, ev("checkin", "a", 0)).amount, 100);
    clean(&fx);
}

#[test]
fn er15_tl1_the_inviters_award_counts_towards_its_tier() {
    let fx = fx();
    fx.ok(t0(), Command::DefineTiers { tiers: tiers(TierBasis::Points) });
    fx.ok(t0(), define(rule("ref", &["purchase"], Action::Referral { inviter: 1_000, invitee: 10 })));
    earned(&fx, t0(), Event { attrs: vec![("referrer".into(), "a".into())], ..ev("signup", "b", 0) });
    assert_eq!(earned(&fx, t0() + DAY, ev("purchase", "b", 10 * CNY)).amount, 1_010);
    // a earned 1,000 points this month by referral alone: silver at the next evaluation.
    fx.ok(t0() + DAY, Command::EvaluateTiers { programme: P.into(), after: None });
    assert_eq!(query::member(fx.store(), "a").unwrap().tier, "silver");
    assert_eq!(query::member(fx.store(), "b").unwrap().tier, "ordinary");
    clean(&fx);
}

// ===== versions, validation, dry run =====

#[test]
fn er32_rules_are_versioned_data_and_lots_record_the_version() {
    let fx = fx();
    let (_, rc) = fx.ok(t0(), define(rule("spend", &["purchase"], rate(1, CNY))));
    assert_eq!(rc.amount, 1, "version 1");
    let (id1, _) = fx.ok(t0(), earn(ev("purchase", "a", 10 * CNY)));
    let (_, rc) = fx.ok(t0(), Command::UpdateRule { rule: rule("spend", &["purchase"], rate(2, CNY)) });
    assert_eq!(rc.amount, 2);
    let (id2, rc) = fx.ok(t0(), earn(ev("purchase", "a", 10 * CNY)));
    assert_eq!(rc.amount, 20, "the new version applies at once, no redeploy");
    assert_eq!(made(&fx, &id1), [("spend".into(), 1, 10)]);
    assert_eq!(made(&fx, &id2), [("spend".into(), 2, 20)]);
    fx.ok(t0(), Command::DisableRule { programme: P.into(), rule: "spend".into() });
    let d = dry(&fx, t0(), &ev("purchase", "a", 10 * CNY));
    assert_eq!(d.notes, [Note { rule: "spend".into(), version: 3, fired: false, points: 0, reason: "disabled".into() }]);
    assert_eq!(earned(&fx, t0(), ev("purchase", "a", 10 * CNY)).amount, 0);
    let txn = fx.store().read_txn().unwrap();
    let versions = rule_versions(fx.store(), &txn, P, "spend").unwrap();
    assert_eq!(versions.iter().map(|r| (r.version, r.enabled)).collect::<Vec<_>>(), [(1, true), (2, true), (3, false)]);
    drop(txn);
    assert_eq!(fx.refused(t0(), define(rule("spend", &[], fixed(1)))).code(), "ALREADY_EXISTS");
    assert_eq!(fx.refused(t0(), Command::UpdateRule { rule: rule("nope", &[], fixed(1)) }).code(), "UNKNOWN_RULE");
    // Replaying an earn returns the original result even though the rules changed since.
    let again = fx.run_id(&id1, t0(), earn(ev("purchase", "a", 10 * CNY))).unwrap();
    assert!(again.replayed);
    assert_eq!(again.amount, 10);
}

#[test]
fn invalid_rules_are_refused_naming_the_bad_field() {
    let fx = fx();
    let cases: Vec<(Rule, &str)> = vec![
        (rule("r", &[], rate(0, CNY)), "rule.action.rate.points"),
        (rule("r", &[], Action::AmountTerm { points: 16, per_minor: 1, per_days: 0 }), "rule.action.amount_term.per_days"),
        (rule("r", &[], Action::Multiplier { num: 1, den: 1, of: vec![] }), "rule.action.multiplier.num"),
        (rule("r", &[], Action::Checkin { daily: 1, streak: 0, bonus: 1 }), "rule.action.checkin.streak"),
        (Rule { point_type: "nope".into(), ..rule("r", &[], fixed(1)) }, "rule.point_type"),
        (Rule { campaign: Some("nope".into()), ..rule("r", &[], fixed(1)) }, "rule.campaign"),
        (Rule { id: "a/b".into(), ..rule("r", &[], fixed(1)) }, "rule.id"),
        (Rule { caps: vec![Cap { window: Window::Day, max: 0 }], ..rule("r", &[], fixed(1)) }, "rule.caps[0].max"),
        (Rule { when: Some(Cond::All(vec![Cond::Channel(vec![]), ])), ..rule("r", &[], fixed(1)) }, "rule.when.all[0].channel"),
        (Rule { when: Some(Cond::Any(vec![Cond::Weekdays(vec![1]), Cond::Amount { min: Some(5), max: Some(1) }])), ..rule("r", &[], fixed(1)) }, "rule.when.any[1].amount"),
        (Rule { when: Some(Cond::Not(Box::new(Cond::Weekdays(vec![8])))), ..rule("r", &[], fixed(1)) }, "rule.when.not.weekdays"),
        (Rule { when: Some(Cond::TimeOfDay { from: 1440, to: 10 }), ..rule("r", &[], fixed(1)) }, "rule.when.time_of_day"),
    ];
    for (r, field) in cases {
        let e = fx.refused(t0(), define(r));
        assert_eq!(e.code(), "INVALID_RULE", "{e}");
        assert!(e.to_string().starts_with(field), "{e} should name {field}");
    }
}

#[test]
fn dry_run_explains_fired_not_fired_and_cuts_without_posting() {
    let fx = fx();
    let mut spend = rule("spend", &["purchase"], rate(1, CNY));
    spend.caps = vec![Cap { window: Window::Day, max: 50 }];
    fx.ok(t0(), define(spend));
    let mut app = rule("app-only", &["purchase"], fixed(5));
    app.when = Some(Cond::All(vec![Cond::Amount { min: Some(0), max: None }, Cond::Channel(strs(&["app"]))]));
    fx.ok(t0(), define(app));
    fx.ok(t0(), define(rule("deposit", &["deposit"], fixed(1))));
    let e = Event { channel: "pos".into(), ..ev("purchase", "a", 80 * CNY) };
    let d = dry(&fx, t0(), &e);
    assert_eq!(d.notes.len(), 2, "only rules for the event's kind are looked at");
    assert_eq!(d.notes[0].rule, "app-only");
    assert_eq!(d.notes[0].reason, "when.all[1].channel: channel is not one of [\"app\"]");
    assert_eq!((d.notes[1].fired, d.notes[1].points), (true, 50));
    assert_eq!(d.notes[1].reason, "80 points, cut to 50 by rule:spend:day (-30)");
    assert_eq!(d.awards[0].cuts, [Cut { by: "rule:spend:day".into(), n: 30 }]);
    assert_eq!(fx.total("a", T), 0, "a dry run posts nothing");
    assert_eq!(earned(&fx, t0(), e).amount, 50);
}

// ===== property: posted == dry run, audit clean =====

fn arb_cond() -> impl Strategy<Value = Cond> {
    let leaf = prop_oneof![
        prop::sample::subsequence(vec!["pos", "app", "web"], 1..3).prop_map(|v| Cond::Channel(strs(&v))),
        prop::sample::subsequence(vec!["m1", "m2"], 1..2).prop_map(|v| Cond::Merchant(strs(&v))),
        (0i64..20_000, 0i64..20_000).prop_map(|(a, b)| Cond::Amount { min: Some(a.min(b)), max: Some(a.max(b)) }),
        prop::sample::subsequence(vec![1u8, 2, 3, 4, 5, 6, 7], 1..7).prop_map(Cond::Weekdays),
        (0u32..1440, 0u32..1440).prop_filter("from != to", |(a, b)| a != b).prop_map(|(from, to)| Cond::TimeOfDay { from, to }),
        Just(Cond::FirstPurchase),
        Just(Cond::Tier(strs(&["ordinary"]))),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(Cond::All),
            prop::collection::vec(inner.clone(), 1..3).prop_map(Cond::Any),
            inner.prop_map(|c| Cond::Not(Box::new(c))),
        ]
    })
}

fn arb_rule(i: usize) -> impl Strategy<Value = Rule> {
    let action = prop_oneof![
        (1i64..5, prop::sample::select(vec![1i64, 100, 1_000])).prop_map(|(p, m)| Action::Rate { points: p, per_minor: m }),
        (1i64..100).prop_map(|p| Action::Fixed { points: p }),
        (3i64..5, 2i64..3).prop_map(|(n, d)| Action::Multiplier { num: n, den: d, of: vec![] }),
        (1i64..10, 2u32..4, 0i64..50).prop_map(|(daily, streak, bonus)| Action::Checkin { daily, streak, bonus }),
    ];
    (action, prop::option::of(arb_cond()), -3i32..3, any::<bool>(), prop::option::of(50i64..500), any::<bool>(), any::<bool>())
        .prop_map(move |(action, when, priority, excl, cap, pending, in_campaign)| Rule {
            priority,
            stacking: if excl { Stacking::Exclusive } else { Stacking::Stackable },
            when,
            caps: cap.map(|m| vec![Cap { window: Window::Day, max: m }]).unwrap_or_default(),
            pending,
            campaign: in_campaign.then(|| "camp".to_string()),
            ..rule(&format!("r{i}"), &["purchase", "checkin"], action)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn prop_posted_credits_equal_dry_run_and_audit_passes(
        rules in (1usize..6).prop_flat_map(|n| (0..n).map(arb_rule).collect::<Vec<_>>()),
        // m3 is a merchant no rule names: only rules without a merchant condition can fire there.
        events in prop::collection::vec((0usize..3, prop::sample::select(vec!["purchase", "checkin"]), 0i64..20_000, prop::sample::select(vec!["pos", "app", "web"]), 0i64..(3 * 24 * 60), prop::sample::select(vec!["m1", "m2", "m3"])), 1..25),
        budget in 100i64..2_000,
    ) {
        let fx = fx();
        fx.ok(t0(), Command::DefineCampaign { campaign: Campaign { end: t0() + 10 * DAY, ..campaign("camp", Some(budget)) } });
        fx.ok(t0(), Command::DefineTiers { tiers: tiers(TierBasis::Points) });
        for r in rules {
            fx.ok(t0(), define(r));
        }
        let members = ["a", "b", "c"];
        let mut at = t0();
        for (k, (m, kind, amount, channel, minutes, merchant)) in events.into_iter().enumerate() {
            at += minutes * MINUTE;
            let e = Event { channel: channel.into(), merchant: merchant.into(), ..ev(kind, members[m], amount) };
            let d = dry(&fx, at, &e);
            let id = format!("e{k}");
            let rc = fx.run_id(&id, at, earn(e)).unwrap();
            prop_assert_eq!(rc.amount, d.total());
            let posted = made(&fx, &id);
            let expected: Vec<(String, u32, i64)> = d.awards.iter().filter(|a| a.points > 0).map(|a| (a.rule.to_string(), a.version, a.points)).collect();
            prop_assert_eq!(posted, expected);
        }
        let r = audit(fx.store()).unwrap();
        prop_assert!(r.problems.is_empty(), "{:?}", r.problems);
        let left = campaign_status(fx.store(), P, "camp").unwrap().left;
        prop_assert!(left >= 0);
    }
}

#[test]
fn member_rule_states_go_through_the_state_log_and_survive_a_checkpoint() {
    use pypoints_core::store::{decode, Durability, Store};
    // A check-in streak is per-member state written by the group commit into the state log,
    // not into `rule_state` directly; readers see it at once, a clean close checkpoints it.
    let fx = fx();
    fx.ok(t0(), define(rule("checkin", &["checkin"], Action::Checkin { daily: 5, streak: 7, bonus: 50 })));
    let day = |d: u32| local(2024, 6, d) + 9 * HOUR;
    for d in 1..=3 {
        earned(&fx, day(d), ev("checkin", "a", 0));
    }
    let raw = |store: &Store| {
        let txn = store.read_txn().unwrap();
        store.rule_state.get(&txn, b"a").unwrap().map(|v| v.to_vec())
    };
    assert!(raw(fx.store()).is_none(), "not checkpointed yet");
    let txn = fx.store().read_txn().unwrap();
    assert_eq!(pypoints_core::rules::member_state(fx.store(), &txn, "a").unwrap().streak, 3);
    drop(txn);
    let dir = fx.close();
    let store = Store::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
    let st: pypoints_core::rules::state::MemberState = decode(&raw(&store).expect("checkpointed on close")).unwrap();
    assert_eq!(st.streak, 3);
}

#[test]
fn a_repeat_purchase_under_uncapped_rules_leaves_the_member_state_unwritten() {
    use pypoints_core::store::{LogTag, StateLogBlob};
    // Only "has purchased" matters (ER-15): the first purchase records it, later ones change
    // nothing, so their group commits log the account alone, not the member's rule state.
    let fx = fx_on(Fx::new_with(Fx::record_per_group()));
    fx.ok(t0(), define(rule("spend", &["purchase"], rate(1, CNY))));
    let logged_rule_states = |fx: &Fx| {
        let txn = fx.store().read_txn().unwrap();
        let (_, blob) = fx.store().state_log.last(&txn).unwrap().expect("a state log record");
        StateLogBlob::entries(blob)
            .unwrap()
            .iter()
            .filter(|(k, _)| LogTag::split(k).unwrap().0 == LogTag::RuleState)
            .count()
    };
    earned(&fx, t0(), ev("purchase", "a", 10 * CNY));
    assert_eq!(logged_rule_states(&fx), 1, "the first purchase is recorded");
    for i in 0..3 {
        assert_eq!(earned(&fx, t0() + i, ev("purchase", "a", 10 * CNY)).amount, 10);
        assert_eq!(logged_rule_states(&fx), 0, "a repeat purchase writes no member state");
    }
    let txn = fx.store().read_txn().unwrap();
    assert_eq!(pypoints_core::rules::member_state(fx.store(), &txn, "a").unwrap().purchases, 1);
}
