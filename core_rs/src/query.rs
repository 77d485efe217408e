//! Reads: each runs in its own LMDB read transaction (an MVCC snapshot) and never waits for
//! the writer.
use crate::command::Entry;
use crate::error::{invalid, LedgerError, Result};
use crate::journal;
use crate::limits::*;
use crate::model::*;
use crate::store::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceView {
    pub point_type: String,
    /// Σ lots (pending and not yet swept lots included)
    pub total: i64,
    /// spendable now: effective and not expired
    pub available: i64,
    /// not yet effective (EX-7)
    pub pending: i64,
    /// held out of the account by open holds
    pub held: i64,
}

pub fn member(store: &Store, id: &str) -> Result<Member> {
    let txn = store.read_txn()?;
    get::<Member>(&store.members, &txn, id.as_bytes())?.ok_or_else(|| LedgerError::UnknownMember(id.to_string()))
}

/// Members bound to a phone (`kind` "phone"), an ID-number hash ("id_hash") or a card number
/// ("card": at most one member), by member id; at most PAGE_SIZE_MAX.
pub fn find_members(store: &Store, kind: &str, value: &str) -> Result<Vec<Member>> {
    let k = match kind {
        "phone" => "p",
        "id_hash" => "i",
        "card" => return member_by_card(store, value).map(|m| m.into_iter().collect()),
        other => return invalid(format!("find members by phone, id_hash or card, not {other:?}")),
    };
    if value.is_empty() {
        return invalid(format!("{kind} must not be empty"));
    }
    let txn = store.read_txn()?;
    let prefix = member_index_key(k, value, "");
    let mut out = vec![];
    for item in store.member_index.prefix_iter(&txn, &prefix)?.take(PAGE_SIZE_MAX) {
        let (key, _) = item?;
        let id = std::str::from_utf8(&key[prefix.len()..]).map_err(|e| LedgerError::Storage(e.to_string()))?;
        if let Some(m) = get::<Member>(&store.members, &txn, id.as_bytes())? {
            out.push(m);
        }
    }
    Ok(out)
}

/// The member a card is bound to, if any (the number is checked like at binding).
fn member_by_card(store: &Store, card: &str) -> Result<Option<Member>> {
    check_card(card)?;
    let txn = store.read_txn()?;
    let Some(c) = get::<Card>(&store.cards, &txn, card.as_bytes())? else {
        return Ok(None);
    };
    let m = get::<Member>(&store.members, &txn, c.member.as_bytes())?;
    m.map(Some).ok_or_else(|| LedgerError::Storage(format!("card {card} is bound to a missing member {:?}", c.member)))
}

pub fn programme(store: &Store, id: &str) -> Result<Programme> {
    let txn = store.read_txn()?;
    get::<Programme>(&store.programmes, &txn, id.as_bytes())?.ok_or_else(|| LedgerError::UnknownProgramme(id.to_string()))
}

pub fn hold(store: &Store, id: &str) -> Result<Hold> {
    let txn = store.read_txn()?;
    get::<Hold>(&store.holds, &txn, id.as_bytes())?.ok_or_else(|| LedgerError::UnknownHold(id.to_string()))
}

fn types_of(store: &Store, txn: &heed::RoTxn<'_, heed::WithoutTls>, member_id: &str, point_type: Option<&str>) -> Result<Vec<String>> {
    check_id("member id", member_id)?;
    let m = get::<Member>(&store.members, txn, member_id.as_bytes())?.ok_or_else(|| LedgerError::UnknownMember(member_id.to_string()))?;
    let p = get::<Programme>(&store.programmes, txn, m.programme.as_bytes())?.ok_or_else(|| LedgerError::UnknownProgramme(m.programme.clone()))?;
    match point_type {
        Some(t) => Ok(vec![p.point_type(t)?.id.clone()]),
        None => Ok(p.types.iter().map(|t| t.id.clone()).collect()),
    }
}

/// Balances of a member, one per point type in spending order (or just `point_type`).
pub fn balances(store: &Store, member_id: &str, point_type: Option<&str>, now: Ms) -> Result<Vec<BalanceView>> {
    let txn = store.read_txn()?;
    let types = types_of(store, &txn, member_id, point_type)?;
    let mut out = vec![];
    for t in types {
        let a = get_account(store, &txn, member_account(member_id, &t).as_bytes())?.unwrap_or_default();
        let avail = a.lots.iter().filter(|l| l.spendable_at(now)).map(|l| l.r).sum();
        let pending = a.lots.iter().filter(|l| l.f > now).map(|l| l.r).sum();
        out.push(BalanceView { point_type: t, total: a.b, available: avail, pending, held: a.hd });
    }
    Ok(out)
}

