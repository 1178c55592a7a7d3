//! A hierarchical timing wheel: the data structure behind the timer thread.
//!
//! Pure bookkeeping: no clock, no lock, no thread. Time is counted in
//! *ticks* (the timer uses 1 ms). Six levels of 64 slots: a level-0 slot is
//! one tick wide, a level-`l` slot 64^l ticks, so the wheel tells apart
//! 64^6 ticks (about 2.2 years of milliseconds). An entry sits in the
//! lowest level whose slot can hold it exactly relative to the current
//! time; when a higher-level slot comes due its entries are re-sorted into
//! lower levels ("cascaded"). Entries due further out than the wheel spans
//! park in the top level and are re-sorted when their slot comes up.
//!
//! Entries live in a slab and each slot is a doubly linked list of slab
//! indexes, so insert, remove and reschedule are O(1), and finding the next
//! slot to process is a bit scan per level. The owner of an entry (a node
//! address) is stored with it: removing by index checks it, so a stale
//! index whose slot was reused can never remove someone else's entry.
//!
//! This is the design of the Linux kernel's and tokio's timer wheels,
//! written here from the description above.

use std::mem;

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// How many ticks the wheel can tell apart.
const SPAN: u64 = 1 << (SLOT_BITS as u64 * LEVELS as u64);
/// "No entry" in links and heads.
pub(crate) const NIL: u32 = u32::MAX;

pub(crate) struct Wheel<T> {
    /// Every entry whose tick is at or before `elapsed` has been handed out
    /// by `advance`; positions are computed relative to it.
    elapsed: u64,
    entries: Vec<Entry<T>>,
    /// Head of the list of vacant entries (linked through `next`).
    free: u32,
    heads: [[u32; SLOTS]; LEVELS],
    /// Bit `s` of `occupied[l]`: slot `s` of level `l` has entries.
    occupied: [u64; LEVELS],
    len: usize,
}

struct Entry<T> {
    tick: u64,
    owner: usize,
    prev: u32,
    next: u32,
    level: u8,
    slot: u8,
    /// `None` for a vacant entry.
    item: Option<T>,
}

impl<T> Wheel<T> {
    pub(crate) const fn new() -> Self {
        Wheel {
            elapsed: 0,
            entries: Vec::new(),
            free: NIL,
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            len: 0,
        }
    }

    /// Also `loom`: the models count armed deadlines with it.
    #[cfg(any(test, loom))]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `item`, due at `tick`, owned by `owner`; returns its index. A
    /// tick that is already past comes due at the next `advance`. Returns
    /// `NIL` (and drops `item`) only if the slab is full (four billion
    /// entries).
    pub(crate) fn insert(&mut self, tick: u64, owner: usize, item: T) -> u32 {
        let tick = tick.max(self.elapsed + 1);
        let index = if self.free != NIL {
            let index = self.free;
            self.free = self.entries[index as usize].next;
            self.entries[index as usize] = Entry {
                tick,
                owner,
                prev: NIL,
                next: NIL,
                level: 0,
                slot: 0,
                item: Some(item),
            };
            index
        } else {
            let Ok(index) = u32::try_from(self.entries.len()) else {
                return NIL;
            };
            if index == NIL {
                return NIL;
            }
            self.entries.push(Entry {
                tick,
                owner,
                prev: NIL,
                next: NIL,
                level: 0,
                slot: 0,
                item: Some(item),
            });
            index
        };
        self.link(index);
        self.len += 1;
        index
    }

    /// Removes the entry at `index` if `owner` owns it.
    pub(crate) fn remove(&mut self, index: u32, owner: usize) -> Option<T> {
        if !self.owned(index, owner) {
            return None;
        }
        self.unlink(index);
        self.len -= 1;
        self.vacate(index)
    }

