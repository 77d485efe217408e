//! The state log: each group commit appends the states of the accounts it changed as one
//! sorted record, and a checkpoint merges the log into the `accounts` B-tree. Readers see the
//! newest state wherever it lives; a crash before a checkpoint loses nothing.
mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;

use common::*;
use pypoints_core::engine::Engine;
use pypoints_core::ledger::{Ledger, MergePolicy};
use pypoints_core::limits::STATE_LOG_GROUPS_MAX;
use pypoints_core::command::{Command, Entry};
use pypoints_core::error::LedgerError;
use pypoints_core::model::*;
use pypoints_core::store::*;

fn blob_of(map: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    let entries: Vec<(&[u8], &[u8])> = map.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    StateLogBlob::encode(&entries)
}

/// A record as written before filters (version 1): `u8 1 | u32 count | index | u32 end | data`.
fn unfiltered_blob_of(map: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    let index = 5 + 8 * map.len() + 4;
    let mut out = vec![1u8];
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    out.resize(index, 0);
    for (i, (k, v)) in map.iter().enumerate() {
        let at = 5 + 8 * i;
        let key_at = out.len() as u32;
        out.extend_from_slice(k);
        let value_at = out.len() as u32;
        out.extend_from_slice(v);
        out[at..at + 4].copy_from_slice(&key_at.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&value_at.to_le_bytes());
    }
    let end = out.len() as u32;
    out[index - 4..index].copy_from_slice(&end.to_le_bytes());
    out
}

