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

/// Entries past the first sealer chunk are sealed on the sealer thread while the writer applies
/// the rest: a replay and a reversal late in the group still read entries from its first and
/// middle chunks, and the chain runs on unbroken into the next group.
#[test]
fn a_group_of_several_sealer_chunks_reads_its_own_entries_and_keeps_the_chain() {
    use pypoints_core::ledger::Ledger;
    use pypoints_core::limits::SEAL_CHUNK_ENTRIES;
    use pypoints_core::store::{Durability, Store};
    let n = 3 * SEAL_CHUNK_ENTRIES + 7;
    let dir = Fx::standard().close();
    {
        let store = Store::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
        let mut ledger = Ledger::open(store.clone()).unwrap();
        let mut txn = store.write_txn().unwrap();
        for i in 0..n {
            let r = ledger.apply(&mut txn, &envelope(&format!("k.{i}"), t0(), credit("alice", "merchant", 10))).unwrap();
            assert!(!r.replayed);
        }
        // the first entry (sealed long ago, maybe put already) and one of the last chunk's
        let early = ledger.apply(&mut txn, &envelope("k.0", t0(), credit("alice", "merchant", 10))).unwrap();
        assert!(early.replayed && early.amount == 10);
        let late = format!("k.{}", n - 2);
        let rev = ledger.apply(&mut txn, &envelope("k.rev", t0(), reverse(&late, Some(4), None))).unwrap();
        assert_eq!(rev.amount, 4);
        let again = ledger.apply(&mut txn, &envelope(&late, t0(), credit("alice", "merchant", 10))).unwrap();
        assert!(again.replayed);
        ledger.flush_group(&mut txn).unwrap();
        txn.commit().unwrap();
    }
    let fx = Fx::open(dir);
    assert_eq!(fx.total("alice", "merchant"), 10 * n as i64 - 4);
    fx.assert_audit_clean();
    fx.ok(t0(), credit("alice", "merchant", 1));
    fx.assert_audit_clean();
}

/// A group that aborts after handing entries to the sealer leaves nothing behind: the next group
/// continues the chain from the last committed entry, with the seqs the aborted one had taken.
#[test]
fn an_aborted_group_leaves_no_sealed_entry_behind() {
    use pypoints_core::ledger::Ledger;
    use pypoints_core::limits::SEAL_CHUNK_ENTRIES;
    use pypoints_core::store::{Durability, Store};
    let dir = Fx::standard().close();
    let before;
    {
        let store = Store::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
        let mut ledger = Ledger::open(store.clone()).unwrap();
        let mut txn = store.write_txn().unwrap();
        for i in 0..2 * SEAL_CHUNK_ENTRIES + 3 {
            ledger.apply(&mut txn, &envelope(&format!("lost.{i}"), t0(), credit("bob", "merchant", 10))).unwrap();
        }
        before = store.read_txn().map(|r| pypoints_core::journal::len(&store, &r).unwrap()).unwrap();
        txn.abort();
        ledger.reload().unwrap();
        let mut txn = store.write_txn().unwrap();
        let r = ledger.apply(&mut txn, &envelope("kept", t0(), credit("bob", "merchant", 7))).unwrap();
        assert_eq!(r.seq, before + 1, "the aborted group's seqs are taken again");
        ledger.flush_group(&mut txn).unwrap();
        txn.commit().unwrap();
    }
    let fx = Fx::open(dir);
    assert_eq!(fx.total("bob", "merchant"), 7);
    assert_eq!(fx.journal_len(), before + 1);
    fx.assert_audit_clean();
}

#[test]
fn a_part_that_promises_more_is_committed_when_none_comes() {
    use pypoints_core::limits::SUBMIT_FOLLOW_WAIT_MS;
    let fx = Fx::standard();
    let groups = |fx: &Fx| fx.engine.stats.snapshot().iter().find(|(k, _)| *k == "groups").unwrap().1;
    let before = groups(&fx);
    // two parts of one batch: one group
    let first = fx.engine.submit_async_part(vec![envelope("part.1", t0(), credit("alice", "merchant", 5))], true).unwrap();
    let second = fx.engine.submit_async_part(vec![envelope("part.2", t0(), credit("alice", "merchant", 7))], false).unwrap();
    assert!(first.wait().unwrap()[0].is_ok() && second.wait().unwrap()[0].is_ok());
    assert_eq!(groups(&fx), before + 1);
    // a part whose caller never sends the next: committed once the writer stops waiting
    let t = std::time::Instant::now();
    let lone = fx.engine.submit_async_part(vec![envelope("part.3", t0(), credit("alice", "merchant", 1))], true).unwrap();
    assert!(lone.wait().unwrap()[0].is_ok());
    assert!(t.elapsed() >= std::time::Duration::from_millis(SUBMIT_FOLLOW_WAIT_MS));
    assert_eq!(groups(&fx), before + 2);
    assert_eq!(fx.total("alice", "merchant"), 13);
    fx.assert_audit_clean();
}