    /// Moves the entry at `index` (if `owner` owns it) to `tick`. Returns
    /// whether it was found.
    pub(crate) fn reschedule(&mut self, index: u32, owner: usize, tick: u64) -> bool {
        if !self.owned(index, owner) {
            return false;
        }
        self.unlink(index);
        self.entries[index as usize].tick = tick.max(self.elapsed + 1);
        self.link(index);
        true
    }

    /// The tick at which `advance` next has work to do (an entry comes
    /// due, or a slot must be re-sorted), if any entry is armed.
    pub(crate) fn next_tick(&self) -> Option<u64> {
        self.next_slot().map(|(_, _, tick)| tick)
    }

    /// Moves time forward to `now`, appending every entry due at or before
    /// `now` to `due` with its tick. Never hands out an entry early.
    pub(crate) fn advance(&mut self, now: u64, due: &mut Vec<(u64, T)>) {
        while let Some((level, slot, tick)) = self.next_slot() {
            if tick > now {
                break;
            }
            self.elapsed = tick;
            let mut index = mem::replace(&mut self.heads[level][slot], NIL);
            self.occupied[level] &= !(1 << slot);
            while index != NIL {
                let next = self.entries[index as usize].next;
                let entry_tick = self.entries[index as usize].tick;
                if entry_tick <= now {
                    self.len -= 1;
                    if let Some(item) = self.vacate(index) {
                        due.push((entry_tick, item));
                    }
                } else {
                    self.link(index);
                }
                index = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }

    fn owned(&self, index: u32, owner: usize) -> bool {
        self.entries
            .get(index as usize)
            .is_some_and(|e| e.item.is_some() && e.owner == owner)
    }

    /// Puts the (unlinked, occupied) entry at `index` into the slot its
    /// tick belongs to, relative to `elapsed`.
    fn link(&mut self, index: u32) {
        let tick = self.entries[index as usize].tick;
        let level = level_for(self.elapsed, tick);
        let slot = slot_for(tick, level);
        let head = self.heads[level][slot];
        {
            let entry = &mut self.entries[index as usize];
            entry.level = level as u8;
            entry.slot = slot as u8;
            entry.prev = NIL;
            entry.next = head;
        }
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.heads[level][slot] = index;
        self.occupied[level] |= 1 << slot;
    }

    /// Takes the entry at `index` out of its slot's list.
    fn unlink(&mut self, index: u32) {
        let (prev, next, level, slot) = {
            let e = &self.entries[index as usize];
            (e.prev, e.next, e.level as usize, e.slot as usize)
        };
        if prev == NIL {
            self.heads[level][slot] = next;
            if next == NIL {
                self.occupied[level] &= !(1 << slot);
            }
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    /// Frees the entry at `index` (already unlinked) and returns its item
    /// (always there: callers only vacate entries known to be occupied).
    fn vacate(&mut self, index: u32) -> Option<T> {
        let entry = &mut self.entries[index as usize];
        entry.next = self.free;
        self.free = index;
        let item = entry.item.take();
        if self.len == 0 {
            // Nothing armed: give back the memory of a past burst.
            self.entries.clear();
            if self.entries.capacity() > 1024 {
                self.entries.shrink_to(1024);
            }
            self.free = NIL;
        }
        item
    }

    /// The next slot to process: `(level, slot, tick it is due)`. Lower
    /// levels always come due before higher ones, so the first occupied
    /// level decides.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        (0..LEVELS)
            .find(|&level| self.occupied[level] != 0)
            .map(|level| {
                let slot_range = 1u64 << (SLOT_BITS * level as u32);
                let level_range = slot_range << SLOT_BITS;
                let position = ((self.elapsed / slot_range) % SLOTS as u64) as u32;
                let rotated = self.occupied[level].rotate_right(position);
                let slot = (rotated.trailing_zeros() + position) as usize % SLOTS;
                let level_start = self.elapsed & !(level_range - 1);
                let mut tick = level_start + slot as u64 * slot_range;
                if tick <= self.elapsed && level > 0 || tick < self.elapsed {
                    tick += level_range;
                }
                (level, slot, tick)
            })
    }
}

/// The level an entry due at `tick` belongs to when the time is `elapsed`:
/// the highest 6-bit digit in which the two differ.
fn level_for(elapsed: u64, tick: u64) -> usize {
    let mut masked = (elapsed ^ tick) | (SLOTS as u64 - 1);
    if masked >= SPAN {
        masked = SPAN - 1;
    }
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

fn slot_for(tick: u64, level: usize) -> usize {
    ((tick >> (SLOT_BITS * level as u32)) % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A deterministic pseudo-random sequence (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random inserts, removes, reschedules and advances, checked against
    /// an ordered map: every entry comes out exactly once, at its tick or
    /// the first advance after it, never before.
    #[test]
    fn matches_a_reference_model() {
        for seed in 1..40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut wheel = Wheel::new();
            let mut model: BTreeMap<usize, (u32, u64)> = BTreeMap::new();
            let mut now = 0u64;
            let mut next_owner = 0usize;
            let mut due = Vec::new();
            for _ in 0..3000 {
                match rng.next() % 10 {
                    0..=4 => {
                        // Deadlines near and far, across every level.
                        let spread =
                            [70, 5000, 300_000, 20_000_000, 3 * SPAN][(rng.next() % 5) as usize];
                        let tick = now + 1 + rng.next() % spread;
                        next_owner += 1;
                        let index = wheel.insert(tick, next_owner, next_owner);
                        model.insert(next_owner, (index, tick));
                    }
                    5 => {
                        if let Some((&owner, &(index, _))) =
                            model.iter().nth((rng.next() % 8) as usize)
                        {
                            assert_eq!(wheel.remove(index, owner), Some(owner));
                            model.remove(&owner);
                        }
                    }
                    6 => {
                        if let Some((&owner, &(index, tick))) =
                            model.iter().nth((rng.next() % 8) as usize)
                        {
                            let later = tick + rng.next() % 10_000;
                            assert!(wheel.reschedule(index, owner, later));
                            model.insert(owner, (index, later));
                        }
                    }
                    _ => {
                        let step = [1, 7, 64, 4096, 300_000][(rng.next() % 5) as usize];
                        now += rng.next() % step;
                        wheel.advance(now, &mut due);
                        for (tick, owner) in due.drain(..) {
                            let (_, expected) = model.remove(&owner).expect("fired once");
                            assert_eq!(tick, expected, "fired with its own tick");
                            assert!(tick <= now, "never early");
                        }
                        assert!(
                            model.values().all(|&(_, tick)| tick > now),
                            "nothing due is left behind"
                        );
                    }
                }
                assert_eq!(wheel.len(), model.len());
                if let Some(next) = wheel.next_tick() {
                    let earliest = model.values().map(|&(_, t)| t).min().expect("armed");
                    assert!(
                        next <= earliest,
                        "the next wake-up is not after the earliest entry"
                    );
                }
            }
        }
    }

    #[test]
    fn a_stale_index_cannot_remove_another_owners_entry() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(10, 1, 'a');
        let mut due = Vec::new();
        wheel.advance(10, &mut due);
        assert_eq!(due, vec![(10, 'a')]);
        let b = wheel.insert(20, 2, 'b');
        assert_eq!(a, b, "the slot is reused");
        assert_eq!(wheel.remove(a, 1), None);
        assert!(!wheel.reschedule(a, 1, 30));
        assert_eq!(wheel.remove(b, 2), Some('b'));
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_tick(), None);
    }

    #[test]
    fn past_ticks_come_due_at_the_next_advance() {
        let mut wheel = Wheel::new();
        let mut due = Vec::new();
        wheel.advance(100, &mut due);
        wheel.insert(50, 1, ());
        assert_eq!(wheel.next_tick(), Some(101));
        wheel.advance(100, &mut due);
        assert!(due.is_empty());
        wheel.advance(101, &mut due);
        assert_eq!(due.len(), 1);
    }
}