fn page_size(n: usize) -> Result<usize> {
    if n == 0 {
        return Ok(PAGE_SIZE_DEFAULT);
    }
    if n > PAGE_SIZE_MAX {
        return Err(LedgerError::LimitExceeded(format!("page size at most {PAGE_SIZE_MAX}")));
    }
    Ok(n)
}

/// Lots of a member (all types in spending order, FEFO within a type), paginated.
/// The page token is the position of the next lot as `type:lot_id`.
pub fn lots(store: &Store, member_id: &str, point_type: Option<&str>, size: usize, token: &str) -> Result<(Vec<(String, Lot)>, String)> {
    let size = page_size(size)?;
    let txn = store.read_txn()?;
    let types = types_of(store, &txn, member_id, point_type)?;
    let mut all = vec![];
    for t in types {
        let a = get_account(store, &txn, member_account(member_id, &t).as_bytes())?.unwrap_or_default();
        all.extend(a.lots.into_iter().map(|l| (t.clone(), l)));
    }
    let start = if token.is_empty() {
        0
    } else {
        let (t, i) = token.split_once(':').ok_or_else(|| LedgerError::InvalidArgument("bad page token".into()))?;
        let i: u64 = i.parse().map_err(|_| LedgerError::InvalidArgument("bad page token".into()))?;
        // A lot spent since the last page ends the listing at its old position.
        all.iter().position(|(lt, l)| lt == t && l.i == i).unwrap_or(all.len())
    };
    let end = (start + size).min(all.len());
    let next = all.get(end).map(|(t, l)| format!("{t}:{}", l.i)).unwrap_or_default();
    Ok((all[start..end].to_vec(), next))
}

/// Journal entries touching a member (newest first), following each account's history chain.
/// The page token lists the next seq of each chain.
pub fn history(store: &Store, member_id: &str, point_type: Option<&str>, size: usize, token: &str) -> Result<(Vec<Entry>, String)> {
    let size = page_size(size)?;
    let txn = store.read_txn()?;
    let types = types_of(store, &txn, member_id, point_type)?;
    let keys: Vec<AcctKey> = types.iter().map(|t| member_account(member_id, t)).collect();
    let mut heads: Vec<u64> = if token.is_empty() {
        keys.iter()
            .map(|k| Ok(get_account(store, &txn, k.as_bytes())?.map_or(0, |a| a.ls)))
            .collect::<Result<_>>()?
    } else {
        let h: Vec<u64> = token.split('.').map(|s| s.parse::<u64>()).collect::<std::result::Result<_, _>>().or_else(|_| invalid("bad page token"))?;
        if h.len() != keys.len() {
            return invalid("bad page token");
        }
        h
    };
    let mut out = vec![];
    while out.len() < size {
        let seq = *heads.iter().max().unwrap_or(&0);
        if seq == 0 {
            break;
        }
        // A page token is only a list of seqs: check each names an entry of that account's chain.
        let e: Entry = journal::entry(store, &txn, seq)?.ok_or_else(|| LedgerError::InvalidArgument("bad page token".into()))?;
        for (k, h) in keys.iter().zip(heads.iter_mut()) {
            if *h == seq {
                *h = e.links.iter().find(|l| l.acct == k).map(|l| l.prev).ok_or_else(|| LedgerError::InvalidArgument("bad page token".into()))?;
            }
        }
        out.push(e);
    }
    let next = if heads.iter().all(|h| *h == 0) { String::new() } else { heads.iter().map(u64::to_string).collect::<Vec<_>>().join(".") };
    Ok((out, next))
}

/// The entries written by the command with client id `id`.
pub fn entries_of(store: &Store, id: &str) -> Result<Vec<Entry>> {
    let txn = store.read_txn()?;
    let rec = get_logged::<IdemRecord>(store, &txn, LogTag::Idem, id.as_bytes())?.ok_or_else(|| LedgerError::UnknownEntry(id.to_string()))?;
    (rec.seq..rec.seq + rec.n as u64)
        .map(|s| journal::entry_known(store, &txn, s))
        .collect()
}

/// Journal entries in seq order from `from_seq`, up to `size` (for export and inspection).
pub fn journal(store: &Store, from_seq: u64, size: usize) -> Result<Vec<Entry>> {
    let size = page_size(size)?;
    let txn = store.read_txn()?;
    let mut out = vec![];
    for item in journal::entries_from(store, &txn, from_seq)? {
        let (_, v) = item?;
        out.push(decode(v)?);
        if out.len() == size {
            break;
        }
    }
    Ok(out)
}
