//! Integration and property tests of the ledger state machine (engine + LMDB), citing the
//! business rules of /work/shared/REQUIREMENTS.md by ID. Time is always an explicit input.
mod common;

use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use pypoints_core::audit::audit;
use pypoints_core::command::{Command, Entry, Envelope};
use pypoints_core::engine::Engine;
use pypoints_core::error::LedgerError;
use pypoints_core::limits::*;
use pypoints_core::model::*;
use pypoints_core::journal;
use pypoints_core::query;
use pypoints_core::store::*;

/// A receipt's lot slices with their point types as `String`s, to compare with literals.
fn slices(v: &[(pypoints_core::model::AcctKey, u64, i64)]) -> Vec<(String, u64, i64)> {
    v.iter().map(|(t, i, n)| (t.to_string(), *i, *n)).collect()
}

fn code<T: std::fmt::Debug>(r: Result<T, LedgerError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

// =====================================================================================
// 1. Set-up: programmes, point types, members
// =====================================================================================

#[test]
fn setup_pt1_rd12_point_types_are_kept_in_spending_order() {
    let fx = Fx::standard();
    let tel = query::programme(fx.store(), "tel").unwrap();
    let ids: Vec<&str> = tel.types.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["merchant", "internal", "promo", "employee"]);
    let emp = tel.point_type("employee").unwrap();
    assert!(!emp.transferable);
    assert_eq!(emp.validity, years(3));
    assert_eq!(tel.point_type("merchant").unwrap().convert_to[0].to, "internal");
    let bank = query::programme(fx.store(), "bank").unwrap();
    assert_eq!(bank.point_type("bankpts").unwrap().cash, rate(500, 100, 5, 5, Some(500_000)));

    let alice = query::member(fx.store(), "alice").unwrap();
    assert_eq!(alice.programme, "tel");
    assert_eq!(alice.status, MemberStatus::Active);
    assert_eq!(alice.created_at, ms(2024, 1, 1));
    // Every balance starts at zero.
    let bs = query::balances(fx.store(), "alice", None, t0()).unwrap();
    assert_eq!(bs.len(), 4);
    assert!(bs.iter().all(|b| b.total == 0 && b.available == 0 && b.pending == 0 && b.held == 0));
    fx.assert_audit_clean();
}

#[test]
fn setup_duplicates_and_unknown_references_are_refused() {
    let fx = Fx::standard();
    let at = t0();
    assert_eq!(fx.refused(at, define_programme("tel")).code(), "ALREADY_EXISTS");
    assert_eq!(fx.refused(at, define_type("tel", pt("merchant", 5, Validity::None, true, plain_rate(), vec![]))).code(), "ALREADY_EXISTS");
    assert_eq!(fx.refused(at, define_type("nope", pt("x", 0, Validity::None, true, plain_rate(), vec![]))).code(), "UNKNOWN_PROGRAMME");
    assert_eq!(fx.refused(at, open_member("alice", "tel")).code(), "ALREADY_EXISTS");
    assert_eq!(fx.refused(at, open_member("erin", "nope")).code(), "UNKNOWN_PROGRAMME");
    // Bad validity and cash rates.
    let bad_types = [
        pt("x", 0, Validity::Rolling { count: 0, unit: PeriodUnit::Days }, true, plain_rate(), vec![]),
        pt("x", 0, Validity::Rolling { count: VALIDITY_PERIODS_MAX + 1, unit: PeriodUnit::Days }, true, plain_rate(), vec![]),
        pt("x", 0, Validity::FixedDate { month: 2, day: 30 }, true, plain_rate(), vec![]),
        pt("x", 0, Validity::FixedDate { month: 13, day: 1 }, true, plain_rate(), vec![]),
        pt("x", 0, Validity::None, true, rate(0, 100, 1, 1, None), vec![]),
        pt("x", 0, Validity::None, true, rate(1, 100, 0, 1, None), vec![]),
        pt("x", 0, Validity::None, true, rate(1, 100, 10, 1, Some(5)), vec![]),
        pt("x", 0, Validity::None, true, plain_rate(), vec![ConvertRate { to: "internal".into(), num: 0, den: 1 }]),
    ];
    for t in bad_types {
        assert_eq!(fx.refused(at, define_type("tel", t)).code(), "INVALID_ARGUMENT");
    }
    // PT: at most POINT_TYPES_PER_PROGRAMME_MAX types.
    fx.ok(at, define_programme("many"));
    for i in 0..POINT_TYPES_PER_PROGRAMME_MAX {
        fx.ok(at, define_type("many", pt(&format!("t{i}"), i as i32, Validity::None, true, plain_rate(), vec![])));
    }
    assert_eq!(fx.refused(at, define_type("many", pt("one-more", 0, Validity::None, true, plain_rate(), vec![]))).code(), "LIMIT_EXCEEDED");
    fx.assert_audit_clean();
}

// =====================================================================================
// 2. Credit: lots, validity, pending points
// =====================================================================================

#[test]
fn t14_ex1_credit_creates_a_lot_expiring_three_years_later() {
    let fx = Fx::standard();
    let (id, rc) = fx.ok(t0(), credit("alice", "merchant", 1_000));
    assert_eq!(rc.kind, "credit");
    assert_eq!(rc.amount, 1_000);
    assert_eq!(rc.lots_made.len(), 1);
    let (t, lot_id, n) = rc.lots_made[0].clone();
    assert_eq!((t.as_str(), n), ("merchant", 1_000));
    let lot = fx.lot("alice", "merchant", lot_id).unwrap();
    assert_eq!(lot.a, 1_000);
    assert_eq!(lot.r, 1_000);
    assert_eq!(lot.e, ms(2024, 5, 10));
    assert_eq!(lot.x, Some(ms(2027, 5, 10)), "T14: earned 2024-05-10 expires 2027-05-10");
    assert_eq!(lot.f, t0());
    assert_eq!(lot.s, rc.seq, "the lot remembers the journal entry that made it");
    // The entry is a double-entry posting from the programme's issuance account.
    let es = query::entries_of(fx.store(), &id).unwrap();
    assert_eq!(es.len(), 1);
    assert_eq!(es[0].po.len(), 1);
    assert_eq!(es[0].po[0].from, system_account("tel", SystemAccount::Issuance, "merchant"));
    assert_eq!(es[0].po[0].to, member_account("alice", "merchant"));
    assert_eq!(fx.sys("tel", SystemAccount::Issuance, "merchant"), -1_000);
    // Spendable the whole validity, not at the expiry instant itself.
    assert_eq!(fx.bal("alice", "merchant", ms(2027, 5, 10) - 1).available, 1_000);
    let b = fx.bal("alice", "merchant", ms(2027, 5, 10));
    assert_eq!((b.total, b.available), (1_000, 0));
    fx.assert_audit_clean();
}

#[test]
fn ex5_fixed_year_end_validity() {
    let fx = Fx::standard();
    let (_, a) = fx.ok(ms(2024, 5, 10), credit("alice", "promo", 100));
    let (_, b) = fx.ok(ms(2024, 12, 31) + 23 * HOUR, credit("alice", "promo", 50));
    let (_, c) = fx.ok(ms(2025, 1, 1), credit("alice", "promo", 25));
    assert_eq!(fx.lot("alice", "promo", a.lots_made[0].1).unwrap().x, Some(ms(2025, 1, 1)));
    assert_eq!(fx.lot("alice", "promo", b.lots_made[0].1).unwrap().x, Some(ms(2025, 1, 1)));
    assert_eq!(fx.lot("alice", "promo", c.lots_made[0].1).unwrap().x, Some(ms(2026, 1, 1)));
    assert_eq!(fx.bal("alice", "promo", ms(2025, 1, 1)).available, 25);
}

#[test]
fn validity_none_never_expires() {
    let fx = Fx::standard();
    let (_, rc) = fx.ok(t0(), credit("alice", "internal", 100));
    assert_eq!(fx.lot("alice", "internal", rc.lots_made[0].1).unwrap().x, None);
    assert_eq!(fx.bal("alice", "internal", ms(2200, 1, 1)).available, 100);
    let rc = fx.ok(ms(2200, 1, 1), expire(ms(2200, 1, 1))).1;
    assert_eq!(rc.amount, 0);
    assert_eq!(fx.total("alice", "internal"), 100);
}

#[test]
fn ex7_t12_pending_credit_is_not_spendable_until_effective() {
    let fx = Fx::standard();
    let posted = t0() + 15 * HOUR;
    let next_day = t0() + DAY;
    fx.ok(t0(), credit("alice", "internal", 10));
    let (_, rc) = fx.ok(posted, credit_effective("alice", "merchant", 1_000, next_day));
    let lot = fx.lot("alice", "merchant", rc.lots_made[0].1).unwrap();
    assert_eq!(lot.f, next_day);
    assert_eq!(lot.e, posted, "validity runs from the posting, not the effective date");

    let b = fx.bal("alice", "merchant", posted);
    assert_eq!((b.total, b.available, b.pending), (1_000, 0, 1_000));
    let e = fx.refused(posted + HOUR, redeem("alice", None, 500));
    assert_eq!(e, LedgerError::InsufficientPoints { requested: 500, available: 10 });
    assert_eq!(fx.refused(posted + HOUR, hold("alice", Some("merchant"), 500, HOUR)).code(), "INSUFFICIENT_POINTS");
    assert_eq!(fx.refused(posted + HOUR, transfer("alice", "bob", "merchant", 500)).code(), "INSUFFICIENT_POINTS");

    let b = fx.bal("alice", "merchant", next_day);
    assert_eq!((b.total, b.available, b.pending), (1_000, 1_000, 0));
    fx.ok(next_day, redeem("alice", Some("merchant"), 500));
    assert_eq!(fx.total("alice", "merchant"), 500);
    // effective_at before the command time is refused.
    assert_eq!(fx.refused(posted, credit_effective("alice", "merchant", 1, posted - 1)).code(), "INVALID_ARGUMENT");
    fx.assert_audit_clean();
}

// =====================================================================================
// 3. Redeem: priority, FEFO, refusals, order rules
// =====================================================================================

#[test]
fn rd12_scenario6_merchant_points_first_then_internal() {
    let fx = Fx::standard();
    let (c1, m) = fx.ok(t0(), credit("alice", "merchant", 300));
    let (c2, i) = fx.ok(t0(), credit("alice", "internal", 5_000));
    let (id, rc) = fx.ok(t0() + HOUR, redeem("alice", None, 1_000));
    assert_eq!(rc.amount, 1_000);
    assert_eq!(slices(&rc.lots_used), vec![("merchant".to_string(), m.lots_made[0].1, 300), ("internal".to_string(), i.lots_made[0].1, 700)]);
    assert_eq!(fx.total("alice", "merchant"), 0);
    assert_eq!(fx.total("alice", "internal"), 4_300);
    assert!(fx.lots("alice", "merchant").is_empty(), "a spent lot leaves the account");
    assert_eq!(fx.sys("tel", SystemAccount::Redemption, "merchant"), 300);
    assert_eq!(fx.sys("tel", SystemAccount::Redemption, "internal"), 700);
    // The redeem shows up in the member's history, newest first.
    let (h, next) = query::history(fx.store(), "alice", None, 10, "").unwrap();
    assert!(next.is_empty());
    assert_eq!(h.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [id.as_str(), c2.as_str(), c1.as_str()]);
    fx.assert_audit_clean();
}

