//! How the journal is stored: consecutive entries in **chunks**, one LMDB value per chunk, keyed
//! by its first entry's seq (u64 big-endian). One B-tree put per entry cost the writer ~1,800
//! instructions per command (callgrind, session 13); a chunk of up to
//! `JOURNAL_CHUNK_ENTRIES_MAX` costs one put for all of them.
//!
//! A chunk is a msgpack map `{"v": 1, "s": first seq, "o": bin, "e": [bin, …]}`: each `bin` of
//! `e` is one entry exactly as it was hashed and sealed (a named msgpack map), so another
//! process reads it with `msgpack` alone (`[unpackb(b) for b in unpackb(v)["e"]]`). `o` holds
//! each entry's offset in the value (u32 big-endian, at its bin header), so a point read goes
//! straight to its entry: skipping the headers before it cost a cache miss each, and was a
//! third of a balance read that walks an account's history. Entry `seq` lives in the chunk
//! with the greatest key ≤ `seq`. A value that is not a chunk is one entry stored on its own
//! (journals written before chunks), so old data directories still read.
use heed::types::Bytes;
use heed::RoTxn;

use crate::command::Entry;
use crate::error::{LedgerError, Result};
use crate::limits::JOURNAL_CHUNK_ENTRIES_MAX;
use crate::store::{decode, seq_key, Store};

const CHUNK_VERSION: u8 = 1;
/// A chunk's first bytes: a 4-field map whose first key is "v" (an entry is a map of 15-17
/// fields, so its header is never this).
const CHUNK_HEAD: [u8; 3] = [0x84, 0xa1, b'v'];

/// Builds one chunk's value: `start`, then `push` each sealed entry in seq order, then `finish`.
pub struct ChunkWriter {
    first: u64,
    n: usize,
    pushed: usize,
    /// where the offset table's bytes start
    offsets_at: usize,
    bytes: Vec<u8>,
}

impl ChunkWriter {
    /// A chunk of `n` entries from seq `first` on; `bytes_hint` sizes its buffer.
    pub fn start(first: u64, n: usize, bytes_hint: usize) -> ChunkWriter {
        assert!((1..=JOURNAL_CHUNK_ENTRIES_MAX).contains(&n), "a chunk holds 1..={JOURNAL_CHUNK_ENTRIES_MAX} entries");
        let mut bytes = Vec::with_capacity(bytes_hint + 32);
        bytes.extend_from_slice(&CHUNK_HEAD);
        let written = (|| {
            rmp::encode::write_uint(&mut bytes, CHUNK_VERSION as u64)?;
            bytes.extend_from_slice(&[0xa1, b's']);
            rmp::encode::write_uint(&mut bytes, first)?;
            bytes.extend_from_slice(&[0xa1, b'o']);
            rmp::encode::write_bin_len(&mut bytes, 4 * n as u32)?;
            let offsets_at = bytes.len();
            bytes.resize(offsets_at + 4 * n, 0);
            bytes.extend_from_slice(&[0xa1, b'e']);
            rmp::encode::write_array_len(&mut bytes, n as u32)?;
            Ok::<_, rmp::encode::ValueWriteError>(offsets_at)
        })();
        let offsets_at = written.expect("writing to a Vec cannot fail");
        ChunkWriter { first, n, pushed: 0, offsets_at, bytes }
    }

    pub fn push(&mut self, entry: &[u8]) {
        assert!(self.pushed < self.n, "more entries than the chunk was started with");
        let at = self.offsets_at + 4 * self.pushed;
        let offset = u32::try_from(self.bytes.len()).expect("a chunk is smaller than 4 GiB");
        self.bytes[at..at + 4].copy_from_slice(&offset.to_be_bytes());
        rmp::encode::write_bin_len(&mut self.bytes, entry.len() as u32).expect("writing to a Vec cannot fail");
        self.bytes.extend_from_slice(entry);
        self.pushed += 1;
    }

    /// (first seq, entries, value)
    pub fn finish(self) -> SealedChunk {
        assert_eq!(self.pushed, self.n, "a chunk is finished with the entries it was started with");
        SealedChunk { first: self.first, n: self.n as u32, bytes: self.bytes }
    }
}

/// A chunk ready for the journal: entries `first..first + n`, and its value.
pub struct SealedChunk {
    pub first: u64,
    pub n: u32,
    pub bytes: Vec<u8>,
}

