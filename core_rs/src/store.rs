//! The LMDB environment: one per data directory, opened once per process, named databases.
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{LedgerError, Result};
use crate::limits::*;
use crate::hot_map::{self, Hashed, HotMap};
use crate::model::{Account, AcctKey};

pub type Db = Database<'static, Bytes, Bytes>;

/// Names of the named databases, as `mdb_stat -a` lists them.
pub const DB_NAMES: [&str; 15] = [
    "meta", "programmes", "members", "accounts", "state_log", "journal", "idempotency", "holds", "open_holds", "reversals",
    // the rules engine's (issue #3)
    "rules", "rule_state",
    // the gRPC service's (issue #4)
    "outbox", "member_index",
    // cards (MA-2, MA-10, MA-14)
    "cards",
];

/// How far ahead of LMDB the data file is kept (`Store::extend_file_step`).
#[derive(Debug, Clone, Copy)]
pub struct FileRoom {
    /// files whose used part is smaller are left to grow as LMDB writes
    pub from_bytes: u64,
    /// room kept: the used part over this, at most `headroom_max_bytes`
    pub headroom_divisor: u64,
    pub headroom_max_bytes: u64,
    /// zeros written per step, and per write within a step (a step stops between writes when
    /// a command arrives)
    pub step_bytes: usize,
    pub piece_bytes: usize,
}

impl Default for FileRoom {
    fn default() -> Self {
        FileRoom {
            from_bytes: FILE_ROOM_FROM_BYTES,
            headroom_divisor: FILE_ROOM_DIVISOR,
            headroom_max_bytes: FILE_ROOM_MAX_BYTES,
            step_bytes: FILE_ROOM_STEP_BYTES,
            piece_bytes: FILE_ROOM_PIECE_BYTES,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pub env: Env<WithoutTls>,
    pub path: PathBuf,
    /// LMDB's page size (read once at open: `used_bytes` runs with every group commit)
    page_bytes: u64,
    pub meta: Db,
    pub programmes: Db,
    pub members: Db,
    /// Checkpointed account states: member accounts `member/type`, system accounts
    /// `#programme/kind/type`. Newer states may be in `state_log` (read through `get_account`).
    pub accounts: Db,
    /// group commit (its last journal seq, u64 BE) → the states of the accounts and member rule
    /// states it changed and its commands' idempotency records, as a sorted blob
    /// (`StateLogBlob`). A group appends one record instead of rewriting one random B-tree page
    /// per record; a checkpoint merges the log into `accounts`, `idempotency` and `rule_state`
    /// and empties it.
    pub state_log: Db,
    /// seq (u64 big-endian) → Entry
    pub journal: Db,
    /// client id → IdemRecord (newer ones may be in `state_log`: read through `get_logged`)
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
    /// seq (u64 BE) ++ hold id → OutboxMessage: notifications (one-time codes) written in the
    /// transaction that creates them, deleted once delivered (`outbox_peek` / `outbox_delete`).
    pub outbox: Db,
    /// `p:` phone / `i:` ID-number hash, `\0`, member id → () : members by bound phone or ID
    /// number (MA-2, MA-14); several members may share a phone (a household).
    pub member_index: Db,
    /// card number → Card: the member a card is bound to (one member per card).
    pub cards: Db,
}

/// The `member_index` keys of a member (its bound phone and ID-number hash, when present).
pub fn member_index_keys(m: &crate::model::Member) -> Vec<Vec<u8>> {
    let mut out = vec![];
    if !m.phone.is_empty() {
        out.push(member_index_key("p", &m.phone, &m.id));
    }
    if let Some(h) = &m.id_hash {
        out.push(member_index_key("i", h, &m.id));
    }
    out
}

pub fn member_index_key(kind: &str, value: &str, member: &str) -> Vec<u8> {
    format!("{kind}:{value}\0{member}").into_bytes()
}

/// Write `bytes` zeros into `file` from `start`, `piece` bytes per write, stopping between
/// writes once `stop` says so; returns the bytes written (`extend_file_step`, `preallocate`).
fn append_zeros(file: &std::fs::File, start: u64, bytes: u64, piece: usize, stop: impl Fn() -> bool) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; piece.max(1)];
    let mut written = 0;
    while written < bytes {
        if written > 0 && stop() {
            break;
        }
        let n = (bytes - written).min(zeros.len() as u64);
        file.write_all_at(&zeros[..n as usize], start + written)?;
        written += n;
    }
    Ok(written)
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
        let dbs: [Db; 15] = env
            .create_databases_and_commit(w, |opener, w| -> heed::Result<_> {
                let mut out = Vec::with_capacity(DB_NAMES.len());
                for name in DB_NAMES {
                    out.push(opener.create_database::<Bytes, Bytes>(w, Some(name))?);
                }
                let arr: [Database<'_, Bytes, Bytes>; 15] = out.try_into().unwrap_or_else(|_| unreachable!("one database per name"));
                Ok(heed::CommitOrAbort::<_, ()>::Commit(arr))
            })?
            .unwrap_commit();
        let [meta, programmes, members, accounts, state_log, journal, idempotency, holds, open_holds, reversals, rules, rule_state, outbox, member_index, cards] = dbs;
        let page_bytes = {
            let r = env.read_txn()?;
            meta.stat(&r)?.page_size as u64
        };
        let store = Store { meta, programmes, members, accounts, state_log, journal, idempotency, holds, open_holds, reversals, rules, rule_state, outbox, member_index, cards, env: env.clone(), path: path.to_path_buf(), page_bytes };
        store.backfill_member_index()?;
        Ok(store)
    }

