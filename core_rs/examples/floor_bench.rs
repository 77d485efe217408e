//! What the 300k target needs, measured: the least work a durable credit or redeem can do on
//! this machine in the layout DESIGN.md sketches for "past 150,000" (the journal is the durable
//! truth, accounts live in memory and are checkpointed far apart, records are compact).
//! `cargo run --release --example floor_bench -- MEMBERS BATCH ROUNDS [CHECKPOINT_EVERY]`.
//!
//! Not the product: a yardstick for `writer_bench`, which times the real engine on the same
//! workload (3-5 lots per member, uniformly random members, 50k-command groups, fsync per group).
//! Per command it still does everything issue #2 asks of the ledger:
//! - idempotency: the client id is checked against every recorded id (an exact in-memory
//!   index) and recorded in the command's journal record, which the group commits;
//! - member lookup by string id, double entry (member and system account), lots (a credit adds
//!   one in FEFO order; a redeem draws FEFO and records the lots drawn), the account's history
//!   link (its previous entry);
//! - a hash-chained journal record (blake3 over the record and the previous hash);
//! - one LMDB put of the group's records, and `commit` with fsync before the group "returns".
//!
//! Every CHECKPOINT_EVERY groups the accounts dirtied since the last checkpoint are written in key
//! order to an `accounts` database (compact binary), in the same commit.
use std::time::{Duration, Instant};

use compact_str::CompactString;
use heed::types::Bytes;
use heed::PutFlags;
use pypoints_core::store::{Durability, Store};
use rustc_hash::FxHashMap;

#[derive(Clone, Copy)]
struct Lot {
    id: u64,
    left: i64,
    expires_at: i64,
}

#[derive(Default)]
struct Account {
    balance: i64,
    last_seq: u64,
    lots: Vec<Lot>,
    dirty: bool,
}

struct Ledger {
    members: FxHashMap<CompactString, u32>,
    accounts: Vec<Account>,
    ids: FxHashMap<CompactString, u64>,
    issuance: i64,
    redemption: i64,
    next_seq: u64,
    next_lot: u64,
    head: [u8; 32],
    group: Vec<u8>,
    dirty: Vec<u32>,
}

enum Cmd {
    Credit(i64),
    Redeem(i64),
}

