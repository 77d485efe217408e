//! The ledger state machine. Owned by the single writer thread: no locks, no shared mutation.
//! Each command is validated and computed against a `Work` overlay first and written to the
//! LMDB transaction only when it succeeded, so a refused command changes nothing even inside a
//! group commit that other commands share.
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};

use rustc_hash::FxHashMap;
use std::sync::Arc as Rc;

use heed::types::Bytes;
use heed::{PutFlags, RwTxn};

use crate::command::*;
use crate::error::{invalid, LedgerError, Result};
use crate::hot_map::{self, Hashed, HotMap};
use crate::idem_filter::IdemFilter;
use crate::sealer::Sealer;
use crate::limits::*;
use crate::model::*;
use crate::store::*;

/// The rules engine's commands (issue #3), a child module so it can use the overlay below.
#[path = "rules/apply.rs"]
mod rules_apply;
/// Prefetching the next commands' cache lookups (`Ledger::warm`).
#[path = "warm.rs"]
mod warm;

pub struct Ledger {
    pub store: Store,
    programmes: FxHashMap<String, Programme>,
    next_seq: u64,
    /// Serializes and chain-hashes journal entries on a thread of its own (`sealer.rs`).
    sealer: RefCell<Sealer>,
    /// The first seq not yet put into the journal: later entries are with the sealer.
    put_next: u64,
    next_lot: u64,
    /// `next_lot` moved since `meta/head` was last written: written once per group
    head_dirty: bool,
    /// Write-behind cache of accounts: an account is read from LMDB once, kept here, and logged
    /// once per group commit (`flush_group`: one sorted `state_log` record per group), however
    /// many commands of the group touched it. The same write transaction commits the log record,
    /// so LMDB readers always see exactly the committed state. Cleared by `reload` after an
    /// abort and when it outgrows ACCOUNT_CACHE_ENTRIES_MAX.
    /// Keys are inline strings (`AcctKey`): at a million members a lookup's key comparison
    /// would otherwise chase a heap pointer, one more cache miss per account touched.
    accounts: RefCell<HotMap<Account>>,
    /// Accounts this group changed, each with its history head after the change (a member
    /// account is logged as its newest head, without a lookup in `accounts`).
    accounts_dirty: Vec<(AcctKey, u64)>,
    /// System accounts this group changed, once each: nearly every command posts to one, and
    /// a row per command made the group's sort mostly ties (a system account is logged as
    /// its state, whatever its history head).
    system_dirty: rustc_hash::FxHashSet<AcctKey>,
    /// Every recorded command id (a Bloom filter): most ids are new, and this proves it
    /// without an LMDB lookup.
    idem: IdemFilter,
    /// The idempotency records of this group's commands: logged with the group's states
    /// (`log_dirty`, tag `i`), merged into `idempotency` in key order later. Cleared by `reload`.
    idem_group: FxHashMap<String, IdemRecord>,
    /// the keys in the state log, so a cache miss on a key it lacks skips the log search; and
    /// each member account's entries since its state was written back (the chain a reader
    /// walks), while it is logged as a head: past READ_CHAIN_ENTRIES_MAX it is logged in full
    /// (counted from 0 again after a `reload`: conservative)
    logged: LoggedKeys,
    /// the rows of the merge step under way, in a buffer kept for the next (`MergeRows`)
    merge_rows: MergeRows,
    /// `state_log` records and the account states in them since the last checkpoint.
    log_groups: usize,
    log_entries: usize,
    /// idempotency records among `log_entries` (they are not in `logged`)
    log_idem: usize,
    /// states the last group logged (sizes its merge slice), and whether they folded into the
    /// newest record instead of taking a record slot
    last_logged: usize,
    last_folded: bool,
    /// The rolling merge of the state log into the B-trees, when one is under way.
    merge: Option<MergeCycle>,
    /// Keys of the rolling merge that groups have been charged and not yet merged: a step
    /// has a fixed cost (a cursor into every record), so small groups' shares are gathered
    /// into steps of `slice_min` (or of what is left of the cycle).
    merge_owed: usize,
    /// When rolling merges start and how large their slices are.
    pub merge_policy: MergePolicy,
    /// Full checkpoints so far (on close, before expire, past the log's hard bounds).
    pub full_checkpoints: u64,
    /// Keys merge steps have written back to their B-trees (rolling and full), and rolling
    /// merge cycles begun: counters for `WriterStats`.
    pub merged_keys: u64,
    pub merge_cycles: u64,
    /// Read cache of member records (committed or written by this writer); cleared by `reload`.
    members: RefCell<HotMap<Rc<Member>>>,
    /// Compiled rule sets and write-behind member rule states (rules/apply.rs).
    rules: RefCell<rules_apply::RulesCache>,
    /// The last expiry computed, as (policy, earned at, expiry): a batch's credits share their
    /// time and type, and the calendar arithmetic cost ~360 instructions per credit.
    expiry_memo: RefCell<Option<(Validity, Ms, Option<Ms>)>>,
    /// A command's account and draft lists, emptied and kept for the next command (two
    /// allocations and frees per command otherwise).
    spare: (Vec<(AcctKey, Account)>, Vec<Draft>),
    /// The last system account key built for each kind, as (programme, point type, key): a
    /// batch posts to the same few, and building a key cost ~260 instructions (callgrind).
    system_keys: RefCell<[Option<(AcctKey, AcctKey, AcctKey)>; SystemAccount::COUNT]>,
    /// Emptied lists of sealed entries, for the next entries (`ListPool`).
    lists: ListPool,
    /// The key hashes of the commands `warm` is loading ahead.
    warm_ring: warm::WarmRing,
}

/// A state log record's (key, value) rows, owned.
type LogRows = Vec<(Vec<u8>, Vec<u8>)>;

/// A rolling merge: the states in the log records up to `upto` (a group's last seq) are
/// written into their B-trees in key order, a slice at a time from `from` on; when the last key
/// is done those records are dropped. Each state merged is the newest the log holds for its
/// key, so readers, who look in the log first, see no change at any step.
struct MergeCycle {
    upto: u64,
    from: Vec<u8>,
    /// keys in the log when the cycle started (at most this many to merge) and merged so far
    keys: usize,
    merged: usize,
}

/// When a rolling merge of the state log starts (log size in states or group records), how
/// large its slices are, and up to how many states a small group folds into the newest record
/// instead of appending its own (`limits::STATE_LOG_*`; tests use small ones, and 0 = never fold),
/// and past how many entries since its checkpoint a member account is logged in full
/// (`limits::READ_CHAIN_ENTRIES_MAX`).
#[derive(Debug, Clone, Copy)]
pub struct MergePolicy {
    pub at_entries: usize,
    pub at_groups: usize,
    pub slice_min: usize,
    pub slice_per_state: usize,
    pub fold_entries_max: usize,
    pub read_chain_entries_max: u32,
    /// States in the log past which the writer checkpoints all at once (a stall the rolling
    /// merge's pace avoids: `limits::STATE_LOG_ENTRIES_MAX`).
    pub entries_max: usize,
    /// After a group commit, the writer waits this long for more commands before it merges a
    /// slice on its own (`limits::STATE_LOG_MERGE_IDLE_MS`).
    pub idle_after: std::time::Duration,
}

impl Default for MergePolicy {
    fn default() -> Self {
        MergePolicy {
            at_entries: STATE_LOG_MERGE_AT_ENTRIES,
            at_groups: STATE_LOG_MERGE_AT_GROUPS,
            slice_min: STATE_LOG_MERGE_SLICE_MIN,
            slice_per_state: STATE_LOG_MERGE_SLICE_PER_STATE,
            fold_entries_max: STATE_LOG_FOLD_ENTRIES_MAX,
            read_chain_entries_max: READ_CHAIN_ENTRIES_MAX,
            entries_max: STATE_LOG_ENTRIES_MAX,
            idle_after: std::time::Duration::from_millis(STATE_LOG_MERGE_IDLE_MS),
        }
    }
}

#[derive(Default)]
struct Draft {
    po: Vec<Posting>,
    /// member accounts the entry concerns without posting to them (a full capture), so it
    /// still appears in their history
    touch: Vec<AcctKey>,
    used: Vec<Consumed>,
    made: Vec<Consumed>,
    amount: i64,
    credited: i64,
    cursor: Option<String>,
    note: Option<EarnNote>,
}

/// Pending changes of one command (read-your-writes overlay over the write transaction).
struct Work {
    seq0: u64,
    next_lot: u64,
    accounts: Vec<(AcctKey, Account)>,
    members: Vec<Member>,
    holds: Vec<Hold>,
    open_holds_put: Vec<Vec<u8>>,
    open_holds_del: Vec<Vec<u8>>,
    programmes: Vec<Programme>,
    reversals: Vec<(u64, i64)>,
    outbox: Vec<(Vec<u8>, OutboxMessage)>,
    /// card number → its new record, or None to unbind it
    cards: Vec<(String, Option<Card>)>,
    drafts: Vec<Draft>,
    rules: rules_apply::RulesWork,
    /// the writer's emptied entry lists, lent to this command
    lists: ListPool,
}

impl Work {
    fn draft(&mut self) -> &mut Draft {
        if self.drafts.is_empty() {
            let (po, made) = (self.lists.postings(), self.lists.consumed());
            self.drafts.push(Draft { po, made, ..Draft::default() });
        }
        self.drafts.last_mut().unwrap()
    }
    fn new_lot_id(&mut self) -> u64 {
        self.next_lot += 1;
        self.next_lot
    }
}

const HEAD_KEY: &[u8] = b"head";

#[derive(serde::Serialize, serde::Deserialize)]
struct Head {
    v: u8,
    next_lot: u64,
}