    pub fn read_txn(&self) -> Result<RoTxn<'_, WithoutTls>> {
        Ok(self.env.read_txn()?)
    }

    pub fn write_txn(&self) -> Result<RwTxn<'_>> {
        Ok(self.env.write_txn()?)
    }

    /// Append one step of zeros to the data file when it has less room than `room` asks for
    /// past LMDB's last used page; returns the bytes written (0: room enough, or a file too
    /// small to bother). LMDB grows its file by writing pages past its end, and a commit that
    /// grows the file paid several times over for its fsync (new blocks to allocate and
    /// journal: 13 → 50-105 ms per 50,000 credits at 1M members, session 16); blocks written
    /// once with zeros are later overwritten in place. (`fallocate` did not help: its unwritten
    /// extents are converted at the first write, the same journal work.)
    ///
    /// The step is written a piece at a time, and stops early (without its fsync) once `stop`
    /// says so: a batch that arrives meanwhile waits for one piece, not for the whole step and
    /// its fsync (~10 ms on this VM, a third of a 10,000-command round). The pieces written are
    /// synced by the next commit's fsync, as pages of the same file.
    ///
    /// `_txn` is the proof that the caller holds LMDB's write lock, with nothing of its
    /// transaction written yet: no other transaction commits meanwhile (an `outbox_delete` from
    /// another thread did, and could put pages where the zeros then went), and LMDB writes a
    /// transaction's pages only when it commits, so zeros from the file's end on land where
    /// nothing is. (The writer opens one for this and drops it unused.)
    pub fn extend_file_step(&self, _txn: &RwTxn<'_>, room: FileRoom, stop: impl Fn() -> bool) -> Result<u64> {
        let storage = |e: std::io::Error| LedgerError::Storage(format!("extending the data file: {e}"));
        let used = self.used_bytes();
        if used < room.from_bytes {
            return Ok(0);
        }
        let file = self.data_file().map_err(storage)?;
        let len = file.metadata().map_err(storage)?.len();
        let want = (used / room.headroom_divisor).min(room.headroom_max_bytes);
        if len >= used + want {
            return Ok(0);
        }
        let step = room.step_bytes as u64;
        let written = append_zeros(&file, len.max(used), step, room.piece_bytes.clamp(1, room.step_bytes), stop).map_err(storage)?;
        if written == step {
            file.sync_data().map_err(storage)?;
        }
        Ok(written)
    }

    /// Zero-fill the data file up to `bytes` past LMDB's last used page (TigerBeetle formats its
    /// file the same way, ahead of time): commits then overwrite blocks that exist instead of
    /// growing the file, which cost a 10,000-command commit 18-20 ms instead of 3-4 here
    /// (bench/README, session 24). Written in chunks of PREALLOCATE_CHUNK_BYTES, each under the
    /// write lock (the writer waits for one chunk, not for all) and synced; returns the bytes
    /// written (0 when the file is already that long). At most the map's room past the used
    /// part can be asked for.
    pub fn preallocate(&self, bytes: u64) -> Result<u64> {
        let storage = |e: std::io::Error| LedgerError::Storage(format!("preallocating the data file: {e}"));
        let (used, map_bytes) = (self.used_bytes(), self.env.info().map_size as u64);
        if used.saturating_add(bytes) > map_bytes {
            return Err(LedgerError::InvalidArgument(format!("{bytes} bytes past the used {used} do not fit the map of {map_bytes}")));
        }
        let file = self.data_file().map_err(storage)?;
        let mut total = 0;
        loop {
            let txn = self.write_txn()?;
            let (used, len) = (self.used_bytes(), file.metadata().map_err(storage)?.len());
            let end = used + bytes;
            if len >= end {
                return Ok(total);
            }
            let start = len.max(used);
            let n = (end - start).min(PREALLOCATE_CHUNK_BYTES);
            append_zeros(&file, start, n, FILE_ROOM_PIECE_BYTES, || false).map_err(storage)?;
            file.sync_data().map_err(storage)?;
            drop(txn);
            total += n;
        }
    }

    /// The data file, opened for writing zeros past LMDB's pages.
    fn data_file(&self) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new().write(true).open(self.path.join("data.mdb"))
    }

    /// Bytes of the data file LMDB uses: its pages up to the last committed one.
    pub fn used_bytes(&self) -> u64 {
        (self.env.info().last_page_number as u64 + 1) * self.page_bytes
    }

    /// A store written before `member_index` existed gets it built once, at open.
    fn backfill_member_index(&self) -> Result<()> {
        {
            let r = self.read_txn()?;
            if !self.member_index.is_empty(&r)? || self.members.is_empty(&r)? {
                return Ok(());
            }
        }
        let mut w = self.write_txn()?;
        let mut keys = vec![];
        for item in self.members.iter(&w)? {
            let (_, v) = item?;
            keys.extend(member_index_keys(&decode::<crate::model::Member>(v)?));
        }
        for k in keys {
            self.member_index.put(&mut w, &k, &[])?;
        }
        w.commit()?;
        Ok(())
    }

    /// Up to `limit` undelivered notifications, oldest first: (key, msgpack OutboxMessage).
    pub fn outbox_peek(&self, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let txn = self.read_txn()?;
        let mut out = Vec::new();
        for item in self.outbox.iter(&txn)?.take(limit) {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Delete delivered notifications in one durable write transaction of its own (LMDB
    /// serialises it with the writer's; the writer keeps no outbox state).
    pub fn outbox_delete(&self, keys: &[Vec<u8>]) -> Result<usize> {
        let mut txn = self.write_txn()?;
        let mut n = 0;
        for k in keys {
            n += usize::from(self.outbox.delete(&mut txn, k)?);
        }
        txn.commit()?;
        Ok(n)
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
    // Most records fit: growing a Vec from empty cost ~8% of the writer in reallocations.
    let mut buf = Vec::with_capacity(ENCODE_BUFFER_BYTES);
    encode_into(&mut buf, value);
    buf
}

/// Append a record's msgpack (named fields, as `encode`) to `out`.
pub fn encode_into<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    crate::msgpack::write_named(out, value).expect("records always serialize");
    debug_assert_eq!(out[start..], rmp_serde::to_vec_named(value).expect("records always serialize"), "msgpack.rs writes what rmp_serde writes");
}

/// `encode_into` for an account, field by field. A merge encodes every account it writes back
/// (a group, its system accounts and the hot accounts it logs in full), and through serde an
/// account took ~1,700 instructions (callgrind, session 26). The same bytes: a debug build
/// checks each against `rmp_serde`, and so does a proptest below.
pub fn encode_account_into(out: &mut Vec<u8>, a: &Account) {
    use crate::msgpack::{put_array_len, put_sint, put_uint};
    let start = out.len();
    // a map of the five fields in declaration order, each keyed by its name
    out.extend_from_slice(&[0x85, 0xa1, b'v']);
    put_uint(out, a.v as u64);
    out.extend_from_slice(&[0xa1, b'b']);
    put_sint(out, a.b);
    out.extend_from_slice(&[0xa2, b'h', b'd']);
    put_sint(out, a.hd);
    out.extend_from_slice(&[0xa2, b'l', b's']);
    put_uint(out, a.ls);
    out.extend_from_slice(&[0xa4, b'l', b'o', b't', b's']);
    put_array_len(out, a.lots.len());
    for l in &a.lots {
        // `Lot`'s positional array: seven elements, an eighth when a rule made it
        out.push(if l.g.is_some() { 0x98 } else { 0x97 });
        put_uint(out, l.i);
        put_sint(out, l.r);
        put_sint(out, l.a);
        put_sint(out, l.e);
        match l.x {
            Some(x) => put_sint(out, x),
            None => out.push(0xc0),
        }
        put_sint(out, l.f);
        put_uint(out, l.s);
        if let Some(g) = &l.g {
            crate::msgpack::write_named(out, &**g).expect("a rule reference serializes");
        }
    }
    debug_assert_eq!(out[start..], rmp_serde::to_vec_named(a).expect("records always serialize"), "encode_account_into writes what rmp_serde writes");
}

const ENCODE_BUFFER_BYTES: usize = 512;

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| LedgerError::Storage(format!("corrupt record: {e}")))
}