#[test]
fn ex11_fefo_within_a_type_over_several_lots() {
    let fx = Fx::standard();
    // DI-2: a T+1 file posts lots with their earn time, so lot ids and expiries disagree.
    let (_, a) = fx.ok(t0() + 10 * DAY, credit("alice", "merchant", 100));
    let (_, b) = fx.ok(t0() - 100 * DAY, credit("alice", "merchant", 100));
    let (_, c) = fx.ok(t0(), credit("alice", "merchant", 100));
    let (a, b, c) = (a.lots_made[0].1, b.lots_made[0].1, c.lots_made[0].1);
    assert!(a < b && b < c);
    let order: Vec<u64> = fx.lots("alice", "merchant").iter().map(|l| l.i).collect();
    assert_eq!(order, [b, c, a], "lots listed earliest expiry first");
    let (_, rc) = fx.ok(t0() + 20 * DAY, redeem("alice", Some("merchant"), 250));
    let m = "merchant".to_string();
    assert_eq!(slices(&rc.lots_used), vec![(m.clone(), b, 100), (m.clone(), c, 100), (m, a, 50)]);
    let left = fx.lots("alice", "merchant");
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].i, left[0].r, left[0].a), (a, 50, 100));
    fx.assert_audit_clean();
}

#[test]
fn rd8_rd13_insufficient_points_changes_nothing() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 300));
    fx.ok(t0(), credit("alice", "internal", 500));
    // refused() checks that the journal did not grow and no database changed.
    let e = fx.refused(t0(), redeem("alice", None, 1_000));
    assert_eq!(e, LedgerError::InsufficientPoints { requested: 1_000, available: 800 });
    let e = fx.refused(t0(), redeem("alice", Some("merchant"), 301));
    assert_eq!(e, LedgerError::InsufficientPoints { requested: 301, available: 300 });
    assert_eq!(fx.refused(t0(), redeem("bob", None, 1)).code(), "INSUFFICIENT_POINTS");
    assert_eq!(fx.total("alice", "merchant"), 300);
    assert_eq!(fx.total("alice", "internal"), 500);
    // Exactly the balance is fine.
    fx.ok(t0(), redeem("alice", None, 800));
    fx.assert_audit_clean();
}

#[test]
fn rk4_frozen_member_cannot_spend() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    let (h, _) = fx.ok(t0(), hold("alice", None, 100, HOUR));
    fx.ok(t0(), freeze("alice"));
    assert_eq!(query::member(fx.store(), "alice").unwrap().status, MemberStatus::Frozen);
    for cmd in [
        redeem("alice", None, 10),
        hold("alice", None, 10, HOUR),
        transfer("alice", "bob", "merchant", 10),
        convert("alice", "merchant", "internal", 10),
        capture(&h, None),
    ] {
        assert_eq!(fx.refused(t0() + MINUTE, cmd).code(), "MEMBER_FROZEN");
    }
    // Voiding gives the points back, even to a frozen member.
    fx.ok(t0() + MINUTE, void(&h));
    fx.ok(t0() + 2 * MINUTE, unfreeze("alice"));
    fx.ok(t0() + 2 * MINUTE, redeem("alice", None, 10));
    assert_eq!(fx.total("alice", "merchant"), 990);
    fx.assert_audit_clean();
}

#[test]
fn rd20_t6_t8_order_rules_of_the_500_to_1_type() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("dave", "bankpts", 2_000_000));
    let t = Some("bankpts");
    assert_eq!(fx.refused(t0(), redeem("dave", t, 4)).code(), "INVALID_ARGUMENT", "T6: 4 points refused");
    assert_eq!(fx.refused(t0(), redeem("dave", t, 1_237)).code(), "INVALID_ARGUMENT", "not a multiple of 5");
    assert_eq!(fx.refused(t0(), redeem("dave", t, 500_005)).code(), "LIMIT_EXCEEDED", "at most 500,000 per order");
    assert_eq!(fx.refused(t0(), hold("dave", t, 1_237, HOUR)).code(), "INVALID_ARGUMENT", "holds obey the same rules");
    // Without a point type every type of the programme applies its rules (here there is one).
    assert_eq!(fx.refused(t0(), redeem("dave", None, 4)).code(), "INVALID_ARGUMENT");
    fx.ok(t0(), redeem("dave", t, 5));
    fx.ok(t0(), redeem("dave", t, 1_235));
    fx.ok(t0(), redeem("dave", None, 500_000));
    assert_eq!(fx.total("dave", "bankpts"), 2_000_000 - 5 - 1_235 - 500_000);

    // The quote side of the same rules (T6-T8, scenario 7): what an order asking for N may use.
    let cash = query::programme(fx.store(), "bank").unwrap().point_type("bankpts").unwrap().cash.clone();
    assert_eq!(code(cash.usable_points(4)), "INVALID_ARGUMENT");
    assert_eq!(cash.usable_points(5).unwrap(), 5);
    assert_eq!(cash.cash_minor(5), 1, "T7: 5 points = 0.01 CNY");
    assert_eq!(cash.usable_points(1_237).unwrap(), 1_235);
    assert_eq!(cash.cash_minor(1_235), 247, "T7: 1,235 points = 2.47 CNY");
    assert_eq!(cash.usable_points(750_000).unwrap(), 500_000);
    assert_eq!(cash.cash_minor(500_000), 100_000, "T8: 500,000 points = 1,000.00 CNY");
    assert!(cash.check_order(cash.usable_points(1_237).unwrap()).is_ok());
    fx.assert_audit_clean();
}

#[test]
fn a_refused_command_in_a_batch_leaves_the_others_applied() {
    let fx = Fx::standard();
    let rs = fx
        .engine
        .submit(vec![
            envelope("b1", t0(), credit("alice", "merchant", 100)),
            envelope("b2", t0(), redeem("alice", None, 1_000)),
            envelope("b3", t0(), redeem("alice", None, 40)),
            envelope("b4", t0(), credit("nobody", "merchant", 1)),
        ])
        .unwrap();
    assert_eq!(rs.len(), 4);
    assert!(rs[0].is_ok() && rs[2].is_ok());
    assert_eq!(rs[1].as_ref().unwrap_err().code(), "INSUFFICIENT_POINTS");
    assert_eq!(rs[3].as_ref().unwrap_err().code(), "UNKNOWN_MEMBER");
    assert_eq!(rs[2].as_ref().unwrap().seq, rs[0].as_ref().unwrap().seq + 1, "refused commands take no seq");
    assert_eq!(fx.total("alice", "merchant"), 60);
    // A refused id was not recorded: it can be used again.
    fx.ok_id("b2", t0(), redeem("alice", None, 10));
    fx.assert_audit_clean();
}

// =====================================================================================
// 4. Holds (two-phase redemption)
// =====================================================================================

#[test]
fn hold_then_full_capture() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    let at = t0() + HOUR;
    let (h, rc) = fx.ok(at, hold("alice", None, 600, 15 * MINUTE));
    assert_eq!(rc.kind, "hold");
    let b = fx.bal("alice", "merchant", at);
    assert_eq!((b.total, b.available, b.held), (400, 400, 600));
    assert_eq!(fx.sys("tel", SystemAccount::Holds, "merchant"), 600);
    let hr = query::hold(fx.store(), &h).unwrap();
    assert_eq!((hr.state, hr.amount, hr.expires_at), (HoldState::Open, 600, at + 15 * MINUTE));
    fx.assert_audit_clean();

    let (_, rc) = fx.ok(at + MINUTE, capture(&h, None));
    assert_eq!(rc.amount, 600);
    let hr = query::hold(fx.store(), &h).unwrap();
    assert_eq!((hr.state, hr.captured), (HoldState::Captured, 600));
    let b = fx.bal("alice", "merchant", at);
    assert_eq!((b.total, b.available, b.held), (400, 400, 0));
    assert_eq!(fx.sys("tel", SystemAccount::Holds, "merchant"), 0);
    assert_eq!(fx.sys("tel", SystemAccount::Redemption, "merchant"), 600);
    fx.assert_audit_clean();
}

#[test]
fn partial_capture_returns_the_rest_to_the_same_lots_with_original_expiry() {
    let fx = Fx::standard();
    let (_, m1) = fx.ok(t0() - 100 * DAY, credit("alice", "merchant", 200));
    let (_, m2) = fx.ok(t0(), credit("alice", "merchant", 300));
    let (m1, m2) = (m1.lots_made[0].1, m2.lots_made[0].1);
    let before = fx.lots("alice", "merchant");
    let (h, rc) = fx.ok(t0() + HOUR, hold("alice", Some("merchant"), 500, HOUR));
    assert_eq!(rc.lots_used.iter().map(|u| (u.1, u.2)).collect::<Vec<_>>(), [(m1, 200), (m2, 300)]);
    assert!(fx.lots("alice", "merchant").is_empty(), "held lots are pinned out of the account");

    let (_, rc) = fx.ok(t0() + HOUR + MINUTE, capture(&h, Some(100)));
    assert_eq!(rc.amount, 100);
    assert_eq!(rc.lots_used.iter().map(|u| (u.1, u.2)).collect::<Vec<_>>(), [(m1, 100)], "earliest expiry is captured first");
    let after = fx.lots("alice", "merchant");
    assert_eq!(after.len(), 2);
    for (l, orig) in after.iter().zip(&before) {
        assert_eq!((l.i, l.x, l.e, l.a), (orig.i, orig.x, orig.e, orig.a), "same lot, same expiry");
    }
    assert_eq!((after[0].r, after[1].r), (100, 300));
    let hr = query::hold(fx.store(), &h).unwrap();
    assert_eq!((hr.state, hr.captured), (HoldState::Captured, 100));
    let b = fx.bal("alice", "merchant", t0() + 2 * HOUR);
    assert_eq!((b.total, b.held), (400, 0));
    assert_eq!(fx.sys("tel", SystemAccount::Redemption, "merchant"), 100);
    assert_eq!(fx.sys("tel", SystemAccount::Holds, "merchant"), 0);
    fx.assert_audit_clean();
}

