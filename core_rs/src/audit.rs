//! Independent verification of a data directory (RK-8 "ledger imbalance"): recomputes everything
//! from the journal in one read snapshot and reports every disagreement.
use std::collections::{BTreeMap, HashMap};

use crate::command::Entry;
use crate::error::Result;
use crate::journal;
use crate::model::*;
use crate::store::*;

#[derive(Debug, Default, Clone)]
pub struct AuditReport {
    pub entries: u64,
    pub accounts: u64,
    pub problems: Vec<String>,
}

pub fn audit(store: &Store) -> Result<AuditReport> {
    let txn = store.read_txn()?;
    let mut r = AuditReport::default();
    let mut posted: HashMap<AcctKey, i64> = HashMap::new();
    // Every member account rebuilt from its entries' effects (None once an entry predates them).
    let mut folded: Option<HashMap<AcctKey, Account>> = Some(HashMap::new());
    let mut prev = vec![0u8; 32];
    let mut expect_seq = 1u64;
    for item in journal::entries_from(store, &txn, 1)? {
        let (seq, v) = match item {
            Ok(x) => x,
            Err(err) => {
                r.problems.push(format!("journal: {err}"));
                continue;
            }
        };
        let mut e: Entry = match decode(v) {
            Ok(e) => e,
            Err(err) => {
                r.problems.push(format!("journal entry {seq}: {err}"));
                continue;
            }
        };
        r.entries += 1;
        // (`seq` is the entry's place in its chunk)
        if e.seq != expect_seq || e.seq != seq {
            r.problems.push(format!("journal entry {} out of sequence (expected {expect_seq})", e.seq));
        }
        expect_seq = e.seq + 1;
        if e.ph != prev {
            r.problems.push(format!("hash chain broken at entry {}: previous hash does not match", e.seq));
        }
        let h = std::mem::take(&mut e.h);
        if e.compute_hash() != h {
            r.problems.push(format!("entry {} was altered: its hash does not match its content", e.seq));
        }
        prev = h;
        for p in &e.po {
            if p.n <= 0 {
                r.problems.push(format!("entry {} posts a non-positive amount", e.seq));
            }
            *posted.entry(p.from.clone()).or_default() -= p.n;
            *posted.entry(p.to.clone()).or_default() += p.n;
        }
        match (&e.fx, folded.as_mut()) {
            (Some(fx), Some(accounts)) => {
                for f in fx {
                    // An account's effects sit on its own history chain (its `links`), so its
                    // state can be rebuilt by walking that chain alone.
                    if !e.links.iter().any(|l| l.acct == f.a) {
                        r.problems.push(format!("entry {} changes account {} but is not in its history", e.seq, f.a));
                    }
                    if let Err(why) = accounts.entry(f.a.clone()).or_default().apply_effect(f) {
                        r.problems.push(format!("entry {} does not fit account {}: it {why}", e.seq, f.a));
                    }
                }
            }
            (None, Some(_)) => folded = None,
            (_, None) => {}
        }
    }
    // Every acknowledged command id must still find its entries (a deleted tail entry that
    // posted nothing would otherwise go unnoticed), and no entry may lack its id record.
    let mut recorded = 0u64;
    for (k, v) in all_logged(store, &txn, LogTag::Idem)? {
        let id = String::from_utf8_lossy(k).into_owned();
        let rec: IdemRecord = decode(v)?;
        recorded += rec.n as u64;
        for s in rec.seq..rec.seq + rec.n as u64 {
            match journal::entry(store, &txn, s)? {
                Some(e) if e.id == id => {}
                Some(e) => r.problems.push(format!("command {id:?} points at entry {s}, which belongs to {:?}", e.id)),
                None => r.problems.push(format!("command {id:?} points at entry {s}, which is missing from the journal")),
            }
        }
    }
    if recorded != r.entries {
        r.problems.push(format!("the journal holds {} entries but command records account for {recorded}", r.entries));
    }
    // Σ per (programme, point type) over every account must be zero.
    let mut sums: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut programme_of: HashMap<String, String> = HashMap::new();
    let mut held_by_type: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (k, a) in all_accounts(store, &txn)? {
        let key = String::from_utf8_lossy(k).into_owned();
        r.accounts += 1;
        let p = posted.remove(key.as_str()).unwrap_or(0);
        if p != a.b {
            r.problems.push(format!("account {key}: balance {} but its postings sum to {p}", a.b));
        }
        let parts = split_account(&key);
        let (programme, t) = if is_system_account(&key) {
            (parts[0].to_string(), parts[2].to_string())
        } else {
            let lots: i64 = a.lots.iter().map(|l| l.r).sum();
            if lots != a.b {
                r.problems.push(format!("account {key}: balance {} but its lots hold {lots}", a.b));
            }
            if a.lots.iter().any(|l| l.r <= 0 || l.r > l.a) {
                r.problems.push(format!("account {key}: a lot has remaining outside 1..=amount"));
            }
            if let Some(accounts) = folded.as_mut() {
                let f = accounts.remove(key.as_str()).unwrap_or_default();
                if (f.b, f.hd) != (a.b, a.hd) {
                    r.problems.push(format!("account {key}: balance {} held {} but its entries' effects give {} and {}", a.b, a.hd, f.b, f.hd));
                }
                if f.lots != a.lots {
                    r.problems.push(format!("account {key}: its lots differ from what its entries' effects give"));
                }
            }
            let m = parts[0].to_string();
            let prog = match programme_of.get(&m) {
                Some(p) => p.clone(),
                None => match get::<Member>(&store.members, &txn, m.as_bytes())? {
                    Some(mm) => {
                        programme_of.insert(m.clone(), mm.programme.clone());
                        mm.programme
                    }
                    None => {
                        r.problems.push(format!("account {key}: no such member"));
                        continue;
                    }
                },
            };
            (prog, parts[1].to_string())
        };
        if is_system_account(&key) && parts[1] == SystemAccount::Holds.name() {
            *held_by_type.entry((programme.clone(), t.clone())).or_default() += a.b;
        }
        *sums.entry((programme, t)).or_default() += a.b;
    }
    for (key, f) in folded.into_iter().flatten() {
        if f != Account::default() {
            r.problems.push(format!("account {key}: its entries' effects give it points or lots, but the account is missing"));
        }
    }
    for (key, p) in posted {
        if p != 0 {
            r.problems.push(format!("account {key}: postings sum to {p} but the account is missing"));
        }
    }
    for ((prog, t), s) in &sums {
        if *s != 0 {
            r.problems.push(format!("programme {prog} point type {t}: accounts sum to {s}, not 0"));
        }
    }
    // Open holds must account for exactly what the holds accounts hold.
    let mut open: BTreeMap<(String, String), i64> = BTreeMap::new();
    for item in store.holds.iter(&txn)? {
        let (_, v) = item?;
        let h: Hold = decode(v)?;
        if h.state == HoldState::Open {
            for c in &h.consumed {
                *open.entry((h.programme.clone(), c.t.to_string())).or_default() += c.n;
            }
        }
    }
    for (k, n) in &held_by_type {
        let o = open.remove(k).unwrap_or(0);
        if o != *n {
            r.problems.push(format!("programme {} point type {}: holds account {n} but open holds {o}", k.0, k.1));
        }
    }
    for (k, o) in open {
        r.problems.push(format!("programme {} point type {}: open holds {o} without a holds account", k.0, k.1));
    }
    audit_cards(store, &txn, &mut r)?;
    Ok(r)
}