fn hold_index_key(expires_at: Ms, id: &str) -> Vec<u8> {
    let mut k = ms_key(expires_at).to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

impl Ledger {
    pub fn open(store: Store) -> Result<Ledger> {
        let txn = store.read_txn()?;
        let idem = IdemFilter::load(&store, &txn)?;
        drop(txn);
        let mut l = Ledger {
            idem,
            idem_group: FxHashMap::default(),
            store,
            programmes: FxHashMap::default(),
            next_seq: 1,
            sealer: RefCell::new(Sealer::new(vec![0; 32])?),
            put_next: 1,
            next_lot: 0,
            head_dirty: false,
            accounts: RefCell::default(),
            accounts_dirty: Vec::new(),
            system_dirty: Default::default(),
            logged: LoggedKeys::default(),
            merge_rows: MergeRows::default(),
            log_groups: 0,
            log_entries: 0,
            log_idem: 0,
            last_logged: 0,
            last_folded: false,
            merge: None,
            merge_owed: 0,
            merge_policy: MergePolicy::default(),
            full_checkpoints: 0,
            merged_keys: 0,
            merge_cycles: 0,
            members: RefCell::default(),
            rules: RefCell::default(),
            expiry_memo: RefCell::default(),
            spare: Default::default(),
            system_keys: Default::default(),
            lists: ListPool::default(),
            warm_ring: Default::default(),
        };
        l.reload()?;
        // A log written before history heads holds member states. Once a later record logged a
        // head for such an account, readers would fold from its older checkpoint across entries
        // that carry no effects: write the old log back into the B-trees before anything else.
        let old_log = log_holds_member_states(&l.store, &*l.store.read_txn()?)?;
        if old_log {
            let store = l.store.clone();
            let mut txn = store.write_txn()?;
            l.checkpoint(&mut txn)?;
            txn.commit()?;
        }
        Ok(l)
    }

    /// (Re)load the writer's cached state from the committed store (after open or an abort).
    pub fn reload(&mut self) -> Result<()> {
        let store = self.store.clone();
        let txn = store.read_txn()?;
        self.accounts.borrow_mut().clear();
        self.accounts_dirty.clear();
        self.system_dirty.clear();
        self.idem_group.clear();
        self.members.borrow_mut().clear();
        self.rules.borrow_mut().clear();
        self.programmes.clear();
        for item in self.store.programmes.iter(&txn)? {
            let (_, v) = item?;
            let p: Programme = decode(v)?;
            self.programmes.insert(p.id.clone(), p);
        }
        match crate::journal::last(&self.store, &txn)? {
            Some(e) => {
                self.next_seq = e.seq + 1;
                self.sealer.get_mut().reset(e.h)?;
            }
            None => {
                self.next_seq = 1;
                self.sealer.get_mut().reset(vec![0; 32])?;
            }
        }
        self.put_next = self.next_seq;
        self.next_lot = get::<Head>(&self.store.meta, &txn, HEAD_KEY)?.map_or(0, |h| h.next_lot);
        self.head_dirty = false;
        // A merge under way is not resumed: a new one starts when the log is large again.
        self.merge = None;
        self.merge_owed = 0;
        self.count_log(&txn, true)?;
        Ok(())
    }

    /// Recount the log's records, states and idempotency records; with `keys`, rebuild the set
    /// of keys it holds too.
    fn count_log(&mut self, txn: &heed::RoTxn<'_, heed::WithoutTls>, keys: bool) -> Result<()> {
        self.log_groups = 0;
        self.log_entries = 0;
        self.log_idem = 0;
        if keys {
            self.logged.clear();
        }
        for item in self.store.state_log.iter(txn)? {
            let (k, blob) = item?;
            self.log_groups += 1;
            let record = record_seq(k)?;
            for (k, _) in StateLogBlob::entries(blob)? {
                self.log_entries += 1;
                self.log_idem += (k.first() == Some(&(LogTag::Idem as u8))) as usize;
                if keys {
                    self.logged.insert_tagged(k, record);
                }
            }
        }
        Ok(())
    }

    /// The state log's size: (records, states).
    pub fn log_size(&self) -> (usize, usize) {
        (self.log_groups, self.log_entries)
    }

    /// Keys a merge cycle starting now would merge at most.
    fn log_keys(&self) -> usize {
        self.logged.len() + self.log_idem
    }

    /// Log the accounts and rule states the group changed (one sorted record, appended); call
    /// once before committing the group. Then advance the rolling merge (starting one when the
    /// log is large), or checkpoint all at once if the log outgrew its hard bounds anyway.
    /// Returns true when a merge or checkpoint completed (the log lost its oldest records).
    pub fn flush_group(&mut self, txn: &mut RwTxn<'_>) -> Result<bool> {
        self.put_sealed(txn, true)?;
        if std::mem::take(&mut self.head_dirty) {
            put(&self.store.meta, txn, HEAD_KEY, &Head { v: SCHEMA_VERSION, next_lot: self.next_lot })?;
        }
        self.log_dirty(txn)?;
        let full = if self.log_groups > STATE_LOG_GROUPS_MAX || self.log_entries > self.merge_policy.entries_max {
            self.checkpoint(txn)?;
            true
        } else {
            let p = self.merge_policy;
            if self.merge.is_none() && self.log_groups > 0 && (self.log_entries >= p.at_entries || self.log_groups >= p.at_groups) {
                self.merge = Some(MergeCycle { upto: self.next_seq - 1, from: vec![], keys: self.log_keys(), merged: 0 });
                self.merge_cycles += 1;
                self.merge_owed = 0;
            }
            match &self.merge {
                None => false,
                Some(m) => {
                    // Finish before the log reaches either bound (a full checkpoint is a
                    // stall), even when small commits follow a large log. Records: each group
                    // that took a record slot carries its share of what is left (a group
                    // folded into the newest record took none). States: each group carries a
                    // share in proportion to the states it logged.
                    let left = m.keys.saturating_sub(m.merged);
                    let records_left = STATE_LOG_GROUPS_MAX.saturating_sub(self.log_groups + 2).max(1);
                    let by_records = if self.last_folded { 0 } else { left.div_ceil(records_left) };
                    let states_left = p.entries_max.saturating_sub(self.log_entries).max(1);
                    let by_states = (left as u128 * self.last_logged as u128).div_ceil(states_left as u128);
                    let by_states = usize::try_from(by_states).unwrap_or(usize::MAX);
                    let slice = (self.last_logged * p.slice_per_state).max(by_records).max(by_states).max(1);
                    self.merge_owed = self.merge_owed.saturating_add(slice);
                    if self.merge_owed >= p.slice_min.min(left) {
                        let owed = std::mem::take(&mut self.merge_owed);
                        self.merge_step(txn, owed)?
                    } else {
                        false
                    }
                }
            }
        };
        if self.accounts.borrow().len() > ACCOUNT_CACHE_ENTRIES_MAX {
            self.accounts.borrow_mut().clear();
        }
        self.trim_rule_states();
        Ok(full)
    }

    fn log_dirty(&mut self, txn: &mut RwTxn<'_>) -> Result<()> {
        let mut dirty = std::mem::take(&mut self.accounts_dirty);
        dirty.extend(self.system_dirty.drain().map(|k| (k, 0)));
        let states = self.rules_dirty_states();
        let mut ids: Vec<(String, IdemRecord)> = self.idem_group.drain().collect();
        self.last_logged = 0;
        self.last_folded = false;
        if dirty.is_empty() && states.is_empty() && ids.is_empty() {
            return Ok(());
        }
        // newest head first within a key; a key's run of rows is the entries it gained this group
        sort_by_key_bytes(&mut dirty, |a| a.0.as_bytes(), |a, b| b.1.cmp(&a.1));
        let accounts = dirty.chunk_by(|a, b| a.0 == b.0).count();
        sort_by_key_bytes(&mut ids, |a| a.0.as_bytes(), |_, _| std::cmp::Ordering::Equal);
        // Only a group that wrote an entry changes a state, so its last seq is a fresh key.
        let record = self.next_seq - 1;
        let n = accounts + ids.len() + states.len();
        let fold = self.fold_target(txn, n)?;
        let cache = self.accounts.borrow();
        let states_bytes: usize = states.iter().map(|(m, v)| 1 + m.len() + v.len()).sum::<usize>() + ids.iter().map(|(id, _)| 1 + id.len() + STATE_LOG_IDEM_RECORD_BYTES_TYPICAL).sum::<usize>();
        let mut blob = StateLogBlobWriter::new(n, accounts * STATE_LOG_ACCOUNT_BYTES_TYPICAL + states_bytes);
        // In key order: accounts (tag a), idempotency records (tag i), rule states (tag r), each
        // sorted by key. A member account is logged as its history head (`store::account_value`
        // rebuilds its state from its entries' effects), a system account as its state.
        let mut key = Vec::with_capacity(2 * ID_LENGTH_MAX + 2);
        let runs: Vec<&[(AcctKey, u64)]> = dirty.chunk_by(|a, b| a.0 == b.0).collect();
        let hashes: Vec<Hashed> = runs.iter().map(|run| hot_map::hash(&run[0].0)).collect();
        // Each key's lookup in `logged` is a cache miss or two: start them ahead, in two steps.
        let ahead = LOG_DIRTY_PREFETCH_AHEAD;
        for h in hashes.iter().take(2 * ahead) {
            self.logged.prefetch_slot(*h);
        }
        for (i, run) in runs.iter().enumerate() {
            if let Some(h) = hashes.get(i + 2 * ahead) {
                self.logged.prefetch_slot(*h);
            }
            if let Some(h) = hashes.get(i + ahead) {
                self.logged.prefetch_item(*h);
            }
            let (k, head) = &run[0];
            let system = is_system_account(k);
            let chain = self.logged.log_account(hashes[i], k, record, if system { 0 } else { run.len() as u32 });
            LogTag::Account.key_into(&mut key, k.as_bytes());
            if system {
                blob.push(&key, |out| encode_account_into(out, &cache[k.as_str()]));
            } else {
                debug_assert_eq!(*head, cache[k.as_str()].ls, "the newest head logged for {k}");
                assert!(*head >> 56 == 0, "a logged head's top byte is 0 (readers tell a head with its state by it)");
                if chain > self.merge_policy.read_chain_entries_max {
                    // head, then the state as of it (`store::account_value`)
                    blob.push(&key, |out| {
                        out.extend_from_slice(&head.to_be_bytes());
                        encode_account_into(out, &cache[k.as_str()]);
                    });
                } else {
                    blob.push(&key, |out| out.extend_from_slice(&head.to_be_bytes()));
                }
            }
        }
        // Idempotency records are encoded straight into the record (they are not in `logged`:
        // the Bloom filter sends the writer to the log for them).
        for (id, rec) in &ids {
            LogTag::Idem.key_into(&mut key, id.as_bytes());
            blob.push(&key, |out| encode_into(out, rec));
        }
        for (k, v) in &states {
            LogTag::RuleState.key_into(&mut key, k.as_bytes());
            blob.push(&key, |out| out.extend_from_slice(v));
            self.logged.insert_tagged(&key, record);
        }
        drop(cache);
        let blob = blob.finish();
        self.last_logged = n;
        // An id is recorded once, so a fold never finds it in the record it folds into.
        self.log_idem += ids.len();
        if let Some((prev, old)) = fold {
            return self.fold_into(txn, prev, old, &blob, record);
        }
        self.store.state_log.put_with_flags(txn, PutFlags::APPEND, &seq_key(record), &blob)?;
        self.log_groups += 1;
        self.log_entries += n;
        Ok(())
    }

    /// The newest record, as (its seq, its entries), when a group of `n` states may fold into
    /// it: small groups (a busy unary server commits many) would otherwise each take one of the
    /// log's STATE_LOG_GROUPS_MAX record slots, and the merge pacing then has to load large
    /// slices onto small commits. A record a merge cycle covers is never rewritten.
    fn fold_target(&self, txn: &RwTxn<'_>, n: usize) -> Result<Option<(u64, LogRows)>> {
        let max = self.merge_policy.fold_entries_max;
        if n == 0 || n > max {
            return Ok(None);
        }
        let Some((k, blob)) = self.store.state_log.last(txn)? else {
            return Ok(None);
        };
        let prev = record_seq(k)?;
        if self.merge.as_ref().is_some_and(|m| prev <= m.upto) || StateLogBlob::len(blob)? + n > max {
            return Ok(None);
        }
        Ok(Some((prev, StateLogBlob::entries(blob)?.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())))
    }

    /// Replace record `prev` by one at `record` holding its states and the group's record
    /// `group` (the group's win on the same key), in one write: readers see the old record or the
    /// new, never neither. The group's keys already point at `record`.
    fn fold_into(&mut self, txn: &mut RwTxn<'_>, prev: u64, old: LogRows, group: &[u8], record: u64) -> Result<()> {
        let new = StateLogBlob::entries(group)?;
        // both sorted by key: merge them
        let mut rows: Vec<(&[u8], &[u8])> = Vec::with_capacity(old.len() + new.len());
        let (mut a, mut b) = (old.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).peekable(), new.into_iter().peekable());
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
            };
            let row = match order {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                // the group's state is the newer
                std::cmp::Ordering::Equal => a.next().and(b.next()),
            };
            rows.push(row.expect("peeked"));
        }
        self.store.state_log.delete(txn, &seq_key(prev))?;
        self.store.state_log.put_with_flags(txn, PutFlags::APPEND, &seq_key(record), &StateLogBlob::encode(&rows))?;
        for (k, _) in &old {
            self.logged.insert_tagged(k, record);
        }
        self.log_entries = self.log_entries - old.len() + rows.len();
        self.last_folded = true;
        Ok(())
    }

    /// A rolling merge is under way (the writer advances it when idle: `merge_idle`).
    pub fn merge_pending(&self) -> bool {
        self.merge.is_some()
    }

    /// Advance the rolling merge by a minimum slice in a commit of its own (the writer calls this
    /// when no command waits). Returns true when the merge completed.
    pub fn merge_idle(&mut self, txn: &mut RwTxn<'_>) -> Result<bool> {
        if self.merge.is_none() {
            return Ok(false);
        }
        // (what groups were charged is paid: this step goes further than any of them)
        self.merge_owed = 0;
        self.merge_step(txn, self.merge_policy.slice_min.max(1))
    }

    /// One step of the rolling merge: the next `per_step` keys (in key order, from the cycle's
    /// cursor) that the cycle's records hold are written into their B-trees with the newest
    /// state the log holds for them. When no key is left, the cycle's records are dropped.
    fn merge_step(&mut self, txn: &mut RwTxn<'_>, per_step: usize) -> Result<bool> {
        let cycle = self.merge.as_ref().expect("a merge is under way");
        let upto = cycle.upto;
        // empty: `kept` empties it, and a step that failed left a new one
        let mut rows = std::mem::take(&mut self.merge_rows);
        let next: Option<Vec<u8>> = {
            // (record seq, blob, position, length), oldest record first
            let mut recs = vec![];
            for item in self.store.state_log.iter(txn)? {
                let (k, blob) = item?;
                let seq = record_seq(k)?;
                recs.push((seq, blob, StateLogBlob::lower_bound(blob, &cycle.from)?, StateLogBlob::len(blob)?));
            }
            // The records' cursors by (key, record index): the smallest key comes first, and a
            // key several records hold comes oldest record first (a k-way merge: O(log records)
            // per key, where comparing every record's cursor cost O(records)). Each cursor
            // carries its key's first 8 bytes as an integer (`key_prefix`), which orders most
            // pairs without a memcmp call: those calls were a quarter of a merge's samples.
            let mut heap = BinaryHeap::with_capacity(recs.len());
            for (i, &(_, blob, pos, n)) in recs.iter().enumerate() {
                if pos < n {
                    let key = StateLogBlob::entry(blob, pos, n)?.0;
                    heap.push(Reverse((key_prefix(key), key, i)));
                }
            }
            // 1. the step's keys, each with its newest state in the log
            let mut newest_of: Vec<(&[u8], &[u8])> = Vec::with_capacity(per_step.min(cycle.keys));
            let next = loop {
                let Some(&Reverse((_, key, _))) = heap.peek() else { break None };
                if newest_of.len() == per_step {
                    break Some(key.to_vec());
                }
                // newest state of the key; merged only if a record of this cycle holds it
                let (mut newest, mut in_cycle) = (None, false);
                while let Some(mut top) = heap.peek_mut() {
                    let Reverse((_, k, i)) = *top;
                    if k != key {
                        break;
                    }
                    let (seq, blob, pos, n) = &mut recs[i];
                    let (_, v) = StateLogBlob::entry(blob, *pos, *n)?;
                    newest = Some(v);
                    in_cycle |= *seq <= upto;
                    *pos += 1;
                    // The cursor's next key replaces it at the top, sifted down from there (a
                    // record's keys often follow each other: command ids that count up, a key
                    // that only one record holds); a pop and a push sifted it twice.
                    if *pos < *n {
                        let key = StateLogBlob::entry(blob, *pos, *n)?.0;
                        *top = Reverse((key_prefix(key), key, i));
                    } else {
                        PeekMut::pop(top);
                    }
                }
                if in_cycle {
                    newest_of.push((key, newest.expect("the key came from a record")));
                }
            };
            // 2. the values to write back. A member account's entry in the log is its history
            // head: `accounts` gets its state, the writer's (the newest, this group's included)
            // or rebuilt. Its lookups in the account cache and in `logged` are cache misses at
            // 1M members: started ahead, as in `log_dirty`.
            fn name(key: &[u8]) -> Option<&str> {
                match LogTag::split(key) {
                    Ok((LogTag::Account, k)) if !is_system_account_key(k) => std::str::from_utf8(k).ok(),
                    _ => None,
                }
            }
            let accounts: Vec<Option<(&str, Hashed)>> = newest_of.iter().map(|(key, _)| name(key).map(|n| (n, hot_map::hash(n)))).collect();
            let ahead = LOG_DIRTY_PREFETCH_AHEAD;
            let cache = self.accounts.borrow();
            for (i, &(key, newest)) in newest_of.iter().enumerate() {
                if let Some(Some((_, h))) = accounts.get(i + 2 * ahead) {
                    cache.prefetch_slot_hashed(*h);
                    self.logged.prefetch_slot(*h);
                }
                if let Some(Some((_, h))) = accounts.get(i + ahead) {
                    cache.prefetch_item(*h);
                    self.logged.prefetch_item(*h);
                }
                // the lots the encoding reads, once the account's item is in
                if let Some(Some((n, h))) = accounts.get(i + ahead / 2) {
                    if let Some(a) = cache.get_hashed(*h, n) {
                        crate::prefetch_slice(&a.lots, MERGE_PREFETCH_LOT_LINES_MAX);
                    }
                }
                match accounts[i] {
                    Some((name, h)) => {
                        // written back: a reader's chain starts here again
                        self.logged.written_back(name);
                        match cache.get_hashed(h, name) {
                            Some(a) => rows.push(key, |out| encode_account_into(out, a)),
                            None => {
                                let a = account_value(&self.store, txn, &key[1..], Some(newest))?.expect("a logged account has a state");
                                rows.push(key, |out| encode_account_into(out, &a));
                            }
                        }
                    }
                    None => rows.push(key, |out| out.extend_from_slice(newest)),
                }
            }
            next
        };
        write_sorted(&self.store, txn, &rows)?;
        let merged = rows.len();
        self.merged_keys += merged as u64;
        self.merge_rows = rows.kept();
        match next {
            Some(from) => {
                let m = self.merge.as_mut().expect("a merge is under way");
                m.from = from;
                m.merged += merged;
                Ok(false)
            }
            None => {
                let end = seq_key(upto);
                self.store.state_log.delete_range(txn, &(std::ops::Bound::Unbounded, std::ops::Bound::Included(&end[..])))?;
                self.merge = None;
                self.logged.drop_through(upto);
                self.count_log(txn, false)?;
                Ok(true)
            }
        }
    }

    /// Merge the state log into `accounts` and `rule_state` (the newest state of each record,
    /// written in key order so neighbours share pages) and empty the log. Many groups' updates
    /// of the same page cost one page write here instead of one per group.
    pub fn checkpoint(&mut self, txn: &mut RwTxn<'_>) -> Result<()> {
        self.log_dirty(txn)?;
        let Some((last, _)) = self.store.state_log.last(txn)? else {
            return Ok(());
        };
        // One merge cycle over every record, in a single step (replacing any cycle under way).
        self.merge = Some(MergeCycle { upto: record_seq(last)?, from: vec![], keys: self.log_keys(), merged: 0 });
        let done = self.merge_step(txn, usize::MAX)?;
        assert!(done && self.log_groups == 0 && self.logged.is_empty(), "a full checkpoint empties the state log");
        self.full_checkpoints += 1;
        Ok(())
    }

    /// Apply one command inside the group's write transaction.
    pub fn apply(&mut self, txn: &mut RwTxn<'_>, env: &Envelope) -> Result<Receipt> {
        self.apply_fingerprinted(txn, env.clone(), env.cmd.fingerprint())
    }

    /// `apply` with the command's fingerprint computed by the caller (off the writer thread);
    /// the command moves into its journal entry.
    pub fn apply_fingerprinted(&mut self, txn: &mut RwTxn<'_>, env: Envelope, fp: Fingerprint) -> Result<Receipt> {
        check_id("command id", &env.id)?;
        check_time("at", env.at)?;
        if matches!(env.cmd, Command::Expire { .. }) {
            // The sweep scans `accounts` in key order: bring it up to date first.
            self.checkpoint(txn)?;
        }
        let seen = self.idem_record(txn, &env.id)?;
        if let Some(rec) = seen {
            if rec.h != fp {
                return Err(LedgerError::IdempotencyConflict(env.id.clone()));
            }
            let entries = self.entries(txn, rec.seq, rec.n)?;
            return Ok(Receipt::from_entries(&entries, true));
        }
        let (accounts, drafts) = std::mem::take(&mut self.spare);
        let mut w = Work {
            seq0: self.next_seq,
            next_lot: self.next_lot,
            accounts,
            members: vec![],
            holds: vec![],
            open_holds_put: vec![],
            open_holds_del: vec![],
            programmes: vec![],
            reversals: vec![],
            outbox: vec![],
            cards: vec![],
            drafts,
            rules: Default::default(),
            lists: std::mem::take(&mut self.lists),
        };
        if let Err(e) = self.run(txn, &mut w, &env) {
            w.accounts.clear();
            w.drafts.clear();
            self.spare = (w.accounts, w.drafts);
            self.give_back_lists(w.lists);
            return Err(e);
        }
        if w.drafts.is_empty() {
            w.drafts.push(Draft::default());
        }
        self.flush(txn, w, env, fp)
    }

    /// Return the list pool a command borrowed (its place holds the empty pool left by
    /// `mem::take`, forgotten rather than dropped: dropping it, six empty lists, showed as ~2%
    /// of the writer's samples in the mixed workload, most of them on the call's entry, perf).
    fn give_back_lists(&mut self, lists: ListPool) {
        let empty = std::mem::replace(&mut self.lists, lists);
        debug_assert!(empty.is_empty(), "the pool was lent whole");
        std::mem::forget(empty);
    }

    /// The idempotency record of command `id`: written by this group, still in the state log,
    /// or merged into `idempotency`. Most ids are new, and the Bloom filter proves it without
    /// a search.
    fn idem_record(&self, txn: &RwTxn<'_>, id: &str) -> Result<Option<IdemRecord>> {
        if !self.idem.may_contain(id.as_bytes()) {
            return Ok(None);
        }
        if let Some(rec) = self.idem_group.get(id) {
            return Ok(Some(rec.clone()));
        }
        get_logged(&self.store, txn, LogTag::Idem, id.as_bytes())
    }

    fn entries(&self, txn: &RwTxn<'_>, seq: u64, n: u32) -> Result<Vec<Entry>> {
        (seq..seq + n as u64).map(|s| self.journal_entry(txn, s)).collect()
    }

    /// Journal entry `seq`, committed, put in this group, or still with the sealer.
    fn journal_entry(&self, txn: &RwTxn<'_>, seq: u64) -> Result<Entry> {
        if seq >= self.put_next {
            if let Some(bytes) = self.sealer.borrow_mut().find(seq)? {
                return decode(bytes);
            }
        }
        crate::journal::entry_known(&self.store, txn, seq)
    }

    /// Put the journal chunks the sealer has finished into the journal; with `all`, wait for
    /// every queued entry (before the group commits).
    fn put_sealed(&mut self, txn: &mut RwTxn<'_>, all: bool) -> Result<()> {
        let sealer = self.sealer.get_mut();
        let sealed = if all { sealer.finish()? } else { sealer.take_ready() };
        for c in sealed {
            debug_assert_eq!(c.first, self.put_next);
            self.store.journal.put_with_flags(txn, PutFlags::APPEND, &seq_key(c.first), &c.bytes)?;
            self.put_next = c.first + c.n as u64;
        }
        debug_assert!(!all || self.put_next == self.next_seq, "every entry of the group is in the journal");
        Ok(())
    }

    // ----- reads through the overlay -----

    fn programme(&self, w: &Work, id: &str) -> Result<Programme> {
        if let Some(p) = w.programmes.iter().rev().find(|p| p.id == id) {
            return Ok(p.clone());
        }
        self.programmes.get(id).cloned().ok_or_else(|| LedgerError::UnknownProgramme(id.to_string()))
    }

    fn programme_ref<'a>(&'a self, id: &str) -> Result<&'a Programme> {
        self.programmes.get(id).ok_or_else(|| LedgerError::UnknownProgramme(id.to_string()))
    }

    fn member(&self, txn: &RwTxn<'_>, w: &Work, id: &str) -> Result<Rc<Member>> {
        if let Some(m) = w.members.iter().rev().find(|m| m.id == id) {
            return Ok(Rc::new(m.clone()));
        }
        if let Some(m) = self.members.borrow().get(id) {
            return Ok(m.clone());
        }
        check_id("member id", id)?;
        let m = get::<Member>(&self.store.members, txn, id.as_bytes())?.ok_or_else(|| LedgerError::UnknownMember(id.to_string()))?;
        let m = Rc::new(m);
        self.members.borrow_mut().insert(AcctKey::from(id), m.clone());
        Ok(m)
    }

    fn acct(&self, txn: &RwTxn<'_>, w: &mut Work, key: &str) -> Result<usize> {
        if let Some(i) = w.accounts.iter().position(|(k, _)| k == key) {
            return Ok(i);
        }
        let cached = self.accounts.borrow().get(key).map(|a| a.clone_with_room(w.lists.lots()));
        let a = match cached {
            Some(a) => a,
            None => {
                let a = get_account_known(&self.store, txn, &self.logged, key.as_bytes())?
                    .unwrap_or_else(Account::empty);
                // Read-through: the committed state is what `flush` diffs the command's against.
                self.accounts.borrow_mut().insert(AcctKey::from(key), a.clone());
                a
            }
        };
        w.accounts.push((AcctKey::from(key), a));
        Ok(w.accounts.len() - 1)
    }

    fn post(&self, txn: &RwTxn<'_>, w: &mut Work, t: &str, from: &str, to: &str, n: i64) -> Result<()> {
        debug_assert!(n > 0);
        let f = self.acct(txn, w, from)?;
        let d = self.acct(txn, w, to)?;
        let fb = w.accounts[f].1.b.checked_sub(n).ok_or_else(|| LedgerError::LimitExceeded("balance overflow".into()))?;
        let db = w.accounts[d].1.b.checked_add(n).ok_or_else(|| LedgerError::LimitExceeded("balance overflow".into()))?;
        w.accounts[f].1.b = fb;
        w.accounts[d].1.b = db;
        w.draft().po.push(Posting { t: AcctKey::from(t), from: AcctKey::from(from), to: AcctKey::from(to), n });
        Ok(())
    }

    fn hold_rec(&self, txn: &RwTxn<'_>, w: &Work, id: &str) -> Result<Hold> {
        if let Some(h) = w.holds.iter().rev().find(|h| h.id == id) {
            return Ok(h.clone());
        }
        check_id("hold id", id)?;
        get::<Hold>(&self.store.holds, txn, id.as_bytes())?.ok_or_else(|| LedgerError::UnknownHold(id.to_string()))
    }

    /// `store::system_account`, remembered per kind.
    fn system_key(&self, programme: &str, kind: SystemAccount, point_type: &str) -> AcctKey {
        let mut memo = self.system_keys.borrow_mut();
        let slot = &mut memo[kind as usize];
        if let Some((p, t, key)) = slot {
            if p == programme && t == point_type {
                return key.clone();
            }
        }
        let key = system_account(programme, kind, point_type);
        *slot = Some((AcctKey::from(programme), AcctKey::from(point_type), key.clone()));
        key
    }

    // ----- lots -----

    /// `validity.expiry(earned_at)`, remembered for the next credit.
    fn expiry(&self, validity: &Validity, earned_at: Ms) -> Option<Ms> {
        let mut memo = self.expiry_memo.borrow_mut();
        if let Some((v, at, x)) = memo.as_ref() {
            if *at == earned_at && v == validity {
                return *x;
            }
        }
        let x = validity.expiry(earned_at);
        *memo = Some((validity.clone(), earned_at, x));
        x
    }

    fn insert_lot(acct: &mut Account, lot: Lot) -> Result<()> {
        if acct.lots.len() >= LOTS_PER_ACCOUNT_MAX {
            return Err(LedgerError::LimitExceeded(format!("an account holds at most {LOTS_PER_ACCOUNT_MAX} lots")));
        }
        let key = lot.fefo_key();
        let pos = acct.lots.partition_point(|l| l.fefo_key() < key);
        acct.lots.insert(pos, lot);
        Ok(())
    }

    /// Put `n` points of a consumed slice back into its lot, keeping the original expiry.
    fn restore(acct: &mut Account, c: &Consumed, n: i64) -> Result<()> {
        if let Some(l) = acct.lots.iter_mut().find(|l| l.i == c.lot.i) {
            l.r += n;
            return Ok(());
        }
        Self::insert_lot(acct, Lot { r: n, ..c.lot.clone() })
    }

    /// Take `amount` from the accounts `(type, key)` in order, earliest expiry first within each
    /// (RD-12, EX-11). `spendable_only` excludes pending and expired lots. Refuses (changing
    /// nothing) when the lots do not cover the amount (RD-8, RD-13).
    fn take(&self, txn: &RwTxn<'_>, w: &mut Work, accts: &[(AcctKey, AcctKey)], amount: i64, now: Ms, spendable_only: bool) -> Result<Vec<Consumed>> {
        assert!(accts.len() <= POINT_TYPES_PER_PROGRAMME_MAX, "one account per point type");
        // on the stack: a Vec here was an allocation per redeem (perf, session 21)
        let mut idx = [0usize; POINT_TYPES_PER_PROGRAMME_MAX];
        let mut available: i64 = 0;
        for (n, (_, key)) in accts.iter().enumerate() {
            let i = self.acct(txn, w, key)?;
            available += w.accounts[i].1.lots.iter().filter(|l| !spendable_only || l.spendable_at(now)).map(|l| l.r).sum::<i64>();
            idx[n] = i;
        }
        if available < amount {
            return Err(LedgerError::InsufficientPoints { requested: amount, available });
        }
        let mut left = amount;
        let mut used = w.lists.consumed();
        for ((t, _), &i) in accts.iter().zip(&idx) {
            let acct = &mut w.accounts[i].1;
            for lot in acct.lots.iter_mut() {
                if left == 0 {
                    break;
                }
                if lot.r == 0 || (spendable_only && !lot.spendable_at(now)) {
                    continue;
                }
                let n = lot.r.min(left);
                used.push(Consumed { t: t.clone(), lot: lot.clone(), n });
                lot.r -= n;
                left -= n;
            }
            acct.lots.retain(|l| l.r > 0);
            if left == 0 {
                break;
            }
        }
        debug_assert_eq!(left, 0);
        Ok(used)
    }

    /// Post each point type's share of `slices` (`type_runs`) from `from(type)` to `to(type)`:
    /// one posting per pair of accounts, not one per lot (a redeem draws from 2-3 lots; the
    /// lots are in the entry's `used`).
    fn post_runs(&self, txn: &RwTxn<'_>, w: &mut Work, slices: &[Consumed], from: impl Fn(&str) -> AcctKey, to: impl Fn(&str) -> AcctKey) -> Result<()> {
        for (t, n) in type_runs(slices) {
            self.post(txn, w, t, &from(t), &to(t), n)?;
        }
        Ok(())
    }

    /// Member accounts to debit, in spending order: one type, or all of the programme's by priority.
    fn debit_accounts(p: &Programme, member: &str, point_type: &Option<String>) -> Result<Vec<(AcctKey, AcctKey)>> {
        Ok(match point_type {
            Some(t) => vec![(AcctKey::from(p.point_type(t)?.id.as_str()), member_account(member, t))],
            None => p.types.iter().map(|t| (AcctKey::from(t.id.as_str()), member_account(member, &t.id))).collect(),
        })
    }

    fn check_order(amount: i64, order: &Order) -> Result<()> {
        check_amount(amount)?;
        for (what, s) in [("channel", &order.channel), ("merchant", &order.merchant), ("order_ref", &order.order_ref), ("org", &order.org)] {
            check_text(what, s)?;
        }
        Ok(())
    }

    /// RD-20 order rules of the point types an order will surely draw from, checked before
    /// looking at the balance: the requested type, or the programme's only type.
    fn check_order_rules_upfront(p: &Programme, point_type: &Option<String>, amount: i64) -> Result<()> {
        match point_type {
            Some(t) => p.point_type(t)?.cash.check_order(amount),
            None if p.types.len() == 1 => p.types[0].cash.check_order(amount),
            None => Ok(()),
        }
    }

    /// RD-20 order rules (minimum, step, per-order cap) of every point type the order drew from.
    fn check_order_rules(p: &Programme, used: &[Consumed], amount: i64) -> Result<()> {
        for t in &p.types {
            if used.iter().any(|c| c.t == t.id) {
                t.cash.check_order(amount)?;
            }
        }
        Ok(())
    }

    fn active_member(&self, txn: &RwTxn<'_>, w: &Work, id: &str) -> Result<Rc<Member>> {
        let m = self.member(txn, w, id)?;
        if m.status == MemberStatus::Frozen {
            return Err(LedgerError::MemberFrozen(id.to_string()));
        }
        Ok(m)
    }

    // ----- commands -----

    fn run(&self, txn: &RwTxn<'_>, w: &mut Work, env: &Envelope) -> Result<()> {
        let at = env.at;
        match &env.cmd {
            Command::DefineProgramme { programme, name } => {
                check_key_id("programme id", programme)?;
                check_text("name", name)?;
                if self.programmes.contains_key(programme) {
                    return Err(LedgerError::AlreadyExists(format!("programme {programme:?} exists")));
                }
                w.programmes.push(Programme { v: SCHEMA_VERSION, id: programme.clone(), name: name.clone(), types: vec![] });
            }
            Command::DefinePointType { programme, point_type } => {
                let mut p = self.programme(w, programme)?;
                check_key_id("point type id", &point_type.id)?;
                point_type.validity.check()?;
                point_type.cash.check()?;
                for c in &point_type.convert_to {
                    check_id("convert target", &c.to)?;
                    if c.num <= 0 || c.den <= 0 || c.num > RATE_TERM_MAX || c.den > RATE_TERM_MAX {
                        return invalid(format!("convert rate terms must be 1..={RATE_TERM_MAX}"));
                    }
                }
                if p.types.iter().any(|t| t.id == point_type.id) {
                    return Err(LedgerError::AlreadyExists(format!("point type {:?} exists", point_type.id)));
                }
                if p.types.len() >= POINT_TYPES_PER_PROGRAMME_MAX {
                    return Err(LedgerError::LimitExceeded(format!("at most {POINT_TYPES_PER_PROGRAMME_MAX} point types")));
                }
                p.types.push(point_type.clone());
                p.types.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
                w.programmes.push(p);
            }
            Command::OpenMember { member, programme, phone, id_hash, org, tier, kind } => {
                check_key_id("member id", member)?;
                self.programme_ref(programme)?;
                for s in [phone, tier, kind].into_iter().chain(org.iter()) {
                    check_text("member field", s)?;
                }
                if org.len() > 4 {
                    return invalid("organisation path is province/city/county/outlet (at most 4 parts)");
                }
                match self.member(txn, w, member) {
                    Err(LedgerError::UnknownMember(_)) => {}
                    Ok(_) => return Err(LedgerError::AlreadyExists(format!("member {member:?} exists"))),
                    Err(e) => return Err(e),
                }
                w.members.push(Member {
                    v: SCHEMA_VERSION,
                    id: member.clone(),
                    programme: programme.clone(),
                    phone: phone.clone(),
                    id_hash: id_hash.clone(),
                    org: org.clone(),
                    tier: tier.clone(),
                    kind: kind.clone(),
                    status: MemberStatus::Active,
                    created_at: at,
                    cards: vec![],
                });
            }
            Command::Credit { member, point_type, amount, effective_at, memo } => {
                check_amount(*amount)?;
                check_text("memo", memo)?;
                let m = self.member(txn, w, member)?;
                let p = self.programme_ref(&m.programme)?;
                let t = p.point_type(point_type)?;
                let eff = effective_at.unwrap_or(at);
                check_time("effective_at", eff)?;
                if eff < at {
                    return invalid("effective_at must not be before the command time");
                }
                let key = member_account(member, point_type);
                let i = self.acct(txn, w, &key)?;
                let lot = Lot { i: w.new_lot_id(), r: *amount, a: *amount, e: at, x: self.expiry(&t.validity, at), f: eff, s: w.seq0, g: None };
                Self::insert_lot(&mut w.accounts[i].1, lot.clone())?;
                self.post(txn, w, point_type, &self.system_key(&p.id, SystemAccount::Issuance, point_type), &key, *amount)?;
                let d = w.draft();
                d.made.push(Consumed { t: AcctKey::from(point_type.as_str()), lot, n: *amount });
                d.amount = *amount;
            }
            Command::Redeem { member, point_type, amount, order } => {
                let m = self.active_member(txn, w, member)?;
                let p = self.programme_ref(&m.programme)?;
                Self::check_order(*amount, order)?;
                Self::check_order_rules_upfront(p, point_type, *amount)?;
                let accts = Self::debit_accounts(p, member, point_type)?;
                let used = self.take(txn, w, &accts, *amount, at, true)?;
                Self::check_order_rules(p, &used, *amount)?;
                self.post_runs(txn, w, &used, |t| member_account(member, t), |t| self.system_key(&p.id, SystemAccount::Redemption, t))?;
                let d = w.draft();
                d.used = used;
                d.amount = *amount;
            }
            Command::Hold { member, point_type, amount, ttl_ms, order, otp } => {
                if !(HOLD_TTL_MS_MIN..=HOLD_TTL_MS_MAX).contains(ttl_ms) {
                    return invalid(format!("ttl_ms must be {HOLD_TTL_MS_MIN}..={HOLD_TTL_MS_MAX}"));
                }
                // A time near i64::MAX must be refused, not overflow (a panic kills the writer).
                let expires_at = at.checked_add(*ttl_ms).ok_or_else(|| LedgerError::InvalidArgument("hold expiry is out of range".into()))?;
                let m = self.active_member(txn, w, member)?;
                let p = self.programme_ref(&m.programme)?;
                Self::check_order(*amount, order)?;
                Self::check_order_rules_upfront(p, point_type, *amount)?;
                if get::<Hold>(&self.store.holds, txn, env.id.as_bytes())?.is_some() {
                    return Err(LedgerError::AlreadyExists(format!("hold {:?} exists", env.id)));
                }
                let accts = Self::debit_accounts(p, member, point_type)?;
                let used = self.take(txn, w, &accts, *amount, at, true)?;
                Self::check_order_rules(p, &used, *amount)?;
                self.post_runs(txn, w, &used, |t| member_account(member, t), |t| self.system_key(&p.id, SystemAccount::Holds, t))?;
                for (t, n) in type_runs(&used) {
                    let i = self.acct(txn, w, &member_account(member, t))?;
                    w.accounts[i].1.hd += n;
                }
                w.open_holds_put.push(hold_index_key(expires_at, &env.id));
                if let Some(o) = otp {
                    if o.hash.is_empty() || o.attempts == 0 || o.attempts > OTP_ATTEMPTS_MAX || o.sealed.len() > OTP_SEALED_BYTES_MAX {
                        return invalid(format!("otp needs a hash, 1..={OTP_ATTEMPTS_MAX} attempts and a sealed code of at most {OTP_SEALED_BYTES_MAX} bytes"));
                    }
                    let mut key = seq_key(w.seq0).to_vec();
                    key.extend_from_slice(env.id.as_bytes());
                    w.outbox.push((key, OutboxMessage { v: SCHEMA_VERSION, kind: "otp".into(), hold: env.id.clone(), member: member.clone(),
                        phone: m.phone.clone(), sealed: o.sealed.clone(), expires_at }));
                }
                w.holds.push(Hold {
                    v: SCHEMA_VERSION,
                    id: env.id.clone(),
                    member: member.clone(),
                    programme: p.id.clone(),
                    amount: *amount,
                    captured: 0,
                    state: HoldState::Open,
                    expires_at,
                    seq: w.seq0,
                    consumed: used.clone(),
                    otp: otp.as_ref().map(|o| HoldOtp { hash: o.hash.clone(), left: o.attempts }),
                });
                let d = w.draft();
                d.used = used;
                d.amount = *amount;
            }
            Command::Capture { hold, amount, otp } => {
                let mut h = self.hold_rec(txn, w, hold)?;
                if h.state != HoldState::Open {
                    return Err(LedgerError::HoldNotOpen { id: hold.clone(), state: h.state.name().into() });
                }
                if at >= h.expires_at {
                    return Err(LedgerError::HoldExpired(hold.clone()));
                }
                self.active_member(txn, w, &h.member)?;
                if let Some(code) = h.otp.clone() {
                    let Some(given) = otp else {
                        return invalid(format!("hold {hold:?} requires a one-time code"));
                    };
                    if *given != code.hash {
                        // A wrong code is recorded (RK-5): one attempt fewer; the last voids the hold.
                        let left = code.left.saturating_sub(1);
                        if left == 0 {
                            h.otp = Some(HoldOtp { left, ..code });
                            self.void_hold(txn, w, h)?;
                            w.draft().cursor = Some("otp_exhausted".into());
                        } else {
                            h.otp = Some(HoldOtp { left, ..code });
                            w.holds.push(h);
                            let d = w.draft();
                            d.cursor = Some(format!("otp_rejected:{left}"));
                        }
                        return Ok(());
                    }
                }
                let n = amount.unwrap_or(h.amount);
                check_amount(n)?;
                if n > h.amount {
                    return invalid(format!("capture {n} exceeds the hold's {}", h.amount));
                }
                let (captured, released) = split_slices(&h.consumed, n);
                self.post_runs(txn, w, &captured, |t| self.system_key(&h.programme, SystemAccount::Holds, t), |t| self.system_key(&h.programme, SystemAccount::Redemption, t))?;
                self.release(txn, w, &h, &released)?;
                self.unpin(txn, w, &h)?;
                let touch = captured.iter().map(|c| member_account(&h.member, &c.t)).collect();
                h.state = HoldState::Captured;
                h.captured = n;
                w.open_holds_del.push(hold_index_key(h.expires_at, &h.id));
                w.holds.push(h);
                let d = w.draft();
                d.touch = touch;
                d.used = captured;
                d.amount = n;
            }
            Command::Void { hold } => {
                let h = self.hold_rec(txn, w, hold)?;
                if h.state != HoldState::Open {
                    return Err(LedgerError::HoldNotOpen { id: hold.clone(), state: h.state.name().into() });
                }
                self.void_hold(txn, w, h)?;
            }
            Command::Transfer { from, to, point_type, amount } => {
                check_amount(*amount)?;
                if from == to {
                    return invalid("cannot transfer to the same member");
                }
                let a = self.active_member(txn, w, from)?;
                let b = self.member(txn, w, to)?;
                if a.programme != b.programme {
                    return invalid("members belong to different programmes");
                }
                let p = self.programme_ref(&a.programme)?;
                if !p.point_type(point_type)?.transferable {
                    return Err(LedgerError::NotTransferable(point_type.clone()));
                }
                let src = member_account(from, point_type);
                let dst = member_account(to, point_type);
                let used = self.take(txn, w, &[(AcctKey::from(point_type.as_str()), src.clone())], *amount, at, true)?;
                // The receiver's lots keep the sender's expiry: a gift never extends validity.
                let mut made = vec![];
                let di = self.acct(txn, w, &dst)?;
                for c in &used {
                    let lot = Lot { i: w.new_lot_id(), r: c.n, a: c.n, e: c.lot.e, x: c.lot.x, f: at, s: w.seq0, g: None };
                    Self::insert_lot(&mut w.accounts[di].1, lot.clone())?;
                    made.push(Consumed { t: AcctKey::from(point_type.as_str()), lot, n: c.n });
                }
                self.post(txn, w, point_type, &src, &dst, *amount)?;
                let d = w.draft();
                d.used = used;
                d.made = made;
                d.amount = *amount;
            }
            Command::Convert { member, from_type, to_type, amount } => {
                check_amount(*amount)?;
                let m = self.active_member(txn, w, member)?;
                let p = self.programme_ref(&m.programme)?;
                let ft = p.point_type(from_type)?;
                let tt = p.point_type(to_type)?;
                let rate = ft.convert_to.iter().find(|c| &c.to == to_type).ok_or_else(|| {
                    LedgerError::InvalidArgument(format!("{from_type:?} cannot be converted to {to_type:?}"))
                })?;
                let credited = ((*amount as i128 * rate.num as i128) / rate.den as i128) as i64;
                if credited <= 0 {
                    return invalid(format!("{amount} {from_type} converts to zero {to_type}"));
                }
                check_amount(credited)?;
                let src = member_account(member, from_type);
                let dst = member_account(member, to_type);
                let used = self.take(txn, w, &[(AcctKey::from(from_type.as_str()), src.clone())], *amount, at, true)?;
                self.post(txn, w, from_type, &src, &self.system_key(&p.id, SystemAccount::Conversion, from_type), *amount)?;
                let lot = Lot { i: w.new_lot_id(), r: credited, a: credited, e: at, x: self.expiry(&tt.validity, at), f: at, s: w.seq0, g: None };
                let di = self.acct(txn, w, &dst)?;
                Self::insert_lot(&mut w.accounts[di].1, lot.clone())?;
                self.post(txn, w, to_type, &self.system_key(&p.id, SystemAccount::Conversion, to_type), &dst, credited)?;
                let d = w.draft();
                d.used = used;
                d.made = vec![Consumed { t: AcctKey::from(to_type.as_str()), lot, n: credited }];
                d.amount = *amount;
                d.credited = credited;
            }
            Command::Reverse { target, amount, ratio, reason } => self.reverse(txn, w, at, target, *amount, *ratio, reason)?,
            Command::Expire { as_of, after } => {
                check_time("as_of", *as_of)?;
                let after = after.as_ref().filter(|a| !a.is_empty());
                self.expire(txn, w, *as_of, after)?
            }
            Command::Freeze { member, reason } | Command::Unfreeze { member, reason } => {
                check_text("reason", reason)?;
                let mut m = Member::clone(&*self.member(txn, w, member)?);
                m.status = if matches!(env.cmd, Command::Freeze { .. }) { MemberStatus::Frozen } else { MemberStatus::Active };
                w.members.push(m);
            }
            Command::BindCard { member, card } => {
                check_card(card)?;
                let mut m = Member::clone(&*self.member(txn, w, member)?);
                // A frozen member may still get a card: freezing stops spending, not service.
                if let Some(c) = get::<Card>(&self.store.cards, txn, card.as_bytes())? {
                    let whose = if c.member == *member { "this member" } else { "another member" };
                    return Err(LedgerError::CardAlreadyBound(format!("card {card} is already bound to {whose}")));
                }
                if m.cards.len() >= CARDS_PER_MEMBER_MAX {
                    return Err(LedgerError::LimitExceeded(format!("member {member:?} already holds {CARDS_PER_MEMBER_MAX} cards (the most)")));
                }
                m.cards.push(card.clone());
                w.members.push(m);
                w.cards.push((card.clone(), Some(Card { v: SCHEMA_VERSION, card: card.clone(), member: member.clone(), bound_at: at, seq: w.seq0 })));
            }
            Command::UnbindCard { member, card, reason } => {
                check_card(card)?;
                check_text("reason", reason)?;
                let mut m = Member::clone(&*self.member(txn, w, member)?);
                let Some(i) = m.cards.iter().position(|c| c == card) else {
                    return Err(LedgerError::UnknownCard(format!("card {card} is not bound to member {member:?}")));
                };
                m.cards.remove(i);
                w.members.push(m);
                w.cards.push((card.clone(), None));
            }
            cmd => {
                debug_assert!(cmd.is_rules());
                self.run_rules(txn, w, env)?
            }
        }
        Ok(())
    }

    /// Return released hold slices to the member's lots (holds → member).
    fn release(&self, txn: &RwTxn<'_>, w: &mut Work, h: &Hold, slices: &[Consumed]) -> Result<()> {
        self.post_runs(txn, w, slices, |t| self.system_key(&h.programme, SystemAccount::Holds, t), |t| member_account(&h.member, t))?;
        for c in slices {
            let i = self.acct(txn, w, &member_account(&h.member, &c.t))?;
            Self::restore(&mut w.accounts[i].1, c, c.n)?;
        }
        Ok(())
    }

    fn unpin(&self, txn: &RwTxn<'_>, w: &mut Work, h: &Hold) -> Result<()> {
        for (t, n) in type_runs(&h.consumed) {
            let i = self.acct(txn, w, &member_account(&h.member, t))?;
            w.accounts[i].1.hd -= n;
        }
        Ok(())
    }

    fn void_hold(&self, txn: &RwTxn<'_>, w: &mut Work, mut h: Hold) -> Result<()> {
        self.release(txn, w, &h, &h.consumed.clone())?;
        self.unpin(txn, w, &h)?;
        h.state = HoldState::Voided;
        w.open_holds_del.push(hold_index_key(h.expires_at, &h.id));
        let d = w.draft();
        d.amount = h.amount;
        d.used = h.consumed.clone();
        w.holds.push(h);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn reverse(&self, txn: &RwTxn<'_>, w: &mut Work, at: Ms, target: &str, amount: Option<i64>, ratio: Option<(i64, i64)>, reason: &str) -> Result<()> {
        check_id("target id", target)?;
        check_text("reason", reason)?;
        let rec = self.idem_record(txn, target)?.ok_or_else(|| LedgerError::UnknownEntry(target.to_string()))?;
        let e = self.journal_entry(txn, rec.seq)?;
        let original = match &e.cmd {
            // A capture entry with a cursor recorded a wrong one-time code, not a capture.
            Command::Capture { .. } if e.cursor.is_some() => return Err(LedgerError::NotReversible("a rejected one-time code cannot be reversed".into())),
            Command::Credit { .. } | Command::Redeem { .. } | Command::Capture { .. } | Command::Transfer { .. } | Command::Convert { .. } => e.amount,
            other => return Err(LedgerError::NotReversible(format!("a {} cannot be reversed", other.kind()))),
        };
        let done: i64 = match w.reversals.iter().rev().find(|(s, _)| *s == e.seq) {
            Some((_, n)) => *n,
            None => get::<i64>(&self.store.reversals, txn, &seq_key(e.seq))?.unwrap_or(0),
        };
        let left = original - done;
        let n = match (amount, ratio) {
            (Some(_), Some(_)) => return invalid("give amount or ratio, not both"),
            (Some(a), None) => a,
            (None, Some((num, den))) => {
                if num <= 0 || den <= 0 || num > den {
                    return invalid("ratio must be num/den with 0 < num <= den");
                }
                ((original as i128 * num as i128) / den as i128) as i64
            }
            (None, None) => left,
        };
        check_amount(n)?;
        if n > left {
            return invalid(format!("reversal of {n} exceeds the {left} points left to reverse on {target:?}"));
        }
        let made_lots: Vec<u64> = e.made.iter().map(|c| c.lot.i).collect();
        match &e.cmd {
            Command::Credit { member, point_type, .. } => {
                // Clawback (RK-10): the credited lot first, then the rest earliest-expiry first.
                let m = self.member(txn, w, member)?;
                let key = member_account(member, point_type);
                let used = self.claw_back(txn, w, at, point_type, &key, &made_lots, n)?;
                self.post(txn, w, point_type, &key, &self.system_key(&m.programme, SystemAccount::Issuance, point_type), n)?;
                w.draft().used = used;
            }
            Command::Transfer { from, to, point_type, .. } => {
                // The receiver gives back what it got (the lots the transfer made first), the
                // sender gets its own lots back with their original expiry.
                let (src, dst) = (member_account(from, point_type), member_account(to, point_type));
                let used = self.claw_back(txn, w, at, point_type, &dst, &made_lots, n)?;
                let restored = self.restore_used(txn, w, from, &e.used, done, n)?;
                self.post(txn, w, point_type, &dst, &src, n)?;
                let d = w.draft();
                d.used = used;
                d.made = restored;
            }
            Command::Convert { member, from_type, to_type, .. } => {
                // Undo n of the converted points: the converted-to points are clawed back in the
                // same proportion, rounded so that the whole reversal takes exactly what was
                // credited (XF-2).
                let m = self.member(txn, w, member)?;
                let share = |k: i64| ((k as i128 * e.credited as i128) / original as i128) as i64;
                let back = share(done + n) - share(done);
                let used = if back > 0 {
                    let key = member_account(member, to_type);
                    let used = self.claw_back(txn, w, at, to_type, &key, &made_lots, back)?;
                    self.post(txn, w, to_type, &key, &self.system_key(&m.programme, SystemAccount::Conversion, to_type), back)?;
                    used
                } else {
                    vec![]
                };
                let restored = self.restore_used(txn, w, member, &e.used, done, n)?;
                self.post(txn, w, from_type, &self.system_key(&m.programme, SystemAccount::Conversion, from_type), &member_account(member, from_type), n)?;
                let d = w.draft();
                d.used = used;
                d.made = restored;
                d.credited = back;
            }
            _ => {
                // Refund of a redeem or capture: restore the consumed lots, last taken first,
                // with their original expiry.
                let member = match &e.cmd {
                    Command::Redeem { member, .. } => member.clone(),
                    Command::Capture { hold, .. } => self.hold_rec(txn, w, hold)?.member,
                    _ => unreachable!("reversible kinds are matched above"),
                };
                let m = self.member(txn, w, &member)?;
                let restored = self.restore_used(txn, w, &member, &e.used, done, n)?;
                self.post_runs(txn, w, &restored, |t| self.system_key(&m.programme, SystemAccount::Redemption, t), |t| member_account(&member, t))?;
                w.draft().made = restored;
            }
        }
        w.reversals.push((e.seq, done + n));
        w.draft().amount = n;
        Ok(())
    }

    /// Take `n` points back from `key` (pending and unswept lots included): the lots in `first`
    /// before the others, the rest earliest-expiry first. Refuses when the account is short.
    #[allow(clippy::too_many_arguments)]
    fn claw_back(&self, txn: &RwTxn<'_>, w: &mut Work, at: Ms, t: &str, key: &str, first: &[u64], n: i64) -> Result<Vec<Consumed>> {
        let i = self.acct(txn, w, key)?;
        let lots = &mut w.accounts[i].1.lots;
        lots.sort_by_key(|l| (first.iter().position(|id| *id == l.i).unwrap_or(usize::MAX), l.fefo_key()));
        let used = self.take(txn, w, &[(AcctKey::from(t), AcctKey::from(key))], n, at, false);
        w.accounts[i].1.lots.sort_by_key(|l| l.fefo_key());
        used
    }

    /// Put `n` of the points an entry consumed (`used`, in the order taken) back into the
    /// member's lots, last taken first, skipping the `done` points earlier reversals restored.
    fn restore_used(&self, txn: &RwTxn<'_>, w: &mut Work, member: &str, used: &[Consumed], done: i64, n: i64) -> Result<Vec<Consumed>> {
        let (mut skip, mut left) = (done, n);
        let mut restored = vec![];
        for c in used.iter().rev() {
            let s = skip.min(c.n);
            skip -= s;
            let k = (c.n - s).min(left);
            if k == 0 {
                continue;
            }
            left -= k;
            let i = self.acct(txn, w, &member_account(member, &c.t))?;
            Self::restore(&mut w.accounts[i].1, c, k)?;
            restored.push(Consumed { t: c.t.clone(), lot: c.lot.clone(), n: k });
        }
        debug_assert_eq!(left, 0);
        Ok(restored)
    }

    fn expire(&self, txn: &RwTxn<'_>, w: &mut Work, as_of: Ms, after: Option<&String>) -> Result<()> {
        // Holds past their TTL void themselves first, so their points can expire too.
        let mut due = vec![];
        let mut more_holds = false;
        for item in self.store.open_holds.iter(txn)? {
            let (k, _) = item?;
            if k[..8] > ms_key(as_of)[..] {
                break;
            }
            if due.len() == EXPIRE_ACCOUNTS_PER_COMMAND_MAX {
                more_holds = true;
                break;
            }
            due.push(String::from_utf8_lossy(&k[8..]).into_owned());
        }
        for id in due {
            let h = self.hold_rec(txn, w, &id)?;
            w.drafts.push(Draft::default());
            self.void_hold(txn, w, h)?;
        }
        let mut touched = 0;
        let mut cursor = None;
        // LMDB refuses an empty key, so "from the start" is an unbounded range.
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a.as_bytes()),
            None => std::ops::Bound::Unbounded,
        };
        let mut expired: Vec<(String, Vec<Lot>)> = vec![];
        for item in self.store.accounts.range(txn, &(start, std::ops::Bound::Unbounded))? {
            let (k, v) = item?;
            let key = std::str::from_utf8(k).map_err(|_| LedgerError::Storage("non-utf8 account key".into()))?;
            if is_system_account(key) {
                continue;
            }
            // Read through the overlay: a hold voided above has put its slices back into this
            // account there, and they must expire with the rest of their lot.
            let a: Account = match w.accounts.iter().find(|(k, _)| k == key) {
                Some((_, a)) => a.clone(),
                None => decode(v)?,
            };
            let lots: Vec<Lot> = a.lots.into_iter().filter(|l| l.x.is_some_and(|x| x <= as_of)).collect();
            if !lots.is_empty() {
                if touched == EXPIRE_ACCOUNTS_PER_COMMAND_MAX {
                    cursor = expired.last().map(|(k, _)| k.clone());
                    break;
                }
                touched += 1;
                expired.push((key.to_string(), lots));
            }
        }
        for (key, lots) in expired {
            let parts = split_account(&key);
            let (member, t) = (parts[0], parts[1]);
            let m = self.member(txn, w, member)?;
            w.drafts.push(Draft::default());
            let i = self.acct(txn, w, &key)?;
            w.accounts[i].1.lots.retain(|l| !lots.iter().any(|x| x.i == l.i));
            let n: i64 = lots.iter().map(|l| l.r).sum();
            self.post(txn, w, t, &key, &self.system_key(&m.programme, SystemAccount::Breakage, t), n)?;
            let d = w.draft();
            d.used = lots.into_iter().map(|l| Consumed { t: AcctKey::from(t), n: l.r, lot: l }).collect();
            d.amount = n;
        }
        if w.drafts.is_empty() {
            w.drafts.push(Draft::default());
        }
        // More due holds than one command voids: ask for another pass from the same place
        // (an empty cursor means "from the first account").
        if cursor.is_none() && more_holds {
            cursor = Some(after.cloned().unwrap_or_default());
        }
        w.drafts.last_mut().unwrap().cursor = cursor;
        Ok(())
    }

    // ----- writing -----

    fn flush(&mut self, txn: &mut RwTxn<'_>, mut w: Work, env: Envelope, fp: Fingerprint) -> Result<Receipt> {
        // The entries are built where the sealer takes them from (an entry is ~660 bytes, and
        // each move of it showed in the writer's profile).
        let queue = self.sealer.get_mut().queue();
        let first = queue.len();
        let mut drafts = std::mem::take(&mut w.drafts);
        let last = drafts.len() - 1;
        let (id, mut cmd) = (env.id, Some(env.cmd));
        for (n, d) in drafts.drain(..).enumerate() {
            let seq = w.seq0 + n as u64;
            debug_assert_eq!(seq, self.next_seq);
            // History chain: each member account touched remembers this entry as its newest.
            let mut links = w.lists.links();
            for p in &d.po {
                for key in [&p.from, &p.to].into_iter().chain(d.touch.iter()) {
                    if is_system_account(key) || links.iter().any(|l| l.acct == key) {
                        continue;
                    }
                    let i = w.accounts.iter().position(|(k, _)| k == key).expect("posted accounts are loaded");
                    links.push(Link { acct: key.clone(), prev: w.accounts[i].1.ls });
                    w.accounts[i].1.ls = seq;
                }
            }
            queue.push(Entry {
                v: SCHEMA_VERSION,
                seq,
                id: id.clone(),
                n: n as u32,
                at: env.at,
                // the last entry takes the command itself (most commands write one entry)
                cmd: if n == last { cmd.take() } else { cmd.clone() }.expect("the command until its last entry"),
                po: d.po,
                used: d.used,
                made: d.made,
                amount: d.amount,
                credited: d.credited,
                cursor: d.cursor,
                links,
                note: d.note,
                fx: None,
                // both set by the sealer
                ph: vec![],
                h: vec![],
            });
            self.next_seq = seq + 1;
        }
        let entries = &mut queue[first..];
        attach_effects(&self.accounts.borrow(), &mut w, entries);
        let receipt = Receipt::from_entries(entries, false);
        let n_entries = entries.len() as u32;
        self.sealer.get_mut().send_if_full()?;
        self.put_sealed(txn, false)?;
        self.flush_rules(txn, std::mem::take(&mut w.rules))?;
        let mut cache = self.accounts.borrow_mut();
        for (k, a) in w.accounts.drain(..) {
            debug_assert!(is_system_account(&k) || a.b == a.lots.iter().map(|l| l.r).sum::<i64>(), "lots = balance for {k}");
            if !is_system_account(&k) {
                self.accounts_dirty.push((k.clone(), a.ls));
            } else if !self.system_dirty.contains(&k) {
                self.system_dirty.insert(k.clone());
            }
            // the state replaced: its lots list was just read for the command's copy
            if let Some(old) = cache.insert(k, a) {
                w.lists.keep_lots(old.lots);
            }
        }
        drop(cache);
        for m in &w.members {
            put(&self.store.members, txn, m.id.as_bytes(), m)?;
            for k in member_index_keys(m) {
                self.store.member_index.put(txn, &k, &[])?;
            }
            self.members.borrow_mut().insert(AcctKey::from(m.id.as_str()), Rc::new(m.clone()));
        }
        for h in &w.holds {
            put(&self.store.holds, txn, h.id.as_bytes(), h)?;
        }
        for k in &w.open_holds_del {
            self.store.open_holds.delete(txn, k)?;
        }
        for k in &w.open_holds_put {
            self.store.open_holds.put(txn, k, &[])?;
        }
        for p in &w.programmes {
            put(&self.store.programmes, txn, p.id.as_bytes(), p)?;
            self.programmes.insert(p.id.clone(), p.clone());
        }
        for (seq, n) in &w.reversals {
            put(&self.store.reversals, txn, &seq_key(*seq), n)?;
        }
        for (k, msg) in &w.outbox {
            put(&self.store.outbox, txn, k, msg)?;
        }
        for (card, rec) in &w.cards {
            match rec {
                Some(c) => put(&self.store.cards, txn, card.as_bytes(), c)?,
                None => {
                    self.store.cards.delete(txn, card.as_bytes())?;
                }
            }
        }
        if w.next_lot != self.next_lot {
            self.next_lot = w.next_lot;
            self.head_dirty = true;
        }
        let rec = IdemRecord { v: SCHEMA_VERSION, seq: w.seq0, h: fp, n: n_entries };
        self.idem.insert(id.as_bytes());
        self.idem_group.insert(id, rec);
        self.spare = (std::mem::take(&mut w.accounts), drafts);
        self.give_back_lists(w.lists);
        let sealer = self.sealer.get_mut();
        if !sealer.lists.is_empty() {
            self.lists.absorb(std::mem::take(&mut sealer.lists));
        }
        Ok(receipt)
    }

}