// ----- account and rule states: checkpoint + state log -----

/// One `state_log` record: the states one group commit changed, sorted by key so a reader
/// binary-searches it in place (zero-copy from the LMDB map). A key is a one-byte tag naming
/// the database the state is checkpointed into (`LogTag`) followed by its key there. Layout, little-endian:
/// `u8 version (2) | u32 count | u32 blocks | filter | count × (u32 key_offset, u32 value_offset) | u32 end | data`,
/// where entry i's key runs from its key offset to its value offset, and its value (the
/// record's msgpack, exactly as its own database stores it) to the next entry's key offset
/// (or `end`, the blob's length, which also detects a truncated record). The filter is a
/// blocked Bloom filter of the record's keys, `blocks` × 64 bytes (`filter_hash`): a reader
/// looking for a key searches every record, and the filter rules most of them out with one
/// cache line instead of a binary search. Version 1 records (written before session 15) have
/// no `blocks` and no filter, and still read.
pub struct StateLogBlob;

impl StateLogBlob {
    const VERSION_UNFILTERED: u8 = 1;
    const VERSION: u8 = 2;
    /// version, count and filter blocks
    const HEADER: usize = 9;
    const BLOCK_BYTES: usize = (crate::idem_filter::BLOCK_BITS / 8) as usize;

    /// Filter blocks for `n` keys.
    fn filter_blocks(n: usize) -> usize {
        (n * STATE_LOG_FILTER_BITS_PER_KEY).div_ceil(Self::BLOCK_BYTES * 8).max(1)
    }

    /// Where the entry index starts (after the header and the filter), checked against the blob.
    fn index_at(blob: &[u8]) -> Result<usize> {
        let at = match blob.first() {
            Some(&Self::VERSION_UNFILTERED) => 5,
            Some(&Self::VERSION) => {
                let blocks = blob.get(5..Self::HEADER).ok_or_else(Self::corrupt)?;
                Self::HEADER + u32::from_le_bytes(blocks.try_into().unwrap()) as usize * Self::BLOCK_BYTES
            }
            _ => return Err(Self::corrupt()),
        };
        if at > blob.len() {
            return Err(Self::corrupt());
        }
        Ok(at)
    }

    /// False when the record certainly lacks `key` (its filter says so); a record without a
    /// filter may hold any key.
    pub fn may_hold(blob: &[u8], key: &[u8]) -> Result<bool> {
        Self::may_hold_hashed(blob, filter_hash(key))
    }

    /// `may_hold` with the key's `filter_hash`, computed once for a search of many records.
    fn may_hold_hashed(blob: &[u8], hash: (u64, u64)) -> Result<bool> {
        let index = Self::index_at(blob)?;
        let blocks = index.saturating_sub(Self::HEADER) / Self::BLOCK_BYTES;
        if blob[0] != Self::VERSION || blocks == 0 {
            return Ok(true);
        }
        let (b, bits) = crate::idem_filter::probes(hash, blocks);
        let block = &blob[Self::HEADER + b * Self::BLOCK_BYTES..][..Self::BLOCK_BYTES];
        Ok(bits.iter().all(|&bit| block[bit as usize / 8] & (1 << (bit % 8)) != 0))
    }

