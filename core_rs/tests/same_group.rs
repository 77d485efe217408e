//! A replay or a reversal of a command applied earlier in the same group commit reads its
//! journal entry inside the group's write transaction: it must see it, and the chain stays intact.
mod common;

use common::*;

#[test]
fn a_replay_and_a_reversal_in_the_same_group_read_the_entry_just_sealed() {
    let fx = Fx::standard();
    let at = t0();
    let rs = fx
        .engine
        .submit(vec![
            envelope("same.1", at, credit("alice", "merchant", 500)),
            envelope("same.1", at, credit("alice", "merchant", 500)),
            envelope("same.rev", at, reverse("same.1", Some(200), None)),
            envelope("same.2", at, redeem("alice", None, 100)),
            envelope("same.rev2", at, reverse("same.2", None, None)),
            envelope("same.2", at, redeem("alice", None, 100)),
        ])
        .unwrap();
    let rs: Vec<_> = rs.into_iter().map(|r| r.unwrap()).collect();
    assert!(!rs[0].replayed && rs[1].replayed, "the second is the first one's result");
    assert_eq!((rs[1].seq, rs[1].amount), (rs[0].seq, 500));
    assert_eq!(rs[2].amount, 200);
    assert_eq!(rs[4].amount, 100);
    assert!(rs[5].replayed && rs[5].seq == rs[3].seq);
    assert_eq!(fx.total("alice", "merchant"), 300);
    // Every entry is in the journal once, in order, chained (the audit checks the hashes).
    assert_eq!(fx.journal_len(), rs[4].seq);
    fx.assert_audit_clean();
    // And across a reopen the chain continues from the last committed entry.
    let fx = fx.reopen();
    fx.ok(t0(), credit("alice", "merchant", 1));
    fx.assert_audit_clean();
}