#[test]
fn partial_capture_across_point_types() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 300));
    fx.ok(t0(), credit("alice", "internal", 500));
    let (h, _) = fx.ok(t0(), hold("alice", None, 700, HOUR));
    assert_eq!(fx.bal("alice", "merchant", t0()).held, 300);
    assert_eq!(fx.bal("alice", "internal", t0()).held, 400);
    fx.ok(t0() + MINUTE, capture(&h, Some(500)));
    assert_eq!(fx.total("alice", "merchant"), 0);
    assert_eq!(fx.total("alice", "internal"), 300);
    assert_eq!(fx.sys("tel", SystemAccount::Redemption, "merchant"), 300);
    assert_eq!(fx.sys("tel", SystemAccount::Redemption, "internal"), 200);
    assert_eq!(fx.bal("alice", "internal", t0()).held, 0);
    fx.assert_audit_clean();
}

#[test]
fn void_returns_everything_to_the_same_lots() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 200));
    fx.ok(t0(), credit("alice", "merchant", 300));
    let before = fx.lots("alice", "merchant");
    let (h, _) = fx.ok(t0(), hold("alice", None, 450, HOUR));
    let (_, rc) = fx.ok(t0() + MINUTE, void(&h));
    assert_eq!(rc.amount, 450);
    assert_eq!(fx.lots("alice", "merchant"), before);
    assert_eq!(query::hold(fx.store(), &h).unwrap().state, HoldState::Voided);
    let b = fx.bal("alice", "merchant", t0());
    assert_eq!((b.total, b.available, b.held), (500, 500, 0));
    assert_eq!(fx.sys("tel", SystemAccount::Holds, "merchant"), 0);
    fx.assert_audit_clean();
}

#[test]
fn closed_holds_cannot_be_captured_or_voided_again() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    let (h1, _) = fx.ok(t0(), hold("alice", None, 100, HOUR));
    let (h2, _) = fx.ok(t0(), hold("alice", None, 100, HOUR));
    fx.ok(t0(), capture(&h1, None));
    fx.ok(t0(), void(&h2));
    let captured = LedgerError::HoldNotOpen { id: h1.clone(), state: "captured".into() };
    let voided = LedgerError::HoldNotOpen { id: h2.clone(), state: "voided".into() };
    assert_eq!(fx.refused(t0(), capture(&h1, None)), captured, "capture twice");
    assert_eq!(fx.refused(t0(), void(&h1)), captured);
    assert_eq!(fx.refused(t0(), capture(&h2, Some(50))), voided, "capture after void");
    assert_eq!(fx.refused(t0(), void(&h2)), voided);
    assert_eq!(fx.refused(t0(), capture("no-such-hold", None)).code(), "UNKNOWN_HOLD");
    assert_eq!(fx.refused(t0(), void("no-such-hold")).code(), "UNKNOWN_HOLD");
    // Capturing more than is held, or nothing, is refused.
    let (h3, _) = fx.ok(t0(), hold("alice", None, 100, HOUR));
    assert_eq!(fx.refused(t0(), capture(&h3, Some(101))).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.refused(t0(), capture(&h3, Some(0))).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.total("alice", "merchant"), 800);
    fx.assert_audit_clean();
}

#[test]
fn hold_ttl_bounds() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    assert_eq!(fx.refused(t0(), hold("alice", None, 1, HOLD_TTL_MS_MIN - 1)).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.refused(t0(), hold("alice", None, 1, HOLD_TTL_MS_MAX + 1)).code(), "INVALID_ARGUMENT");
    fx.ok(t0(), hold("alice", None, 1, HOLD_TTL_MS_MIN));
    fx.ok(t0(), hold("alice", None, 1, HOLD_TTL_MS_MAX));
    fx.assert_audit_clean();
}

#[test]
fn capture_at_or_after_the_ttl_is_hold_expired() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    let at = t0() + HOUR;
    let (h1, _) = fx.ok(at, hold("alice", None, 100, MINUTE));
    let (h2, _) = fx.ok(at, hold("alice", None, 100, MINUTE));
    let (h3, _) = fx.ok(at, hold("alice", None, 100, MINUTE));
    fx.ok(at + MINUTE - 1, capture(&h1, None));
    assert_eq!(fx.refused(at + MINUTE, capture(&h2, None)), LedgerError::HoldExpired(h2.clone()));
    assert_eq!(fx.refused(at + DAY, capture(&h3, Some(10))), LedgerError::HoldExpired(h3.clone()));
    // An expired hold still holds the points until it is voided (explicitly or by the sweep).
    assert_eq!(fx.bal("alice", "merchant", at + DAY).held, 200);
    fx.ok(at + DAY, void(&h2));
    assert_eq!(fx.bal("alice", "merchant", at + DAY).held, 100);
    fx.assert_audit_clean();
}

#[test]
fn expire_after_the_ttl_voids_the_hold_itself() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    let at = t0() + HOUR;
    let (h, _) = fx.ok(at, hold("alice", None, 300, MINUTE));
    let (_, rc) = fx.ok(at + MINUTE - 1, expire(at + MINUTE - 1));
    assert_eq!((rc.amount, rc.entries), (0, 1), "not yet due");
    assert_eq!(query::hold(fx.store(), &h).unwrap().state, HoldState::Open);

    let (_, rc) = fx.ok(at + MINUTE, expire(at + MINUTE));
    assert_eq!(rc.kind, "expire");
    assert_eq!(rc.entries, 1, "one entry for the voided hold, no expired lots");
    assert_eq!(rc.amount, 300);
    assert_eq!(query::hold(fx.store(), &h).unwrap().state, HoldState::Voided);
    let b = fx.bal("alice", "merchant", at + MINUTE);
    assert_eq!((b.total, b.available, b.held), (1_000, 1_000, 0));
    assert_eq!(fx.refused(at + MINUTE, capture(&h, None)), LedgerError::HoldNotOpen { id: h.clone(), state: "voided".into() });
    // The sweep does not void it twice.
    let (_, rc) = fx.ok(at + HOUR, expire(at + HOUR));
    assert_eq!(rc.amount, 0);
    fx.assert_audit_clean();
}

/// A hold pinning part of a lot expires together with the lot: the sweep must void the hold
/// and then expire the whole lot (the returned part included), leaving balance = Σ lots.
#[test]
fn ex2_sweep_voids_a_hold_on_a_lot_that_expires_in_the_same_sweep() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    fx.ok(t0(), credit("bob", "merchant", 1_000));
    let x = ms(2027, 5, 10);
    // alice: part of the lot held; bob: the whole lot held.
    let (ha, _) = fx.ok(x - 2 * HOUR, hold("alice", None, 600, HOUR));
    let (hb, _) = fx.ok(x - 2 * HOUR, hold("bob", None, 1_000, HOUR));
    let (_, rc) = fx.ok(x, expire(x));
    assert_eq!(query::hold(fx.store(), &ha).unwrap().state, HoldState::Voided);
    assert_eq!(query::hold(fx.store(), &hb).unwrap().state, HoldState::Voided);
    for m in ["alice", "bob"] {
        let b = fx.bal(m, "merchant", x);
        assert_eq!((b.total, b.held), (0, 0), "{m}: the whole lot expired");
        assert!(fx.lots(m, "merchant").is_empty());
    }
    assert_eq!(fx.sys("tel", SystemAccount::Breakage, "merchant"), 2_000);
    assert_eq!(rc.entries, 4, "two voided holds, two accounts expired");
    fx.assert_audit_clean();
}

// =====================================================================================
// 5. Transfer and convert
// =====================================================================================

#[test]
fn xf1_transfer_keeps_the_senders_expiry() {
    let fx = Fx::standard();
    let (_, rc) = fx.ok(t0(), credit("alice", "merchant", 1_000));
    let src = fx.lot("alice", "merchant", rc.lots_made[0].1).unwrap();
    let at = t0() + 30 * DAY;
    let (_, rc) = fx.ok(at, transfer("alice", "bob", "merchant", 400));
    assert_eq!(rc.kind, "transfer");
    assert_eq!(slices(&rc.lots_used), vec![("merchant".into(), src.i, 400)]);
    let bob = fx.lots("bob", "merchant");
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].i, rc.lots_made[0].1);
    assert_ne!(bob[0].i, src.i);
    assert_eq!((bob[0].r, bob[0].e, bob[0].x), (400, src.e, Some(ms(2027, 5, 10))), "a gift never extends validity");
    assert_eq!(bob[0].f, at);
    assert_eq!(fx.total("alice", "merchant"), 600);
    assert_eq!(fx.bal("bob", "merchant", at).available, 400);
    // Scenario 12: A gifts 2,000 points to B.
    fx.ok(at, credit("alice", "internal", 2_000));
    fx.ok(at, transfer("alice", "bob", "internal", 2_000));
    assert_eq!((fx.total("alice", "internal"), fx.total("bob", "internal")), (0, 2_000));
    fx.assert_audit_clean();
}

#[test]
fn xf9_employee_points_are_not_transferable() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "employee", 1_000));
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    assert_eq!(fx.refused(t0(), transfer("alice", "bob", "employee", 10)), LedgerError::NotTransferable("employee".into()));
    assert_eq!(fx.refused(t0(), transfer("alice", "alice", "merchant", 10)).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.refused(t0(), transfer("alice", "dave", "merchant", 10)).code(), "INVALID_ARGUMENT", "other programme");
    assert_eq!(fx.refused(t0(), transfer("alice", "nobody", "merchant", 10)).code(), "UNKNOWN_MEMBER");
    assert_eq!(fx.refused(t0(), transfer("alice", "bob", "nope", 10)).code(), "UNKNOWN_POINT_TYPE");
    assert_eq!(fx.refused(t0(), transfer("alice", "bob", "merchant", 1_001)).code(), "INSUFFICIENT_POINTS");
    // Employee points can still be spent by their owner.
    fx.ok(t0(), redeem("alice", Some("employee"), 10));
    fx.assert_audit_clean();
}

#[test]
fn xf2_convert_at_the_rate_of_the_point_type() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_001));
    let at = t0() + DAY;
    let (_, rc) = fx.ok(at, convert("alice", "merchant", "internal", 1_001));
    assert_eq!((rc.kind, rc.amount, rc.credited), ("convert", 1_001, 500), "1:2, rounded down");
    assert_eq!(fx.total("alice", "merchant"), 0);
    assert_eq!(fx.total("alice", "internal"), 500);
    let lot = fx.lot("alice", "internal", rc.lots_made[0].1).unwrap();
    assert_eq!((lot.e, lot.x, lot.f), (at, None, at), "the new lot follows the target type's validity");
    assert_eq!(fx.sys("tel", SystemAccount::Conversion, "merchant"), 1_001);
    assert_eq!(fx.sys("tel", SystemAccount::Conversion, "internal"), -500);
    // No rate defined the other way; a conversion to zero points is refused.
    assert_eq!(fx.refused(at, convert("alice", "internal", "merchant", 100)).code(), "INVALID_ARGUMENT");
    fx.ok(at, credit("alice", "merchant", 1));
    assert_eq!(fx.refused(at, convert("alice", "merchant", "internal", 1)).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.refused(at, convert("alice", "merchant", "internal", 2)).code(), "INSUFFICIENT_POINTS");
    assert_eq!(fx.refused(at, convert("alice", "merchant", "nope", 2)).code(), "UNKNOWN_POINT_TYPE");
    fx.assert_audit_clean();
}