    /// Start loading the filter block `may_hold_hashed` will read for `hash` (nothing for a
    /// record too short to have one: the check itself reports it).
    fn prefetch_block(blob: &[u8], hash: (u64, u64)) {
        if blob.len() < Self::HEADER || blob[0] != Self::VERSION {
            return;
        }
        let blocks = u32::from_le_bytes(blob[5..Self::HEADER].try_into().unwrap()) as usize;
        if blocks == 0 {
            return;
        }
        let (b, _) = crate::idem_filter::probes(hash, blocks);
        if let Some(block) = blob.get(Self::HEADER + b * Self::BLOCK_BYTES..) {
            crate::prefetch(block.as_ptr());
        }
    }

    /// `entries` must be sorted by key, without duplicates.
    pub fn encode(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let data: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut w = StateLogBlobWriter::new(entries.len(), data);
        for (k, v) in entries {
            w.push(k, |out| out.extend_from_slice(v));
        }
        w.finish()
    }

    fn corrupt() -> LedgerError {
        LedgerError::Storage("corrupt state log record".into())
    }

    /// Key i of a record being written (its index entries up to i are set).
    fn entry_key_unchecked(blob: &[u8], i: usize) -> &[u8] {
        let at = |j: usize| u32::from_le_bytes(blob[j..j + 4].try_into().unwrap()) as usize;
        let p = Self::index_at(blob).expect("a record being written has its header") + 8 * i;
        &blob[at(p)..at(p + 4)]
    }

    pub fn len(blob: &[u8]) -> Result<usize> {
        Self::index_at(blob)?;
        Ok(u32::from_le_bytes(blob[1..5].try_into().unwrap()) as usize)
    }

    /// Entry i of n as (key, value); bounds-checked, so a damaged record is an error, not a panic.
    pub fn entry(blob: &[u8], i: usize, n: usize) -> Result<(&[u8], &[u8])> {
        let at = |j: usize| blob.get(j..j + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
        let p = Self::index_at(blob)? + 8 * i;
        let (k, v) = (at(p).ok_or_else(Self::corrupt)?, at(p + 4).ok_or_else(Self::corrupt)?);
        // The entry after the last is the end offset: the blob's length.
        let end = at(p + 8).ok_or_else(Self::corrupt)?;
        if i + 1 == n && end != blob.len() {
            return Err(Self::corrupt());
        }
        match (blob.get(k..v), blob.get(v..end)) {
            (Some(key), Some(value)) => Ok((key, value)),
            _ => Err(Self::corrupt()),
        }
    }

    pub fn find<'a>(blob: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>> {
        Self::find_hashed(blob, key, filter_hash(key))
    }

    /// `find` with the key's `filter_hash`, computed once for a search of many records.
    fn find_hashed<'a>(blob: &'a [u8], key: &[u8], hash: (u64, u64)) -> Result<Option<&'a [u8]>> {
        if !Self::may_hold_hashed(blob, hash)? {
            return Ok(None);
        }
        let n = Self::len(blob)?;
        let i = Self::lower_bound(blob, key)?;
        if i == n {
            return Ok(None);
        }
        let (k, v) = Self::entry(blob, i, n)?;
        Ok((k == key).then_some(v))
    }

    /// The index of the first entry whose key is not below `key` (`len` if none).
    pub fn lower_bound(blob: &[u8], key: &[u8]) -> Result<usize> {
        let n = Self::len(blob)?;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if Self::entry(blob, mid, n)?.0 < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Every entry, in key order; checks the layout.
    pub fn entries(blob: &[u8]) -> Result<Vec<(&[u8], &[u8])>> {
        let n = Self::len(blob)?;
        let mut out = Vec::with_capacity(n);
        let mut prev = Self::index_at(blob)? + 8 * n + 4;
        for i in 0..n {
            let (k, v) = Self::entry(blob, i, n)?;
            let start = k.as_ptr() as usize - blob.as_ptr() as usize;
            if start != prev || out.last().is_some_and(|(pk, _): &(&[u8], &[u8])| *pk >= k) {
                return Err(Self::corrupt());
            }
            prev = start + k.len() + v.len();
            out.push((k, v));
        }
        if n == 0 && blob.len() != prev {
            return Err(Self::corrupt());
        }
        Ok(out)
    }
}
/// Builds a `StateLogBlob` entry by entry, each value written in place (the writer encodes a
/// group's states straight into the record instead of into a buffer each, then copying them).
pub struct StateLogBlobWriter {
    out: Vec<u8>,
    n: usize,
    i: usize,
    blocks: usize,
    index_at: usize,
}

impl StateLogBlobWriter {
    /// A record of exactly `n` entries; `data_bytes` sizes the buffer (keys and values).
    pub fn new(n: usize, data_bytes: usize) -> StateLogBlobWriter {
        let blocks = StateLogBlob::filter_blocks(n);
        assert!(n <= u32::MAX as usize && blocks <= u32::MAX as usize, "a state log record holds fewer than 2^32 entries");
        let index_at = StateLogBlob::HEADER + blocks * StateLogBlob::BLOCK_BYTES;
        let index_end = index_at + 8 * n + 4;
        let mut out = Vec::with_capacity(index_end + data_bytes);
        out.push(StateLogBlob::VERSION);
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&(blocks as u32).to_le_bytes());
        // the filter and the index are filled in as the entries arrive
        out.resize(index_end, 0);
        StateLogBlobWriter { out, n, i: 0, blocks, index_at }
    }

    fn set(&mut self, at: usize, off: usize) {
        assert!(off <= u32::MAX as usize, "a state log record is under 4 GiB");
        self.out[at..at + 4].copy_from_slice(&(off as u32).to_le_bytes());
    }

    /// Append the next entry (keys strictly ascending): `key`, then whatever `value` writes.
    pub fn push(&mut self, key: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
        assert!(self.i < self.n, "more entries than the record was sized for");
        debug_assert!(self.i == 0 || StateLogBlob::entry_key_unchecked(&self.out, self.i - 1) < key, "state log entries sorted and unique");
        let at = self.index_at + 8 * self.i;
        let (b, bits) = crate::idem_filter::probes(filter_hash(key), self.blocks);
        let block = StateLogBlob::HEADER + b * StateLogBlob::BLOCK_BYTES;
        for bit in bits {
            self.out[block + bit as usize / 8] |= 1 << (bit % 8);
        }
        let k = self.out.len();
        self.out.extend_from_slice(key);
        let v = self.out.len();
        value(&mut self.out);
        self.set(at, k);
        self.set(at + 4, v);
        self.i += 1;
    }

    pub fn finish(mut self) -> Vec<u8> {
        assert_eq!(self.i, self.n, "fewer entries than the record was sized for");
        let end = self.out.len();
        self.set(self.index_at + 8 * self.n, end);
        self.out
    }
}

