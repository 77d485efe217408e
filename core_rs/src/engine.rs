//! The engine: one LMDB environment, one writer thread, group commit, a bounded queue.
//! Callers from any thread submit whole batches and block on a reply channel; the writer applies
//! everything waiting (up to GROUP_COMMIT_COMMANDS_MAX) in one write transaction and one fsync.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::command::{Envelope, Fingerprint, Receipt};
use crate::error::{LedgerError, Result};
use crate::ledger::{Ledger, MergePolicy};
use crate::limits::*;
use crate::store::{Durability, FileRoom, Store};

pub type Outcome = Result<Receipt>;

/// What the writer tells a submitter about one chunk: its outcomes as soon as the chunk is
/// applied (not yet durable: a caller may prepare them, e.g. as Python objects, while the group
/// commits, but must not hand them out), then whether the group holding them is durable.
enum Reply {
    Applied(Vec<Outcome>),
    Durable(Verdict),
}

/// Whether a group committed: `Err(e)` refuses every command in it (a storage failure).
pub type Verdict = std::result::Result<(), LedgerError>;

/// A queued batch's results to come (`Engine::submit_async`), one `PendingChunk` per chunk.
pub struct Pending(Vec<PendingChunk>);

impl Pending {
    /// Wait until every chunk of the batch is durable; results in input order.
    pub fn wait(self) -> Result<Vec<Outcome>> {
        let mut out = Vec::new();
        for c in self.0 {
            out.extend(c.wait()?);
        }
        Ok(out)
    }

    pub fn into_chunks(self) -> Vec<PendingChunk> {
        self.0
    }
}

/// One queued chunk's results to come: `applied` (its outcomes, before they are durable), then
/// `durable` (whether they stand).
pub struct PendingChunk {
    commands: usize,
    rx: Receiver<Reply>,
    /// the verdict, when it came before the outcomes (a group refused before this chunk ran)
    settled: bool,
}

impl PendingChunk {
    /// Block until the writer has applied the chunk: one outcome per command, in order. They
    /// are not durable yet: `durable` says whether they stand.
    pub fn applied(&mut self) -> Result<Vec<Outcome>> {
        match self.rx.recv().map_err(|_| LedgerError::Closed)? {
            Reply::Applied(v) => {
                debug_assert_eq!(v.len(), self.commands, "one outcome per command");
                Ok(v)
            }
            Reply::Durable(verdict) => {
                // refused before it ran: the refusal is each command's outcome, and final
                self.settled = true;
                let e = verdict.err().unwrap_or_else(|| LedgerError::Storage("a chunk committed unapplied".into()));
                Ok(vec![Err(e); self.commands])
            }
        }
    }

    /// Block until the chunk's group is committed (call after `applied`). `Ok(Err(e))`: the
    /// group was refused, and every command of the chunk failed with `e`.
    pub fn durable(self) -> Result<Verdict> {
        if self.settled {
            return Ok(Ok(()));
        }
        match self.rx.recv().map_err(|_| LedgerError::Closed)? {
            Reply::Durable(verdict) => Ok(verdict),
            Reply::Applied(_) => unreachable!("a chunk is applied once"),
        }
    }

    /// `applied`, then `durable`: the chunk's final outcomes.
    pub fn wait(mut self) -> Result<Vec<Outcome>> {
        let n = self.commands;
        let out = self.applied()?;
        Ok(match self.durable()? {
            Ok(()) => out,
            Err(e) => vec![Err(e); n],
        })
    }
}

struct Submission {
    cmds: Vec<Envelope>,
    /// idempotency fingerprints, computed by the submitting thread so the writer does not
    fps: Vec<Fingerprint>,
    /// a request to write the state log back into the B-trees (`Engine::checkpoint`), with no
    /// commands: replied to with no outcome, or the error that stopped it
    checkpoint: bool,
    /// the submitting thread is queuing the next chunk of the same batch: the writer keeps its
    /// group open for it (`commit_group`) rather than commit this chunk alone
    more: bool,
    reply: Sender<Reply>,
}

