//! A map from string keys to values for the writer's caches of members and accounts, built so
//! a lookup can be prefetched in steps (`Ledger::warm`). At a million members every lookup in
//! these caches is a cache miss or two, and a hash map's lookup waits on each: its first load
//! needs the table, its second what the first found. Here the first line a key needs (its
//! slot) follows from its hash alone, the second (its item) from that slot, so the writer
//! starts both loads for the next commands, one step each, and finds them arrived when it
//! applies them.
//!
//! Open addressing with linear probing over a power-of-two table of `u64` slots, each the
//! hash's high 32 bits and an index into a list of items (key, value, hash). The table is at
//! most half full. Removal is wholesale (`retain` rebuilds the table, `clear` empties it): the
//! caches only grow, and the state log's keys are dropped a merge cycle at a time.
use std::hash::Hasher;

use crate::model::AcctKey;

pub struct HotMap<V> {
    /// 0 = empty, else (hash >> 32) << 32 | (item index + 1)
    slots: Vec<u64>,
    items: Vec<Item<V>>,
}

struct Item<V> {
    hash: u64,
    key: AcctKey,
    value: V,
}

/// A key's hash, from `HotMap::prefetch_slot`, for the later steps of one lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hashed(u64);

pub fn hash(key: &str) -> Hashed {
    let mut h = rustc_hash::FxHasher::default();
    h.write(key.as_bytes());
    // Fx ends with one multiply (and a rotation): some input bits barely reach the low bits,
    // which pick the slot. Fold the high half in and multiply again.
    let x = h.finish();
    Hashed((x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9))
}

const SLOTS_MIN: usize = 16;

impl<V> Default for HotMap<V> {
    fn default() -> Self {
        HotMap { slots: Vec::new(), items: Vec::new() }
    }
}

impl<V> HotMap<V> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empty the map, keeping its memory: the state log's key map is emptied by every
    /// checkpoint and refilled to the same size, and growing it again (a copy of the items at
    /// each doubling, and fresh pages, which this VM backs on first touch) was ~8% of the
    /// writer's samples in the rounds after a checkpoint (perf).
    pub fn clear(&mut self) {
        self.slots.fill(0);
        self.items.clear();
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The items whose slots carry `h`'s tag, in probe order: from `h`'s slot to the first
    /// empty one (a table at most half full always has one).
    fn candidates(&self, h: Hashed) -> impl Iterator<Item = usize> + '_ {
        let mask = self.slots.len().wrapping_sub(1);
        let tag = h.0 >> 32;
        let (start, slots) = (h.0 as usize & mask, &self.slots);
        (0..slots.len())
            .map(move |k| slots[(start + k) & mask])
            .take_while(|s| *s != 0)
            .filter(move |s| s >> 32 == tag)
            .map(|s| (s as u32 - 1) as usize)
    }

    /// The index of `key`'s item, if present.
    fn find(&self, h: Hashed, key: &str) -> Option<usize> {
        self.candidates(h).find(|at| self.items[*at].key == key)
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.get_hashed(hash(key), key)
    }

    /// `get` with the key's hash computed before (by `prefetch_slot`).
    pub fn get_hashed(&self, h: Hashed, key: &str) -> Option<&V> {
        debug_assert_eq!(h, hash(key));
        self.find(h, key).map(|i| &self.items[i].value)
    }

    /// The value of the first item whose slot carries `h`'s tag, without comparing keys: a
    /// guess, for prefetching what a value points to (a shared tag gives another key's value).
    pub fn peek_hashed(&self, h: Hashed) -> Option<&V> {
        self.candidates(h).next().map(|at| &self.items[at].value)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.find(hash(key), key).map(|i| &mut self.items[i].value)
    }

    /// Insert or replace; returns the value replaced.
    pub fn insert(&mut self, key: AcctKey, value: V) -> Option<V> {
        let h = hash(&key);
        if let Some(i) = self.find(h, &key) {
            return Some(std::mem::replace(&mut self.items[i].value, value));
        }
        self.push_new(h, key, value);
        None
    }

    /// Add an item for a key not in the map; returns its index.
    fn push_new(&mut self, h: Hashed, key: AcctKey, value: V) -> usize {
        if (self.items.len() + 1) * 2 > self.slots.len() {
            self.rebuild((self.slots.len() * 2).max(SLOTS_MIN));
        }
        let at = self.items.len();
        assert!(at < u32::MAX as usize, "a HotMap holds fewer than 2^32 - 1 items");
        self.items.push(Item { hash: h.0, key, value });
        self.place(h.0, at);
        at
    }

    /// The value of `key` (hashed `h`), inserted by `make` first if absent: one probe.
    pub fn get_or_insert_with(&mut self, h: Hashed, key: &str, make: impl FnOnce() -> V) -> &mut V {
        debug_assert_eq!(h, hash(key));
        let at = match self.find(h, key) {
            Some(at) => at,
            None => self.push_new(h, AcctKey::from(key), make()),
        };
        &mut self.items[at].value
    }

    /// Keep the entries `keep` says yes to; the table is rebuilt for what remains.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut V) -> bool) {
        self.items.retain_mut(|it| keep(&it.key, &mut it.value));
        // the table keeps its size (as `clear`): the map grows back
        self.rebuild(self.slots.len());
    }

    fn place(&mut self, h: u64, at: usize) {
        let mask = self.mask();
        let mut i = h as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = (h >> 32) << 32 | (at as u64 + 1);
    }

    /// A table of `slots` slots (a power of two) for the items: the present one emptied when
    /// it has that size.
    fn rebuild(&mut self, slots: usize) {
        if slots == self.slots.len() {
            self.slots.fill(0);
        } else {
            self.slots = vec![0; slots];
        }
        for at in 0..self.items.len() {
            self.place(self.items[at].hash, at);
        }
    }

    /// First step of a prefetched lookup: start loading `key`'s slot. Never waits.
    pub fn prefetch_slot(&self, key: &str) -> Hashed {
        let h = hash(key);
        self.prefetch_slot_hashed(h);
        h
    }

    /// `prefetch_slot` for a key hashed before.
    pub fn prefetch_slot_hashed(&self, h: Hashed) {
        if !self.slots.is_empty() {
            crate::prefetch(&self.slots[h.0 as usize & self.mask()]);
        }
    }

    /// Second step: start loading the item the key's slot points to (the first with its hash
    /// tag; a collision in the tag only costs a useless load). Reads the slot.
    pub fn prefetch_item(&self, h: Hashed) {
        if let Some(at) = self.candidates(h).next() {
            crate::prefetch(&self.items[at]);
        }
    }
}