impl SealedChunk {
    pub fn contains(&self, seq: u64) -> bool {
        (self.first..self.first + self.n as u64).contains(&seq)
    }
}

/// A journal value parsed in place: its entries' bytes, borrowed.
#[derive(Debug)]
pub struct Chunk<'t> {
    pub first: u64,
    pub entries: Vec<&'t [u8]>,
}

impl<'t> Chunk<'t> {
    /// Parse the value stored under key `key_seq`: a chunk, or one entry stored on its own.
    pub fn parse(key_seq: u64, value: &'t [u8]) -> Result<Chunk<'t>> {
        if !value.starts_with(&CHUNK_HEAD) {
            return Ok(Chunk { first: key_seq, entries: vec![value] });
        }
        let (first, offsets, mut rd) = Self::header(key_seq, value)?;
        let n = offsets.len() / 4;
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            if Self::offset(offsets, i) != value.len() - rd.len() {
                return Err(corrupt(key_seq, &format!("entry {i}'s offset is wrong")));
            }
            let (e, rest) = Self::next_entry(key_seq, rd)?;
            entries.push(e);
            rd = rest;
        }
        if !rd.is_empty() {
            return Err(corrupt(key_seq, "bytes after the last entry"));
        }
        Ok(Chunk { first, entries })
    }