// =====================================================================================
// 6. Reverse: refunds restore lots, clawback (RK-10), what cannot be reversed
// =====================================================================================

/// alice: merchant lots M1 (earned 100 days before T0, 200) and M2 (T0, 300); redeems 400.
fn refund_fixture() -> (Fx, String, Vec<Lot>) {
    let fx = Fx::standard();
    fx.ok(t0() - 100 * DAY, credit("alice", "merchant", 200));
    fx.ok(t0(), credit("alice", "merchant", 300));
    let lots = fx.lots("alice", "merchant");
    let (r, rc) = fx.ok(t0() + DAY, redeem("alice", None, 400));
    assert_eq!(rc.lots_used.iter().map(|u| (u.1, u.2)).collect::<Vec<_>>(), [(lots[0].i, 200), (lots[1].i, 200)]);
    (fx, r, lots)
}

#[test]
fn rd17_eh9_full_refund_restores_the_same_lots_with_original_expiry() {
    let (fx, r, before) = refund_fixture();
    let journal = fx.journal_len();
    let (id, rc) = fx.ok(t0() + 2 * DAY, reverse(&r, None, None));
    assert_eq!((rc.kind, rc.amount), ("reverse", 400));
    assert_eq!(fx.journal_len(), journal + 1, "a refund is a new entry; the redeem stays as it was");
    let m = "merchant".to_string();
    assert_eq!(slices(&rc.lots_made), vec![(m.clone(), before[1].i, 200), (m, before[0].i, 200)], "last taken, first restored");
    assert_eq!(fx.lots("alice", "merchant"), before, "same lot ids, same expiry, same remaining");
    assert_eq!(fx.sys("tel", SystemAccount::Redemption, "merchant"), 0);
    assert_eq!(query::entries_of(fx.store(), &r).unwrap()[0].amount, 400);
    // Nothing left to refund; a refund of a refund is not a thing.
    assert_eq!(fx.refused(t0() + 2 * DAY, reverse(&r, None, None)).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.refused(t0() + 2 * DAY, reverse(&r, Some(1), None)).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.refused(t0() + 2 * DAY, reverse(&id, None, None)).code(), "NOT_REVERSIBLE");
    fx.assert_audit_clean();
}

#[test]
fn partial_refunds_are_cumulative_and_capped_at_the_original() {
    let (fx, r, before) = refund_fixture();
    let at = t0() + 2 * DAY;
    let m = "merchant".to_string();
    let (_, rc) = fx.ok(at, reverse(&r, Some(150), None));
    assert_eq!(slices(&rc.lots_made), vec![(m.clone(), before[1].i, 150)]);
    let (_, rc) = fx.ok(at, reverse(&r, Some(200), None));
    assert_eq!(slices(&rc.lots_made), vec![(m.clone(), before[1].i, 50), (m.clone(), before[0].i, 150)]);
    let e = fx.refused(at, reverse(&r, Some(51), None));
    assert_eq!(e.code(), "INVALID_ARGUMENT", "400 redeemed, 350 refunded: 51 is too much ({e})");
    assert_eq!(fx.refused(at, reverse(&r, Some(10), Some((1, 8)))).code(), "INVALID_ARGUMENT", "amount or ratio");
    assert_eq!(fx.refused(at, reverse(&r, None, Some((2, 1)))).code(), "INVALID_ARGUMENT", "ratio above 1");
    assert_eq!(fx.refused(at, reverse(&r, None, Some((0, 1)))).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.refused(at, reverse(&r, None, Some((1, 4)))).code(), "INVALID_ARGUMENT", "1/4 of 400 = 100 > 50 left");
    let (_, rc) = fx.ok(at, reverse(&r, None, Some((1, 8))));
    assert_eq!(rc.amount, 50, "ratio is of the original amount");
    assert_eq!(fx.lots("alice", "merchant"), before);
    assert_eq!(fx.refused(at, reverse(&r, None, None)).code(), "INVALID_ARGUMENT");
    fx.assert_audit_clean();
}

#[test]
fn refund_of_a_capture_restores_the_captured_slices() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 300));
    fx.ok(t0(), credit("alice", "internal", 500));
    let (h, _) = fx.ok(t0(), hold("alice", None, 600, HOUR));
    let (c, _) = fx.ok(t0(), capture(&h, Some(450)));
    assert_eq!((fx.total("alice", "merchant"), fx.total("alice", "internal")), (0, 350));
    assert_eq!(fx.refused(t0(), reverse(&h, None, None)).code(), "NOT_REVERSIBLE", "reverse the capture, not the hold");
    fx.ok(t0() + DAY, reverse(&c, Some(100), None));
    assert_eq!((fx.total("alice", "merchant"), fx.total("alice", "internal")), (0, 450));
    fx.ok(t0() + DAY, reverse(&c, None, None));
    assert_eq!((fx.total("alice", "merchant"), fx.total("alice", "internal")), (300, 500));
    assert_eq!(fx.sys("tel", SystemAccount::Redemption, "merchant") + fx.sys("tel", SystemAccount::Redemption, "internal"), 0);
    fx.assert_audit_clean();
}

#[test]
fn refund_after_the_lot_expired_restores_an_expired_lot() {
    let (fx, r, before) = refund_fixture();
    // M1 expires; the sweep takes what is left of the lots at that time.
    let x1 = before[0].x.unwrap();
    fx.ok(x1, expire(x1));
    assert_eq!(fx.total("alice", "merchant"), 100);
    fx.ok(x1 + DAY, reverse(&r, None, None));
    // Both lots come back with their original expiry; M1 is already past it.
    assert_eq!(fx.lots("alice", "merchant"), before);
    let b = fx.bal("alice", "merchant", x1 + DAY);
    assert_eq!((b.total, b.available), (500, 300));
    let (_, rc) = fx.ok(x1 + DAY, expire(x1 + DAY));
    assert_eq!(rc.amount, 200);
    fx.assert_audit_clean();
}

#[test]
fn rk10_t13_proportional_clawback_of_a_credit() {
    let fx = Fx::standard();
    let (_, older) = fx.ok(t0() - DAY, credit("alice", "internal", 500));
    // T13 / scenario 8: spend 1,000 → 1,000 points; refund 400 → −400 points.
    let (c, rc) = fx.ok(t0(), credit("alice", "internal", 1_000));
    let lot = rc.lots_made[0].1;
    let (_, rc) = fx.ok(t0() + DAY, reverse(&c, None, Some((400, 1_000))));
    assert_eq!(rc.amount, 400);
    assert_eq!(slices(&rc.lots_used), vec![("internal".to_string(), lot, 400)], "the credited lot is clawed back first");
    assert_eq!(fx.total("alice", "internal"), 1_100);
    assert_eq!(fx.lot("alice", "internal", lot).unwrap().r, 600);
    assert_eq!(fx.lot("alice", "internal", older.lots_made[0].1).unwrap().r, 500);
    assert_eq!(fx.sys("tel", SystemAccount::Issuance, "internal"), -1_100);
    // The rest (600), then nothing more.
    assert_eq!(fx.refused(t0() + DAY, reverse(&c, None, Some((700, 1_000)))).code(), "INVALID_ARGUMENT");
    fx.ok(t0() + DAY, reverse(&c, None, None));
    assert_eq!(fx.total("alice", "internal"), 500);
    assert_eq!(fx.refused(t0() + DAY, reverse(&c, Some(1), None)).code(), "INVALID_ARGUMENT");
    fx.assert_audit_clean();
}

#[test]
fn clawback_of_pending_and_spent_points() {
    let fx = Fx::standard();
    // EX-7 + RK-10: a pending credit can be clawed back before it takes effect.
    let (c, _) = fx.ok(t0(), credit_effective("alice", "merchant", 1_000, t0() + DAY));
    fx.ok(t0() + HOUR, reverse(&c, Some(400), None));
    let b = fx.bal("alice", "merchant", t0() + HOUR);
    assert_eq!((b.total, b.pending), (600, 600));
    // Once spent, the points cannot be clawed back beyond what is left.
    fx.ok(t0() + DAY, redeem("alice", None, 500));
    let e = fx.refused(t0() + DAY, reverse(&c, None, None));
    assert_eq!(e, LedgerError::InsufficientPoints { requested: 600, available: 100 });
    fx.assert_audit_clean();
}

#[test]
fn reverse_refuses_what_moved_no_points_and_unknown_targets() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    let (ex, _) = fx.ok(t0(), expire(t0()));
    let (fz, _) = fx.ok(t0(), freeze("carol"));
    let (h, _) = fx.ok(t0(), hold("alice", None, 10, HOUR));
    for id in [&ex, &fz, &h, "c1"] {
        assert_eq!(fx.refused(t0(), reverse(id, None, None)).code(), "NOT_REVERSIBLE", "{id}");
    }
    assert_eq!(fx.refused(t0(), reverse("never-used", None, None)), LedgerError::UnknownEntry("never-used".into()));
    assert_eq!(fx.refused(t0(), reverse("bad id", None, None)).code(), "INVALID_ARGUMENT");
    fx.assert_audit_clean();
}

#[test]
fn eh9_reversing_a_transfer_returns_the_senders_lots_and_takes_back_what_the_receiver_got() {
    let fx = Fx::standard();
    fx.ok(t0() - 100 * DAY, credit("alice", "merchant", 200));
    fx.ok(t0(), credit("alice", "merchant", 300));
    let alice_before = fx.lots("alice", "merchant");
    fx.ok(t0(), credit("bob", "merchant", 50)); // bob's own lot, expiring later than the gift's first slice
    let (t, rc) = fx.ok(t0() + DAY, transfer("alice", "bob", "merchant", 400));
    let gift: Vec<u64> = rc.lots_made.iter().map(|m| m.1).collect();
    assert_eq!(gift.len(), 2);
    // Part first: the receiver gives back from the lots the transfer made, not its own lot.
    let (_, r1) = fx.ok(t0() + 2 * DAY, reverse(&t, Some(150), None));
    assert_eq!((r1.kind, r1.amount), ("reverse", 150));
    assert_eq!(slices(&r1.lots_used), vec![("merchant".to_string(), gift[0], 150)]);
    let m = "merchant".to_string();
    assert_eq!(slices(&r1.lots_made), vec![(m.clone(), alice_before[1].i, 150)], "last taken, first restored");
    assert_eq!((fx.total("alice", "merchant"), fx.total("bob", "merchant")), (250, 300));
    // Then the rest: every gifted point goes home, bob keeps exactly his own 50.
    let (_, r2) = fx.ok(t0() + 3 * DAY, reverse(&t, None, None));
    assert_eq!(r2.amount, 250);
    assert_eq!(fx.lots("alice", "merchant"), alice_before, "same lots, same expiry");
    assert_eq!(fx.total("bob", "merchant"), 50);
    assert_eq!(fx.refused(t0() + 3 * DAY, reverse(&t, Some(1), None)).code(), "INVALID_ARGUMENT");
    fx.assert_audit_clean();
}