/// Record what the command did to each member account it changed (its state in the `cache`,
/// read through by `acct`, against its state in `w`) on the command's last entry in that
/// account's history, or its last entry.
fn attach_effects(cache: &HotMap<Account>, w: &mut Work, entries: &mut [Entry]) {
    let none = Account::default();
    for (k, after) in &w.accounts {
        if is_system_account(k) {
            continue;
        }
        if let Some(e) = after.effect_since(cache.get(k).unwrap_or(&none), k, &mut w.lists) {
            let i = entries.iter().rposition(|en| en.links.iter().any(|l| l.acct == *k)).unwrap_or(entries.len() - 1);
            entries[i].fx.get_or_insert_with(|| w.lists.effects()).push(e);
        }
    }
    // every entry records its effects, none or some
    for e in entries.iter_mut() {
        e.fx.get_or_insert_with(Vec::new);
    }
}

/// Write merged rows (sorted by tagged key) through one cursor per database: LMDB's cursor put
/// first tries the leaf the cursor is on (its first and last keys), so a key next to the
/// previous one skips the descent from the root that `Database::put` makes for every row.
fn write_sorted(store: &Store, txn: &mut RwTxn<'_>, rows: &MergeRows) -> Result<()> {
    let rows: Vec<(&[u8], &[u8])> = rows.iter().collect();
    // one run per database: the rows' first byte is their tag
    for run in rows.chunk_by(|a, b| a.0.first() == b.0.first()) {
        let (tag, _) = LogTag::split(run[0].0)?;
        let mut cursor = tag.db(store).iter_mut(txn)?;
        for (k, v) in run {
            let (_, key) = LogTag::split(k)?;
            // SAFETY: nothing borrowed from the database is alive across the put (the rows are
            // copies in the writer's buffer), and flags 0 make LMDB position the cursor on `key`.
            unsafe { cursor.put_current_with_options::<Bytes>(PutFlags::empty(), key, v)? };
        }
    }
    Ok(())
}