proptest! {
    /// Both layouts: records with a filter, and records written before filters (version 1).
    #[test]
    fn a_log_record_finds_every_account_it_holds_and_no_other(
        map in prop::collection::btree_map(prop::collection::vec(any::<u8>(), 1..20), prop::collection::vec(any::<u8>(), 0..50), 0..60),
        probes in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..20), 0..20),
    ) {
        for blob in [blob_of(&map), unfiltered_blob_of(&map)] {
            prop_assert_eq!(StateLogBlob::len(&blob).unwrap(), map.len());
            let all: Vec<(Vec<u8>, Vec<u8>)> = StateLogBlob::entries(&blob).unwrap().into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(all, map.clone().into_iter().collect::<Vec<_>>());
            if blob[0] == 1 {
                prop_assert!(map.keys().chain(&probes).all(|k| StateLogBlob::may_hold(&blob, k).unwrap()), "no filter: any key may be there");
            }
            for (k, v) in &map {
                prop_assert_eq!(StateLogBlob::find(&blob, k).unwrap(), Some(v.as_slice()));
            }
            for p in &probes {
                prop_assert_eq!(StateLogBlob::find(&blob, p).unwrap(), map.get(p).map(|v| v.as_slice()));
            }
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
    // the index follows the header (version, count, filter blocks) and the filter
    let index = 9 + 64 * u32::from_le_bytes(blob[5..9].try_into().unwrap()) as usize;
    let mut swapped = blob.clone();
    swapped.copy_within(index + 8..index + 12, index); // entry 0 starts where entry 1 does
    assert!(StateLogBlob::entries(&swapped).is_err());
    let mut past_the_end = blob.clone();
    past_the_end[5..9].copy_from_slice(&u32::MAX.to_le_bytes()); // a filter longer than the record
    assert!(StateLogBlob::find(&past_the_end, b"bob/a").is_err());
    assert!(StateLogBlob::entries(&past_the_end).is_err());
}


#[test]
fn a_record_filter_never_rules_out_a_key_it_holds_and_rules_out_most_it_lacks() {
    // keys as the writer logs them: tagged member accounts and command ids
    let map: BTreeMap<Vec<u8>, Vec<u8>> = (0..5_000)
        .flat_map(|i| [format!("am{i}/points"), format!("ic.{i:012}")])
        .map(|k| (k.into_bytes(), 7u64.to_be_bytes().to_vec()))
        .collect();
    let blob = blob_of(&map);
    assert!(map.keys().all(|k| StateLogBlob::may_hold(&blob, k).unwrap()));
    let lacking: Vec<String> = (0..20_000).map(|i| format!("am{}/points", 10_000 + i)).chain((0..20_000).map(|i| format!("ir.{i:012}"))).collect();
    let passed = lacking.iter().filter(|k| StateLogBlob::may_hold(&blob, k.as_bytes()).unwrap()).count();
    // 12 bits per key, 8 probes in a 512-bit block: about 0.5% in theory
    assert!(passed < lacking.len() / 50, "{passed} of {} lacking keys passed the filter", lacking.len());
    assert!(lacking.iter().all(|k| StateLogBlob::find(&blob, k.as_bytes()).unwrap().is_none()));
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
    // a record per group, so that small groups fill the log's record bound
    let fx = Fx::standard_with(Fx::record_per_group());
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
        // small groups share the newest record (STATE_LOG_FOLD_ENTRIES_MAX)
        assert_eq!(log_records(&store), 1);
    }
    let engine = Engine::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
    let b = pypoints_core::query::balances(&engine.store, "bob", Some("internal"), t0()).unwrap();
    assert_eq!(b[0].total, 600 - 150);
    let r = pypoints_core::audit::audit(&engine.store).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    // The commands' idempotency records were only in the log: the reopened writer still knows
    // every id (its Bloom filter reads the log too), so a retry is a replay, not a second credit.
    assert!(engine.store.idempotency.get(&engine.store.read_txn().unwrap(), b"crash.1").unwrap().is_none(), "still in the log");
    let again = engine.submit_one(envelope("crash.1", t0(), credit("bob", "internal", 200))).unwrap();
    assert!(again.replayed);
    let e = engine.submit_one(envelope("crash.1", t0(), credit("bob", "internal", 201))).unwrap_err();
    assert!(matches!(e, LedgerError::IdempotencyConflict(_)), "{e:?}");
    assert_eq!(pypoints_core::query::entries_of(&engine.store, "crash.r2").unwrap()[0].amount, 50);
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

// ----- the rolling merge (the log moves into the B-trees a key range per group commit) -----

const MEMBERS: usize = 12;

fn member(i: usize) -> String {
    format!("m{i:02}")
}

/// A store with MEMBERS members of programme "tel", closed (so its log is empty).
fn members_store() -> tempfile::TempDir {
    let fx = Fx::standard();
    for i in 0..MEMBERS {
        fx.ok(t0(), open_member(&member(i), "tel"));
    }
    fx.close()
}

/// Commit one group the way the writer does; returns whether a merge or checkpoint completed.
fn group(store: &Store, ledger: &mut Ledger, cmds: &[(String, Command)]) -> bool {
    let mut txn = store.write_txn().unwrap();
    for (id, cmd) in cmds {
        ledger.apply(&mut txn, &envelope(id, t0(), cmd.clone())).unwrap();
    }
    let done = ledger.flush_group(&mut txn).unwrap();
    txn.commit().unwrap();
    done
}

fn reader_total(store: &Store, m: &str) -> i64 {
    pypoints_core::query::balances(store, m, Some("internal"), t0()).unwrap()[0].total
}

/// A writer's ledger (no engine thread) over a fresh store of MEMBERS members, merging by `policy`.
fn members_ledger(policy: MergePolicy) -> (tempfile::TempDir, Store, Ledger) {
    let dir = members_store();
    let store = Store::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
    let mut ledger = Ledger::open(store.clone()).unwrap();
    ledger.merge_policy = policy;
    (dir, store, ledger)
}

/// Every member's balance, as a reader sees it, is `want(member index)`.
fn assert_reader_totals(store: &Store, want: impl Fn(usize) -> i64) {
    for i in 0..MEMBERS {
        assert_eq!(reader_total(store, &member(i)), want(i), "member {i}");
    }
}

/// A crash now (no closing checkpoint) loses nothing: a writer opened on the same directory sees
/// every member's balance in `want`, carries on with one more credit of `n` to member `i`, and
/// the audit passes.
fn reopen_after_a_crash_and_carry_on(dir: &tempfile::TempDir, want: &[i64], i: usize, n: i64) {
    let engine = Engine::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
    for (m, w) in want.iter().enumerate() {
        assert_eq!(reader_total(&engine.store, &member(m)), *w, "member {m} after reopening");
    }
    engine.submit_one(envelope("after", t0(), credit(&member(i), "internal", n))).unwrap();
    assert_eq!(reader_total(&engine.store, &member(i)), want[i] + n);
    let r = pypoints_core::audit::audit(&engine.store).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
}

#[test]
fn a_rolling_merge_writes_the_log_into_the_btree_a_slice_per_group_then_drops_the_merged_records() {
    // A merge starts once 3 records are logged and merges a key per state a group logs: 25
    // (12 accounts, 12 command ids, issuance) a group.
    let (dir, store, mut ledger) = members_ledger(MergePolicy { at_entries: usize::MAX, at_groups: 3, slice_min: 13, slice_per_state: 1, fold_entries_max: 0, ..Default::default() });
    let mut want = vec![0i64; MEMBERS];
    let mut merged_at = None;
    for g in 0..12 {
        // every group credits every member: each record holds all MEMBERS accounts + issuance
        let cmds: Vec<(String, Command)> = (0..MEMBERS).map(|i| (format!("g{g}.{i}"), credit(&member(i), "internal", 1 + g))).collect();
        for w in want.iter_mut() {
            *w += 1 + g;
        }
        let done = group(&store, &mut ledger, &cmds);
        // readers see every committed state at every step of the merge
        for (i, w) in want.iter().enumerate() {
            assert_eq!(reader_total(&store, &member(i)), *w, "group {g} member {i}");
        }
        let r = pypoints_core::audit::audit(&store).unwrap();
        assert!(r.problems.is_empty(), "group {g}: {:#?}", r.problems);
        if done && merged_at.is_none() {
            merged_at = Some(g);
            // The first 3 records (49 keys: 12 members, issuance and the 36 command ids) were
            // merged over 2 groups (the start group included) and dropped: what is left is the
            // records of the groups since.
            assert!(log_records(&store) <= 4, "{} records left", log_records(&store));
            // The B-tree holds a state at least as new as the merged records for every member.
            for i in 0..MEMBERS {
                let b = raw_account(&store, &member_account(&member(i), "internal")).unwrap().b;
                assert!(b >= (1..=3).sum::<i64>(), "member {i}: {b}");
            }
            // and the idempotency records of the merged groups, in their own B-tree
            let txn = store.read_txn().unwrap();
            for id in (0..3).flat_map(|g| (0..MEMBERS).map(move |i| format!("g{g}.{i}"))) {
                assert!(store.idempotency.get(&txn, id.as_bytes()).unwrap().is_some(), "{id} merged");
            }
        }
    }
    let g = merged_at.expect("a merge completed");
    assert_eq!(g, 2 + 1, "starts at the 3rd group, 2 steps");
    // Bounded: merges keep the log well under the hard limit that forces a full checkpoint.
    assert!(log_records(&store) as usize <= 3 + 4);
    drop(ledger);
    drop(store);
    reopen_after_a_crash_and_carry_on(&dir, &want, 0, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For random group sizes, members and merge policies: after every group, readers see
    /// exactly the model's balances, the audit passes, and the log stays bounded; after a
    /// crash (no closing checkpoint) a new writer continues from the same state.
    #[test]
    fn rolling_merges_never_change_what_readers_see(
        groups in prop::collection::vec(prop::collection::vec((0..MEMBERS, 1i64..50, any::<bool>()), 1..8), 1..24),
        at_entries in 1usize..40,
        at_groups in 1usize..6,
        slice_min in 1usize..6,
        slice_per_state in 0usize..3,
        // 0: a record per group; otherwise small groups fold into the newest record
        fold_entries_max in prop_oneof![Just(0usize), 1usize..40],
        // small: accounts are logged in full (head and state) after a few entries
        read_chain_entries_max in 0u32..4,
    ) {
        let (dir, store, mut ledger) = members_ledger(MergePolicy { at_entries, at_groups, slice_min, slice_per_state, fold_entries_max, read_chain_entries_max, ..Default::default() });
        let mut want = vec![0i64; MEMBERS];
        let mut id = 0;
        for cmds in &groups {
            let mut batch = vec![];
            for &(i, n, spend) in cmds {
                id += 1;
                // a redeem only when the model says it succeeds (a refusal is not the point here)
                if spend && want[i] >= n {
                    want[i] -= n;
                    batch.push((format!("p{id}"), redeem(&member(i), Some("internal"), n)));
                } else {
                    want[i] += n;
                    batch.push((format!("p{id}"), credit(&member(i), "internal", n)));
                }
            }
            group(&store, &mut ledger, &batch);
            for (i, w) in want.iter().enumerate() {
                prop_assert_eq!(reader_total(&store, &member(i)), *w);
            }
            // a cycle merges at most 14 keys (12 members, issuance, redemption), at least 1 per group
            prop_assert!(log_records(&store) as usize <= at_groups.max(15) + 15);
        }
        let r = pypoints_core::audit::audit(&store).unwrap();
        prop_assert!(r.problems.is_empty(), "{:#?}", r.problems);
        drop(ledger);
        drop(store);
        // (its asserts panic; proptest reports and shrinks a panicking case like a failed one)
        reopen_after_a_crash_and_carry_on(&dir, &want, 3, 2);
    }
}

#[test]
fn an_idle_writer_finishes_a_rolling_merge_in_small_commits_of_its_own() {
    let dir = members_store();
    // Merges start at 2 records and every slice is 1 key: the second group commit merges one
    // of the 13 keys, the writer's idle steps must do the rest.
    let policy = MergePolicy { at_entries: usize::MAX, at_groups: 2, slice_min: 1, slice_per_state: 0, fold_entries_max: 0, ..Default::default() };
    let engine = Engine::open_with(dir.path(), MAP_SIZE, Durability::Sync, policy).unwrap();
    for g in 0..2 {
        let cmds = (0..MEMBERS).map(|i| envelope(&format!("g{g}.{i}"), t0(), credit(&member(i), "internal", 5))).collect();
        assert!(engine.submit(cmds).unwrap().iter().all(|r| r.is_ok()));
    }
    // The idle writer merges key by key and drops both records.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while log_records(&engine.store) > 0 {
        assert!(std::time::Instant::now() < deadline, "the idle writer did not finish the merge");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let stats: BTreeMap<_, _> = engine.stats.snapshot().into_iter().collect();
    assert!(stats["checkpoints"] >= 1, "{stats:?}");
    for i in 0..MEMBERS {
        assert_eq!(raw_account(&engine.store, &member_account(&member(i), "internal")).unwrap().b, 10);
        assert_eq!(reader_total(&engine.store, &member(i)), 10);
    }
    let r = pypoints_core::audit::audit(&engine.store).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
}

#[test]
fn a_checkpoint_request_writes_the_log_back_after_the_batches_queued_before_it() {
    let dir = members_store();
    // No merge ever starts on its own: only the request empties the log.
    let policy = MergePolicy { at_entries: usize::MAX, at_groups: usize::MAX, fold_entries_max: 0, ..Default::default() };
    let engine = Engine::open_with(dir.path(), MAP_SIZE, Durability::Sync, policy).unwrap();
    let queued: Vec<_> = (0..3)
        .map(|g| engine.submit_async((0..MEMBERS).map(|i| envelope(&format!("q{g}.{i}"), t0(), credit(&member(i), "internal", 5))).collect()).unwrap())
        .collect();
    engine.checkpoint().unwrap();
    // The request came after the three batches: they are durable and written back.
    assert_eq!(log_records(&engine.store), 0);
    for p in queued {
        assert!(p.wait().unwrap().iter().all(|r| r.is_ok()));
    }
    let stats: BTreeMap<_, _> = engine.stats.snapshot().into_iter().collect();
    assert_eq!(stats["checkpoints"], 1, "{stats:?}");
    for i in 0..MEMBERS {
        assert_eq!(raw_account(&engine.store, &member_account(&member(i), "internal")).unwrap().b, 15);
        assert_eq!(reader_total(&engine.store, &member(i)), 15);
    }
    // An empty log checkpoints to nothing; the writer carries on.
    engine.checkpoint().unwrap();
    assert!(engine.submit(vec![envelope("after", t0(), credit(&member(0), "internal", 1))]).unwrap()[0].is_ok());
    assert_eq!(reader_total(&engine.store, &member(0)), 16);
    let r = pypoints_core::audit::audit(&engine.store).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    engine.close();
    assert!(matches!(engine.checkpoint(), Err(LedgerError::Closed)));
}

/// The writer's merge counters: (keys merged, records in the state log).
fn merge_counters(engine: &Engine) -> (u64, u64) {
    let stats: BTreeMap<_, _> = engine.stats.snapshot().into_iter().collect();
    (stats["merged_keys"], stats["log_records"])
}

#[test]
fn the_writer_merges_on_its_own_only_once_nothing_has_come_for_the_idle_wait_after_a_group() {
    // A merge starts with the first group, and groups owe it too little to take a step (no
    // share per state, steps of a million keys): only the writer's idle steps advance it.
    let policy = |idle_after| MergePolicy { at_entries: usize::MAX, at_groups: 1, slice_min: 1_000_000, slice_per_state: 0, fold_entries_max: 0, idle_after, ..Default::default() };
    let credit_all = |engine: &Engine| {
        let cmds = (0..MEMBERS).map(|i| envelope(&format!("idle.{i}"), t0(), credit(&member(i), "internal", 5))).collect();
        assert!(engine.submit(cmds).unwrap().iter().all(|r| r.is_ok()));
    };
    // A long wait: a client's next command would come well within it, so the writer leaves the
    // merge alone (4 threads of one-command batches ran 10x slower behind idle steps).
    let dir = members_store();
    let engine = Engine::open_with(dir.path(), MAP_SIZE, Durability::Sync, policy(std::time::Duration::from_secs(60))).unwrap();
    credit_all(&engine);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(merge_counters(&engine), (0, 1), "an idle step ran within the wait");
    engine.close();
    // No wait: the writer merges the log away while nothing comes.
    let dir = members_store();
    let engine = Engine::open_with(dir.path(), MAP_SIZE, Durability::Sync, policy(std::time::Duration::ZERO)).unwrap();
    credit_all(&engine);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while merge_counters(&engine).1 > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (merged, records) = merge_counters(&engine);
    assert_eq!(records, 0, "the idle writer never finished the merge");
    assert!(merged > 0);
    assert_reader_totals(&engine.store, |_| 5);
}

#[test]
fn small_commits_after_a_large_log_finish_the_merge_before_the_log_reaches_its_record_bound() {
    // Slices of 1 key: without pacing, 13 keys would take 13 groups; here the merge starts
    // with the log 3 records short of STATE_LOG_GROUPS_MAX and must keep up.
    let (_dir, store, mut ledger) = members_ledger(MergePolicy { at_entries: usize::MAX, at_groups: STATE_LOG_GROUPS_MAX - 3, slice_min: 1, slice_per_state: 0, fold_entries_max: 0, ..Default::default() });
    for g in 0..(STATE_LOG_GROUPS_MAX + 10) {
        let m = member(g % MEMBERS);
        let cmds = vec![(format!("s{g}"), credit(&m, "internal", 1))];
        group(&store, &mut ledger, &cmds);
        assert!(log_records(&store) as usize <= STATE_LOG_GROUPS_MAX, "group {g}");
    }
    assert_eq!(ledger.full_checkpoints, 0, "the log hit its record bound: a full checkpoint stalled a commit");
    assert_reader_totals(&store, |i| (0..(STATE_LOG_GROUPS_MAX + 10)).filter(|g| g % MEMBERS == i).count() as i64);
}

#[test]
fn small_groups_gather_their_merge_shares_into_steps_of_the_minimum_slice() {
    // Two large groups start a merge (49 keys); then one-credit groups (3 states each: the
    // account, the id, issuance) owe 3 keys each, merged once 12 are owed.
    let (_dir, store, mut ledger) = members_ledger(MergePolicy { at_entries: usize::MAX, at_groups: 2, slice_min: 12, slice_per_state: 1, fold_entries_max: 0, ..Default::default() });
    for g in 0..2 {
        let cmds: Vec<_> = (0..MEMBERS).map(|i| (format!("big{g}.{i}"), credit(&member(i), "internal", 1))).collect();
        group(&store, &mut ledger, &cmds);
    }
    let mut steps = vec![];
    for g in 0..4 {
        let before = ledger.merged_keys;
        group(&store, &mut ledger, &[(format!("small{g}"), credit(&member(g % MEMBERS), "internal", 1))]);
        steps.push(ledger.merged_keys - before);
    }
    // (the group that started the cycle merged its own 25 first; the 12 left end it)
    assert_eq!(steps, vec![0, 0, 0, 12], "merged per group");
    assert_reader_totals(&store, |i| 2 + (0..4).filter(|g| g % MEMBERS == i).count() as i64);
}

#[test]
fn large_commits_finish_the_merge_before_the_log_reaches_its_state_bound() {
    // A merge starts at 40 states, and the log may hold 60: slices of 1 key (no share per
    // state) would take far more groups than the 20 states of headroom allow. The pace by
    // states has each group carry its share, so no full checkpoint is ever needed.
    let entries_max = 60;
    let (_dir, store, mut ledger) = members_ledger(MergePolicy { at_entries: 40, at_groups: usize::MAX, slice_min: 1, slice_per_state: 0, fold_entries_max: 0, entries_max, ..Default::default() });
    for g in 0..40 {
        // every member in every group: 12 accounts, 12 ids, the system account
        let cmds: Vec<_> = (0..MEMBERS).map(|i| (format!("b{g}.{i}"), credit(&member(i), "internal", 1))).collect();
        group(&store, &mut ledger, &cmds);
        let (_, states) = ledger.log_size();
        assert!(states <= entries_max, "group {g}: {states} states");
    }
    assert!(ledger.merge_cycles >= 2, "merges started ({} cycles)", ledger.merge_cycles);
    assert_eq!(ledger.full_checkpoints, 0, "the log hit its state bound: a full checkpoint stalled a commit");
    assert_reader_totals(&store, |_| 40);
}

#[test]
fn small_groups_fold_into_the_newest_record_but_never_into_one_a_merge_covers() {
    // A record takes up to 12 keys by folding (its keys plus the group's, counted before they
    // merge); a merge starts at 2 records, 1 key per step.
    let (dir, store, mut ledger) = members_ledger(MergePolicy { at_entries: usize::MAX, at_groups: 2, slice_min: 1, slice_per_state: 0, fold_entries_max: 12, ..Default::default() });
    let mut want = vec![0i64; MEMBERS];
    let mut records = vec![];
    for g in 0..12usize {
        // one credit: the member's account, issuance and the command's id, 3 keys
        let m = g % MEMBERS;
        want[m] += 1 + g as i64;
        group(&store, &mut ledger, &[(format!("f{g}"), credit(&member(m), "internal", 1 + g as i64))]);
        records.push(log_records(&store));
        for (i, w) in want.iter().enumerate() {
            assert_eq!(reader_total(&store, &member(i)), *w, "group {g} member {i}");
        }
    }
    // g0 starts a record (3 keys); g1..g4 fold into it (5, 7, 9, 11 keys: members 0-4, issuance,
    // 5 ids); g5 would make 13 and starts a second record, which starts a merge covering both;
    // g6 may not fold into a covered record and starts a third; g7 and g8 fold into g6's.
    assert_eq!(&records[..9], &[1, 1, 1, 1, 1, 2, 3, 3, 3], "{records:?}");
    let r = pypoints_core::audit::audit(&store).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    drop(ledger);
    drop(store);
    reopen_after_a_crash_and_carry_on(&dir, &want, 0, 1);
}

#[test]
fn a_log_written_before_history_heads_still_reads() {
    // A store that crashed with the older log format holds member states in the log itself.
    let dir = Fx::standard().close();
    let store = Store::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
    let key = member_account("alice", "internal");
    let old = Account { v: SCHEMA_VERSION, b: 70, hd: 0, ls: 0, lots: vec![Lot { i: 9, r: 70, a: 100, e: t0(), x: None, f: t0(), s: 1, g: None }] };
    let mut txn = store.write_txn().unwrap();
    let tagged = [&[LogTag::Account as u8][..], key.as_bytes()].concat();
    let value = encode(&old);
    store.state_log.put(&mut txn, &seq_key(1), &StateLogBlob::encode(&[(&tagged[..], &value[..])])).unwrap();
    txn.commit().unwrap();
    {
        let txn = store.read_txn().unwrap();
        assert_eq!(get_account(&store, &txn, key.as_bytes()).unwrap(), Some(old.clone()));
        assert_eq!(all_accounts(&store, &txn).unwrap().get(key.as_bytes()), Some(&old));
    }
    // The writer writes such a log back at open, so no later head is folded past it.
    let ledger = Ledger::open(store.clone()).unwrap();
    assert_eq!(ledger.full_checkpoints, 1);
    let txn = store.read_txn().unwrap();
    assert_eq!(log_records(&store), 0);
    assert_eq!(get::<Account>(&store.accounts, &txn, key.as_bytes()).unwrap(), Some(old));
}

#[test]
fn a_group_logs_each_member_account_as_its_history_head_and_readers_rebuild_the_state() {
    // every member gets a different amount, so a head logged under another account's key shows
    let n = 2_049;
    let members: Vec<String> = (0..n).map(|i| format!("par{i:05}")).collect();
    let dir = Fx::standard().close();
    {
        let store = Store::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
        let mut ledger = Ledger::open(store.clone()).unwrap();
        let mut group = |cmds: Vec<(String, Command)>| {
            let mut txn = store.write_txn().unwrap();
            for (id, cmd) in cmds {
                ledger.apply(&mut txn, &envelope(&id, t0(), cmd)).unwrap();
            }
            ledger.flush_group(&mut txn).unwrap();
            txn.commit().unwrap();
        };
        group(members.iter().map(|m| (format!("open.{m}"), open_member(m, "tel"))).collect());
        group(members.iter().enumerate().map(|(i, m)| (format!("credit.{m}"), credit(m, "internal", 100 + i as i64))).collect());
        let txn = store.read_txn().unwrap();
        let (_, blob) = store.state_log.last(&txn).unwrap().unwrap();
        // the n member accounts and the issuance account, then the n command ids, in key order
        let len = StateLogBlob::len(blob).unwrap();
        assert_eq!(len, 2 * n + 1);
        let entries: Vec<(&[u8], &[u8])> = (0..len).map(|i| StateLogBlob::entry(blob, i, len).unwrap()).collect();
        assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "keys sorted and unique");
        for (i, m) in members.iter().enumerate() {
            let key = [&[LogTag::Account as u8][..], member_account(m, "internal").as_bytes()].concat();
            let value = StateLogBlob::find(blob, &key).unwrap().unwrap_or_else(|| panic!("{m} logged"));
            // the seq of the account's newest entry; readers fold its entries' effects from there
            let head = u64::from_be_bytes(value.try_into().unwrap_or_else(|_| panic!("{m}: an 8-byte head")));
            let a = get_account(&store, &txn, member_account(m, "internal").as_bytes()).unwrap().unwrap();
            assert_eq!((a.b, a.lots.len(), a.ls), (100 + i as i64, 1, head), "{m}");
            let e: Entry = pypoints_core::journal::entry(&store, &txn, head).unwrap().unwrap();
            assert_eq!(e.id, format!("credit.{m}"));
            let id = [&[LogTag::Idem as u8][..], format!("credit.{m}").as_bytes()].concat();
            let rec: IdemRecord = decode(StateLogBlob::find(blob, &id).unwrap().unwrap_or_else(|| panic!("credit.{m} logged"))).unwrap();
            assert_eq!(rec.n, 1, "{m}");
        }
        assert_eq!(blob, StateLogBlob::encode(&entries).as_slice());
    }
    let engine = Engine::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
    let b = pypoints_core::query::balances(&engine.store, &members[n - 1], Some("internal"), t0()).unwrap();
    assert_eq!(b[0].total, 100 + n as i64 - 1);
    let r = pypoints_core::audit::audit(&engine.store).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
}

/// The newest value the state log holds for account `key`.
fn newest_logged(store: &Store, key: &str) -> Option<Vec<u8>> {
    let txn = store.read_txn().unwrap();
    let tagged = [&[LogTag::Account as u8][..], key.as_bytes()].concat();
    for item in store.state_log.rev_iter(&txn).unwrap() {
        let (_, blob) = item.unwrap();
        if let Some(v) = StateLogBlob::find(blob, &tagged).unwrap() {
            return Some(v.to_vec());
        }
    }
    None
}

#[test]
fn a_hot_account_is_logged_in_full_once_its_chain_since_the_checkpoint_is_long() {
    use pypoints_core::limits::READ_CHAIN_ENTRIES_MAX;
    // no merge: every group appends a record, and the chain only grows
    let fx = Fx::standard_with(MergePolicy { at_entries: usize::MAX, at_groups: usize::MAX, slice_min: 1, slice_per_state: 0, fold_entries_max: 0, ..Default::default() });
    let key = member_account("alice", "merchant");
    let k = READ_CHAIN_ENTRIES_MAX as i64;
    let mut total = fx.total("alice", "merchant");
    // two credits per group (one submission is one group), so the bound is passed well before
    // the log's record bound forces a checkpoint
    for g in 1..=k {
        let rs = fx.engine.submit(vec![envelope(&format!("hot.{g}.a"), t0(), credit("alice", "merchant", g)), envelope(&format!("hot.{g}.b"), t0(), credit("alice", "merchant", 1))]).unwrap();
        let seq = rs[1].as_ref().unwrap().seq;
        total += g + 1;
        let v = newest_logged(fx.store(), &key).unwrap();
        assert_eq!(&v[..8], &seq.to_be_bytes(), "group {g}: the head comes first");
        if v.len() > 8 {
            // the state as of the head, which readers take without walking the chain
            let a: Account = decode(&v[8..]).unwrap();
            assert_eq!((a.b, a.ls), (total, seq), "group {g}");
        }
        // heads only while the chain is short; head and state once it passed the bound
        assert_eq!(v.len() > 8, 2 * g > k, "group {g}: {} bytes", v.len());
        assert_eq!(fx.total("alice", "merchant"), total);
    }
    fx.assert_audit_clean();
    // After a checkpoint (a clean close) the chain starts over.
    let fx = fx.reopen();
    assert!(newest_logged(fx.store(), &key).is_none());
    fx.ok(t0(), credit("alice", "merchant", 1));
    assert_eq!(newest_logged(fx.store(), &key).unwrap().len(), 8);
    assert_eq!(fx.total("alice", "merchant"), total + 1);
    fx.assert_audit_clean();
}
