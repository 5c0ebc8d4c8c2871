//! The mini kernel's guest memory map. Guest virtual addresses equal guest physical ones
//! (identity mapping), so the monitor reads and writes the program's memory at the very
//! addresses the program uses, with no page-table walk.
//!
//! ```text
//! 0x0000_0000  not mapped: NULL and small offsets from it fault
//! 0x0000_1000  GDT                      supervisor, read/write, no-execute
//! 0x0000_2000  IDT                      supervisor, read/write, no-execute
//! 0x0000_3000  TSS                      supervisor, read/write, no-execute
//! 0x0000_4000  ring-0 stubs (all `hlt`) supervisor, read-only, executable
//! 0x0000_5000  ring-0 stack (3 pages)   supervisor, read/write, no-execute
//! 0x0000_8000  PML4, PDPT, low PT       not mapped (the MMU reads them physically)
//! 0x0001_0000  one PD per GiB of RAM    not mapped
//! 0x0020_0000  user: program image, brk heap, mmap arena, stack (top of RAM)
//! ```
//!
//! Everything below `USER_START` is invisible to ring 3; everything from `USER_START` to
//! the end of RAM is user-accessible and mapped once, up front, with 2 MiB pages, so ring 3
//! never takes a page fault inside its RAM and faults everywhere else.

pub const PAGE: u64 = 0x1000;
pub const HUGE_PAGE: u64 = 0x20_0000;
pub const GIB: u64 = 1 << 30;

pub const GDT: u64 = 0x1000;
pub const IDT: u64 = 0x2000;
pub const TSS: u64 = 0x3000;
pub const STUBS: u64 = 0x4000;
/// Where `syscall` lands (LSTAR): `hlt; syscall`. The `hlt` leaves the guest from ring 0
/// without side effects the monitor would have to undo. On hardware KVM the monitor then
/// sets the user context itself; on PVM, where the monitor cannot switch the vCPU back to
/// user mode, the following `syscall` is PVM's "return to user" synthetic instruction
/// (MSR_PVM_RETU_RIP), which restores the user context PVM saved.
pub const SYSCALL_ENTRY: u64 = STUBS;
/// Exception vector `v` enters at `EXCEPTION_STUBS + v`, also a `hlt`: the vector is
/// recovered from RIP at the exit, with no ring-0 code beyond that one instruction.
pub const EXCEPTION_STUBS: u64 = STUBS + 0x100;
pub const EXCEPTION_VECTORS: u64 = 32;
pub const KERNEL_STACK_BOTTOM: u64 = 0x5000;
pub const KERNEL_STACK_TOP: u64 = 0x8000;
pub const PML4: u64 = 0x8000;
pub const PDPT: u64 = 0x9000;
pub const LOW_PT: u64 = 0xA000;
pub const PD_BASE: u64 = 0x1_0000;

pub const USER_START: u64 = HUGE_PAGE;
/// Where a position-independent program is loaded (its lowest segment).
pub const PIE_BASE: u64 = 0x40_0000;

/// RAM bounds: at least room for a program and its stack, at most what the page
/// directories between `PD_BASE` and `USER_START` can describe (64 GiB, 64 PDs).
pub const MIN_RAM: u64 = 8 << 20;
pub const MAX_RAM: u64 = 64 * GIB;

/// Stack reserved below the top of RAM: Linux's default 8 MiB, or a quarter of small RAMs.
pub fn stack_size(ram: u64) -> u64 {
    (8 << 20).min(ram / 4)
}

pub fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

pub fn align_down(value: u64, align: u64) -> u64 {
    value / align * align
}