#[test]
fn eh9_a_transfer_the_receiver_already_spent_cannot_be_reversed_and_changes_nothing() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "internal", 500));
    let (t, _) = fx.ok(t0(), transfer("alice", "bob", "internal", 500));
    fx.ok(t0(), redeem("bob", Some("internal"), 400));
    assert!(matches!(fx.refused(t0(), reverse(&t, None, None)), LedgerError::InsufficientPoints { requested: 500, available: 100 }));
    fx.ok(t0(), reverse(&t, Some(100), None));
    assert_eq!((fx.total("alice", "internal"), fx.total("bob", "internal")), (100, 0));
    fx.assert_audit_clean();
}

#[test]
fn xf2_reversing_a_convert_in_parts_claws_back_exactly_what_was_credited() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_001));
    let before = fx.lots("alice", "merchant");
    let (cv, rc) = fx.ok(t0() + DAY, convert("alice", "merchant", "internal", 1_001));
    assert_eq!(rc.credited, 500);
    // 1:2 with rounding down: 3 merchant points back take floor(3 * 500 / 1001) = 1 internal.
    let (_, r1) = fx.ok(t0() + 2 * DAY, reverse(&cv, Some(3), None));
    assert_eq!((r1.amount, r1.credited), (3, 1));
    assert_eq!((fx.total("alice", "merchant"), fx.total("alice", "internal")), (3, 499));
    let (_, r2) = fx.ok(t0() + 2 * DAY, reverse(&cv, Some(500), None));
    assert_eq!(r2.credited, 251 - 1, "floor(503 * 500 / 1001) - floor(3 * 500 / 1001)");
    let (_, r3) = fx.ok(t0() + 2 * DAY, reverse(&cv, None, None));
    assert_eq!(r1.credited + r2.credited + r3.credited, 500, "all of it, to the point");
    assert_eq!(fx.total("alice", "internal"), 0);
    assert_eq!(fx.lots("alice", "merchant"), before, "the merchant lot is back with its expiry");
    assert_eq!(fx.sys("tel", SystemAccount::Conversion, "merchant"), 0);
    assert_eq!(fx.sys("tel", SystemAccount::Conversion, "internal"), 0);
    fx.assert_audit_clean();
}

// =====================================================================================
// 7. Expiry sweep
// =====================================================================================

#[test]
fn ex2_expire_moves_expired_lots_to_breakage() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    fx.ok(t0(), credit("alice", "internal", 500));
    fx.ok(t0(), credit("alice", "promo", 200));
    fx.ok(t0(), credit("bob", "promo", 70));
    fx.ok(t0() + 365 * DAY, credit("bob", "merchant", 300));
    fx.ok(t0() + DAY, redeem("alice", Some("merchant"), 100));

    // Before the year end nothing goes.
    let (_, rc) = fx.ok(ms(2024, 12, 31), expire(ms(2024, 12, 31)));
    assert_eq!((rc.amount, rc.entries, rc.cursor.clone()), (0, 1, None));

    // EX-5 / scenario 10: the year-end clearing of the promo type.
    let ye = ms(2025, 1, 1);
    let b = fx.bal("alice", "promo", ye);
    assert_eq!((b.total, b.available), (200, 0), "expired but not yet swept");
    let (id, rc) = fx.ok(ye, expire(ye));
    assert_eq!((rc.amount, rc.entries, rc.cursor.clone()), (270, 2, None));
    let es = query::entries_of(fx.store(), &id).unwrap();
    assert_eq!(es.iter().map(|e| e.po[0].from.as_str()).collect::<Vec<_>>(), ["alice/promo", "bob/promo"]);
    assert_eq!(fx.total("alice", "promo"), 0);
    assert_eq!(fx.total("bob", "promo"), 0);
    assert_eq!(fx.sys("tel", SystemAccount::Breakage, "promo"), 270);

    // T14 / EX-2: alice's merchant lot goes on 2027-05-10, bob's a year later.
    let x = ms(2027, 5, 10);
    let (_, rc) = fx.ok(x - 1, expire(x - 1));
    assert_eq!(rc.amount, 0);
    let (_, rc) = fx.ok(x, expire(x));
    assert_eq!((rc.amount, rc.entries), (900, 1));
    assert_eq!(fx.total("alice", "merchant"), 0);
    assert_eq!(fx.total("alice", "internal"), 500);
    assert_eq!(fx.total("bob", "merchant"), 300);
    assert_eq!(fx.sys("tel", SystemAccount::Breakage, "merchant"), 900);
    // The breakage entry appears in the member's history.
    let (h, _) = query::history(fx.store(), "alice", Some("merchant"), 1, "").unwrap();
    assert_eq!(h[0].kind(), "expire");
    // Sweeping again finds nothing.
    let (_, rc) = fx.ok(x, expire(x));
    assert_eq!(rc.amount, 0);
    fx.assert_audit_clean();
}

#[test]
fn expire_with_a_cursor_continues_after_that_account() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "promo", 1));
    fx.ok(t0(), credit("bob", "promo", 2));
    fx.ok(t0(), credit("carol", "promo", 4));
    let ye = ms(2025, 1, 1);
    let (_, rc) = fx.ok(ye, Command::Expire { as_of: ye, after: Some(member_account("alice", "promo").to_string()) });
    assert_eq!((rc.amount, rc.cursor), (6, None));
    assert_eq!(fx.total("alice", "promo"), 1);
    let (_, rc) = fx.ok(ye, expire(ye));
    assert_eq!(rc.amount, 1);
    fx.assert_audit_clean();
}

#[test]
fn ex2_more_due_holds_than_one_command_voids_ask_for_another_pass() {
    let fx = Fx::standard();
    let n = pypoints_core::limits::EXPIRE_ACCOUNTS_PER_COMMAND_MAX + 1;
    fx.ok(t0(), credit("alice", "merchant", n as i64));
    let holds: Vec<Envelope> = (0..n).map(|i| envelope(&format!("h{i}"), t0(), hold("alice", Some("merchant"), 1, MINUTE))).collect();
    for chunk in holds.chunks(5_000) {
        assert!(fx.engine.submit(chunk.to_vec()).unwrap().iter().all(|r| r.is_ok()));
    }
    let later = t0() + HOUR;
    let (_, first) = fx.ok(later, expire(later));
    assert_eq!(first.cursor.as_deref(), Some(""), "one more pass is needed for the last hold");
    let (_, second) = fx.ok(later, Command::Expire { as_of: later, after: first.cursor.clone() });
    assert_eq!(second.cursor, None);
    assert_eq!(first.amount + second.amount, n as i64);
    assert_eq!(fx.total("alice", "merchant"), n as i64);
    fx.assert_audit_clean();
}

// =====================================================================================
// 8. Idempotency
// =====================================================================================

#[test]
fn same_id_same_content_replays_the_original_receipt() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    let first = fx.ok_id("pos-42", t0(), redeem("alice", None, 700));
    assert!(!first.replayed);
    let snap = fx.snapshot();
    // A client retry with a fresh clock: same content, so the same result, nothing applied.
    let again = fx.ok_id("pos-42", t0() + HOUR, redeem("alice", None, 700));
    assert!(again.replayed);
    assert_eq!(again, pypoints_core::command::Receipt { replayed: true, ..first.clone() });
    assert!(fx.snapshot() == snap, "a replay changes nothing");
    assert_eq!(fx.total("alice", "merchant"), 300);
    // Replays inside one batch (and one group commit) too.
    let rs = fx
        .engine
        .submit(vec![
            envelope("dup", t0(), credit("bob", "internal", 5)),
            envelope("dup", t0(), credit("bob", "internal", 5)),
            envelope("dup", t0(), credit("bob", "internal", 6)),
        ])
        .unwrap();
    assert!(!rs[0].as_ref().unwrap().replayed);
    assert!(rs[1].as_ref().unwrap().replayed);
    assert_eq!(rs[2].as_ref().unwrap_err().code(), "IDEMPOTENCY_CONFLICT");
    assert_eq!(fx.total("bob", "internal"), 5);
    // A multi-entry command (the sweep) replays whole.
    fx.ok(t0(), credit("alice", "promo", 3));
    fx.ok(t0(), credit("bob", "promo", 4));
    let ye = ms(2025, 1, 1);
    let sweep = fx.ok_id("sweep-2024", ye, expire(ye));
    assert_eq!(sweep.entries, 2);
    let again = fx.ok_id("sweep-2024", ye + DAY, expire(ye));
    assert_eq!(again, pypoints_core::command::Receipt { replayed: true, ..sweep });
    fx.assert_audit_clean();
}

#[test]
fn same_id_different_content_is_an_idempotency_conflict() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    fx.ok_id("pos-42", t0(), redeem("alice", None, 700));
    let conflict = LedgerError::IdempotencyConflict("pos-42".into());
    assert_eq!(fx.refused_id("pos-42", t0(), redeem("alice", None, 701)), conflict);
    assert_eq!(fx.refused_id("pos-42", t0(), redeem("alice", Some("merchant"), 700)), conflict);
    assert_eq!(fx.refused_id("pos-42", t0(), credit("alice", "merchant", 700)), conflict);
    assert_eq!(fx.total("alice", "merchant"), 300);
    fx.assert_audit_clean();
}

#[test]
fn idempotency_survives_reopening_the_data_directory() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    let first = fx.ok_id("pos-42", t0(), redeem("alice", None, 700));
    let h = fx.ok_id("hold-1", t0(), hold("alice", None, 100, HOUR));
    let snap = fx.snapshot();
    let fx = fx.reopen();
    assert!(fx.snapshot() == snap);
    let again = fx.ok_id("pos-42", t0() + DAY, redeem("alice", None, 700));
    assert_eq!(again, pypoints_core::command::Receipt { replayed: true, ..first.clone() });
    assert_eq!(fx.refused_id("pos-42", t0(), redeem("alice", None, 1)).code(), "IDEMPOTENCY_CONFLICT");
    // The writer picked up seq, hash chain and lot numbering where they were.
    let (_, rc) = fx.ok(t0(), credit("alice", "merchant", 5));
    assert_eq!(rc.seq, h.seq + 1);
    assert!(rc.lots_made[0].1 > first.lots_used[0].1);
    fx.ok(t0() + MINUTE, capture("hold-1", None));
    fx.assert_audit_clean();
}