impl Ledger {
    /// Apply one command into the group buffer; false if refused (nothing changed).
    fn apply(&mut self, id: &str, member: &str, at: i64, cmd: &Cmd) -> bool {
        if self.ids.contains_key(id) {
            return false;
        }
        let Some(&m) = self.members.get(member) else { return false };
        let seq = self.next_seq;
        let start = self.group.len();
        let a = &mut self.accounts[m as usize];
        let prev = a.last_seq;
        match *cmd {
            Cmd::Credit(n) => {
                self.next_lot += 1;
                let lot = Lot { id: self.next_lot, left: n, expires_at: at + 365 * 86_400_000 };
                let pos = a.lots.partition_point(|l| l.expires_at <= lot.expires_at);
                a.lots.insert(pos, lot);
                a.balance += n;
                self.issuance -= n;
                self.group.push(b'c');
                self.group.extend_from_slice(&lot.id.to_le_bytes());
                self.group.extend_from_slice(&lot.expires_at.to_le_bytes());
                self.group.extend_from_slice(&n.to_le_bytes());
            }
            Cmd::Redeem(n) => {
                let spendable: i64 = a.lots.iter().filter(|l| l.expires_at > at).map(|l| l.left).sum();
                if spendable < n {
                    return false;
                }
                self.group.push(b'r');
                self.group.extend_from_slice(&n.to_le_bytes());
                let mut left = n;
                for l in a.lots.iter_mut().filter(|l| l.expires_at > at) {
                    if left == 0 {
                        break;
                    }
                    let k = l.left.min(left);
                    l.left -= k;
                    left -= k;
                    // the lot drawn, with its expiry, so a refund restores it as it was
                    self.group.extend_from_slice(&l.id.to_le_bytes());
                    self.group.extend_from_slice(&l.expires_at.to_le_bytes());
                    self.group.extend_from_slice(&k.to_le_bytes());
                }
                a.lots.retain(|l| l.left > 0);
                a.balance -= n;
                self.redemption += n;
            }
        }
        a.last_seq = seq;
        if !a.dirty {
            a.dirty = true;
            self.dirty.push(m);
        }
        let g = &mut self.group;
        g.extend_from_slice(&seq.to_le_bytes());
        g.extend_from_slice(&at.to_le_bytes());
        g.extend_from_slice(&m.to_le_bytes());
        g.extend_from_slice(&prev.to_le_bytes());
        g.push(id.len() as u8);
        g.extend_from_slice(id.as_bytes());
        let mut h = blake3::Hasher::new();
        h.update(&self.head);
        h.update(&g[start..]);
        self.head = *h.finalize().as_bytes();
        g.extend_from_slice(&self.head);
        self.ids.insert(id.into(), seq);
        self.next_seq += 1;
        true
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let members: usize = args.get(1).map_or(1_000_000, |s| s.parse().unwrap());
    let batch: usize = args.get(2).map_or(50_000, |s| s.parse().unwrap());
    let rounds: usize = args.get(3).map_or(10, |s| s.parse().unwrap());
    let checkpoint_every: u64 = args.get(4).map_or(20, |s| s.parse().unwrap());
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    // The product's store (its `journal` and `accounts` databases), durable: fsync per commit.
    let store = Store::open(dir.path(), 64 << 30, Durability::Sync).unwrap();
    let (journal, accounts_db) = (store.journal, store.accounts);
    let at = 1_790_000_000_000i64;
    let day = 86_400_000i64;
    let mut l = Ledger {
        members: FxHashMap::default(),
        accounts: Vec::with_capacity(members),
        ids: FxHashMap::default(),
        issuance: 0,
        redemption: 0,
        next_seq: 1,
        next_lot: 0,
        head: [0; 32],
        group: Vec::new(),
        dirty: Vec::new(),
    };
    // The same data set as writer_bench: a big recent lot and 2-4 small older ones per member.
    for i in 0..members {
        l.members.insert(format!("m{i}").into(), i as u32);
        let mut a = Account::default();
        for (k, age) in [150i64, 120, 90, 60].iter().take(2 + i % 3).enumerate() {
            l.next_lot += 1;
            a.lots.push(Lot { id: l.next_lot, left: 100, expires_at: at - age * day + 365 * day + k as i64 });
        }
        l.next_lot += 1;
        a.lots.push(Lot { id: l.next_lot, left: 100_000, expires_at: at - 10 * day + 365 * day });
        a.balance = a.lots.iter().map(|x| x.left).sum();
        l.issuance -= a.balance;
        l.accounts.push(a);
    }
    println!("{members} members in memory");
    let mut rng = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut groups = 0u64;
    for kind in ["credit", "redeem"] {
        let (mut apply_t, mut commit_t, mut total) = (Duration::ZERO, Duration::ZERO, 0usize);
        for round in 0..rounds {
            // inputs as the engine receives them: owned strings per command
            let cmds: Vec<(String, String, Cmd)> = (0..batch)
                .map(|_| {
                    let r = next();
                    let m = format!("m{}", r as usize % members);
                    let amount = 10 + (r >> 32) as i64 % 491;
                    (format!("{:016x}", next()), m, if kind == "credit" { Cmd::Credit(amount) } else { Cmd::Redeem(150 + amount % 101) })
                })
                .collect();
            let t0 = Instant::now();
            let ok = cmds.iter().filter(|(id, m, c)| l.apply(id, m, at + round as i64, c)).count();
            let t1 = Instant::now();
            let mut wtxn = store.write_txn().unwrap();
            journal.put_with_flags(&mut wtxn, PutFlags::APPEND, &l.next_seq.to_be_bytes(), &l.group).unwrap();
            l.group.clear();
            groups += 1;
            if groups.is_multiple_of(checkpoint_every) {
                let mut dirty = std::mem::take(&mut l.dirty);
                dirty.sort_unstable();
                let mut value = Vec::with_capacity(128);
                let mut cursor = accounts_db.iter_mut(&mut wtxn).unwrap();
                for m in dirty {
                    let a = &mut l.accounts[m as usize];
                    a.dirty = false;
                    value.clear();
                    value.extend_from_slice(&a.balance.to_le_bytes());
                    value.extend_from_slice(&a.last_seq.to_le_bytes());
                    for lot in &a.lots {
                        value.extend_from_slice(&lot.id.to_le_bytes());
                        value.extend_from_slice(&lot.left.to_le_bytes());
                        value.extend_from_slice(&lot.expires_at.to_le_bytes());
                    }
                    // SAFETY: nothing borrowed from the database is alive across the put.
                    unsafe { cursor.put_current_with_options::<Bytes>(PutFlags::empty(), &m.to_be_bytes(), &value).unwrap() };
                }
            }
            wtxn.commit().unwrap();
            let t2 = Instant::now();
            apply_t += t1 - t0;
            commit_t += t2 - t1;
            total += ok;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!("round {round}: {kind} {:>9.0}/s ({ok} ok) apply {:.0} ms, commit {:.0} ms", ok as f64 / (t2 - t0).as_secs_f64(), ms(t1 - t0), ms(t2 - t1));
        }
        println!(
            "{kind}: {:.0}/s over {rounds} rounds (apply {:.2} us/cmd, commit {:.2} us/cmd)",
            total as f64 / (apply_t + commit_t).as_secs_f64(),
            apply_t.as_secs_f64() * 1e6 / total as f64,
            commit_t.as_secs_f64() * 1e6 / total as f64
        );
    }
}
