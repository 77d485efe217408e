//! The LMDB environment: one per data directory, opened once per process, named databases.
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{LedgerError, Result};
use crate::limits::*;

pub type Db = Database<'static, Bytes, Bytes>;

/// Names of the named databases, as `mdb_stat -a` lists them.
pub const DB_NAMES: [&str; 8] =
    ["meta", "programmes", "members", "accounts", "journal", "idempotency", "holds", "open_holds"];
pub const DB_REVERSALS: &str = "reversals";
/// The rules engine's databases (issue #3).
pub const DB_RULES: &str = "rules";
pub const DB_RULE_STATE: &str = "rule_state";

#[derive(Clone)]
pub struct Store {
    pub env: Env<WithoutTls>,
    pub path: PathBuf,
    pub meta: Db,
    pub programmes: Db,
    pub members: Db,
    /// member accounts `member/type`, system accounts `#programme/kind/type`
    pub accounts: Db,
    /// seq (u64 big-endian) → Entry
    pub journal: Db,
    /// client id → IdemRecord
    pub idempotency: Db,
    /// hold id → Hold
    pub holds: Db,
    /// expires_at (i64 BE, offset) ++ hold id → () : open holds by expiry, for the TTL sweep
    pub open_holds: Db,
    /// target seq → points reversed so far
    pub reversals: Db,
    /// rules (every version), campaigns, tiers and earning policies: see `rules::rule_key`
    pub rules: Db,
    /// member id → MemberState (cap counters, check-in streak, referral, tier qualification)
    pub rule_state: Db,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit (the default; a returned result is on disk).
    Sync,
    /// No fsync: for bulk loads only; a crash can lose recently acknowledged commands.
    NoSyncBulkLoad,
}

impl Store {
    pub fn open(path: &Path, map_size: usize, durability: Durability) -> Result<Store> {
        std::fs::create_dir_all(path).map_err(|e| LedgerError::Storage(format!("{}: {e}", path.display())))?;
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(map_size).max_dbs(MAX_DBS).max_readers(MAX_READERS);
        if durability == Durability::NoSyncBulkLoad {
            // SAFETY: NO_SYNC only weakens durability, which this mode is named for.
            unsafe { opts.flags(EnvFlags::NO_SYNC) };
        }
        // SAFETY: the engine registry guarantees one open environment per path per process.
        let env = unsafe { opts.open(path) }?;
        let w = env.write_txn()?;
        let names = ["meta", "programmes", "members", "accounts", "journal", "idempotency", "holds", "open_holds", DB_REVERSALS, DB_RULES, DB_RULE_STATE];
        let dbs: [Db; 11] = env
            .create_databases_and_commit(w, |opener, w| -> heed::Result<_> {
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    out.push(opener.create_database::<Bytes, Bytes>(w, Some(name))?);
                }
                let arr: [Database<'_, Bytes, Bytes>; 11] = out.try_into().unwrap_or_else(|_| unreachable!("one database per name"));
                Ok(heed::CommitOrAbort::<_, ()>::Commit(arr))
            })?
            .unwrap_commit();
        let [meta, programmes, members, accounts, journal, idempotency, holds, open_holds, reversals, rules, rule_state] = dbs;
        let store = Store { meta, programmes, members, accounts, journal, idempotency, holds, open_holds, reversals, rules, rule_state, env: env.clone(), path: path.to_path_buf() };
        Ok(store)
    }

    pub fn read_txn(&self) -> Result<RoTxn<'_, WithoutTls>> {
        Ok(self.env.read_txn()?)
    }

    pub fn write_txn(&self) -> Result<RwTxn<'_>> {
        Ok(self.env.write_txn()?)
    }
}

pub fn get<T: DeserializeOwned>(db: &Db, txn: &RoTxn<'_>, key: &[u8]) -> Result<Option<T>> {
    match db.get(txn, key)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(decode(bytes)?)),
    }
}

pub fn put<T: Serialize>(db: &Db, txn: &mut RwTxn<'_>, key: &[u8], value: &T) -> Result<()> {
    Ok(db.put(txn, key, &encode(value))?)
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("records always serialize")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| LedgerError::Storage(format!("corrupt record: {e}")))
}

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Sortable key for signed milliseconds (flip the sign bit).
pub fn ms_key(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn member_account(member: &str, point_type: &str) -> String {
    format!("{member}/{point_type}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemAccount {
    Issuance,
    Redemption,
    Breakage,
    Holds,
    Conversion,
}

impl SystemAccount {
    pub fn name(self) -> &'static str {
        match self {
            SystemAccount::Issuance => "issuance",
            SystemAccount::Redemption => "redemption",
            SystemAccount::Breakage => "breakage",
            SystemAccount::Holds => "holds",
            SystemAccount::Conversion => "conversion",
        }
    }
}

pub fn system_account(programme: &str, kind: SystemAccount, point_type: &str) -> String {
    format!("#{programme}/{}/{point_type}", kind.name())
}

pub fn is_system_account(key: &str) -> bool {
    key.starts_with('#')
}

/// (member, point type) of a member account key; (programme, kind, type) parts for system keys.
pub fn split_account(key: &str) -> Vec<&str> {
    key.trim_start_matches('#').split('/').collect()
}
