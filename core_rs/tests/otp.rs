//! One-time codes on holds (RD-6, RD-7, RK-5) in the core: the hold stores only the code's hash
//! and writes its notification to `outbox` in the same transaction; a capture must present the
//! matching hash; wrong codes are recorded and the last allowed one voids the hold; rejected
//! attempts cannot be reversed; a refused hold writes no notification.
mod common;

use common::*;
use pypoints_core::command::{Command, OtpSpec};
use pypoints_core::error::LedgerError;
use pypoints_core::model::*;
use pypoints_core::store::get;

fn otp_hold(m: &str, n: i64, attempts: u32) -> Command {
    match hold(m, None, n, HOUR) {
        Command::Hold { member, point_type, amount, ttl_ms, order, .. } => Command::Hold {
            member, point_type, amount, ttl_ms, order,
            otp: Some(OtpSpec { hash: "good".into(), attempts, sealed: vec![1, 2, 3] }),
        },
        _ => unreachable!(),
    }
}

fn otp_capture(h: &str, code: Option<&str>) -> Command {
    Command::Capture { hold: h.into(), amount: None, otp: code.map(Into::into) }
}

fn hold_rec(fx: &Fx, id: &str) -> Hold {
    let txn = fx.store().read_txn().unwrap();
    get::<Hold>(&fx.store().holds, &txn, id.as_bytes()).unwrap().unwrap()
}

#[test]
fn otp_hold_writes_outbox_and_capture_needs_the_hash() {
    let fx = Fx::standard();
    let at = t0();
    fx.ok(at, credit("alice", "internal", 1_000));
    fx.ok_id("h1", at, otp_hold("alice", 300, 3));
    let out = fx.store().outbox_peek(10).unwrap();
    assert_eq!(out.len(), 1);
    let msg: OutboxMessage = pypoints_core::store::decode(&out[0].1).unwrap();
    assert_eq!((msg.hold.as_str(), msg.phone.as_str(), msg.sealed.as_slice()), ("h1", "+8613800000000", &[1u8, 2, 3][..]));
    assert_eq!(hold_rec(&fx, "h1").otp, Some(HoldOtp { hash: "good".into(), left: 3 }));
    assert!(matches!(fx.refused(at, otp_capture("h1", None)), LedgerError::InvalidArgument(_)));
    let bad = fx.ok_id("bad", at, otp_capture("h1", Some("nope")));
    assert_eq!((bad.amount, bad.cursor.as_deref()), (0, Some("otp_rejected:2")));
    assert_eq!(hold_rec(&fx, "h1").otp.unwrap().left, 2);
    assert!(matches!(fx.refused(at, reverse("bad", None, None)), LedgerError::NotReversible(_)));
    let ok = fx.ok_id("ok", at, otp_capture("h1", Some("good")));
    assert_eq!((ok.amount, ok.cursor), (300, None));
    assert_eq!(fx.store().outbox_delete(&[out[0].0.clone()]).unwrap(), 1);
    assert!(fx.store().outbox_peek(10).unwrap().is_empty());
    fx.assert_audit_clean();
}

#[test]
fn last_wrong_code_voids_the_hold() {
    let fx = Fx::standard();
    let at = t0();
    fx.ok(at, credit("alice", "internal", 1_000));
    fx.ok_id("h1", at, otp_hold("alice", 300, 2));
    assert_eq!(fx.ok(at, otp_capture("h1", Some("x"))).1.cursor.as_deref(), Some("otp_rejected:1"));
    assert_eq!(fx.ok(at, otp_capture("h1", Some("y"))).1.cursor.as_deref(), Some("otp_exhausted"));
    assert_eq!(hold_rec(&fx, "h1").state, HoldState::Voided);
    assert_eq!(fx.bal("alice", "internal", at).available, 1_000);
    assert!(matches!(fx.refused(at, otp_capture("h1", Some("good"))), LedgerError::HoldNotOpen { .. }));
    fx.assert_audit_clean();
}

#[test]
fn refused_otp_hold_writes_no_notification() {
    let fx = Fx::standard();
    let at = t0();
    assert!(matches!(fx.refused(at, otp_hold("alice", 300, 3)), LedgerError::InsufficientPoints { .. }));
    assert!(matches!(fx.refused(at, otp_hold("alice", 0, 0)), LedgerError::InvalidArgument(_)));
    assert!(fx.store().outbox_peek(10).unwrap().is_empty());
}