/// Counters of the writer since the engine opened (for metrics and benchmarks): relaxed atomics,
/// written by the writer only.
#[derive(Default)]
pub struct WriterStats {
    pub groups: AtomicU64,
    pub commands: AtomicU64,
    /// time applying commands, logging accounts (incl. checkpoints), and committing (fsync)
    pub apply_ns: AtomicU64,
    pub flush_ns: AtomicU64,
    pub commit_ns: AtomicU64,
    pub checkpoints: AtomicU64,
    /// time writing zeroed room at the end of the data file, while idle (`Store::extend_file_step`)
    pub room_ns: AtomicU64,
    /// keys merge steps wrote back into their B-trees, and rolling merge cycles begun
    pub merged_keys: AtomicU64,
    pub merge_cycles: AtomicU64,
    /// gauges, as the writer's last commit left them: state log records and states
    pub log_records: AtomicU64,
    pub log_states: AtomicU64,
}

impl WriterStats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    /// Copy the ledger's merge counters and log size (after each commit).
    fn observe(&self, ledger: &Ledger) {
        let (records, states) = ledger.log_size();
        self.merged_keys.store(ledger.merged_keys, Ordering::Relaxed);
        self.merge_cycles.store(ledger.merge_cycles, Ordering::Relaxed);
        self.log_records.store(records as u64, Ordering::Relaxed);
        self.log_states.store(states as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> [(&'static str, u64); 11] {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("groups", g(&self.groups)),
            ("commands", g(&self.commands)),
            ("apply_ns", g(&self.apply_ns)),
            ("flush_ns", g(&self.flush_ns)),
            ("commit_ns", g(&self.commit_ns)),
            ("checkpoints", g(&self.checkpoints)),
            ("room_ns", g(&self.room_ns)),
            ("merged_keys", g(&self.merged_keys)),
            ("merge_cycles", g(&self.merge_cycles)),
            ("log_records", g(&self.log_records)),
            ("log_states", g(&self.log_states)),
        ]
    }
}

pub struct Engine {
    pub store: Store,
    pub stats: Arc<WriterStats>,
    pub durability: Durability,
    queue: Mutex<Option<Sender<Submission>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// LMDB allows one open environment per path per process: hand out the live engine again.
fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<Engine>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Weak<Engine>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl Engine {
    pub fn open(path: &Path, map_size: usize, durability: Durability) -> Result<Arc<Engine>> {
        Engine::open_with(path, map_size, durability, MergePolicy::default())
    }

    /// `open` with a state-log merge policy of one's own (tests use small ones).
    pub fn open_with(path: &Path, map_size: usize, durability: Durability, merge_policy: MergePolicy) -> Result<Arc<Engine>> {
        crate::tune_allocator();
        std::fs::create_dir_all(path).map_err(|e| LedgerError::Storage(format!("{}: {e}", path.display())))?;
        let canon = path.canonicalize().map_err(|e| LedgerError::Storage(e.to_string()))?;
        let mut reg = registry().lock().unwrap();
        if let Some(e) = reg.get(&canon).and_then(Weak::upgrade) {
            if e.is_open() {
                return Ok(e);
            }
        }
        let store = Store::open(&canon, map_size, durability)?;
        let mut ledger = Ledger::open(store.clone())?;
        ledger.merge_policy = merge_policy;
        let (tx, rx) = bounded::<Submission>(QUEUE_DEPTH_MAX);
        let stats = Arc::new(WriterStats::default());
        let st = stats.clone();
        let writer = std::thread::Builder::new()
            .name("pypoints-writer".into())
            .spawn(move || writer_loop(ledger, rx, &st))
            .map_err(|e| LedgerError::Storage(e.to_string()))?;
        let engine = Arc::new(Engine { store, stats, durability, queue: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)) });
        reg.insert(canon, Arc::downgrade(&engine));
        Ok(engine)
    }

    /// Submissions waiting for the writer right now (at most QUEUE_DEPTH_MAX); for metrics.
    pub fn queue_depth(&self) -> usize {
        self.queue.lock().unwrap().as_ref().map_or(0, |q| q.len())
    }

    pub fn is_open(&self) -> bool {
        self.queue.lock().unwrap().is_some()
    }

    /// Submit a batch and wait until it is durable. Results are in input order.
    pub fn submit(&self, cmds: Vec<Envelope>) -> Result<Vec<Outcome>> {
        self.submit_async(cmds)?.wait()
    }

    /// Queue a batch without waiting for it. It goes to the writer in chunks of at most
    /// SUBMIT_CHUNK_COMMANDS, each queued as soon as its fingerprints are computed, so the writer
    /// applies the first chunk while this thread prepares the next. Each command is atomic and
    /// idempotent on its own, so a batch larger than a chunk may span several group commits
    /// (one, up to GROUP_COMMIT_COMMANDS_MAX, when its chunks come quickly enough).
    pub fn submit_async(&self, cmds: Vec<Envelope>) -> Result<Pending> {
        self.submit_async_part(cmds, false)
    }

    /// `submit_async` for one part of a batch the caller queues part by part (as it parses
    /// them); `more_follows`: the caller queues the next part right after this one (it must,
    /// or the writer waits up to SUBMIT_FOLLOW_WAIT_MS for it before committing).
    pub fn submit_async_part(&self, mut cmds: Vec<Envelope>, more_follows: bool) -> Result<Pending> {
        if cmds.len() > BATCH_SIZE_MAX {
            return Err(LedgerError::LimitExceeded(format!("a batch holds at most {BATCH_SIZE_MAX} commands")));
        }
        let queue = self.queue.lock().unwrap().clone().ok_or(LedgerError::Closed)?;
        let mut replies = Vec::with_capacity(cmds.len().div_ceil(SUBMIT_CHUNK_COMMANDS));
        while !cmds.is_empty() {
            let rest = cmds.split_off(cmds.len().min(SUBMIT_CHUNK_COMMANDS));
            let chunk = std::mem::replace(&mut cmds, rest);
            let fps = chunk.iter().map(|c| c.cmd.fingerprint()).collect();
            // room for both replies: the writer never waits on a submitter
            let (reply, rx) = bounded(2);
            let more = more_follows || !cmds.is_empty();
            let commands = chunk.len();
            queue.send(Submission { cmds: chunk, fps, checkpoint: false, more, reply }).map_err(|_| LedgerError::Closed)?;
            replies.push(PendingChunk { commands, rx, settled: false });
        }
        Ok(Pending(replies))
    }
    pub fn submit_one(&self, cmd: Envelope) -> Outcome {
        self.submit(vec![cmd])?.pop().expect("one result per command")
    }

    /// Write the whole state log back into the B-trees in one commit, after every batch queued
    /// before it. For the end of a bulk load: the rolling merge would otherwise pay the load's
    /// log back during the first batches after it (a clean close does the same).
    pub fn checkpoint(&self) -> Result<()> {
        let queue = self.queue.lock().unwrap().clone().ok_or(LedgerError::Closed)?;
        let (reply, wait) = bounded(1);
        queue.send(Submission { cmds: vec![], fps: vec![], checkpoint: true, more: false, reply }).map_err(|_| LedgerError::Closed)?;
        match wait.recv().map_err(|_| LedgerError::Closed)? {
            Reply::Durable(verdict) => verdict,
            Reply::Applied(_) => unreachable!("a checkpoint applies no commands"),
        }
    }

    /// Stop accepting commands, let the writer drain the queue, and wait for it.
    pub fn close(&self) {
        self.queue.lock().unwrap().take();
        if let Some(h) = self.writer.lock().unwrap().take() {
            let _ = h.join();
        }
    }

    /// Zero-fill the data file `bytes` past its used part (`Store::preallocate`), from the
    /// caller's thread: each chunk holds LMDB's write lock, which the writer waits for.
    pub fn preallocate(&self, bytes: u64) -> Result<u64> {
        if !self.is_open() {
            return Err(LedgerError::Closed);
        }
        self.store.preallocate(bytes)
    }

    /// Consistent hot copy of the live environment (mdb_env_copy with compaction).
    pub fn backup(&self, dest_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dest_dir).map_err(|e| LedgerError::Storage(e.to_string()))?;
        let target = dest_dir.join("data.mdb");
        if target.exists() {
            return Err(LedgerError::AlreadyExists(format!("{} exists", target.display())));
        }
        self.store.env.copy_to_path(&target, heed::CompactionOption::Enabled)?;
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop(mut ledger: Ledger, rx: Receiver<Submission>, stats: &WriterStats) {
    // Bytes of zeros the writer may still write at the end of the data file: a group that
    // grew LMDB's used part by FILE_ROOM_TRIGGER_BYTES or more earns twice its growth. Small
    // commits (a unary server's) earn nothing, so they never wait behind a step.
    let mut room_credit: u64 = 0;
    // A group just committed: the next idle merge step waits `MergePolicy::idle_after` first.
    let mut after_group = false;
    loop {
        let first = match rx.try_recv() {
            Ok(s) => s,
            // Nothing waits: a good moment for a small slice of a rolling merge, unless the
            // gap is only the one between a client's reply and its next command.
            Err(TryRecvError::Empty) if ledger.merge_pending() && after_group => match rx.recv_timeout(ledger.merge_policy.idle_after) {
                Ok(s) => s,
                Err(RecvTimeoutError::Timeout) => {
                    after_group = false;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            },
            Err(TryRecvError::Empty) if ledger.merge_pending() => {
                merge_idle(&mut ledger, stats);
                continue;
            }
            // Then room at the end of the data file, a step at a time (`Store::extend_file_step`),
            // once nothing has come for a while: a step holds up what arrives meanwhile, and
            // commands that come back to back (a unary client) must not wait behind one.
            Err(TryRecvError::Empty) if room_credit > 0 => match rx.recv_timeout(Duration::from_millis(FILE_ROOM_IDLE_MS)) {
                Ok(s) => s,
                Err(RecvTimeoutError::Timeout) => {
                    let t0 = Instant::now();
                    // (the transaction only holds the write lock: dropped unused)
                    let step = ledger.store.write_txn().and_then(|txn| ledger.store.extend_file_step(&txn, FileRoom::default(), || !rx.is_empty()));
                    room_credit = match step {
                        Ok(n) if n > 0 => room_credit.saturating_sub(n),
                        // room enough; or a failure (a full disk): the file grows as LMDB writes
                        _ => 0,
                    };
                    WriterStats::add(&stats.room_ns, t0.elapsed().as_nanos() as u64);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            },
            Err(TryRecvError::Empty) => match rx.recv() {
                Ok(s) => s,
                Err(_) => break,
            },
            Err(TryRecvError::Disconnected) => break,
        };
        if first.checkpoint {
            checkpoint_request(&mut ledger, first, stats);
            continue;
        }
        let mut n = first.cmds.len();
        let mut group = vec![first];
        // a checkpoint request queued behind the group's batches runs after it commits
        let mut then = None;
        while n < GROUP_COMMIT_COMMANDS_MAX {
            match rx.try_recv() {
                Ok(s) if s.checkpoint => {
                    then = Some(s);
                    break;
                }
                Ok(s) => {
                    n += s.cmds.len();
                    group.push(s);
                }
                Err(_) => break,
            }
        }
        let used_before = ledger.store.used_bytes();
        let verdict = commit_group(&mut ledger, &mut group, &rx, &mut then, stats);
        let grown = ledger.store.used_bytes().saturating_sub(used_before);
        if grown >= FILE_ROOM_TRIGGER_BYTES {
            room_credit = room_credit.saturating_add(2 * grown).min(FILE_ROOM_MAX_BYTES);
        }
        WriterStats::add(&stats.groups, 1);
        after_group = true;
        stats.observe(&ledger);
        // the group may have taken in more of a batch (`commit_group`)
        WriterStats::add(&stats.commands, group.iter().map(|s| s.fps.len() as u64).sum());
        for s in group {
            let _ = s.reply.send(Reply::Durable(verdict.clone()));
        }
        if let Some(s) = then {
            checkpoint_request(&mut ledger, s, stats);
        }
    }
    // Closing: checkpoint so a cleanly closed store holds every account in `accounts`.
    let _ = checkpoint(&mut ledger);
}

fn merge_idle(ledger: &mut Ledger, stats: &WriterStats) {
    let t0 = Instant::now();
    let env = ledger.store.env.clone();
    let mut step = || -> Result<bool> {
        let mut txn = env.write_txn()?;
        let done = ledger.merge_idle(&mut txn)?;
        txn.commit()?;
        Ok(done)
    };
    match step() {
        Ok(done) => WriterStats::add(&stats.checkpoints, done as u64),
        // The merge is abandoned (reload); a new one starts when the log is large again.
        Err(_) => {
            let _ = ledger.reload();
        }
    }
    WriterStats::add(&stats.flush_ns, t0.elapsed().as_nanos() as u64);
    stats.observe(ledger);
}

fn checkpoint_request(ledger: &mut Ledger, s: Submission, stats: &WriterStats) {
    let t0 = Instant::now();
    let r = checkpoint(ledger);
    WriterStats::add(&stats.flush_ns, t0.elapsed().as_nanos() as u64);
    match &r {
        Ok(()) => WriterStats::add(&stats.checkpoints, 1),
        // the merge is abandoned with its transaction; the log is still whole
        Err(_) => {
            let _ = ledger.reload();
        }
    }
    stats.observe(ledger);
    let _ = s.reply.send(Reply::Durable(r));
}

fn checkpoint(ledger: &mut Ledger) -> Result<()> {
    let env = ledger.store.env.clone();
    let mut txn = env.write_txn()?;
    ledger.checkpoint(&mut txn)?;
    txn.commit()?;
    Ok(())
}

/// Apply and commit a group. The commands are moved into their journal entries (their
/// submissions keep their fingerprints, one per command, for the count). While the group's
/// last submission says more of its batch follows, the group waits for it (SUBMIT_FOLLOW_WAIT_MS
/// at most) and takes it in: a batch that came in chunks as its caller parsed it (the Python
/// binding) committed its first chunk alone, a second commit and state-log record per batch
/// (~3-4 ms of a 10,000-command round's ~30). A checkpoint request met there goes to `then`.
/// Each submission is sent its outcomes as soon as it is applied (`Reply::Applied`), so its
/// caller prepares them while the rest of the group runs and commits; the caller sends the
/// verdict after the commit.
fn commit_group(ledger: &mut Ledger, group: &mut Vec<Submission>, rx: &Receiver<Submission>, then: &mut Option<Submission>, stats: &WriterStats) -> Verdict {
    let env = ledger.store.env.clone();
    let mut attempt = || -> Verdict {
        let t0 = Instant::now();
        let mut txn = env.write_txn()?;
        let mut n: usize = group.iter().map(|s| s.cmds.len()).sum();
        let (mut at, mut waited) = (0, Duration::ZERO);
        loop {
            if at == group.len() {
                let follows = group.last().is_some_and(|s| s.more) && then.is_none() && n < GROUP_COMMIT_COMMANDS_MAX;
                let t = Instant::now();
                let next = follows.then(|| rx.recv_timeout(Duration::from_millis(SUBMIT_FOLLOW_WAIT_MS)));
                waited += t.elapsed();
                match next {
                    Some(Ok(s)) if s.checkpoint => *then = Some(s),
                    Some(Ok(s)) => {
                        n += s.cmds.len();
                        group.push(s);
                    }
                    _ => {}
                }
                if at == group.len() {
                    break;
                }
            }
            let s = &mut group[at];
            at += 1;
            let mut rs = Vec::with_capacity(s.fps.len());
            let mut cmds = std::mem::take(&mut s.cmds).into_iter();
            for (i, fp) in s.fps.iter().enumerate() {
                if i % WARM_AHEAD_COMMANDS == 0 {
                    ledger.warm(cmds.as_slice(), i == 0);
                }
                let cmd = cmds.next().expect("one fingerprint per command");
                match ledger.apply_fingerprinted(&mut txn, cmd, *fp) {
                    // A storage failure poisons the transaction: the whole group is refused.
                    Err(e @ LedgerError::Storage(_)) => return Err(e),
                    r => rs.push(r),
                }
            }
            let _ = s.reply.send(Reply::Applied(rs));
        }
        let t1 = Instant::now();
        let checkpointed = ledger.flush_group(&mut txn)?;
        let t2 = Instant::now();
        txn.commit()?;
        let ns = |a: Instant, b: Instant| (b - a).as_nanos() as u64;
        // not the time spent waiting for a batch's next chunk
        WriterStats::add(&stats.apply_ns, ns(t0, t1).saturating_sub(waited.as_nanos() as u64));
        WriterStats::add(&stats.flush_ns, ns(t1, t2));
        WriterStats::add(&stats.commit_ns, ns(t2, Instant::now()));
        WriterStats::add(&stats.checkpoints, checkpointed as u64);
        Ok(())
    };
    let verdict = attempt();
    if verdict.is_err() {
        let _ = ledger.reload();
    }
    verdict
}