/// The rows of one merge step (tagged key, value), in one buffer the writer keeps from step to
/// step: a slice writes back up to hundreds of thousands of rows, and two fresh allocations
/// each (a 512-byte encode buffer among them) cost ~5% of the writer in the allocator and in
/// first touches of new pages (perf, session 17).
#[derive(Default)]
struct MergeRows {
    bytes: Vec<u8>,
    /// where each row's key and value start; its value ends where the next row starts
    rows: Vec<(usize, usize)>,
}

impl MergeRows {
    fn clear(&mut self) {
        self.bytes.clear();
        self.rows.clear();
    }
    fn push(&mut self, key: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.rows.push((at, self.bytes.len()));
        value(&mut self.bytes);
    }
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let ends = self.rows.iter().skip(1).map(|r| r.0).chain([self.bytes.len()]);
        self.rows.iter().zip(ends).map(|(&(k, v), end)| (&self.bytes[k..v], &self.bytes[v..end]))
    }
    /// Itself emptied for the next step, or nothing if a large step (a full checkpoint) grew it
    /// past MERGE_ROWS_BYTES_MAX.
    fn kept(mut self) -> MergeRows {
        if self.bytes.capacity() > MERGE_ROWS_BYTES_MAX {
            return MergeRows::default();
        }
        self.clear();
        self
    }
}

