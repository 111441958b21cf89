//! The replay guard's index: from a key's tag (a word of its salted digest) to the
//! sequence number of its entry in the guard's ring.

/// The ring's index: from a key's tag to its entry's sequence number. Open addressing
/// with linear probing in 16-byte slots, four to a cache line, at most two thirds full:
/// a lookup of an id never seen (the common case) reads one line, rarely the next, where
/// a general-purpose map reads its control bytes and its entries apart. It grows by
/// doubling; deleting shifts the rest of a probe run back, so no tombstones build up.
#[derive(Default)]
pub(super) struct Index {
    /// A power of two in length, or empty.
    slots: Vec<Slot>,
    len: usize,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// 0 for an empty slot.
    tag: u64,
    seq: u64,
}

impl Index {
    const FIRST_SIZE: usize = 16;

    fn home(&self, tag: u64) -> usize {
        // Tags are digest words, uniformly distributed: the low bits serve as the hash.
        tag as usize & (self.slots.len() - 1)
    }

    /// The slots from `tag`'s home onwards, up to the first empty one.
    fn probe(&self, tag: u64) -> impl Iterator<Item = (usize, Slot)> + '_ {
        let mask = self.slots.len().wrapping_sub(1);
        let start = if self.slots.is_empty() {
            0
        } else {
            self.home(tag)
        };
        (0..self.slots.len())
            .map(move |i| (start + i) & mask)
            .map(|i| (i, self.slots[i]))
            .take_while(|(_, slot)| slot.tag != 0)
    }

    /// The sequence number filed under `tag` that `is_it` accepts.
    pub(super) fn find(&self, tag: u64, mut is_it: impl FnMut(u64) -> bool) -> Option<u64> {
        self.probe(tag)
            .find(|(_, slot)| slot.tag == tag && is_it(slot.seq))
            .map(|(_, slot)| slot.seq)
    }

    pub(super) fn insert(&mut self, tag: u64, seq: u64) {
        if (self.len + 1) * 3 > self.slots.len() * 2 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(tag);
        while self.slots[i].tag != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot { tag, seq };
        self.len += 1;
    }

    /// Removes the slot holding `tag` and `seq`, if there is one.
    pub(super) fn remove(&mut self, tag: u64, seq: u64) {
        let Some((mut hole, _)) = self
            .probe(tag)
            .find(|(_, slot)| slot.tag == tag && slot.seq == seq)
        else {
            return;
        };
        // Move back each later slot of the run that may sit in the hole, that is whose
        // home is not between the hole and itself.
        let mask = self.slots.len() - 1;
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let slot = self.slots[i];
            if slot.tag == 0 {
                break;
            }
            let from_home = i.wrapping_sub(self.home(slot.tag)) & mask;
            let from_hole = i.wrapping_sub(hole) & mask;
            if from_home >= from_hole {
                self.slots[hole] = slot;
                hole = i;
            }
        }
        self.slots[hole] = Slot::default();
        self.len -= 1;
    }

    /// Sequence numbers filed.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Slots in the table.
    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.slots.len()
    }

    /// The most slots in a row that are taken.
    #[cfg(test)]
    pub(super) fn longest_run(&self) -> usize {
        let mut run = 0;
        self.slots
            .iter()
            .map(|slot| {
                run = if slot.tag == 0 { 0 } else { run + 1 };
                run
            })
            .max()
            .unwrap_or(0)
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(Self::FIRST_SIZE);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        self.len = 0;
        for slot in old.into_iter().filter(|s| s.tag != 0) {
            self.insert(slot.tag, slot.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index against a plain list, over random inserts and removals of keys whose
    /// tags mostly share a home slot (long probe runs that wrap around the table), while
    /// it grows from empty.
    #[test]
    fn the_index_finds_what_a_list_finds() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut index = Index::default();
        let mut list: Vec<(u64, u64)> = Vec::new();
        for seq in 0..20_000u64 {
            // A few distinct homes in any table size, a few distinct tags per home.
            let tag = (1 << 63) | ((next() % 4) << 40) | ((next() % 8) * 1021);
            if list.len() < 300 && next() % 3 != 0 {
                index.insert(tag, seq);
                list.push((tag, seq));
            } else if !list.is_empty() {
                let (tag, seq) = list.swap_remove(usize::try_from(next()).unwrap() % list.len());
                index.remove(tag, seq);
            }
            index.remove(tag, u64::MAX); // absent: changes nothing
            assert_eq!(index.len, list.len());
            if seq % 97 == 0 {
                for &(tag, seq) in &list {
                    assert_eq!(index.find(tag, |s| s == seq), Some(seq));
                }
                assert_eq!(index.find(tag, |s| s == u64::MAX), None);
            }
        }
        assert!(index.slots.len() >= list.len() * 3 / 2);
    }
}
