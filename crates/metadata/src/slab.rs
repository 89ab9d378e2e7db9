//! Slab-style id allocation with Iggy's reuse order: a freed id is reused, the most recently
//! freed first; otherwise ids grow from 0.

use std::collections::{BTreeMap, BTreeSet};

/// A map from u32 keys to values whose next key follows slab rules.
#[derive(Clone, Debug)]
pub(crate) struct Slab<T> {
    entries: BTreeMap<u32, T>,
    /// Freed keys, the most recently freed last.
    free: Vec<u32>,
    /// One past the highest key ever handed out.
    end: u32,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            free: Vec::new(),
            end: 0,
        }
    }
}

impl<T> Slab<T> {
    /// The key the next `insert` will use.
    pub(crate) fn next_key(&self) -> u32 {
        self.free.last().copied().unwrap_or(self.end)
    }

    /// Inserts at `next_key()`, which the caller passes to prove it prepared against this state.
    pub(crate) fn insert(&mut self, key: u32, value: T) {
        assert_eq!(key, self.next_key(), "slab keys are assigned in order");
        if self.free.last() == Some(&key) {
            self.free.pop();
        } else {
            self.end += 1;
        }
        self.entries.insert(key, value);
    }

    pub(crate) fn remove(&mut self, key: u32) -> Option<T> {
        let value = self.entries.remove(&key)?;
        self.free.push(key);
        Some(value)
    }

    pub(crate) fn get(&self, key: u32) -> Option<&T> {
        self.entries.get(&key)
    }

    pub(crate) fn get_mut(&mut self, key: u32) -> Option<&mut T> {
        self.entries.get_mut(&key)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.values()
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.values_mut()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Freed keys, the most recently freed last: the order they will be reused in, reversed.
    pub(crate) fn free_keys(&self) -> &[u32] {
        &self.free
    }

    /// One past the highest key ever handed out.
    pub(crate) fn end(&self) -> u32 {
        self.end
    }

    /// A slab from its parts, as a snapshot stores them. Every key below `end` must be either
    /// live or free, never both and never twice, or the next insert would land on a live entry.
    pub(crate) fn from_parts(
        entries: BTreeMap<u32, T>,
        free: Vec<u32>,
        end: u32,
    ) -> Result<Self, String> {
        let mut seen: BTreeSet<u32> = entries.keys().copied().collect();
        for &key in &free {
            if !seen.insert(key) {
                return Err(format!(
                    "slab key {key} is both free and live, or freed twice"
                ));
            }
        }
        if seen.len() != end as usize || seen.last().is_some_and(|&last| last >= end) {
            return Err(format!("slab keys do not cover 0..{end} exactly"));
        }
        Ok(Self { entries, free, end })
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn reuses_the_most_recently_freed_key_first() {
        let mut slab = Slab::default();
        for key in 0..4 {
            slab.insert(slab.next_key(), key);
        }
        slab.remove(1);
        slab.remove(2);
        assert_eq!(slab.next_key(), 2);
        slab.insert(2, 20);
        assert_eq!(slab.next_key(), 1);
        slab.insert(1, 10);
        assert_eq!(slab.next_key(), 4);
    }

    #[test]
    fn parts_must_cover_every_key_once() {
        let entries = |keys: &[u32]| keys.iter().map(|&key| (key, ())).collect();
        let slab = Slab::from_parts(entries(&[0, 2]), vec![3, 1], 4).expect("consistent");
        assert_eq!(slab.next_key(), 1);
        assert!(
            Slab::from_parts(entries(&[0, 1]), vec![1], 2).is_err(),
            "free and live"
        );
        assert!(
            Slab::from_parts(entries(&[0]), vec![1, 1], 2).is_err(),
            "freed twice"
        );
        assert!(
            Slab::from_parts(entries(&[0]), vec![], 2).is_err(),
            "a key lost"
        );
        assert!(
            Slab::from_parts(entries(&[0, 5]), vec![], 2).is_err(),
            "beyond the end"
        );
    }
}