/// Sort `rows` by a byte string key, rows with equal keys by `then`. The sort compares each
/// key's first 16 bytes as one integer and only the rest of a tie with `memcmp`: sorting the
/// rows by their keys made the sorts of a group's dirty accounts and command ids ~2,000
/// instructions per command (callgrind, session 13).
fn sort_by_key_bytes<T>(rows: &mut Vec<T>, key: impl Fn(&T) -> &[u8], then: impl Fn(&T, &T) -> std::cmp::Ordering) {
    // Zero-padded big-endian prefixes order as the keys do, except that a key and the same
    // key with NUL bytes appended tie: the full comparison settles every tie.
    let prefix = |k: &[u8]| {
        let mut p = [0u8; 16];
        let n = k.len().min(16);
        p[..n].copy_from_slice(&k[..n]);
        u128::from_be_bytes(p)
    };
    // Sort (prefix, index) pairs and move each row once at the end: moving the rows
    // themselves (48-80 bytes) inside the sort cost more than comparing them. A radix sort of
    // the prefixes (it skips the bytes all keys share) costs under half a comparison sort's
    // instructions (callgrind, `writer_bench 20000 20000 4`: 320 M → 143 M); rows whose
    // prefixes tie are then ordered by their whole keys.
    assert!(rows.len() <= u32::MAX as usize, "a group sorts fewer than 2^32 rows");
    let mut order: Vec<(u128, u32)> = rows.iter().enumerate().map(|(i, r)| (prefix(key(r)), i as u32)).collect();
    radsort::sort_by_key(&mut order, |o| o.0);
    for ties in order.chunk_by_mut(|a, b| a.0 == b.0).filter(|t| t.len() > 1) {
        ties.sort_unstable_by(|a, b| {
            let (ra, rb) = (&rows[a.1 as usize], &rows[b.1 as usize]);
            key(ra).cmp(key(rb)).then_with(|| then(ra, rb))
        });
    }
    let mut slots: Vec<Option<T>> = rows.drain(..).map(Some).collect();
    rows.extend(order.iter().map(|&(_, i)| slots[i as usize].take().expect("each row once")));
}