/// A state log key's two filter hashes: FxHash, and a mix of it for the bit positions (one pass
/// over the key: the writer hashes every key it logs).
fn filter_hash(key: &[u8]) -> (u64, u64) {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(key);
    let h1 = h.finish();
    let mut h2 = (h1 ^ (h1 >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h2 ^= h2 >> 29;
    (h1, h2)
}

/// Which database a logged state belongs to: the first byte of its key in a `state_log` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTag {
    /// an `accounts` record
    Account = b'a' as isize,
    /// an `idempotency` record (command id → its entries). Unlike states, an id is logged once
    /// and never rewritten; logging it with its group, then merging it in key order, dirties
    /// one B-tree page per merge slice instead of one random page per command (client ids such
    /// as UUIDs are random).
    Idem = b'i' as isize,
    /// a `rule_state` record (a member's cap counters, streak, tier qualification)
    RuleState = b'r' as isize,
}

impl LogTag {
    pub fn key(self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(key.len() + 1);
        self.key_into(&mut k, key);
        k
    }
    /// `key` tagged, into `out` (cleared first): reuses one buffer across many keys.
    pub fn key_into(self, out: &mut Vec<u8>, key: &[u8]) {
        out.clear();
        out.push(self as u8);
        out.extend_from_slice(key);
    }

    pub fn db(self, store: &Store) -> &Db {
        match self {
            LogTag::Account => &store.accounts,
            LogTag::Idem => &store.idempotency,
            LogTag::RuleState => &store.rule_state,
        }
    }

    /// (tag, key in its database) of a logged key.
    pub fn split(key: &[u8]) -> Result<(LogTag, &[u8])> {
        match key.split_first() {
            Some((b'a', k)) => Ok((LogTag::Account, k)),
            Some((b'i', k)) => Ok((LogTag::Idem, k)),
            Some((b'r', k)) => Ok((LogTag::RuleState, k)),
            _ => Err(LedgerError::Storage("corrupt state log key".into())),
        }
    }
}

/// The newest committed state of a record kept through the state log, as its stored bytes:
/// the latest `state_log` record that has it, else the checkpoint in its own database.
pub fn get_logged_bytes<'t>(store: &Store, txn: &'t RoTxn<'_>, tag: LogTag, key: &[u8]) -> Result<Option<&'t [u8]>> {
    match in_log(store, txn, tag, key)? {
        Some(v) => Ok(Some(v)),
        None => Ok(tag.db(store).get(txn, key)?),
    }
}

/// The newest value the state log holds for `key` (None: the log lacks it).
fn in_log<'t>(store: &Store, txn: &'t RoTxn<'_>, tag: LogTag, key: &[u8]) -> Result<Option<&'t [u8]>> {
    let tagged = tag.key(key);
    let hash = filter_hash(&tagged);
    // Newest record first. Each record's filter costs a reader two cache misses (its header,
    // then the block the key hashes to), one after the other, and a key the log lacks is looked
    // for in every record: start the loads ahead (the records' values are pointers into the
    // map, so listing them touches none), headers two steps ahead, blocks one.
    let blobs = store.state_log.rev_iter(txn)?.map(|item| item.map(|(_, blob)| blob)).collect::<heed::Result<Vec<&[u8]>>>()?;
    let ahead = STATE_LOG_READ_PREFETCH_AHEAD;
    for b in blobs.iter().take(2 * ahead) {
        crate::prefetch(b.as_ptr());
    }
    for (i, blob) in blobs.iter().enumerate() {
        if let Some(b) = blobs.get(i + 2 * ahead) {
            crate::prefetch(b.as_ptr());
        }
        if let Some(b) = blobs.get(i + ahead) {
            StateLogBlob::prefetch_block(b, hash);
        }
        if let Some(v) = StateLogBlob::find_hashed(blob, &tagged, hash)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

pub fn get_logged<T: DeserializeOwned>(store: &Store, txn: &RoTxn<'_>, tag: LogTag, key: &[u8]) -> Result<Option<T>> {
    get_logged_bytes(store, txn, tag, key)?.map(decode).transpose()
}

/// The writer's view: it knows which keys the log holds and the newest record holding each
/// (`LoggedKeys`), so a key the log lacks goes straight to its B-tree, and a key it has to the
/// one record that holds its newest state (not a search through every record, newest first).
pub fn get_logged_known<T: DeserializeOwned>(store: &Store, txn: &RoTxn<'_>, logged: &LoggedKeys, tag: LogTag, key: &[u8]) -> Result<Option<T>> {
    match in_log_known(store, txn, logged, tag, key)? {
        Some(v) => Ok(Some(decode(v)?)),
        None => get(tag.db(store), txn, key),
    }
}

/// `get_account` for the writer, which knows the record that holds a logged key.
pub fn get_account_known(store: &Store, txn: &RoTxn<'_>, logged: &LoggedKeys, key: &[u8]) -> Result<Option<Account>> {
    let logged = in_log_known(store, txn, logged, LogTag::Account, key)?;
    account_value(store, txn, key, logged)
}

fn in_log_known<'t>(store: &Store, txn: &'t RoTxn<'_>, logged: &LoggedKeys, tag: LogTag, key: &[u8]) -> Result<Option<&'t [u8]>> {
    let Some(record) = logged.record(tag, key) else {
        return Ok(None);
    };
    let corrupt = || LedgerError::Storage(format!("state log record {record} lacks a key it holds"));
    let blob = store.state_log.get(txn, &seq_key(record))?.ok_or_else(corrupt)?;
    Ok(Some(StateLogBlob::find(blob, &tag.key(key))?.ok_or_else(corrupt)?))
}

/// Tagged keys up to this long are looked up without allocating (account keys are
/// member id / point type, each at most ID_LENGTH_MAX).
const LOGGED_KEY_STACK_BYTES: usize = 2 * ID_LENGTH_MAX + 2;

/// What the writer keeps of an account the state log holds (`LoggedKeys`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoggedAccount {
    /// the newest record holding it (its group's last seq)
    pub record: u64,
    /// a member account's entries since its state was last written back (the history chain a
    /// reader folds: `Ledger::log_dirty` logs the state too past READ_CHAIN_ENTRIES_MAX);
    /// 0 after a reload
    pub chain: u32,
}

/// The tagged keys in the state log, each with the newest group record (its last seq) that
/// holds it (kept by the writer, rebuilt from the log at open). Accounts, nearly all of them,
/// are in a `HotMap`, so `Ledger::log_dirty` prefetches its lookups (a group logs tens of
/// thousands, each a cache miss or two at 1M members: 11% of the writer's samples with a
/// hash map, session 17); rule states in a hash map of tagged keys.
#[derive(Default)]
pub struct LoggedKeys {
    accounts: HotMap<LoggedAccount>,
    other: rustc_hash::FxHashMap<Vec<u8>, u64>,
}

impl LoggedKeys {
    /// The newest record (its group's last seq) holding `key`, if the log holds it.
    pub fn record(&self, tag: LogTag, key: &[u8]) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        if let (LogTag::Account, Ok(k)) = (tag, std::str::from_utf8(key)) {
            return self.accounts.get(k).map(|a| a.record);
        }
        // Tag the key on the stack: this runs for every cache miss of the writer.
        let mut buf = [0u8; LOGGED_KEY_STACK_BYTES];
        match buf.get_mut(..key.len() + 1) {
            Some(tagged) => {
                tagged[0] = tag as u8;
                tagged[1..].copy_from_slice(key);
                self.other.get(&*tagged).copied()
            }
            None => self.other.get(&tag.key(key)).copied(),
        }
    }

    /// `tagged` is in the record of the group whose last seq is `record`. Idempotency records
    /// are not kept here (one per command would make this map as large as the log): the
    /// writer finds them through its Bloom filter and a search of the log (`get_logged`).
    pub fn insert_tagged(&mut self, tagged: &[u8], record: u64) {
        let account = match LogTag::split(tagged) {
            Ok((LogTag::Idem, _)) => return,
            Ok((LogTag::Account, k)) => std::str::from_utf8(k).ok(),
            _ => None,
        };
        match account {
            Some(k) => {
                self.log_account(hot_map::hash(k), k, record, 0);
            }
            None => {
                let r = self.other.entry(tagged.to_vec()).or_insert(record);
                *r = (*r).max(record);
            }
        }
    }

    /// Account `key` (hashed `h`) is in record `record`, which holds `gained` more entries of
    /// its history: its chain since the last write-back, after them.
    pub fn log_account(&mut self, h: Hashed, key: &str, record: u64, gained: u32) -> u32 {
        let a = self.accounts.get_or_insert_with(h, key, LoggedAccount::default);
        a.record = a.record.max(record);
        a.chain = a.chain.saturating_add(gained);
        a.chain
    }

    /// Account `key`'s state was written back (a reader's chain starts again there).
    pub fn written_back(&mut self, key: &str) {
        if let Some(a) = self.accounts.get_mut(key) {
            a.chain = 0;
        }
    }

    /// The steps of a prefetched `log_account` (`HotMap::prefetch_slot`, `prefetch_item`).
    pub fn prefetch_slot(&self, h: Hashed) {
        self.accounts.prefetch_slot_hashed(h);
    }
    pub fn prefetch_item(&self, h: Hashed) {
        self.accounts.prefetch_item(h);
    }

    /// Forget the keys no record after `record` holds (the records up to it were dropped).
    pub fn drop_through(&mut self, record: u64) {
        self.accounts.retain(|_, a| a.record > record);
        self.other.retain(|_, r| *r > record);
    }
    pub fn clear(&mut self) {
        self.accounts.clear();
        self.other.clear();
    }
    pub fn len(&self) -> usize {
        self.accounts.len() + self.other.len()
    }
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.other.is_empty()
    }
    /// What is kept of account `key`.
    #[cfg(test)]
    fn account(&self, key: &str) -> Option<LoggedAccount> {
        self.accounts.get(key).copied()
    }
}

