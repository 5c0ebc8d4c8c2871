//! Which user address ranges are free: the mini kernel's whole virtual-memory manager.
//! All user RAM is already mapped (see `layout`), so "mapping" memory only means handing
//! out a free range; the caller zeroes ranges it frees, so a range handed out is zero.

use std::collections::BTreeMap;

use super::layout::{PAGE, align_up};

#[derive(Debug, Clone)]
pub struct Arena {
    /// Free ranges, start -> end, disjoint and never adjacent (always coalesced).
    free: BTreeMap<u64, u64>,
}

impl Arena {
    /// Everything in `[start, end)` free.
    pub fn new(start: u64, end: u64) -> Self {
        let mut free = BTreeMap::new();
        if start < end {
            free.insert(start, end);
        }
        Arena { free }
    }

    /// Takes `len` bytes (page-rounded) from the highest free range that fits, so mmap
    /// grows down from the stack and leaves the space above brk for brk.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        let len = align_up(len.max(1), PAGE);
        let (&start, &end) = self.free.iter().rev().find(|(s, e)| *e - *s >= len)?;
        let addr = end - len;
        if addr == start {
            self.free.remove(&start);
        } else {
            self.free.insert(start, addr);
        }
        Some(addr)
    }

    /// Whether all of `[start, start + len)` is free.
    pub fn is_free(&self, start: u64, len: u64) -> bool {
        self.free
            .range(..=start)
            .next_back()
            .is_some_and(|(_, &end)| start + len <= end)
    }

    /// Marks `[start, start + len)` used, whatever it was before.
    pub fn claim(&mut self, start: u64, len: u64) {
        let end = start + len;
        let overlapping: Vec<(u64, u64)> = self
            .free
            .range(..end)
            .filter(|(_, e)| **e > start)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in overlapping {
            self.free.remove(&s);
            if s < start {
                self.free.insert(s, start);
            }
            if e > end {
                self.free.insert(end, e);
            }
        }
    }

    /// Marks `[start, start + len)` free, merging with its neighbours.
    pub fn release(&mut self, start: u64, len: u64) {
        self.claim(start, len);
        let mut start = start;
        let mut end = start + len;
        if let Some((&s, &e)) = self.free.range(..start).next_back()
            && e == start
        {
            self.free.remove(&s);
            start = s;
        }
        if let Some(e) = self.free.remove(&end) {
            end = e;
        }
        self.free.insert(start, end);
    }

    #[cfg(test)]
    fn ranges(&self) -> Vec<(u64, u64)> {
        self.free.iter().map(|(s, e)| (*s, *e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_is_top_down_and_page_rounded() {
        let mut a = Arena::new(0x10000, 0x20000);
        assert_eq!(a.alloc(1), Some(0x1f000));
        assert_eq!(a.alloc(0x2000), Some(0x1d000));
        assert_eq!(a.ranges(), vec![(0x10000, 0x1d000)]);
        assert_eq!(a.alloc(0x10000), None);
    }

    #[test]
    fn release_coalesces_and_claim_splits() {
        let mut a = Arena::new(0x10000, 0x20000);
        let x = a.alloc(0x1000).unwrap();
        let y = a.alloc(0x1000).unwrap();
        a.release(x, 0x1000);
        assert_eq!(a.ranges(), vec![(0x10000, y), (x, 0x20000)]);
        a.release(y, 0x1000);
        assert_eq!(a.ranges(), vec![(0x10000, 0x20000)]);
        a.claim(0x12000, 0x1000);
        assert_eq!(a.ranges(), vec![(0x10000, 0x12000), (0x13000, 0x20000)]);
        assert!(!a.is_free(0x11000, 0x2000));
        assert!(a.is_free(0x13000, 0xd000));
        // Releasing something partly free (munmap over a hole) is fine.
        a.release(0x11000, 0x4000);
        assert_eq!(a.ranges(), vec![(0x10000, 0x20000)]);
    }
}
