//! The guest's page tables, built by the monitor: ring 0 is emulated on PVM (~3M
//! instructions/s), so the guest never builds or edits its own tables.

use super::layout::{
    GDT, GIB, HUGE_PAGE, IDT, KERNEL_STACK_BOTTOM, KERNEL_STACK_TOP, LOW_PT, PAGE, PD_BASE, PDPT,
    PML4, STUBS, TSS, USER_START,
};

pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
pub const USER: u64 = 1 << 2;
pub const HUGE: u64 = 1 << 7;
pub const NO_EXECUTE: u64 = 1 << 63;

/// One 4 KiB table: its guest physical address and its 512 entries.
pub type Table = (u64, Box<[u64; 512]>);

fn table(addr: u64) -> Table {
    (addr, Box::new([0; 512]))
}

/// All tables for `ram` bytes of RAM (a multiple of 2 MiB): the system pages below
/// `USER_START` supervisor-only with 4 KiB pages, all RAM above it user read/write/execute
/// with 2 MiB pages, nothing else present.
pub fn build(ram: u64) -> Vec<Table> {
    debug_assert_eq!(ram % HUGE_PAGE, 0);
    let gibs = ram.div_ceil(GIB);
    let mut pml4 = table(PML4);
    let mut pdpt = table(PDPT);
    let mut low = table(LOW_PT);
    pml4.1[0] = PDPT | PRESENT | WRITABLE | USER;

    let system = WRITABLE | NO_EXECUTE | PRESENT;
    for page in [GDT, IDT, TSS] {
        low.1[(page / PAGE) as usize] = page | system;
    }
    // Read-only and executable: ring 0 runs only these `hlt`s. USER is set because PVM
    // fetches the first instruction after `syscall` with user privilege (a supervisor-only
    // LSTAR page page-faults there); ring 3 gains nothing from it: `hlt` in ring 3 is #GP.
    low.1[(STUBS / PAGE) as usize] = STUBS | PRESENT | USER;
    for page in (KERNEL_STACK_BOTTOM..KERNEL_STACK_TOP).step_by(PAGE as usize) {
        low.1[(page / PAGE) as usize] = page | system;
    }

    let mut tables = Vec::with_capacity(3 + gibs as usize);
    for gib in 0..gibs {
        let mut pd = table(PD_BASE + gib * PAGE);
        pdpt.1[gib as usize] = pd.0 | PRESENT | WRITABLE | USER;
        for (index, entry) in pd.1.iter_mut().enumerate() {
            let addr = gib * GIB + index as u64 * HUGE_PAGE;
            if addr >= USER_START && addr < ram {
                *entry = addr | PRESENT | WRITABLE | USER | HUGE;
            }
        }
        if gib == 0 {
            // Ring 3 reaches nothing in the low 2 MiB but the stub page: only that PT entry
            // has the USER bit.
            pd.1[0] = LOW_PT | PRESENT | WRITABLE | USER;
        }
        tables.push(pd);
    }
    tables.extend([pml4, pdpt, low]);
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the tables like the MMU: the leaf entry and the AND of the USER bits.
    fn walk(tables: &[Table], va: u64) -> Option<(u64, bool)> {
        let find = |addr: u64| tables.iter().find(|t| t.0 == addr).map(|t| &t.1);
        let mut entry = find(PML4)?[((va >> 39) & 511) as usize];
        let mut user = true;
        for (shift, last) in [(30, false), (21, false), (12, true)] {
            if entry & PRESENT == 0 {
                return None;
            }
            user &= entry & USER != 0;
            let next = find(entry & 0x000f_ffff_ffff_f000)?;
            entry = next[((va >> shift) & 511) as usize];
            if entry & PRESENT != 0 && (entry & HUGE != 0 || last) {
                user &= entry & USER != 0;
                let size = 1u64 << shift;
                let base = entry & 0x000f_ffff_ffff_f000 & !(size - 1);
                return Some((base + (va & (size - 1)), user));
            }
        }
        None
    }

    #[test]
    fn user_ram_is_identity_mapped_and_user_accessible() {
        let ram = 3 * GIB + 4 * HUGE_PAGE;
        let tables = build(ram);
        for va in [USER_START, 0x40_1234, GIB + 5, ram - 8] {
            assert_eq!(walk(&tables, va), Some((va, true)), "{va:#x}");
        }
        assert_eq!(walk(&tables, ram), None, "end of RAM");
        assert_eq!(
            walk(&tables, 512 * GIB),
            None,
            "beyond the first PML4 entry"
        );
    }

    #[test]
    fn system_pages_but_the_stubs_are_supervisor_only_and_null_is_unmapped() {
        let tables = build(16 << 20);
        assert_eq!(walk(&tables, 0), None);
        assert_eq!(walk(&tables, 0x10), None);
        for va in [GDT, IDT, TSS, KERNEL_STACK_TOP - 8] {
            assert_eq!(walk(&tables, va), Some((va, false)), "{va:#x}");
        }
        assert_eq!(
            walk(&tables, STUBS),
            Some((STUBS, true)),
            "the stubs, see build()"
        );
        // The page tables themselves are not mapped at all.
        assert_eq!(walk(&tables, PML4), None);
        assert_eq!(walk(&tables, USER_START - 1), None);
    }

    #[test]
    fn only_the_stub_page_is_executable_in_the_low_area() {
        let tables = build(16 << 20);
        let low = &tables.iter().find(|t| t.0 == LOW_PT).unwrap().1;
        for (index, entry) in low.iter().enumerate() {
            if entry & PRESENT != 0 {
                let executable = entry & NO_EXECUTE == 0;
                assert_eq!(executable, index as u64 * PAGE == STUBS, "page {index}");
                assert_eq!(entry & WRITABLE == 0, index as u64 * PAGE == STUBS);
            }
        }
    }
}