/// A key's first 8 bytes as a big-endian integer, zero-padded: two keys whose prefixes differ
/// are in the same order as the prefixes (a shorter key pads with 0, which sorts first, as the
/// shorter key does); keys with equal prefixes need the full comparison.
fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// The last seq of the group a `state_log` record belongs to (its key).
fn record_seq(key: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(key.try_into().map_err(|_| LedgerError::Storage("corrupt state log key".into()))?))
}

/// `slices` summed per point type, in order: `take` draws account by account, so each type's
/// slices are one run (a refund's too, restored last first). Were a type's slices ever apart,
/// it would get one posting per run: more postings, the same sums.
fn type_runs(slices: &[Consumed]) -> impl Iterator<Item = (&str, i64)> {
    let mut rest = slices;
    std::iter::from_fn(move || {
        let t = &rest.first()?.t;
        let run = rest.iter().take_while(|c| c.t == *t).count();
        let n = rest[..run].iter().map(|c| c.n).sum();
        rest = &rest[run..];
        Some((t.as_str(), n))
    })
}

/// Split hold slices into the first `n` points (captured) and the rest (released).
fn split_slices(slices: &[Consumed], n: i64) -> (Vec<Consumed>, Vec<Consumed>) {
    let (mut a, mut b) = (vec![], vec![]);
    let mut left = n;
    for c in slices {
        let k = c.n.min(left);
        left -= k;
        if k > 0 {
            a.push(Consumed { n: k, ..c.clone() });
        }
        if c.n - k > 0 {
            b.push(Consumed { n: c.n - k, ..c.clone() });
        }
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::{key_prefix, sort_by_key_bytes, split_slices, type_runs};
    use crate::model::{AcctKey, Consumed, Lot};
    use proptest::prelude::*;

    fn slice(t: &str, n: i64, i: u64) -> Consumed {
        Consumed { t: AcctKey::from(t), lot: Lot { i, r: n, a: n, e: 0, x: None, f: 0, s: 1, g: None }, n }
    }

    proptest! {
        /// One run per point type as `take` leaves them (each type's slices together), with each
        /// type's points summed; split at any point, the two halves still sum to the whole.
        #[test]
        fn type_runs_sum_each_types_slices_once(runs in proptest::collection::vec((0usize..4, proptest::collection::vec(1i64..1_000, 1..5)), 0..4), cut in 0i64..5_000) {
            let names = ["a", "b", "c", "d"];
            let mut seen = std::collections::HashSet::new();
            let runs: Vec<_> = runs.into_iter().filter(|(t, _)| seen.insert(*t)).collect();
            let slices: Vec<Consumed> = runs.iter().flat_map(|(t, ns)| ns.iter().enumerate().map(move |(i, n)| slice(names[*t], *n, i as u64))).collect();
            let want: Vec<(&str, i64)> = runs.iter().map(|(t, ns)| (names[*t], ns.iter().sum())).collect();
            prop_assert_eq!(type_runs(&slices).collect::<Vec<_>>(), want);
            let total: i64 = slices.iter().map(|c| c.n).sum();
            let (taken, rest) = split_slices(&slices, cut);
            let sum = |s: &[Consumed]| type_runs(s).map(|(_, n)| n).sum::<i64>();
            prop_assert_eq!(sum(&taken), cut.min(total));
            prop_assert_eq!(sum(&taken) + sum(&rest), total);
            prop_assert!(type_runs(&taken).count() <= runs.len() && type_runs(&rest).count() <= runs.len());
        }

        /// The prefix sort orders as sorting by the keys themselves, ties by `then`: keys that
        /// share 16 or more bytes, keys that are prefixes of others, and NUL bytes included.
        #[test]
        fn sort_by_key_bytes_orders_as_the_keys(rows in proptest::collection::vec((proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), any::<u8>()], 0..24), any::<u8>()), 0..200)) {
            let mut shared = rows.clone();
            // half the keys share a 16-byte head, so the tail decides
            for (i, r) in shared.iter_mut().enumerate() {
                if i % 2 == 0 {
                    let mut k = b"m0000000/points-".to_vec();
                    k.extend_from_slice(&r.0);
                    r.0 = k;
                }
            }
            let mut want = shared.clone();
            want.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            let mut got = shared;
            sort_by_key_bytes(&mut got, |r| &r.0, |a, b| b.1.cmp(&a.1));
            prop_assert_eq!(got, want);
        }

        /// The merge heap's order, (prefix, key), is the keys' order: keys shorter than 8
        /// bytes, keys that are prefixes of others and NUL bytes included.
        #[test]
        fn key_prefix_then_key_orders_as_the_keys(a in proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), any::<u8>()], 0..12), b in proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), any::<u8>()], 0..12)) {
            prop_assert_eq!((key_prefix(&a), &a).cmp(&(key_prefix(&b), &b)), a.cmp(&b));
            let shared = |k: &[u8]| [b"am000".as_slice(), k].concat();
            let (sa, sb) = (shared(&a), shared(&b));
            prop_assert_eq!((key_prefix(&sa), &sa).cmp(&(key_prefix(&sb), &sb)), sa.cmp(&sb));
        }
    }
}