// =====================================================================================
// 9. Bad input
// =====================================================================================

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 1_000));
    let (h, _) = fx.ok(t0(), hold("alice", None, 10, HOUR));
    let long_id = "x".repeat(ID_LENGTH_MAX + 1);
    let long_text = "y".repeat(TEXT_LENGTH_MAX + 1);
    let at = t0() + MINUTE;
    let cases: Vec<(&str, Command, &str)> = vec![
        ("ok-id", credit("alice", "merchant", 0), "INVALID_ARGUMENT"),
        ("ok-id", credit("alice", "merchant", -5), "INVALID_ARGUMENT"),
        ("ok-id", credit("alice", "merchant", AMOUNT_MAX + 1), "LIMIT_EXCEEDED"),
        ("ok-id", redeem("alice", None, 0), "INVALID_ARGUMENT"),
        ("ok-id", redeem("alice", None, -1), "INVALID_ARGUMENT"),
        ("ok-id", redeem("alice", None, AMOUNT_MAX + 1), "LIMIT_EXCEEDED"),
        ("ok-id", hold("alice", None, 0, HOUR), "INVALID_ARGUMENT"),
        ("ok-id", transfer("alice", "bob", "merchant", 0), "INVALID_ARGUMENT"),
        ("ok-id", transfer("alice", "bob", "merchant", AMOUNT_MAX + 1), "LIMIT_EXCEEDED"),
        ("ok-id", convert("alice", "merchant", "internal", -2), "INVALID_ARGUMENT"),
        ("ok-id", reverse("c1", Some(0), None), "NOT_REVERSIBLE"),
        ("ok-id", capture(&h, Some(-1)), "INVALID_ARGUMENT"),
        ("", credit("alice", "merchant", 1), "INVALID_ARGUMENT"),
        (&long_id, credit("alice", "merchant", 1), "LIMIT_EXCEEDED"),
        ("has space", credit("alice", "merchant", 1), "INVALID_ARGUMENT"),
        ("naïve", credit("alice", "merchant", 1), "INVALID_ARGUMENT"),
        ("semi;colon", credit("alice", "merchant", 1), "INVALID_ARGUMENT"),
        ("ok-id", credit("nobody", "merchant", 1), "UNKNOWN_MEMBER"),
        ("ok-id", credit("bad member", "merchant", 1), "INVALID_ARGUMENT"),
        ("ok-id", credit(&long_id, "merchant", 1), "LIMIT_EXCEEDED"),
        ("ok-id", credit("alice", "nope", 1), "UNKNOWN_POINT_TYPE"),
        ("ok-id", credit("alice", "bankpts", 1), "UNKNOWN_POINT_TYPE"),
        ("ok-id", redeem("nobody", None, 1), "UNKNOWN_MEMBER"),
        ("ok-id", redeem("alice", Some("nope"), 1), "UNKNOWN_POINT_TYPE"),
        ("ok-id", hold("nobody", None, 1, HOUR), "UNKNOWN_MEMBER"),
        ("ok-id", open_member("erin", "nope"), "UNKNOWN_PROGRAMME"),
        ("ok-id", open_member("", "tel"), "INVALID_ARGUMENT"),
        ("ok-id", open_member(&long_id, "tel"), "LIMIT_EXCEEDED"),
        ("ok-id", define_programme(""), "INVALID_ARGUMENT"),
        ("ok-id", define_type("nope", pt("x", 0, Validity::None, true, plain_rate(), vec![])), "UNKNOWN_PROGRAMME"),
        ("ok-id", define_type("tel", pt("bad type", 0, Validity::None, true, plain_rate(), vec![])), "INVALID_ARGUMENT"),
        ("ok-id", freeze("nobody"), "UNKNOWN_MEMBER"),
        (
            "ok-id",
            Command::Credit { member: "alice".into(), point_type: "merchant".into(), amount: 1, effective_at: None, memo: long_text.clone() },
            "LIMIT_EXCEEDED",
        ),
        (
            "ok-id",
            Command::Redeem {
                member: "alice".into(),
                point_type: None,
                amount: 1,
                order: pypoints_core::command::Order { channel: long_text.clone(), ..order() },
            },
            "LIMIT_EXCEEDED",
        ),
        ("ok-id", Command::Freeze { member: "alice".into(), reason: long_text.clone() }, "LIMIT_EXCEEDED"),
    ];
    let journal = fx.journal_len();
    for (id, cmd, want) in cases {
        let desc = format!("{id:?} {cmd:?}");
        let e = fx.refused_id(id, at, cmd);
        assert_eq!(e.code(), want, "{desc}: {e}");
    }
    assert_eq!(fx.journal_len(), journal);
    // None of the refused ids was recorded.
    fx.ok_id("ok-id", at, credit("alice", "merchant", 1));
    fx.assert_audit_clean();
}

#[test]
fn amounts_up_to_amount_max_are_accepted() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "internal", AMOUNT_MAX));
    fx.ok(t0(), credit("alice", "internal", AMOUNT_MAX));
    fx.ok(t0(), redeem("alice", None, AMOUNT_MAX));
    assert_eq!(fx.total("alice", "internal"), AMOUNT_MAX);
    fx.assert_audit_clean();
}

#[test]
fn a_batch_larger_than_the_limit_is_refused_whole() {
    let fx = Fx::standard();
    let journal = fx.journal_len();
    let snap = fx.snapshot();
    let batch: Vec<Envelope> =
        (0..=BATCH_SIZE_MAX).map(|i| envelope(&format!("big-{i}"), t0(), credit("alice", "merchant", 1))).collect();
    let e = fx.engine.submit(batch).unwrap_err();
    assert_eq!(e.code(), "LIMIT_EXCEEDED");
    assert_eq!(fx.journal_len(), journal);
    assert!(fx.snapshot() == snap);
    assert!(fx.engine.submit(vec![]).unwrap().is_empty());
    fx.assert_audit_clean();
}

/// Account keys are `member/type`: a `/` inside an id would make two different accounts share a
/// key (member `a/b` type `c` vs member `a` type `b/c`) and break the sweep and the audit, which
/// split the key on `/`. Such ids are refused where members, programmes and types are created.
#[test]
fn ids_that_become_account_key_parts_may_not_contain_a_slash() {
    let fx = Fx::standard();
    assert_eq!(fx.refused(t0(), open_member("a/b", "tel")).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.refused(t0(), define_programme("x/y")).code(), "INVALID_ARGUMENT");
    assert_eq!(fx.refused(t0(), define_type("tel", pt("b/c", 9, Validity::None, true, plain_rate(), vec![]))).code(), "INVALID_ARGUMENT");
    // Command ids may still use it.
    fx.ok_id("till/7/42", t0(), credit("alice", "promo", 5));
    let ye = ms(2025, 1, 1);
    assert_eq!(fx.ok(ye, expire(ye)).1.amount, 5);
    fx.assert_audit_clean();
}

#[test]
fn times_near_the_end_of_the_clock_are_refused_not_fatal() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "internal", 100));
    // at + ttl would overflow i64: refused, and the writer keeps working.
    assert_eq!(fx.refused(i64::MAX - 10, hold("alice", None, 1, HOUR)).code(), "INVALID_ARGUMENT");
    fx.ok(t0(), redeem("alice", None, 1));
    assert_eq!(fx.total("alice", "internal"), 99);
    fx.assert_audit_clean();
}

// =====================================================================================
// 10. Audit: clean after everything; detects tampering
// =====================================================================================

/// A bit of everything, on the standard set-up.
fn busy_ledger() -> Fx {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 300));
    fx.ok(t0(), credit("alice", "internal", 5_000));
    fx.ok(t0(), credit("alice", "promo", 50));
    fx.ok(t0(), credit("alice", "employee", 80));
    fx.ok(t0(), credit_effective("bob", "merchant", 700, t0() + DAY));
    fx.ok(t0(), credit("dave", "bankpts", 10_000));
    let (r, _) = fx.ok(t0() + HOUR, redeem("alice", None, 1_000));
    fx.ok(t0() + HOUR, reverse(&r, Some(250), None));
    let (h1, _) = fx.ok(t0() + HOUR, hold("alice", None, 400, HOUR));
    let (c1, _) = fx.ok(t0() + HOUR, capture(&h1, Some(300)));
    fx.ok(t0() + HOUR, reverse(&c1, None, Some((1, 3))));
    let (h2, _) = fx.ok(t0() + HOUR, hold("alice", None, 100, HOUR));
    fx.ok(t0() + HOUR, void(&h2));
    fx.ok(t0() + DAY, transfer("bob", "carol", "merchant", 200));
    fx.ok(t0() + DAY, convert("bob", "merchant", "internal", 100));
    let (c, _) = fx.ok(t0() + DAY, credit("carol", "internal", 1_000));
    fx.ok(t0() + DAY, reverse(&c, None, Some((400, 1_000))));
    fx.ok(t0() + DAY, redeem("dave", None, 1_235));
    fx.ok(t0() + DAY, freeze("carol"));
    fx.ok(ms(2025, 1, 1), expire(ms(2025, 1, 1)));
    fx.ok(ms(2025, 1, 1), credit("alice", "promo", 10));
    fx.ok(ms(2025, 1, 1), hold("alice", Some("internal"), 50, HOUR));
    fx
}

#[test]
fn rk8_st15_audit_is_clean_after_every_kind_of_command() {
    let fx = busy_ledger();
    let r = audit(fx.store()).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(r.entries, fx.journal_len());
    assert!(r.accounts > 20);
    // One held hold is still open and is accounted for by the holds account.
    assert_eq!(fx.bal("alice", "internal", ms(2025, 1, 1)).held, 50);
    assert_eq!(fx.sys("tel", SystemAccount::Holds, "internal"), 50);
    // And clean again after reopening.
    let fx = fx.reopen();
    fx.assert_audit_clean();
}