/// An account's newest committed state: its state in `accounts` (the last checkpoint) brought
/// up to date with what the state log holds for it (`account_value`).
pub fn get_account(store: &Store, txn: &RoTxn<'_>, key: &[u8]) -> Result<Option<Account>> {
    let logged = in_log(store, txn, LogTag::Account, key)?;
    account_value(store, txn, key, logged)
}

/// Every account's newest committed state, in key order (checkpoint merged with the log).
pub fn all_accounts<'t>(store: &Store, txn: &'t RoTxn<'_>) -> Result<std::collections::BTreeMap<&'t [u8], Account>> {
    let logged = log_values(store, txn, LogTag::Account)?;
    let mut out = std::collections::BTreeMap::new();
    for item in store.accounts.iter(txn)? {
        let (k, v) = item?;
        if !logged.contains_key(k) {
            out.insert(k, decode(v)?);
        }
    }
    for (k, v) in logged {
        if let Some(a) = account_value(store, txn, k, Some(v))? {
            out.insert(k, a);
        }
    }
    Ok(out)
}

/// Whether the state log holds a member account's state rather than its history head (a log
/// written before heads: `Ledger::open` checkpoints it).
pub fn log_holds_member_states(store: &Store, txn: &RoTxn<'_>) -> Result<bool> {
    for item in store.state_log.iter(txn)? {
        let (_, blob) = item?;
        for (k, v) in StateLogBlob::entries(blob)? {
            if let (LogTag::Account, k) = LogTag::split(k)? {
                // (a head with its state starts with the head's zero top byte; a state with a
                // msgpack map header)
                if !is_system_account_key(k) && v.len() != 8 && v.first() != Some(&0) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// An account as of `logged`, the newest value the state log holds for it (None: the log lacks
/// it, and `accounts` holds its state). A system account's log value is its state. A member
/// account's is its history head, the seq of its newest entry (8 bytes, big-endian): its state
/// is its state in `accounts` with the effects (`Entry::fx`) of the entries after that state
/// folded in, found by walking its history links back from the head. Member states are not
/// logged in full every group: most accounts a group touches have one or two entries since the
/// last checkpoint.
pub fn account_value(store: &Store, txn: &RoTxn<'_>, key: &[u8], logged: Option<&[u8]>) -> Result<Option<Account>> {
    let Some(v) = logged else {
        return get(&store.accounts, txn, key);
    };
    // (a log written before history heads holds member states too: never 8 bytes long)
    if is_system_account_key(key) || (v.len() != 8 && v.first() != Some(&0)) {
        return Ok(Some(decode(v)?));
    }
    // A head followed by the state as of it: an account whose chain since its checkpoint grew
    // long (READ_CHAIN_ENTRIES_MAX) is logged so. (A head's top byte is 0: seqs stay below 2^56.)
    if v.len() > 8 {
        return Ok(Some(decode(&v[8..])?));
    }
    let corrupt = |what: String| LedgerError::Storage(format!("account {}: {what}", String::from_utf8_lossy(key)));
    let head = u64::from_be_bytes(v.try_into().map_err(|_| corrupt("corrupt history head in the state log".into()))?);
    let mut a: Account = get(&store.accounts, txn, key)?.unwrap_or_else(Account::empty);
    let mut chain = vec![];
    let mut seq = head;
    while seq > a.ls {
        let bytes = crate::journal::entry_bytes(store, txn, seq)?.ok_or_else(|| corrupt(format!("journal entry {seq} missing")))?;
        let e: ChainStep = decode(bytes)?;
        seq = e.links.iter().find(|l| l.acct.as_bytes() == key).map(|l| l.prev).ok_or_else(|| corrupt(format!("entry {seq} is not in its history")))?;
        chain.push(e);
    }
    for e in chain.iter().rev() {
        for f in e.fx.iter().flatten().filter(|f| f.a.as_bytes() == key) {
            a.apply_effect(f).map_err(|why| corrupt(format!("entry {} {why}", e.seq)))?;
        }
    }
    a.ls = a.ls.max(head);
    Ok(Some(a))
}

/// What a walk down an account's history needs of an entry: decoding only these fields (serde
/// skips the rest without building it) made a walk ~N× cheaper than decoding whole entries.
#[derive(serde::Deserialize)]
struct ChainStep {
    seq: u64,
    links: Vec<crate::model::Link>,
    #[serde(default)]
    fx: Option<Vec<crate::model::Effect>>,
}

/// Every record of `tag`'s database as readers see it, in key order: its B-tree merged with
/// the newer states in the log.
pub fn all_logged<'t>(store: &Store, txn: &'t RoTxn<'_>, tag: LogTag) -> Result<std::collections::BTreeMap<&'t [u8], &'t [u8]>> {
    let mut out = std::collections::BTreeMap::new();
    for item in tag.db(store).iter(txn)? {
        let (k, v) = item?;
        out.insert(k, v);
    }
    out.extend(log_values(store, txn, tag)?);
    Ok(out)
}

/// The newest value the state log holds for each of `tag`'s keys, in key order.
fn log_values<'t>(store: &Store, txn: &'t RoTxn<'_>, tag: LogTag) -> Result<std::collections::BTreeMap<&'t [u8], &'t [u8]>> {
    let mut out = std::collections::BTreeMap::new();
    for item in store.state_log.iter(txn)? {
        let (_, blob) = item?;
        for (k, v) in StateLogBlob::entries(blob)? {
            let (t, k) = LogTag::split(k)?;
            if t == tag {
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Sortable key for signed milliseconds (flip the sign bit).
pub fn ms_key(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn member_account(member: &str, point_type: &str) -> AcctKey {
    concat(&[member, "/", point_type])
}

/// `parts` joined into one key: account keys are built for every command, and `format!` costs
/// several times as much (callgrind: ~1,100 instructions per system key).
fn concat(parts: &[&str]) -> AcctKey {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut buf = [0u8; ACCOUNT_KEY_STACK_BYTES];
    if len > buf.len() {
        return AcctKey::from(parts.concat());
    }
    let mut at = 0;
    for p in parts {
        buf[at..at + p.len()].copy_from_slice(p.as_bytes());
        at += p.len();
    }
    // SAFETY: `buf[..len]` is whole `str`s back to back, so it is UTF-8.
    AcctKey::from(unsafe { std::str::from_utf8_unchecked(&buf[..len]) })
}

/// Account keys up to this long are assembled on the stack (a member key is two ids of at most
/// ID_LENGTH_MAX bytes and a slash; longer ones take the heap path).
const ACCOUNT_KEY_STACK_BYTES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemAccount {
    Issuance,
    Redemption,
    Breakage,
    Holds,
    Conversion,
}

impl SystemAccount {
    /// kinds (the last one's discriminant + 1, checked below)
    pub const COUNT: usize = 5;

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

const _: () = assert!(SystemAccount::Conversion as usize + 1 == SystemAccount::COUNT);

pub fn system_account(programme: &str, kind: SystemAccount, point_type: &str) -> AcctKey {
    concat(&["#", programme, "/", kind.name(), "/", point_type])
}

pub fn is_system_account(key: &str) -> bool {
    is_system_account_key(key.as_bytes())
}

/// `is_system_account` for a key as stored.
pub fn is_system_account_key(key: &[u8]) -> bool {
    key.first() == Some(&b'#')
}

/// (member, point type) of a member account key; (programme, kind, type) parts for system keys.
pub fn split_account(key: &str) -> Vec<&str> {
    key.trim_start_matches('#').split('/').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_lot() -> impl proptest::strategy::Strategy<Value = crate::model::Lot> {
        use proptest::prelude::*;
        // values at and around every width boundary of msgpack's integers, and anything
        let int = prop_oneof![any::<i64>(), -70_000i64..70_000, prop::sample::select(vec![-(1i64 << 31) - 1, -(1 << 31), -32_769, -32_768, -129, -128, -33, -32, -1, 0, 127, 128, 255, 256, 65_535, 65_536, (1 << 32) - 1, 1 << 32, i64::MIN, i64::MAX])];
        let uint = prop_oneof![any::<u64>(), 0u64..70_000, prop::sample::select(vec![0u64, 127, 128, 255, 256, 65_535, 65_536, (1 << 32) - 1, 1 << 32, u64::MAX])];
        let rule = proptest::option::of(("[a-z.]{0,40}", any::<u32>()));
        (uint.clone(), int.clone(), int.clone(), int.clone(), proptest::option::of(int.clone()), int, uint, rule)
            .prop_map(|(i, r, a, e, x, f, s, g)| crate::model::Lot { i, r, a, e, x, f, s, g: g.map(Box::new) })
    }

    proptest::proptest! {
        #[test]
        fn encode_account_into_writes_what_rmp_serde_writes(
            v in proptest::prelude::any::<u8>(),
            b in proptest::prelude::any::<i64>(),
            hd in -70_000i64..70_000,
            ls in proptest::prelude::any::<u64>(),
            lots in proptest::collection::vec(any_lot(), 0..40),
        ) {
            let a = Account { v, b, hd, ls, lots };
            let mut out = vec![7u8];
            encode_account_into(&mut out, &a);
            proptest::prop_assert_eq!(&out[1..], &rmp_serde::to_vec_named(&a).unwrap()[..]);
            proptest::prop_assert_eq!(decode::<Account>(&out[1..]).unwrap(), a);
        }
    }

    #[test]
    fn logged_keys_keep_the_newest_record_and_each_accounts_chain() {
        let mut logged = LoggedKeys::default();
        assert_eq!(logged.record(LogTag::Account, b"alice/merchant"), None);
        // accounts and rule states are kept, each with its newest record; idempotency records not
        logged.insert_tagged(&LogTag::Account.key(b"alice/merchant"), 7);
        logged.insert_tagged(&LogTag::Account.key(b"alice/merchant"), 5);
        logged.insert_tagged(&LogTag::RuleState.key(b"alice"), 9);
        logged.insert_tagged(&LogTag::Idem.key(b"cmd-1"), 9);
        assert_eq!(logged.record(LogTag::Account, b"alice/merchant"), Some(7));
        assert_eq!(logged.record(LogTag::RuleState, b"alice"), Some(9));
        assert_eq!(logged.record(LogTag::Idem, b"cmd-1"), None);
        assert_eq!(logged.record(LogTag::Account, b"alice"), None, "tags keep keys apart");
        assert_eq!(logged.len(), 2);
        // a long key (past the stack buffer) is found too
        let long = vec![b'x'; 3 * ID_LENGTH_MAX];
        logged.insert_tagged(&LogTag::RuleState.key(&long), 10);
        assert_eq!(logged.record(LogTag::RuleState, &long), Some(10));

        // a chain grows by what each record adds, starts over when written back, is kept
        let (bob, h) = ("bob/merchant", hot_map::hash("bob/merchant"));
        assert_eq!(logged.log_account(h, bob, 11, 3), 3);
        assert_eq!(logged.log_account(h, bob, 12, 2), 5);
        logged.written_back(bob);
        assert_eq!(logged.account(bob), Some(LoggedAccount { record: 12, chain: 0 }));
        assert_eq!(logged.log_account(h, bob, 13, 1), 1);

        // records through 9 dropped: only keys a later record holds remain
        logged.drop_through(9);
        assert_eq!(logged.record(LogTag::Account, b"alice/merchant"), None);
        assert_eq!(logged.record(LogTag::RuleState, b"alice"), None);
        assert_eq!(logged.record(LogTag::RuleState, &long), Some(10));
        assert_eq!(logged.record(LogTag::Account, bob.as_bytes()), Some(13));
        assert_eq!(logged.len(), 2);
        logged.clear();
        assert!(logged.is_empty());
    }
}
