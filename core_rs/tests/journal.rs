//! The journal's storage (`journal.rs`): consecutive entries in chunks, one LMDB value each,
//! keyed by the first entry's seq; and journals written before chunks (one value per entry)
//! still read and continue.
mod common;

use common::*;
use pypoints_core::journal::{self, Chunk};
use pypoints_core::limits::JOURNAL_CHUNK_ENTRIES_MAX;
use pypoints_core::query;
use pypoints_core::store::*;

/// Every journal record as (key seq, entries in it).
fn records(store: &Store) -> Vec<(u64, usize)> {
    let txn = store.read_txn().unwrap();
    store
        .journal
        .iter(&txn)
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            let first = u64::from_be_bytes(k.try_into().unwrap());
            (first, Chunk::parse(first, v).unwrap().entries.len())
        })
        .collect()
}

/// A standard store, then one batch of `n` credits to alice (one group, several chunks).
fn with_batch(n: usize) -> (Fx, Vec<u64>) {
    let fx = Fx::standard();
    let rs = fx.engine.submit((0..n).map(|i| envelope(&format!("batch.{i}"), t0(), credit("alice", "merchant", 1 + i as i64))).collect()).unwrap();
    (fx, rs.into_iter().map(|r| r.unwrap().seq).collect())
}

#[test]
fn a_large_group_is_stored_in_chunks_of_consecutive_entries() {
    let n = 2 * JOURNAL_CHUNK_ENTRIES_MAX + 5;
    let (fx, seqs) = with_batch(n);
    let recs = records(fx.store());
    // contiguous: each record starts where the one before ended, none larger than the limit
    let mut next = 1;
    for &(first, len) in &recs {
        assert_eq!(first, next, "{recs:?}");
        assert!((1..=JOURNAL_CHUNK_ENTRIES_MAX).contains(&len), "{recs:?}");
        next = first + len as u64;
    }
    assert_eq!(next - 1, fx.journal_len());
    // the batch's 133 entries: three values, two of them full
    let batch: Vec<usize> = recs.iter().filter(|r| r.0 >= seqs[0]).map(|r| r.1).collect();
    assert_eq!(batch, [JOURNAL_CHUNK_ENTRIES_MAX, JOURNAL_CHUNK_ENTRIES_MAX, 5], "{recs:?}");
    // every entry reads by its seq, wherever it sits in its chunk
    let txn = fx.store().read_txn().unwrap();
    for seq in 1..=fx.journal_len() {
        assert_eq!(journal::entry(fx.store(), &txn, seq).unwrap().unwrap().seq, seq);
    }
    assert!(journal::entry(fx.store(), &txn, fx.journal_len() + 1).unwrap().is_none());
    drop(txn);
    // a page of the journal from the middle of a chunk, across the next chunk boundary
    let from = seqs[JOURNAL_CHUNK_ENTRIES_MAX / 2];
    let page = query::journal(fx.store(), from, JOURNAL_CHUNK_ENTRIES_MAX).unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), (from..from + JOURNAL_CHUNK_ENTRIES_MAX as u64).collect::<Vec<_>>());
    // alice's history walks back through every chunk; replays find their entries
    let (history, _) = query::history(fx.store(), "alice", Some("merchant"), n, "").unwrap();
    assert_eq!(history.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs.iter().rev().copied().collect::<Vec<_>>());
    let again = fx.ok_id("batch.70", t0(), credit("alice", "merchant", 71));
    assert!(again.replayed && again.seq == seqs[70]);
    fx.assert_audit_clean();
}

#[test]
fn a_journal_of_one_value_per_entry_still_reads_and_continues() {
    let (fx, seqs) = with_batch(JOURNAL_CHUNK_ENTRIES_MAX + 3);
    let total = fx.total("alice", "merchant");
    let len = fx.journal_len();
    let dir = fx.close();
    // Rewrite the journal as it was stored before chunks: each entry under its own seq.
    {
        let store = Store::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
        let mut txn = store.write_txn().unwrap();
        let entries: Vec<(u64, Vec<u8>)> = journal::entries_from(&store, &txn, 1).unwrap().map(|r| r.map(|(s, e)| (s, e.to_vec())).unwrap()).collect();
        store.journal.clear(&mut txn).unwrap();
        for (seq, e) in &entries {
            store.journal.put(&mut txn, &seq_key(*seq), e).unwrap();
        }
        txn.commit().unwrap();
    }
    let fx = Fx::open(dir);
    assert_eq!(records(fx.store()).len() as u64, len, "one value per entry");
    fx.assert_audit_clean();
    assert_eq!(fx.total("alice", "merchant"), total);
    let (history, _) = query::history(fx.store(), "alice", Some("merchant"), 10, "").unwrap();
    assert_eq!(history[0].seq, *seqs.last().unwrap());
    // new entries chain on from the old layout's last entry, in a chunk
    let r = fx.ok(t0(), credit("alice", "merchant", 5)).1;
    assert_eq!(r.seq, len + 1);
    assert_eq!(records(fx.store()).last(), Some(&(len + 1, 1)));
    fx.assert_audit_clean();
    let fx = fx.reopen();
    fx.ok(t0(), redeem("alice", Some("merchant"), 7));
    assert_eq!(fx.total("alice", "merchant"), total + 5 - 7);
    fx.assert_audit_clean();
}