/// Rewrite one record of a closed data directory with heed directly, then audit it.
fn tamper(dir: &std::path::Path, f: impl FnOnce(&Store, &mut heed::RwTxn<'_>)) -> Vec<String> {
    let store = Store::open(dir, MAP_SIZE, Durability::Sync).unwrap();
    let mut txn = store.write_txn().unwrap();
    f(&store, &mut txn);
    txn.commit().unwrap();
    audit(&store).unwrap().problems
}

fn entry(store: &Store, txn: &heed::RwTxn<'_>, seq: u64) -> Entry {
    journal::entry(store, txn, seq).unwrap().unwrap()
}

/// Change the entries of the journal chunk that holds `seq` (given it and its index), behind
/// the ledger's back.
fn rewrite_chunk(store: &Store, txn: &mut heed::RwTxn<'_>, seq: u64, f: impl FnOnce(&mut Vec<Vec<u8>>, usize)) {
    let (first, mut entries) = {
        let c = journal::chunk_of(store, txn, seq).unwrap().unwrap();
        (c.first, c.entries.iter().map(|e| e.to_vec()).collect::<Vec<_>>())
    };
    f(&mut entries, (seq - first) as usize);
    if entries.is_empty() {
        store.journal.delete(txn, &seq_key(first)).unwrap();
    } else {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        store.journal.put(txn, &seq_key(first), &journal::encode_chunk(first, &refs)).unwrap();
    }
}

fn put_entry(store: &Store, txn: &mut heed::RwTxn<'_>, e: &Entry) {
    rewrite_chunk(store, txn, e.seq, |entries, i| entries[i] = encode(e));
}

/// Rewrite a checkpointed account record behind the ledger's back.
fn edit_account(store: &Store, txn: &mut heed::RwTxn<'_>, key: &str, f: impl FnOnce(&mut Account)) {
    let mut a: Account = get(&store.accounts, txn, key.as_bytes()).unwrap().unwrap();
    f(&mut a);
    put(&store.accounts, txn, key.as_bytes(), &a).unwrap();
}

fn first_entry_of_kind(store: &Store, txn: &heed::RwTxn<'_>, kind: &str) -> Entry {
    (1..).map(|s| entry(store, txn, s)).find(|e| e.kind() == kind).unwrap()
}

#[test]
fn rk8_audit_detects_an_edited_journal_entry() {
    let dir = busy_ledger().close();
    let problems = tamper(dir.path(), |store, txn| {
        let mut e = first_entry_of_kind(store, txn, "redeem");
        e.amount -= 1;
        put_entry(store, txn, &e);
    });
    assert!(problems.iter().any(|p| p.contains("was altered")), "{problems:#?}");
}

#[test]
fn rk8_audit_detects_a_rehashed_entry_by_the_broken_chain_and_the_postings() {
    let dir = busy_ledger().close();
    let problems = tamper(dir.path(), |store, txn| {
        // A forger who also recomputes the entry's own hash: the next entry's link breaks, and
        // the balances no longer match the postings.
        let mut e = first_entry_of_kind(store, txn, "credit");
        e.po[0].n += 1_000;
        e.h = vec![];
        e.h = e.compute_hash();
        put_entry(store, txn, &e);
    });
    assert!(problems.iter().any(|p| p.contains("hash chain broken")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("postings sum")), "{problems:#?}");
    assert!(!problems.iter().any(|p| p.contains("was altered")), "{problems:#?}");
}

#[test]
fn rk8_audit_detects_an_edited_account_balance() {
    let dir = busy_ledger().close();
    let key = member_account("alice", "internal");
    let problems = tamper(dir.path(), |store, txn| edit_account(store, txn, &key, |a| a.b += 1_000));
    assert!(problems.iter().any(|p| p.contains(key.as_str()) && p.contains("postings sum")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains(key.as_str()) && p.contains("lots hold")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("point type internal") && p.contains("not 0")), "{problems:#?}");
}

#[test]
fn rk8_audit_detects_a_forged_lot_and_a_deleted_entry() {
    let dir = busy_ledger().close();
    let key = member_account("alice", "internal");
    let problems = tamper(dir.path(), |store, txn| edit_account(store, txn, &key, |a| a.lots[0].r += 1));
    assert!(problems.iter().any(|p| p.contains("lots hold")), "{problems:#?}");
    let problems = tamper(dir.path(), |store, txn| {
        let e = first_entry_of_kind(store, txn, "transfer");
        rewrite_chunk(store, txn, e.seq, |entries, i| {
            entries.remove(i);
        });
    });
    assert!(problems.iter().any(|p| p.contains("out of sequence")), "{problems:#?}");
}

#[test]
fn rk8_audit_detects_a_lot_given_a_later_expiry_that_keeps_every_sum() {
    // Every sum still holds (balance, Σ lots, Σ = 0): only rebuilding the account from its
    // entries' effects shows that its lots are not the lots the ledger gave it.
    let dir = busy_ledger().close();
    let key = member_account("alice", "internal");
    let problems = tamper(dir.path(), |store, txn| {
        edit_account(store, txn, &key, |a| {
            // (internal points never expire: give the lot an expiry far ahead, past every other)
            let last = a.lots.len() - 1;
            a.lots[last].x = Some(a.lots[last].x.unwrap_or(ms(2100, 1, 1)) + 365 * DAY);
        });
    });
    assert_eq!(problems, [format!("account {key}: its lots differ from what its entries' effects give")]);
}

#[test]
fn every_member_account_is_the_fold_of_its_entries_effects() {
    let fx = busy_ledger();
    let txn = fx.store().read_txn().unwrap();
    let mut folded: std::collections::BTreeMap<String, Account> = Default::default();
    let mut effects = 0;
    for item in journal::entries_from(fx.store(), &txn, 1).unwrap() {
        let (_, v) = item.unwrap();
        let e: Entry = decode(v).unwrap();
        for f in e.fx.expect("every entry records its effects") {
            assert!(!is_system_account(&f.a), "effects are recorded for member accounts only");
            folded.entry(f.a.to_string()).or_default().apply_effect(&f).unwrap();
            effects += 1;
        }
    }
    assert!(effects > 10, "the busy ledger changes accounts: {effects}");
    for (k, f) in &folded {
        let a: Account = get_account(fx.store(), &txn, k.as_bytes()).unwrap().unwrap();
        assert_eq!((a.b, a.hd, &a.lots), (f.b, f.hd, &f.lots), "{k}");
    }
}

// =====================================================================================
// 11. Group commit from many threads
// =====================================================================================

#[test]
fn group_commit_eight_threads_submitting_concurrently() {
    const THREADS: usize = 8;
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 10;
    let fx = Fx::new();
    fx.ok(t0(), define_programme("p"));
    fx.ok(t0(), define_type("p", pt("pts", 0, Validity::None, true, plain_rate(), vec![])));
    for i in 0..THREADS {
        fx.ok(t0(), open_member(&format!("m{i}"), "p"));
    }
    let journal0 = fx.journal_len();
    let engine: Arc<Engine> = fx.engine.clone();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let me = format!("m{t}");
                let next = format!("m{}", (t + 1) % THREADS);
                let mut receipts = vec![];
                for b in 0..BATCHES {
                    // Credit myself, spend a little, gift one point to my neighbour.
                    let mut cmds = vec![];
                    for k in 0..PER_BATCH {
                        let id = format!("t{t}-b{b}-k{k}");
                        let at = t0() + (b * PER_BATCH + k) as i64;
                        let cmd = match k % 3 {
                            0 => credit(&me, "pts", 10),
                            1 => redeem(&me, None, 3),
                            _ => transfer(&me, &next, "pts", 1),
                        };
                        cmds.push(envelope(&id, at, cmd));
                    }
                    for r in engine.submit(cmds).unwrap() {
                        receipts.push(r.unwrap());
                    }
                }
                receipts
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).map(|r| r.seq).collect();
    drop(engine);
    let n = THREADS * BATCHES * PER_BATCH;
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "every command got its own seq");
    assert_eq!(fx.journal_len(), journal0 + n as u64);
    // Per batch of 10: 4 credits of 10, 3 redeems of 3, 3 transfers of 1 out and 3 in.
    let per_member = (BATCHES * (4 * 10 - 3 * 3)) as i64;
    for i in 0..THREADS {
        assert_eq!(fx.total(&format!("m{i}"), "pts"), per_member);
    }
    assert_eq!(fx.sys("p", SystemAccount::Redemption, "pts"), (THREADS * BATCHES * 3 * 3) as i64);
    assert_eq!(fx.sys("p", SystemAccount::Issuance, "pts"), -((THREADS * BATCHES * 4 * 10) as i64));
    fx.assert_audit_clean();
}

#[test]
fn the_engine_is_shared_per_path_and_refuses_work_after_close() {
    let fx = Fx::standard();
    let again = Engine::open(&fx.path(), MAP_SIZE, Durability::Sync).unwrap();
    assert!(Arc::ptr_eq(&again, &fx.engine), "one environment per path per process");
    drop(again);
    fx.engine.close();
    assert!(!fx.engine.is_open());
    assert_eq!(fx.engine.submit_one(envelope("late", t0(), credit("alice", "merchant", 1))), Err(LedgerError::Closed));
}

// =====================================================================================
// 12. Properties
// =====================================================================================

/// (a) Random credit/redeem/hold/capture/void/transfer/reverse sequences over 3 members and 2
/// point types (validity None) against a reference model: after every command the outcome code
/// agrees, each member's balance and held points match, and the audit is clean (Σ = 0 per type).
mod model_check {
    use super::*;

    const MEMBERS: usize = 3;
    const TYPES: [&str; 2] = ["a", "b"];

    #[derive(Debug, Clone)]
    pub enum How {
        All,
        Amount(i64),
        Ratio(i64, i64),
    }

    #[derive(Debug, Clone)]
    pub enum Op {
        Credit { m: usize, t: usize, n: i64 },
        Redeem { m: usize, t: Option<usize>, n: i64 },
        Hold { m: usize, t: Option<usize>, n: i64 },
        Capture { h: usize, n: Option<i64> },
        Void { h: usize },
        Transfer { from: usize, to: usize, t: usize, n: i64 },
        Reverse { target: usize, how: How },
    }

    fn op() -> impl Strategy<Value = Op> {
        let m = 0..MEMBERS;
        let t = 0..TYPES.len();
        let ot = proptest::option::of(0..TYPES.len());
        prop_oneof![
            4 => (m.clone(), t.clone(), 1i64..500).prop_map(|(m, t, n)| Op::Credit { m, t, n }),
            3 => (m.clone(), ot.clone(), 0i64..700).prop_map(|(m, t, n)| Op::Redeem { m, t, n }),
            3 => (m.clone(), ot, 1i64..700).prop_map(|(m, t, n)| Op::Hold { m, t, n }),
            2 => (0usize..8, proptest::option::of(0i64..700)).prop_map(|(h, n)| Op::Capture { h, n }),
            1 => (0usize..8).prop_map(|h| Op::Void { h }),
            1 => (m.clone(), m, t, 1i64..300).prop_map(|(from, to, t, n)| Op::Transfer { from, to, t, n }),
            3 => (
                0usize..32,
                prop_oneof![
                    Just(How::All),
                    (0i64..600).prop_map(How::Amount),
                    (0i64..5, 1i64..5).prop_map(|(a, b)| How::Ratio(a, b)),
                ]
            )
                .prop_map(|(target, how)| Op::Reverse { target, how }),
        ]
    }

    #[derive(Debug, Clone)]
    enum Kind {
        /// clawback target: member, type, original amount
        Credit(usize, usize, i64),
        /// refund target (redeem or capture): member, debited slices (type, n) in order
        Debit(usize, Vec<(usize, i64)>),
        /// transfer target (reversed both ways): from, to, type, amount
        Transfer(usize, usize, usize, i64),
        /// a command that exists but is not reversible
        Other,
        /// an id whose command was refused: unknown to the ledger
        Missing,
    }

    struct Target {
        id: String,
        kind: Kind,
        done: i64,
    }

    struct MHold {
        id: String,
        m: usize,
        amount: i64,
        slices: Vec<(usize, i64)>,
        open: bool,
    }

    #[derive(Default)]
    struct Model {
        bal: Vec<[i64; 2]>,
        held: Vec<[i64; 2]>,
        holds: Vec<MHold>,
        targets: Vec<Target>,
    }

