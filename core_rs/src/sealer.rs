//! Seals journal entries (serialize, then chain-hash) on a thread of its own, so the writer's
//! core applies the next commands meanwhile: the submitting thread's core idles while the writer
//! works. Entries go over in batches and come back as journal chunks (`journal.rs`) in seq
//! order; the writer puts each chunk into the journal, one put per chunk, before the group
//! commits.
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
use crate::journal::{ChunkWriter, SealedChunk};
use crate::model::ListPool;
use crate::limits::{JOURNAL_CHUNK_ENTRIES_MAX, SEAL_CHUNK_ENTRIES, SEAL_CHUNKS_IN_FLIGHT_MAX};
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
    /// the batch's entries, serialized, in journal chunks in seq order
    chunks: Vec<SealedChunk>,
    /// the hash of the batch's last entry
    head: Vec<u8>,
    /// the entries' lists, emptied, for the writer's next entries
    lists: ListPool,
    /// the batch's list, emptied, for the writer's next batch
    batch: Vec<Entry>,
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
    /// chunks received back (or sealed here), not yet taken for the journal
    ready: VecDeque<SealedChunk>,
    /// an entry's bytes while it is hashed, before they are copied into their chunk
    scratch: Vec<u8>,
    /// lists of sealed entries, sent back emptied, not yet taken by the writer
    pub lists: ListPool,
    /// emptied batches sent back, for the next (at most SEAL_CHUNKS_IN_FLIGHT_MAX + 1)
    batches: Vec<Vec<Entry>>,
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
                let (mut last, mut scratch) = (Vec::new(), Vec::with_capacity(ENTRY_BUFFER_BYTES));
                for mut job in rx {
                    if let Some(h) = job.head {
                        last = h;
                    }
                    let chunks = seal_batch(&mut job.entries, &mut last, &mut scratch);
                    let lists = keep_lists(&mut job.entries);
                    if tx.send(Sealed { chunks, head: last.clone(), lists, batch: job.entries }).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| LedgerError::Storage(format!("cannot start the journal sealer: {e}")))?;
        Ok(Sealer {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            head,
            outstanding: 0,
            batch: Vec::new(),
            ready: VecDeque::new(),
            scratch: Vec::with_capacity(ENTRY_BUFFER_BYTES),
            lists: ListPool::default(),
            batches: Vec::new(),
        })
    }

    /// The entries not yet sent, in seq order: the writer builds a command's entries at the
    /// end, in place (their `ph` and `h` are set when they are sealed), then `send_if_full`.
    pub fn queue(&mut self) -> &mut Vec<Entry> {
        &mut self.batch
    }

    /// Send the queued entries to be sealed once they fill a chunk.
    pub fn send_if_full(&mut self) -> Result<()> {
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
        // an emptied batch back from the thread (each is ~170 KB, fresh pages when new)
        let next = self.batches.pop().unwrap_or_else(|| Vec::with_capacity(SEAL_CHUNK_ENTRIES));
        let entries = std::mem::replace(&mut self.batch, next);
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
        self.ready.extend(s.chunks);
        self.lists.absorb(s.lists);
        if s.batch.capacity() >= SEAL_CHUNK_ENTRIES && self.batches.len() <= SEAL_CHUNKS_IN_FLIGHT_MAX {
            self.batches.push(s.batch);
        }
    }

    /// Chunks that are back already, without waiting.
    pub fn take_ready(&mut self) -> std::collections::vec_deque::Drain<'_, SealedChunk> {
        while let Ok(s) = self.done.try_recv() {
            self.receive(s);
        }
        self.ready.drain(..)
    }

    /// Seal everything queued: waits for the thread, or seals a small remainder here when
    /// nothing is outstanding.
    fn seal_all(&mut self) -> Result<()> {
        if self.outstanding == 0 {
            self.ready.extend(seal_batch(&mut self.batch, &mut self.head, &mut self.scratch));
            self.lists.absorb(keep_lists(&mut self.batch));
        } else {
            self.send()?;
        }
        while self.outstanding > 0 {
            let s = self.done.recv().map_err(|_| Self::gone())?;
            self.receive(s);
        }
        Ok(())
    }

    /// Every queued entry, sealed, in chunks in seq order.
    pub fn finish(&mut self) -> Result<std::collections::vec_deque::Drain<'_, SealedChunk>> {
        self.seal_all()?;
        Ok(self.ready.drain(..))
    }

    /// The serialized entry `seq`, queued and not yet taken (waits until it is sealed). Reads of
    /// entries the group wrote itself (a replayed id, a reversal) are rare: they wait for
    /// everything queued.
    pub fn find(&mut self, seq: u64) -> Result<Option<&[u8]>> {
        if !self.ready.iter().any(|c| c.contains(seq)) {
            self.seal_all()?;
        }
        match self.ready.iter().find(|c| c.contains(seq)) {
            None => Ok(None),
            Some(c) => crate::journal::Chunk::entry_in(c.first, &c.bytes, seq),
        }
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

/// The lists of sealed entries, emptied (`ListPool`); the rest of each entry is dropped here,
/// and `entries` is left empty.
fn keep_lists(entries: &mut Vec<Entry>) -> ListPool {
    let mut lists = ListPool::default();
    for e in entries.drain(..) {
        lists.keep_postings(e.po);
        lists.keep_consumed(e.used);
        lists.keep_consumed(e.made);
        lists.keep_links(e.links);
        if let Some(fx) = e.fx {
            lists.keep_effects(fx);
        }
    }
    lists
}

/// Seal a batch of consecutive entries into journal chunks of at most JOURNAL_CHUNK_ENTRIES_MAX.
fn seal_batch(entries: &mut [Entry], head: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Vec<SealedChunk> {
    debug_assert!(entries.windows(2).all(|w| w[0].seq + 1 == w[1].seq), "a batch is consecutive entries");
    entries
        .chunks_mut(JOURNAL_CHUNK_ENTRIES_MAX)
        .map(|part| {
            let mut chunk = ChunkWriter::start(part[0].seq, part.len(), part.len() * ENTRY_BUFFER_BYTES * 3 / 4);
            for e in part {
                seal(e, head, scratch);
                chunk.push(scratch);
            }
            chunk.finish()
        })
        .collect()
}

/// Hash an entry and serialize it once into `bytes`: the entry is encoded without `h` (a map of
/// 14-16 fields: an earn note and account effects are optional), hashed, and `h` is appended as
/// the last field, which is exactly what encoding it with `h` would give. `head` is the previous
/// entry's hash, and becomes this one's.
fn seal(e: &mut Entry, head: &mut Vec<u8>, bytes: &mut Vec<u8>) {
    debug_assert!(e.h.is_empty());
    e.ph = std::mem::take(head);
    bytes.clear();
    encode_into(bytes, &*e);
    e.h = blake3::hash(bytes).as_bytes().to_vec();
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
    debug_assert_eq!(*bytes, encode(&*e));
    *head = std::mem::take(&mut e.h);
}
