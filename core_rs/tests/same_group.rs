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

#[test]
fn a_batch_larger_than_a_chunk_keeps_input_order_replays_and_refusals() {
    use pypoints_core::limits::SUBMIT_CHUNK_COMMANDS;
    // A big batch reaches the writer in chunks (pipelined with their preparation), possibly in
    // several group commits; results still come back one per command, in input order.
    let fx = Fx::standard();
    let at = t0();
    let n = 2 * SUBMIT_CHUNK_COMMANDS + 5;
    // (spread over two members: an account holds at most LOTS_PER_ACCOUNT_MAX lots)
    let member = |i: usize| ["alice", "bob"][i % 2];
    let mut cmds: Vec<_> = (0..n).map(|i| envelope(&format!("chunked.{i}"), at, credit(member(i), "merchant", 1))).collect();
    // a refusal in the second chunk, and a replay in the last of an id from the first
    cmds[SUBMIT_CHUNK_COMMANDS + 1] = envelope("chunked.bad", at, credit("nobody", "merchant", 1));
    cmds[n - 1] = envelope("chunked.0", at, credit(member(0), "merchant", 1));
    let before = fx.engine.stats.snapshot()[0].1;
    let rs = fx.engine.submit(cmds).unwrap();
    assert_eq!(rs.len(), n);
    let ok: Vec<_> = rs.iter().map(|r| r.as_ref().ok()).collect();
    assert!(matches!(rs[SUBMIT_CHUNK_COMMANDS + 1], Err(pypoints_core::error::LedgerError::UnknownMember(_))));
    for (i, r) in ok.iter().enumerate().take(n - 1) {
        if i != SUBMIT_CHUNK_COMMANDS + 1 {
            assert_eq!(r.unwrap().id, format!("chunked.{i}"), "result {i} answers command {i}");
        }
    }
    let last = ok[n - 1].unwrap();
    assert!(last.replayed && last.seq == ok[0].unwrap().seq);
    assert_eq!(fx.total("alice", "merchant") + fx.total("bob", "merchant"), (n - 2) as i64);
    assert!(fx.engine.stats.snapshot()[0].1 > before, "committed");
}