    /// Entry `seq` of the value stored under `key_seq`, found through the offset table: a
    /// history walk reads one entry per chunk (parsing all 64 headers of each was more than half
    /// of a balance read, perf in session 14).
    pub fn entry_in(key_seq: u64, value: &'t [u8], seq: u64) -> Result<Option<&'t [u8]>> {
        if !value.starts_with(&CHUNK_HEAD) {
            return Ok((seq == key_seq).then_some(value));
        }
        let (first, offsets, rd) = Self::header(key_seq, value)?;
        let Some(i) = seq.checked_sub(first).filter(|i| *i < (offsets.len() / 4) as u64) else {
            return Ok(None);
        };
        let at = Self::offset(offsets, i as usize);
        // (an offset into the header is as corrupt as one past the end)
        if at < value.len() - rd.len() || at >= value.len() {
            return Err(corrupt(key_seq, &format!("entry {i}'s offset is wrong")));
        }
        Ok(Some(Self::next_entry(key_seq, &value[at..])?.0))
    }

    fn offset(offsets: &[u8], i: usize) -> usize {
        u32::from_be_bytes(offsets[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize
    }

    /// (first seq, offset table, the entries' bytes) of a chunk
    fn header(key_seq: u64, value: &'t [u8]) -> Result<(u64, &'t [u8], &'t [u8])> {
        let mut rd = &value[CHUNK_HEAD.len()..];
        let version: u8 = rmp::decode::read_int(&mut rd).map_err(|_| corrupt(key_seq, "bad version"))?;
        if version != CHUNK_VERSION {
            return Err(corrupt(key_seq, &format!("version {version} is not {CHUNK_VERSION}")));
        }
        let key = |name: &str, rd: &mut &[u8]| -> Result<()> {
            let mut buf = [0u8; 1];
            match rmp::decode::read_str(rd, &mut buf) {
                Ok(k) if k == name => Ok(()),
                _ => Err(corrupt(key_seq, &format!("expected field {name:?}"))),
            }
        };
        key("s", &mut rd)?;
        let first: u64 = rmp::decode::read_int(&mut rd).map_err(|_| corrupt(key_seq, "bad first seq"))?;
        if first != key_seq {
            return Err(corrupt(key_seq, &format!("its first seq is {first}")));
        }
        key("o", &mut rd)?;
        let table = rmp::decode::read_bin_len(&mut rd).map_err(|_| corrupt(key_seq, "bad offset table"))? as usize;
        if table > rd.len() {
            return Err(corrupt(key_seq, "truncated"));
        }
        let (offsets, rest) = rd.split_at(table);
        rd = rest;
        key("e", &mut rd)?;
        let n = rmp::decode::read_array_len(&mut rd).map_err(|_| corrupt(key_seq, "bad entry count"))? as usize;
        if !(1..=JOURNAL_CHUNK_ENTRIES_MAX).contains(&n) {
            return Err(corrupt(key_seq, &format!("{n} entries (1..={JOURNAL_CHUNK_ENTRIES_MAX})")));
        }
        if offsets.len() != 4 * n {
            return Err(corrupt(key_seq, &format!("{} offsets for {n} entries", offsets.len() / 4)));
        }
        Ok((first, offsets, rd))
    }

    /// The entry at the start of `rd` (a msgpack bin) and the bytes after it.
    fn next_entry(key_seq: u64, rd: &'t [u8]) -> Result<(&'t [u8], &'t [u8])> {
        let (len, at) = match *rd {
            [0xc4, n, ..] => (n as usize, 2),
            [0xc5, a, b, ..] => (u16::from_be_bytes([a, b]) as usize, 3),
            [0xc6, a, b, c, d, ..] => (u32::from_be_bytes([a, b, c, d]) as usize, 5),
            _ => return Err(corrupt(key_seq, "bad entry header")),
        };
        if at + len > rd.len() {
            return Err(corrupt(key_seq, "truncated"));
        }
        Ok(rd[at..].split_at(len))
    }

    /// Entry `seq`'s bytes, if this chunk holds it.
    pub fn get(&self, seq: u64) -> Option<&'t [u8]> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.entries.get(i).copied()
    }
}

/// Encode a chunk from entries already sealed (tests and repair tools rewrite chunks with it).
pub fn encode_chunk(first: u64, entries: &[&[u8]]) -> Vec<u8> {
    let mut w = ChunkWriter::start(first, entries.len(), entries.iter().map(|e| e.len() + 5).sum());
    for e in entries {
        w.push(e);
    }
    w.finish().bytes
}

/// A chunk that does not parse, named by its key.
fn corrupt(key_seq: u64, what: &str) -> LedgerError {
    LedgerError::Storage(format!("journal chunk {key_seq}: {what}"))
}

fn key_seq(key: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(key.try_into().map_err(|_| LedgerError::Storage("corrupt journal key".into()))?))
}

/// The chunk that holds `seq` (or would: check with `Chunk::get`), if any.
pub fn chunk_of<'t>(store: &Store, txn: &'t RoTxn<'_>, seq: u64) -> Result<Option<Chunk<'t>>> {
    match store.journal.get_lower_than_or_equal_to(txn, &seq_key(seq))? {
        None => Ok(None),
        Some((k, v)) => Ok(Some(Chunk::parse(key_seq(k)?, v)?)),
    }
}

/// Entry `seq`'s bytes.
pub fn entry_bytes<'t>(store: &Store, txn: &'t RoTxn<'_>, seq: u64) -> Result<Option<&'t [u8]>> {
    match store.journal.get_lower_than_or_equal_to(txn, &seq_key(seq))? {
        None => Ok(None),
        Some((k, v)) => Chunk::entry_in(key_seq(k)?, v, seq),
    }
}

/// Entry `seq`.
pub fn entry(store: &Store, txn: &RoTxn<'_>, seq: u64) -> Result<Option<Entry>> {
    entry_bytes(store, txn, seq)?.map(decode).transpose()
}

/// Entry `seq`, which must exist (an idempotency record or a history link names it).
pub fn entry_known(store: &Store, txn: &RoTxn<'_>, seq: u64) -> Result<Entry> {
    entry(store, txn, seq)?.ok_or_else(|| LedgerError::Storage(format!("journal entry {seq} missing")))
}

/// The newest entry.
pub fn last(store: &Store, txn: &RoTxn<'_>) -> Result<Option<Entry>> {
    match store.journal.last(txn)? {
        None => Ok(None),
        Some((k, v)) => {
            let c = Chunk::parse(key_seq(k)?, v)?;
            decode(c.entries[c.entries.len() - 1]).map(Some)
        }
    }
}

/// Entries in the journal (every chunk's count).
pub fn len(store: &Store, txn: &RoTxn<'_>) -> Result<u64> {
    let mut n = 0;
    for item in store.journal.iter(txn)? {
        let (k, v) = item?;
        n += Chunk::parse(key_seq(k)?, v)?.entries.len() as u64;
    }
    Ok(n)
}

/// Entries from seq `from` on, in storage order, as (seq by position, bytes). A chunk that does
/// not parse comes as one error (then the next chunk): `audit` reports it and goes on.
pub struct Entries<'t> {
    chunks: heed::RoRange<'t, Bytes, Bytes>,
    chunk: Option<Chunk<'t>>,
    pos: usize,
    from: u64,
}

