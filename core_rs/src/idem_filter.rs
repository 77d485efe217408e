//! A Bloom filter over every recorded command id, owned by the writer. Almost every command
//! carries a fresh id, and proving it fresh with an LMDB lookup in a tree of millions of ids was
//! a third of the writer's apply time; the filter answers "certainly new" from memory and leaves
//! only possible replays (and a few % false positives) to LMDB. It is built from the
//! `idempotency` database at open and grows as ids accumulate by adding a layer twice the size
//! of the last (a scalable Bloom filter): growing never re-reads the ids, so no commit stalls
//! on it (re-reading 6 M ids took ~2 s).
//! A stale "maybe" is harmless: the LMDB lookup that follows is the authority.
use crate::error::Result;
use crate::limits::{IDEM_FILTER_BITS_MIN, IDEM_FILTER_BITS_PER_ID};
use crate::store::{LogTag, StateLogBlob, Store};
use heed::RoTxn;

/// Probes per id: ~1% false positives at `IDEM_FILTER_BITS_PER_ID` = 10.
const PROBES: u32 = 7;

pub struct IdemFilter {
    /// oldest first; ids go into the last one, lookups ask all of them
    layers: Vec<Layer>,
}

struct Layer {
    bits: Vec<u64>,
    /// bit count - 1 (a power of two)
    mask: u64,
    ids: u64,
}

fn hash(id: &[u8]) -> (u64, u64) {
    // Two independent 64-bit hashes (double hashing gives the probes); not adversarial-safe,
    // which only costs an LMDB lookup on a collision.
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
    (h1, h2 | 1)
}

impl Layer {
    fn with_bits(bits: u64) -> Layer {
        let bits = bits.next_power_of_two().max(IDEM_FILTER_BITS_MIN);
        Layer { bits: vec![0; (bits / 64) as usize], mask: bits - 1, ids: 0 }
    }

    fn insert(&mut self, (h1, h2): (u64, u64)) {
        for i in 0..PROBES as u64 {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & self.mask;
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.ids += 1;
    }

    fn may_contain(&self, (h1, h2): (u64, u64)) -> bool {
        (0..PROBES as u64).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & self.mask;
            self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    /// Past its design load the false-positive rate climbs.
    fn is_full(&self) -> bool {
        self.ids * IDEM_FILTER_BITS_PER_ID > self.mask + 1
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

    pub fn insert(&mut self, id: &[u8]) {
        let last = self.layers.last_mut().expect("a filter has a layer");
        if last.is_full() {
            let bits = 2 * (last.mask + 1);
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
        assert!(fp < 3_000, "{fp} false positives in 100,000");
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
        assert!(fp < 5_000, "{fp} false positives in 100,000");
    }
}
