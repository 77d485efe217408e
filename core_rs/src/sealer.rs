//! Seals journal entries (serialize, then chain-hash) on a thread of its own, so the writer's
//! core applies the next commands meanwhile: the submitting thread's core idles while the writer
//! works. Entries go over in chunks; their bytes come back in seq order and the writer puts
//! them into the journal before the group commits.
//!
//! The chain head is the writer's to give: a chunk sent while nothing is outstanding carries it,
//! so after an abort (`reset`) the thread continues from the committed head. A small group that
//! never filled a chunk is sealed on the writer's own thread: a handover and a wake-up would
//! cost it more than the sealing.
use std::collections::VecDeque;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::command::Entry;
use crate::error::{LedgerError, Result};
use crate::limits::{SEAL_CHUNK_ENTRIES, SEAL_CHUNKS_IN_FLIGHT_MAX};
use crate::store::{encode, encode_into};

/// Room for a sealed entry: most are 400-700 bytes with their hash, so one allocation holds it
/// (the store's default encode buffer is 512 bytes, and growing it copies the entry).
const ENTRY_BUFFER_BYTES: usize = 1024;

struct Job {
    /// the previous entry's hash, when the writer knows it (nothing outstanding)
    head: Option<Vec<u8>>,
    entries: Vec<Entry>,
}

struct Sealed {
    /// (seq, serialized entry), in seq order
    entries: Vec<(u64, Vec<u8>)>,
    /// the hash of the chunk's last entry
    head: Vec<u8>,
}

pub struct Sealer {
    jobs: Option<Sender<Job>>,
    done: Receiver<Sealed>,
    thread: Option<JoinHandle<()>>,
    /// the hash of the last entry sealed and received back (the chain head when nothing is outstanding)
    head: Vec<u8>,
    /// chunks sent and not yet received back
    outstanding: usize,
    /// entries not yet sent
    batch: Vec<Entry>,
    /// sealed entries received back, not yet taken for the journal
    ready: VecDeque<(u64, Vec<u8>)>,
}

impl Sealer {
    pub fn new(head: Vec<u8>) -> Result<Sealer> {
        let (jobs, rx) = bounded::<Job>(SEAL_CHUNKS_IN_FLIGHT_MAX);
        // Unbounded, but never holds more than SEAL_CHUNKS_IN_FLIGHT_MAX + 1 chunks: each
        // answers a job.
        let (tx, done) = unbounded::<Sealed>();
        let thread = std::thread::Builder::new()
            .name("pypoints-sealer".into())
            .spawn(move || {
                let mut last = Vec::new();
                for job in rx {
                    if let Some(h) = job.head {
                        last = h;
                    }
                    let entries = job.entries.into_iter().map(|mut e| (e.seq, seal(&mut e, &mut last))).collect();
                    if tx.send(Sealed { entries, head: last.clone() }).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| LedgerError::Storage(format!("cannot start the journal sealer: {e}")))?;
        Ok(Sealer { jobs: Some(jobs), done, thread: Some(thread), head, outstanding: 0, batch: Vec::new(), ready: VecDeque::new() })
    }

    /// Queue an entry (its `ph` and `h` are set when it is sealed).
    pub fn push(&mut self, e: Entry) -> Result<()> {
        debug_assert!(self.batch.last().is_none_or(|l| l.seq + 1 == e.seq));
        self.batch.push(e);
        if self.batch.len() >= SEAL_CHUNK_ENTRIES {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let head = (self.outstanding == 0).then(|| self.head.clone());
        let entries = std::mem::replace(&mut self.batch, Vec::with_capacity(SEAL_CHUNK_ENTRIES));
        let jobs = self.jobs.as_ref().ok_or(LedgerError::Closed)?;
        jobs.send(Job { head, entries }).map_err(|_| Self::gone())?;
        self.outstanding += 1;
        Ok(())
    }

    fn gone() -> LedgerError {
        LedgerError::Storage("the journal sealer stopped".into())
    }

    fn receive(&mut self, s: Sealed) {
        self.outstanding -= 1;
        self.head = s.head;
        self.ready.extend(s.entries);
    }

    /// Sealed entries that are back already, without waiting.
    pub fn take_ready(&mut self) -> std::collections::vec_deque::Drain<'_, (u64, Vec<u8>)> {
        while let Ok(s) = self.done.try_recv() {
            self.receive(s);
        }
        self.ready.drain(..)
    }

    /// Seal everything queued: waits for the thread, or seals a small remainder here when
    /// nothing is outstanding.
    fn seal_all(&mut self) -> Result<()> {
        if self.outstanding == 0 {
            for mut e in std::mem::take(&mut self.batch) {
                let bytes = seal(&mut e, &mut self.head);
                self.ready.push_back((e.seq, bytes));
            }
        } else {
            self.send()?;
        }
        while self.outstanding > 0 {
            let s = self.done.recv().map_err(|_| Self::gone())?;
            self.receive(s);
        }
        Ok(())
    }

    /// Every queued entry, sealed, in seq order.
    pub fn finish(&mut self) -> Result<std::collections::vec_deque::Drain<'_, (u64, Vec<u8>)>> {
        self.seal_all()?;
        Ok(self.ready.drain(..))
    }

    /// The serialized entry `seq`, queued and not yet taken (waits until it is sealed). Reads of
    /// entries the group wrote itself (a replayed id, a reversal) are rare: they wait for
    /// everything queued.
    pub fn find(&mut self, seq: u64) -> Result<Option<&[u8]>> {
        if !self.ready.iter().any(|(s, _)| *s == seq) {
            self.seal_all()?;
        }
        Ok(self.ready.iter().find(|(s, _)| *s == seq).map(|(_, b)| b.as_slice()))
    }

    /// Forget everything queued (the group aborted) and continue the chain from `head`.
    pub fn reset(&mut self, head: Vec<u8>) -> Result<()> {
        self.batch.clear();
        self.seal_all()?;
        self.ready.clear();
        self.head = head;
        Ok(())
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Hash an entry and serialize it once: the entry is encoded without `h` (a map of 14-16 fields:
/// an earn note and account effects are optional), hashed, and `h` is appended as the last
/// field, which is exactly what encoding it with `h` would give. `head` is the previous entry's
/// hash, and becomes this one's.
fn seal(e: &mut Entry, head: &mut Vec<u8>) -> Vec<u8> {
    debug_assert!(e.h.is_empty());
    e.ph = std::mem::take(head);
    let mut bytes = Vec::with_capacity(ENTRY_BUFFER_BYTES);
    encode_into(&mut bytes, &*e);
    e.h = blake3::hash(&bytes).as_bytes().to_vec();
    // the map header: a fixmap up to 15 fields, else map16
    let (fields, header_len) = match bytes[0] {
        b if b & 0xf0 == 0x80 => ((b & 0x0f) as usize, 1),
        0xde => (u16::from_be_bytes([bytes[1], bytes[2]]) as usize, 3),
        b => panic!("entry map layout changed (header {b:#x}): update seal()"),
    };
    assert!((14..=16).contains(&fields), "entry map layout changed ({fields} fields): update seal()");
    let n = fields + 1;
    if n <= 15 {
        bytes.splice(0..header_len, [0x80 | n as u8]);
    } else {
        bytes.splice(0..header_len, [0xde, 0x00, n as u8]);
    }
    bytes.extend_from_slice(&[0xa1, b'h', 0xc4, 32]);
    bytes.extend_from_slice(&e.h);
    debug_assert_eq!(bytes, encode(&*e));
    *head = std::mem::take(&mut e.h);
    bytes
}
