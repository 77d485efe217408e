//! The state log: each group commit appends the states of the accounts it changed as one
//! sorted record, and a checkpoint merges the log into the `accounts` B-tree. Readers see the
//! newest state wherever it lives; a crash before a checkpoint loses nothing.
mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;

use common::*;
use pypoints_core::engine::Engine;
use pypoints_core::ledger::Ledger;
use pypoints_core::limits::STATE_LOG_GROUPS_MAX;
use pypoints_core::model::*;
use pypoints_core::store::*;

fn blob_of(map: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    let entries: Vec<(&[u8], &[u8])> = map.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    StateLogBlob::encode(&entries)
}

proptest! {
    #[test]
    fn a_log_record_finds_every_account_it_holds_and_no_other(
        map in prop::collection::btree_map(prop::collection::vec(any::<u8>(), 1..20), prop::collection::vec(any::<u8>(), 0..50), 0..60),
        probes in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..20), 0..20),
    ) {
        let blob = blob_of(&map);
        prop_assert_eq!(StateLogBlob::len(&blob).unwrap(), map.len());
        let all: Vec<(Vec<u8>, Vec<u8>)> = StateLogBlob::entries(&blob).unwrap().into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        prop_assert_eq!(all, map.clone().into_iter().collect::<Vec<_>>());
        for (k, v) in &map {
            prop_assert_eq!(StateLogBlob::find(&blob, k).unwrap(), Some(v.as_slice()));
        }
        for p in probes {
            prop_assert_eq!(StateLogBlob::find(&blob, &p).unwrap(), map.get(&p).map(|v| v.as_slice()));
        }
    }
}

#[test]
fn a_damaged_log_record_is_an_error_not_a_panic() {
    let map: BTreeMap<Vec<u8>, Vec<u8>> =
        [("alice/a", "xx"), ("bob/a", "yyy"), ("carol/a", "z")].iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
    let blob = blob_of(&map);
    for cut in 0..blob.len() {
        let short = &blob[..cut];
        // Whatever a truncated record gives, it never panics; the full check refuses it.
        let _ = StateLogBlob::find(short, b"bob/a");
        let whole = StateLogBlob::entries(short);
        assert!(whole.is_err() || whole.unwrap().len() < 3, "cut at {cut}");
    }
    let mut bad_version = blob.clone();
    bad_version[0] = 9;
    assert!(StateLogBlob::find(&bad_version, b"bob/a").is_err());
    let mut swapped = blob.clone();
    swapped[5..9].copy_from_slice(&blob[13..17]); // entry 0 starts where entry 1 does
    assert!(StateLogBlob::entries(&swapped).is_err());
}

fn raw_account(store: &Store, key: &str) -> Option<Account> {
    let txn = store.read_txn().unwrap();
    get::<Account>(&store.accounts, &txn, key.as_bytes()).unwrap()
}

fn log_records(store: &Store) -> u64 {
    let txn = store.read_txn().unwrap();
    store.state_log.len(&txn).unwrap()
}

#[test]
fn accounts_live_in_the_log_until_a_checkpoint_and_in_the_btree_after_close() {
    let fx = Fx::standard();
    fx.ok(t0(), credit("alice", "merchant", 700));
    let key = member_account("alice", "merchant");
    // Committed and visible to readers, but only in the log so far.
    assert!(raw_account(fx.store(), &key).is_none());
    assert!(log_records(fx.store()) > 0);
    assert_eq!(fx.total("alice", "merchant"), 700);
    assert_eq!(fx.account(&key).unwrap().b, 700);
    fx.assert_audit_clean();
    let dir = fx.close();
    // A clean close checkpoints: everything is in `accounts`, the log is empty.
    let store = Store::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
    assert_eq!(raw_account(&store, &key).unwrap().b, 700);
    assert_eq!(log_records(&store), 0);
}

#[test]
fn the_writer_checkpoints_when_the_log_is_full_and_reads_stay_exact() {
    let fx = Fx::standard();
    let groups = STATE_LOG_GROUPS_MAX as i64 + 5;
    for i in 0..groups {
        let m = ["alice", "bob", "carol"][i as usize % 3];
        fx.ok(t0() + i, credit(m, "internal", 10 + i));
        if i % 7 == 0 {
            fx.ok(t0() + i, redeem(m, Some("internal"), 5));
        }
    }
    let stats: BTreeMap<_, _> = fx.engine.stats.snapshot().into_iter().collect();
    assert!(stats["checkpoints"] >= 1, "{stats:?}");
    assert!(log_records(fx.store()) as usize <= STATE_LOG_GROUPS_MAX);
    let credited: i64 = (0..groups).map(|i| 10 + i).sum();
    let redeemed = 5 * (0..groups).filter(|i| i % 7 == 0).count() as i64;
    let total: i64 = ["alice", "bob", "carol"].iter().map(|m| fx.total(m, "internal")).sum();
    assert_eq!(total, credited - redeemed);
    assert_eq!(fx.sys("tel", SystemAccount::Issuance, "internal"), -credited);
    fx.assert_audit_clean();
}

#[test]
fn a_crash_before_any_checkpoint_loses_no_committed_account_state() {
    let dir = Fx::standard().close();
    {
        // Commit groups the way the writer does, then stop without the closing checkpoint.
        let store = Store::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
        let mut ledger = Ledger::open(store.clone()).unwrap();
        for (i, n) in [300, 200, 100].into_iter().enumerate() {
            let mut txn = store.write_txn().unwrap();
            ledger.apply(&mut txn, &envelope(&format!("crash.{i}"), t0(), credit("bob", "internal", n))).unwrap();
            ledger.apply(&mut txn, &envelope(&format!("crash.r{i}"), t0(), redeem("bob", None, 50))).unwrap();
            ledger.flush_group(&mut txn).unwrap();
            txn.commit().unwrap();
        }
        assert_eq!(log_records(&store), 3);
    }
    let engine = Engine::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
    let b = pypoints_core::query::balances(&engine.store, "bob", Some("internal"), t0()).unwrap();
    assert_eq!(b[0].total, 600 - 150);
    let r = pypoints_core::audit::audit(&engine.store).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    // The writer picks up where the log left off.
    engine.submit_one(envelope("after.crash", t0(), credit("bob", "internal", 1))).unwrap();
    let b = pypoints_core::query::balances(&engine.store, "bob", Some("internal"), t0()).unwrap();
    assert_eq!(b[0].total, 451);
}

#[test]
fn ex2_expire_in_the_same_group_as_a_redeem_of_the_expiring_lot() {
    // The sweep reads `accounts` in key order; the redeem before it in the same group changed
    // the lot it expires. The sweep must see the redeem, or lots and balance disagree.
    let fx = Fx::standard();
    fx.ok(t0(), credit("carol", "merchant", 1_000));
    let later = t0() + 4 * 365 * DAY;
    let rs = fx.engine.submit(vec![
        envelope("same.group.redeem", t0() + DAY, redeem("carol", Some("merchant"), 400)),
        envelope("same.group.expire", later, expire(later)),
    ]).unwrap();
    assert!(rs.iter().all(|r| r.is_ok()), "{rs:?}");
    assert_eq!(rs[1].as_ref().unwrap().amount, 600, "only what the redeem left expires");
    assert_eq!(fx.total("carol", "merchant"), 0);
    assert_eq!(fx.sys("tel", SystemAccount::Breakage, "merchant"), 600);
    fx.assert_audit_clean();
}