/// `map[key]`: the value, which must be present.
impl<V> std::ops::Index<&str> for HotMap<V> {
    type Output = V;
    fn index(&self, key: &str) -> &V {
        self.get(key).unwrap_or_else(|| panic!("{key:?} is not in the map"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Get(u16),
        GetMut(u16, u32),
        GetOrInsert(u16, u32),
        /// keep the values with this remainder mod 3
        Retain(u32),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        // few distinct keys, so inserts often replace; clears are rare
        prop_oneof![
            8 => (0u16..600, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            6 => (0u16..700).prop_map(Op::Get),
            3 => (0u16..600, any::<u32>()).prop_map(|(k, v)| Op::GetMut(k, v)),
            3 => (0u16..600, any::<u32>()).prop_map(|(k, v)| Op::GetOrInsert(k, v)),
            1 => (0u32..3).prop_map(Op::Retain),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Every step agrees with std's HashMap, and the prefetching steps find what `get` finds.
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 1..1500)) {
            let (mut hot, mut model) = (HotMap::default(), HashMap::new());
            let key = |k: u16| format!("member-{k}/points");
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(hot.insert(AcctKey::from(key(k)), v), model.insert(key(k), v)),
                    Op::Get(k) => {
                        let h = hot.prefetch_slot(&key(k));
                        hot.prefetch_item(h);
                        prop_assert_eq!(hot.get_hashed(h, &key(k)), model.get(&key(k)));
                        // a guess, but never a miss for a key that is there
                        prop_assert!(!model.contains_key(&key(k)) || hot.peek_hashed(h).is_some());
                        prop_assert_eq!(hot.get(&key(k)), model.get(&key(k)));
                    }
                    Op::GetMut(k, v) => {
                        let (a, b) = (hot.get_mut(&key(k)), model.get_mut(&key(k)));
                        prop_assert_eq!(a.is_some(), b.is_some());
                        if let (Some(a), Some(b)) = (a, b) {
                            *a = v;
                            *b = v;
                        }
                    }
                    Op::GetOrInsert(k, v) => {
                        let got = *hot.get_or_insert_with(hash(&key(k)), &key(k), || v);
                        prop_assert_eq!(got, *model.entry(key(k)).or_insert(v));
                    }
                    Op::Retain(rem) => {
                        hot.retain(|_, v| *v % 3 == rem);
                        model.retain(|_, v| *v % 3 == rem);
                        prop_assert!(model.iter().all(|(k, v)| hot.get(k) == Some(v)));
                    }
                    Op::Clear => {
                        hot.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(hot.len(), model.len());
                prop_assert!(hot.slots.is_empty() || hot.items.len() * 2 <= hot.slots.len(), "at most half full");
            }
        }
    }

    #[test]
    fn emptying_keeps_the_memory_for_the_next_fill() {
        let mut hot = HotMap::default();
        for k in 0..1000u32 {
            hot.insert(AcctKey::from(format!("k{k}")), k);
        }
        let (slots, items) = (hot.slots.len(), hot.items.capacity());
        hot.retain(|_, v| *v % 2 == 0);
        assert_eq!((hot.len(), hot.slots.len(), hot.items.capacity()), (500, slots, items));
        assert!((0..1000u32).all(|k| hot.get(&format!("k{k}")) == (k % 2 == 0).then_some(&k)));
        hot.clear();
        assert_eq!((hot.len(), hot.slots.len(), hot.items.capacity()), (0, slots, items));
        assert_eq!(hot.get("k0"), None);
        hot.insert(AcctKey::from("k0"), 7);
        assert_eq!(hot.get("k0"), Some(&7));
    }

    #[test]
    fn keys_whose_slots_collide_are_all_found() {
        // a tiny table: 20 keys share 64 slots, so probes run past taken slots
        let mut hot = HotMap::default();
        for k in 0..20u32 {
            hot.insert(AcctKey::from(format!("k{k}")), k);
        }
        assert_eq!(hot.slots.len(), 64);
        assert!((0..20u32).all(|k| hot.get(&format!("k{k}")) == Some(&k)));
        assert_eq!(hot.get("k20"), None);
        assert_eq!(hot.get(""), None);
    }
}
