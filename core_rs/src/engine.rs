//! The engine: one LMDB environment, one writer thread, group commit, a bounded queue.
//! Callers from any thread submit whole batches and block on a reply channel; the writer applies
//! everything waiting (up to GROUP_COMMIT_COMMANDS_MAX) in one write transaction and one fsync.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::command::{Envelope, Receipt};
use crate::error::{LedgerError, Result};
use crate::ledger::Ledger;
use crate::limits::*;
use crate::store::{Durability, Store};

pub type Outcome = Result<Receipt>;

struct Submission {
    cmds: Vec<Envelope>,
    /// idempotency fingerprints, computed by the submitting thread so the writer does not
    fps: Vec<Vec<u8>>,
    reply: Sender<Vec<Outcome>>,
}

pub struct Engine {
    pub store: Store,
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
        std::fs::create_dir_all(path).map_err(|e| LedgerError::Storage(format!("{}: {e}", path.display())))?;
        let canon = path.canonicalize().map_err(|e| LedgerError::Storage(e.to_string()))?;
        let mut reg = registry().lock().unwrap();
        if let Some(e) = reg.get(&canon).and_then(Weak::upgrade) {
            if e.is_open() {
                return Ok(e);
            }
        }
        let store = Store::open(&canon, map_size, durability)?;
        let ledger = Ledger::open(store.clone())?;
        let (tx, rx) = bounded::<Submission>(QUEUE_DEPTH_MAX);
        let writer = std::thread::Builder::new()
            .name("pypoints-writer".into())
            .spawn(move || writer_loop(ledger, rx))
            .map_err(|e| LedgerError::Storage(e.to_string()))?;
        let engine = Arc::new(Engine { store, durability, queue: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)) });
        reg.insert(canon, Arc::downgrade(&engine));
        Ok(engine)
    }

    pub fn is_open(&self) -> bool {
        self.queue.lock().unwrap().is_some()
    }

    /// Submit a batch and wait until it is durable. Results are in input order.
    pub fn submit(&self, cmds: Vec<Envelope>) -> Result<Vec<Outcome>> {
        if cmds.len() > BATCH_SIZE_MAX {
            return Err(LedgerError::LimitExceeded(format!("a batch holds at most {BATCH_SIZE_MAX} commands")));
        }
        if cmds.is_empty() {
            return Ok(vec![]);
        }
        let fps = cmds.iter().map(|c| c.cmd.fingerprint()).collect();
        let (reply, wait) = bounded(1);
        let queue = self.queue.lock().unwrap().clone().ok_or(LedgerError::Closed)?;
        queue.send(Submission { cmds, fps, reply }).map_err(|_| LedgerError::Closed)?;
        drop(queue);
        wait.recv().map_err(|_| LedgerError::Closed)
    }

    pub fn submit_one(&self, cmd: Envelope) -> Outcome {
        self.submit(vec![cmd])?.pop().expect("one result per command")
    }

    /// Stop accepting commands, let the writer drain the queue, and wait for it.
    pub fn close(&self) {
        self.queue.lock().unwrap().take();
        if let Some(h) = self.writer.lock().unwrap().take() {
            let _ = h.join();
        }
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

fn writer_loop(mut ledger: Ledger, rx: Receiver<Submission>) {
    while let Ok(first) = rx.recv() {
        let mut n = first.cmds.len();
        let mut group = vec![first];
        while n < GROUP_COMMIT_COMMANDS_MAX {
            match rx.try_recv() {
                Ok(s) => {
                    n += s.cmds.len();
                    group.push(s);
                }
                Err(_) => break,
            }
        }
        let results = commit_group(&mut ledger, &group);
        for (s, r) in group.into_iter().zip(results) {
            let _ = s.reply.send(r);
        }
    }
}

fn commit_group(ledger: &mut Ledger, group: &[Submission]) -> Vec<Vec<Outcome>> {
    let env = ledger.store.env.clone();
    let mut attempt = || -> std::result::Result<Vec<Vec<Outcome>>, LedgerError> {
        let mut txn = env.write_txn()?;
        let mut out = Vec::with_capacity(group.len());
        for s in group {
            let mut rs = Vec::with_capacity(s.cmds.len());
            for (cmd, fp) in s.cmds.iter().zip(&s.fps) {
                match ledger.apply_fingerprinted(&mut txn, cmd, fp.clone()) {
                    // A storage failure poisons the transaction: the whole group is refused.
                    Err(e @ LedgerError::Storage(_)) => return Err(e),
                    r => rs.push(r),
                }
            }
            out.push(rs);
        }
        ledger.flush_group(&mut txn)?;
        txn.commit()?;
        Ok(out)
    };
    match attempt() {
        Ok(out) => out,
        Err(e) => {
            let _ = ledger.reload();
            group.iter().map(|s| s.cmds.iter().map(|_| Err(e.clone())).collect()).collect()
        }
    }
}