    type Expect = Result<Kind, &'static str>;

    impl Model {
        /// Debit in spending order (type a before b), like the ledger's take().
        fn take(&mut self, m: usize, t: Option<usize>, n: i64) -> Result<Vec<(usize, i64)>, &'static str> {
            let types: Vec<usize> = match t {
                Some(t) => vec![t],
                None => (0..TYPES.len()).collect(),
            };
            if types.iter().map(|&t| self.bal[m][t]).sum::<i64>() < n {
                return Err("INSUFFICIENT_POINTS");
            }
            let mut left = n;
            let mut out = vec![];
            for t in types {
                let k = self.bal[m][t].min(left);
                if k > 0 {
                    self.bal[m][t] -= k;
                    left -= k;
                    out.push((t, k));
                }
            }
            Ok(out)
        }

        /// What the ledger should do with `op` (applied to the model when it succeeds).
        fn apply(&mut self, id: &str, op: &Op) -> (Command, Expect) {
            let mid = |m: usize| format!("m{m}");
            match op.clone() {
                Op::Credit { m, t, n } => {
                    self.bal[m][t] += n;
                    (credit(&mid(m), TYPES[t], n), Ok(Kind::Credit(m, t, n)))
                }
                Op::Redeem { m, t, n } => {
                    let cmd = redeem(&mid(m), t.map(|t| TYPES[t]), n);
                    if n <= 0 {
                        return (cmd, Err("INVALID_ARGUMENT"));
                    }
                    (cmd, self.take(m, t, n).map(|s| Kind::Debit(m, s)))
                }
                Op::Hold { m, t, n } => {
                    let cmd = hold(&mid(m), t.map(|t| TYPES[t]), n, HOUR);
                    let r = self.take(m, t, n).map(|slices| {
                        for &(t, k) in &slices {
                            self.held[m][t] += k;
                        }
                        self.holds.push(MHold { id: id.to_string(), m, amount: n, slices, open: true });
                        Kind::Other
                    });
                    (cmd, r)
                }
                Op::Capture { h, n } => {
                    if self.holds.is_empty() {
                        return (capture("no-hold", n), Err("UNKNOWN_HOLD"));
                    }
                    let i = h % self.holds.len();
                    let cmd = capture(&self.holds[i].id.clone(), n);
                    let hd = &self.holds[i];
                    let want = n.unwrap_or(hd.amount);
                    if !hd.open {
                        return (cmd, Err("HOLD_NOT_OPEN"));
                    }
                    if want <= 0 || want > hd.amount {
                        return (cmd, Err("INVALID_ARGUMENT"));
                    }
                    let (m, slices) = (hd.m, hd.slices.clone());
                    self.holds[i].open = false;
                    let mut left = want;
                    let mut captured = vec![];
                    for (t, k) in slices {
                        self.held[m][t] -= k;
                        let c = k.min(left);
                        left -= c;
                        if c > 0 {
                            captured.push((t, c));
                        }
                        self.bal[m][t] += k - c;
                    }
                    (cmd, Ok(Kind::Debit(m, captured)))
                }
                Op::Void { h } => {
                    if self.holds.is_empty() {
                        return (void("no-hold"), Err("UNKNOWN_HOLD"));
                    }
                    let i = h % self.holds.len();
                    let cmd = void(&self.holds[i].id.clone());
                    if !self.holds[i].open {
                        return (cmd, Err("HOLD_NOT_OPEN"));
                    }
                    self.holds[i].open = false;
                    let m = self.holds[i].m;
                    for (t, k) in self.holds[i].slices.clone() {
                        self.held[m][t] -= k;
                        self.bal[m][t] += k;
                    }
                    (cmd, Ok(Kind::Other))
                }
                Op::Transfer { from, to, t, n } => {
                    let cmd = transfer(&mid(from), &mid(to), TYPES[t], n);
                    if from == to {
                        return (cmd, Err("INVALID_ARGUMENT"));
                    }
                    let r = self.take(from, Some(t), n).map(|_| {
                        self.bal[to][t] += n;
                        Kind::Transfer(from, to, t, n)
                    });
                    (cmd, r)
                }
                Op::Reverse { target, how } => {
                    let (amount, ratio) = match how {
                        How::All => (None, None),
                        How::Amount(a) => (Some(a), None),
                        How::Ratio(a, b) => (None, Some((a, b))),
                    };
                    if self.targets.is_empty() {
                        return (reverse("nothing-yet", amount, ratio), Err("UNKNOWN_ENTRY"));
                    }
                    let i = target % self.targets.len();
                    let cmd = reverse(&self.targets[i].id.clone(), amount, ratio);
                    let (kind, done) = (self.targets[i].kind.clone(), self.targets[i].done);
                    let original = match &kind {
                        Kind::Missing => return (cmd, Err("UNKNOWN_ENTRY")),
                        Kind::Other => return (cmd, Err("NOT_REVERSIBLE")),
                        Kind::Credit(_, _, n) | Kind::Transfer(_, _, _, n) => *n,
                        Kind::Debit(_, s) => s.iter().map(|x| x.1).sum(),
                    };
                    let n = match how {
                        How::All => original - done,
                        How::Amount(a) => a,
                        How::Ratio(a, b) if a <= 0 || a > b => return (cmd, Err("INVALID_ARGUMENT")),
                        How::Ratio(a, b) => original * a / b,
                    };
                    if n <= 0 || n > original - done {
                        return (cmd, Err("INVALID_ARGUMENT"));
                    }
                    match kind {
                        Kind::Credit(m, t, _) => {
                            if self.bal[m][t] < n {
                                return (cmd, Err("INSUFFICIENT_POINTS"));
                            }
                            self.bal[m][t] -= n;
                        }
                        Kind::Transfer(from, to, t, _) => {
                            // The receiver gives back; it may have spent the points since.
                            if self.bal[to][t] < n {
                                return (cmd, Err("INSUFFICIENT_POINTS"));
                            }
                            self.bal[to][t] -= n;
                            self.bal[from][t] += n;
                        }
                        Kind::Debit(m, slices) => {
                            // Last taken, first restored, skipping what earlier refunds restored.
                            let (mut skip, mut left) = (done, n);
                            for (t, k) in slices.into_iter().rev() {
                                let s = skip.min(k);
                                skip -= s;
                                let r = (k - s).min(left);
                                left -= r;
                                self.bal[m][t] += r;
                            }
                        }
                        _ => unreachable!(),
                    }
                    self.targets[i].done += n;
                    (cmd, Ok(Kind::Other))
                }
            }
        }
    }

    fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let fx = Fx::new();
        fx.ok(t0(), define_programme("p"));
        for (i, t) in TYPES.iter().enumerate() {
            fx.ok(t0(), define_type("p", pt(t, i as i32, Validity::None, true, plain_rate(), vec![])));
        }
        for m in 0..MEMBERS {
            fx.ok(t0(), open_member(&format!("m{m}"), "p"));
        }
        let mut model = Model { bal: vec![[0; 2]; MEMBERS], held: vec![[0; 2]; MEMBERS], ..Default::default() };
        for (step, op) in ops.iter().enumerate() {
            let at = t0() + step as i64 * SECOND;
            let id = format!("op{step}");
            let (cmd, expect) = model.apply(&id, op);
            let got = fx.engine.submit_one(envelope(&id, at, cmd.clone()));
            let got_code = got.as_ref().map(|_| ()).map_err(|e| e.code());
            let want_code = expect.as_ref().map(|_| ()).map_err(|c| *c);
            prop_assert_eq!(got_code, want_code, "step {}: {:?} → {:?}", step, cmd, got);
            model.targets.push(Target { id, kind: expect.unwrap_or(Kind::Missing), done: 0 });
            for m in 0..MEMBERS {
                for (t, ty) in TYPES.iter().enumerate() {
                    let b = fx.bal(&format!("m{m}"), ty, at);
                    prop_assert_eq!((b.total, b.available, b.held), (model.bal[m][t], model.bal[m][t], model.held[m][t]), "step {}: m{} {}", step, m, ty);
                }
            }
            let r = audit(fx.store()).unwrap();
            prop_assert!(r.problems.is_empty(), "step {}: {:?}", step, r.problems);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn st15_random_commands_agree_with_a_reference_model(ops in proptest::collection::vec(op(), 1..40)) {
            run(ops)?;
        }
    }
}

/// (b) RD-20 / T6-T8: `usable_points` returns a multiple of the step within [min, max] and at
/// most what was asked, or refuses exactly when the capped amount rounded down to the step is
/// below the minimum (which, when min is a multiple of step, is exactly "capped < min").
mod cash_rate {
    use super::*;

    fn cash_rate() -> impl Strategy<Value = CashRate> {
        (1i64..1_000, 1i64..10_000, 1i64..2_000, 1i64..200, proptest::option::of(0i64..1_000_000)).prop_map(
            |(points, minor, min_points, step_points, extra)| CashRate {
                points,
                minor,
                min_points,
                step_points,
                max_points: extra.map(|e| min_points + e),
            },
        )
    }

    fn aligned_cash_rate() -> impl Strategy<Value = CashRate> {
        (cash_rate(), 1i64..100).prop_map(|(mut r, k)| {
            r.min_points = r.step_points * k;
            r.max_points = r.max_points.map(|m| m.max(r.min_points));
            r
        })
    }

    fn check(r: &CashRate, asked: i64) -> Result<(), TestCaseError> {
        prop_assert!(r.check().is_ok());
        let got = r.usable_points(asked);
        if asked <= 0 {
            prop_assert!(got.is_err());
            return Ok(());
        }
        let capped = r.max_points.map_or(asked, |m| asked.min(m));
        match got {
            Ok(u) => {
                prop_assert_eq!(u % r.step_points, 0);
                prop_assert!(u >= r.min_points && u <= capped && capped - u < r.step_points);
                prop_assert!(r.max_points.is_none_or(|m| u <= m));
                prop_assert!(r.check_order(u).is_ok(), "usable_points({}) = {} fails check_order", asked, u);
                prop_assert!(r.cash_minor(u) >= 0);
            }
            Err(e) => {
                prop_assert_eq!(e.code(), "INVALID_ARGUMENT");
                prop_assert!(capped - capped % r.step_points < r.min_points);
            }
        }
        if r.min_points % r.step_points == 0 {
            prop_assert_eq!(r.usable_points(asked).is_err(), capped < r.min_points);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn rd20_usable_points_any_rate(r in cash_rate(), asked in -10i64..3_000_000) {
            check(&r, asked)?;
        }

        #[test]
        fn rd20_usable_points_min_a_multiple_of_step(r in aligned_cash_rate(), asked in -10i64..3_000_000) {
            check(&r, asked)?;
        }

        #[test]
        fn rd20_usable_points_near_the_minimum(r in aligned_cash_rate(), d in -300i64..300) {
            check(&r, r.min_points + d)?;
        }
    }
}