pub fn entries_from<'t>(store: &Store, txn: &'t RoTxn<'_>, from: u64) -> Result<Entries<'t>> {
    // start at the chunk that holds `from`, when one does
    let start = match store.journal.get_lower_than_or_equal_to(txn, &seq_key(from))? {
        Some((k, _)) => key_seq(k)?,
        None => from,
    };
    let chunks = store.journal.range(txn, &(std::ops::Bound::Included(&seq_key(start)[..]), std::ops::Bound::Unbounded))?;
    Ok(Entries { chunks, chunk: None, pos: 0, from })
}

impl<'t> Iterator for Entries<'t> {
    type Item = Result<(u64, &'t [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(c) = &self.chunk {
                if let Some(&e) = c.entries.get(self.pos) {
                    let seq = c.first + self.pos as u64;
                    self.pos += 1;
                    if seq >= self.from {
                        return Some(Ok((seq, e)));
                    }
                    continue;
                }
            }
            self.chunk = None;
            self.pos = 0;
            let (k, v) = match self.chunks.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            match key_seq(k).and_then(|s| Chunk::parse(s, v)) {
                Ok(c) => self.chunk = Some(c),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_reads_back_each_entry_in_place() {
        let entries: Vec<Vec<u8>> = [0usize, 1, 31, 255, 256, 70_000].iter().map(|&n| rmp_serde::to_vec_named(&vec![7u8; n]).unwrap()).collect();
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let v = encode_chunk(41, &refs);
        let c = Chunk::parse(41, &v).unwrap();
        assert_eq!((c.first, c.entries.len()), (41, 6));
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(c.get(41 + i as u64), Some(e.as_slice()));
        }
        assert_eq!((c.get(40), c.get(47)), (None, None));
        for seq in 39..=48 {
            assert_eq!(Chunk::entry_in(41, &v, seq).unwrap(), c.get(seq), "seq {seq}");
        }
        // what another process sees with msgpack alone
        #[derive(serde::Deserialize)]
        struct Plain {
            v: u8,
            s: u64,
            o: serde_bytes::ByteBuf,
            e: Vec<serde_bytes::ByteBuf>,
        }
        let p: Plain = rmp_serde::from_slice(&v).unwrap();
        assert_eq!((p.v, p.s), (1, 41));
        assert_eq!(p.e.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), entries);
        assert_eq!(p.o.len(), 4 * entries.len());
    }

    #[test]
    fn a_value_that_is_not_a_chunk_is_one_entry() {
        let e = rmp_serde::to_vec_named(&std::collections::BTreeMap::from([("seq", 9u64)])).unwrap();
        let c = Chunk::parse(9, &e).unwrap();
        assert_eq!((c.get(9), c.get(10)), (Some(e.as_slice()), None));
        assert_eq!((Chunk::entry_in(9, &e, 9).unwrap(), Chunk::entry_in(9, &e, 8).unwrap()), (Some(e.as_slice()), None));
    }

    #[test]
    fn a_damaged_chunk_is_refused() {
        let good = encode_chunk(5, &[b"\x80", b"\x80"]);
        assert!(Chunk::parse(6, &good).unwrap_err().to_string().contains("first seq is 5"));
        for cut in [good.len() - 1, CHUNK_HEAD.len() + 2] {
            assert!(Chunk::parse(5, &good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Chunk::entry_in(5, &good[..good.len() - 1], 6).is_err());
        // an offset table that disagrees with the entries
        let mut shifted = good.clone();
        let at = good.windows(2).position(|w| w == [0xa1, b'o']).unwrap() + 3;
        shifted[at + 3] += 1;
        assert!(Chunk::parse(5, &shifted).unwrap_err().to_string().contains("offset is wrong"));
        let mut extra = good.clone();
        extra.push(0xc0);
        assert!(Chunk::parse(5, &extra).unwrap_err().to_string().contains("after the last entry"));
        let mut versioned = good;
        versioned[CHUNK_HEAD.len()] = 2;
        assert!(Chunk::parse(5, &versioned).unwrap_err().to_string().contains("version 2"));
    }
}