/// Every card record names a member that lists the card, and every card a member lists has its
/// record naming that member (a card identifies exactly one member).
fn audit_cards(store: &Store, txn: &heed::RoTxn<'_, heed::WithoutTls>, r: &mut AuditReport) -> Result<()> {
    let mut listed: BTreeMap<String, String> = BTreeMap::new();
    for item in store.members.iter(txn)? {
        let (_, v) = item?;
        let m: Member = decode(v)?;
        for c in m.cards {
            if let Some(other) = listed.insert(c.clone(), m.id.clone()) {
                r.problems.push(format!("card {c} is listed by members {other:?} and {:?}", m.id));
            }
        }
    }
    for item in store.cards.iter(txn)? {
        let (k, v) = item?;
        let c: Card = decode(v)?;
        if k != c.card.as_bytes() {
            r.problems.push(format!("card record {:?} holds card {}", String::from_utf8_lossy(k), c.card));
        }
        match listed.remove(&c.card) {
            Some(m) if m == c.member => {}
            Some(m) => r.problems.push(format!("card {} is bound to {:?} but listed by {m:?}", c.card, c.member)),
            None => r.problems.push(format!("card {} is bound to {:?}, which does not list it", c.card, c.member)),
        }
    }
    for (c, m) in listed {
        r.problems.push(format!("member {m:?} lists card {c}, which has no card record"));
    }
    Ok(())
}
