//! A Bloom filter over every recorded command id, owned by the writer. Almost every command
//! carries a fresh id, and proving it fresh with an LMDB lookup in a tree of millions of ids was
//! a third of the writer's apply time; the filter answers "certainly new" from memory and leaves
//! only possible replays (and ~0.2% false positives) to the state log and LMDB. It is built from the
//! `idempotency` database at open and grows as ids accumulate by adding a layer twice the size
//! of the last (a scalable Bloom filter): growing never re-reads the ids, so no commit stalls
//! on it (re-reading 6 M ids took ~2 s).
//! A stale "maybe" is harmless: the LMDB lookup that follows is the authority.
use crate::error::Result;
use crate::limits::{IDEM_FILTER_BITS_MIN, IDEM_FILTER_BITS_PER_ID};
use crate::store::{LogTag, StateLogBlob, Store};
use heed::RoTxn;

/// Probes per id, all in one 512-bit block: ~0.2% false positives at `IDEM_FILTER_BITS_PER_ID`
/// = 16 (a blocked Bloom filter: one cache miss per layer, where a plain filter's probes each
/// land on a line of their own).
pub(crate) const PROBES: u32 = 8;
pub(crate) const BLOCK_BITS: u64 = 512;

pub struct IdemFilter {
    /// oldest first; ids go into the last one, lookups ask all of them
    layers: Vec<Layer>,
}

/// One cache line of bits.
#[repr(align(64))]
#[derive(Clone, Copy, Default)]
struct Block([u64; 8]);

struct Layer {
    blocks: Vec<Block>,
    ids: u64,
}

fn hash(id: &[u8]) -> (u64, u64) {
    // Two independent 64-bit hashes: the first picks the block, the second (and a mix of
    // both) the bits in it. Not adversarial-safe, which only costs an LMDB lookup on a collision.
    let h1 = rustc_hash::FxHasher::default();
    let h1 = {
        use std::hash::Hasher;
        let mut h = h1;
        h.write(id);
        h.finish()
    };
    let mut h2: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for b in id {
        h2 = (h2 ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    (h1, h2)
}

/// A key's block among `blocks` (from the high bits of h1: multiply-shift range reduction) and
/// its PROBES bit positions in the block (9 bits each: seven from h2, one from a mix of both).
pub(crate) fn probes((h1, h2): (u64, u64), blocks: usize) -> (usize, [u16; PROBES as usize]) {
    let block = ((h1 as u128 * blocks as u128) >> 64) as usize;
    let h3 = (h1 ^ h2).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    let mut bits = [0u16; PROBES as usize];
    for (i, b) in bits.iter_mut().enumerate() {
        let x = if i < 7 { h2 >> (9 * i) } else { h3 };
        *b = (x % BLOCK_BITS) as u16;
    }
    (block, bits)
}

impl Layer {
    fn with_bits(bits: u64) -> Layer {
        let blocks = bits.max(IDEM_FILTER_BITS_MIN).div_ceil(BLOCK_BITS);
        Layer { blocks: vec![Block::default(); blocks as usize], ids: 0 }
    }

    fn probes(&self, h: (u64, u64)) -> (usize, [u16; PROBES as usize]) {
        probes(h, self.blocks.len())
    }

    fn insert(&mut self, h: (u64, u64)) {
        let (block, bits) = self.probes(h);
        let words = &mut self.blocks[block].0;
        for b in bits {
            words[(b / 64) as usize] |= 1 << (b % 64);
        }
        self.ids += 1;
    }

    fn may_contain(&self, h: (u64, u64)) -> bool {
        let (block, bits) = self.probes(h);
        let words = &self.blocks[block].0;
        bits.iter().all(|&b| words[(b / 64) as usize] & (1 << (b % 64)) != 0)
    }

    fn bits(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK_BITS
    }

    /// Past its design load the false-positive rate climbs.
    fn is_full(&self) -> bool {
        self.ids * IDEM_FILTER_BITS_PER_ID > self.bits()
    }
}

impl IdemFilter {
    fn with_bits(bits: u64) -> IdemFilter {
        IdemFilter { layers: vec![Layer::with_bits(bits)] }
    }

    /// Build from every recorded id: the `idempotency` database and the ids still in the state
    /// log (a crash leaves them there), sized for twice as many.
    pub fn load(store: &Store, txn: &RoTxn<'_>) -> Result<IdemFilter> {
        let mut logged = vec![];
        for item in store.state_log.iter(txn)? {
            let (_, blob) = item?;
            for (k, _) in StateLogBlob::entries(blob)? {
                if let (LogTag::Idem, id) = LogTag::split(k)? {
                    logged.push(id);
                }
            }
        }
        let n = store.idempotency.len(txn)? as usize + logged.len();
        let mut f = IdemFilter::with_bits(2 * n as u64 * IDEM_FILTER_BITS_PER_ID);
        for item in store.idempotency.iter(txn)? {
            let (k, _) = item?;
            f.insert(k);
        }
        for id in logged {
            f.insert(id);
        }
        Ok(f)
    }

    /// Start loading the blocks `may_contain(id)` will read (a hint: it never waits).
    pub fn prefetch(&self, id: &[u8]) {
        let h = hash(id);
        for l in &self.layers {
            crate::prefetch(&l.blocks[probes(h, l.blocks.len()).0]);
        }
    }

    pub fn insert(&mut self, id: &[u8]) {
        let last = self.layers.last_mut().expect("a filter has a layer");
        if last.is_full() {
            let bits = 2 * last.bits();
            self.layers.push(Layer::with_bits(bits));
        }
        self.layers.last_mut().expect("a filter has a layer").insert(hash(id));
    }

    /// False: the id was certainly never recorded. True: it may have been.
    pub fn may_contain(&self, id: &[u8]) -> bool {
        let h = hash(id);
        self.layers.iter().any(|l| l.may_contain(h))
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut f = IdemFilter::with_bits(100_000 * IDEM_FILTER_BITS_PER_ID);
        for i in 0..100_000 {
            f.insert(format!("cmd-{i}").as_bytes());
        }
        assert!((0..100_000).all(|i| f.may_contain(format!("cmd-{i}").as_bytes())));
        let fp = (0..100_000).filter(|i| f.may_contain(format!("other-{i}").as_bytes())).count();
        assert!(fp < 300, "{fp} false positives in 100,000");
        assert_eq!(f.layers(), 1);
    }

    #[test]
    fn it_grows_by_layers_without_losing_an_id_and_stays_selective() {
        let mut f = IdemFilter::with_bits(0); // the smallest filter: IDEM_FILTER_BITS_MIN bits
        let n = 4 * IDEM_FILTER_BITS_MIN / IDEM_FILTER_BITS_PER_ID;
        for i in 0..n {
            f.insert(format!("cmd-{i}").as_bytes());
        }
        assert!(f.layers() >= 3, "{} layers", f.layers());
        assert!((0..n).all(|i| f.may_contain(format!("cmd-{i}").as_bytes())));
        let fp = (0..100_000).filter(|i| f.may_contain(format!("other-{i}").as_bytes())).count();
        assert!(fp < 800, "{fp} false positives in 100,000");
    }
}
