//! GDT, IDT and TSS, encoded by the monitor and written into guest memory (the CPU reads the
//! GDT from there when it delivers an exception or enters ring 0 on `syscall`).

use kvm_bindings::kvm_segment;

use super::layout::{EXCEPTION_STUBS, EXCEPTION_VECTORS, KERNEL_STACK_TOP, TSS};

// Linux's GDT layout, selector for selector: PVM assumes it (with our own layout, `syscall`
// from CS 0x23 was taken for a compat-mode call and stayed in ring 3), and it keeps the
// `syscall`/`sysret` STAR arithmetic the same as Linux's.
pub const KERNEL_CS: u16 = 2 << 3;
pub const KERNEL_SS: u16 = 3 << 3;
pub const USER32_CS: u16 = (4 << 3) | 3;
pub const USER_SS: u16 = (5 << 3) | 3;
pub const USER_CS: u16 = (6 << 3) | 3;
pub const TSS_SELECTOR: u16 = 8 << 3;
pub const TSS_SIZE: usize = 104;

/// A code/data descriptor (Intel SDM 3.4.5). `flags` packs the access byte (low 8 bits) and
/// G/DB/L/AVL (bits 12..16), as Firecracker's `gdt_entry` does.
pub fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << 32)
        | ((u64::from(flags) & 0xf0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << 32)
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0xffff)
}

const KERNEL32_CODE: u64 = 0x00cf_9b00_0000_ffff;
const KERNEL_CODE: u64 = 0x00af_9b00_0000_ffff;
const KERNEL_DATA: u64 = 0x00cf_9300_0000_ffff;
const USER32_CODE: u64 = 0x00cf_fb00_0000_ffff;
const USER_DATA: u64 = 0x00cf_f300_0000_ffff;
const USER_CODE: u64 = 0x00af_fb00_0000_ffff;

/// The whole GDT as Linux lays it out: null, kernel 32/64-bit code, kernel data, user
/// 32-bit code, user data, user 64-bit code, an unused slot, and the 16-byte TSS
/// descriptor (already marked busy, matching TR as KVM_SET_SREGS loads it).
pub fn gdt() -> [u64; 10] {
    let tss_low = descriptor(0x8b, TSS as u32, TSS_SIZE as u32 - 1);
    [
        0,
        KERNEL32_CODE,
        KERNEL_CODE,
        KERNEL_DATA,
        USER32_CODE,
        USER_DATA,
        USER_CODE,
        0,
        tss_low,
        TSS >> 32,
    ]
}

/// Decodes GDT entry `entry` into what KVM_SET_SREGS wants, with the selector's RPL
/// equal to the descriptor's DPL.
pub fn segment(entry: u64, index: u16) -> kvm_segment {
    let flags = (entry >> 40) as u16;
    let granular = flags & (1 << 15) != 0;
    let raw_limit = ((entry >> 32) & 0x000f_0000) as u32 | (entry & 0xffff) as u32;
    let dpl = ((flags >> 5) & 3) as u8;
    let present = ((flags >> 7) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if granular {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: (index << 3) | u16::from(dpl),
        type_: (flags & 0xf) as u8,
        present,
        dpl,
        db: ((flags >> 14) & 1) as u8,
        s: ((flags >> 4) & 1) as u8,
        l: ((flags >> 13) & 1) as u8,
        g: u8::from(granular),
        avl: ((flags >> 12) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// The segments KVM_SET_SREGS loads for a ring-3 64-bit program.
pub fn user_cs() -> kvm_segment {
    segment(USER_CODE, USER_CS >> 3)
}

pub fn user_ss() -> kvm_segment {
    segment(USER_DATA, USER_SS >> 3)
}

pub fn task_register() -> kvm_segment {
    kvm_segment {
        base: TSS,
        limit: TSS_SIZE as u32 - 1,
        selector: TSS_SELECTOR,
        type_: 0xb,
        present: 1,
        ..Default::default()
    }
}

/// A 64-bit interrupt gate (SDM 6.14.1) to `handler` in the kernel code segment.
fn interrupt_gate(handler: u64, dpl: u8) -> [u64; 2] {
    let low = (handler & 0xffff)
        | (u64::from(KERNEL_CS) << 16)
        | (u64::from(0x8e | (dpl << 5)) << 40)
        | ((handler & 0xffff_0000) << 32);
    [low, handler >> 32]
}

/// The IDT for the 32 exception vectors, each to its own one-byte stub. The breakpoint and
/// overflow gates have DPL 3 so `int3`/`into` in ring 3 report themselves rather than #GP.
pub fn idt() -> Vec<u64> {
    (0..EXCEPTION_VECTORS)
        .flat_map(|vector| {
            let dpl = if matches!(vector, 3 | 4) { 3 } else { 0 };
            interrupt_gate(EXCEPTION_STUBS + vector, dpl)
        })
        .collect()
}

/// The 64-bit TSS: only RSP0 matters (the stack exceptions from ring 3 are delivered on);
/// the I/O bitmap offset points past the end, so there is no bitmap and ring-3 port I/O
/// faults.
pub fn tss() -> [u8; TSS_SIZE] {
    let mut tss = [0u8; TSS_SIZE];
    tss[4..12].copy_from_slice(&KERNEL_STACK_TOP.to_le_bytes());
    tss[102..104].copy_from_slice(&(TSS_SIZE as u16).to_le_bytes());
    tss
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_matches_the_well_known_encodings() {
        assert_eq!(descriptor(0xa09b, 0, 0xfffff), KERNEL_CODE);
        assert_eq!(descriptor(0xc093, 0, 0xfffff), KERNEL_DATA);
        assert_eq!(descriptor(0xc0f3, 0, 0xfffff), USER_DATA);
        assert_eq!(descriptor(0xa0fb, 0, 0xfffff), USER_CODE);
    }

    #[test]
    fn user_segments_are_64_bit_ring_3() {
        let cs = user_cs();
        assert_eq!(
            (cs.selector, cs.dpl, cs.l, cs.db, cs.s, cs.present),
            (USER_CS, 3, 1, 0, 1, 1)
        );
        assert_eq!(cs.type_, 0xb);
        assert_eq!(cs.limit, 0xffff_ffff);
        let ss = user_ss();
        assert_eq!(
            (ss.selector, ss.dpl, ss.type_, ss.unusable),
            (USER_SS, 3, 3, 0)
        );
        let kcs = segment(gdt()[2], 2);
        assert_eq!((kcs.selector, kcs.dpl, kcs.l), (KERNEL_CS, 0, 1));
    }

    #[test]
    fn selectors_follow_linux_and_star_layout() {
        // `syscall` loads CS from STAR[47:32] and SS from it + 8; `sysret` takes SS and CS
        // at +8 and +16 from STAR[63:48].
        assert_eq!(
            (KERNEL_CS, KERNEL_SS, USER_SS, USER_CS),
            (0x10, 0x18, 0x2b, 0x33)
        );
        assert_eq!(KERNEL_SS, KERNEL_CS + 8);
        assert_eq!((USER_SS, USER_CS), (USER32_CS + 8, USER32_CS + 16));
        let g = gdt();
        assert_eq!(segment(g[4], 4).selector, USER32_CS);
        assert_eq!(segment(g[4], 4).l, 0);
    }

    #[test]
    fn tss_descriptor_points_at_the_tss() {
        let g = gdt();
        let tr = segment(g[8], 8);
        assert_eq!(tr.base, TSS);
        assert_eq!(tr.limit, TSS_SIZE as u32 - 1);
        assert_eq!(tr.type_, 0xb);
        assert_eq!(tr.s, 0);
        assert_eq!(g[9], 0);
        assert_eq!(tr.selector, TSS_SELECTOR);
    }

    #[test]
    fn idt_gates_point_at_per_vector_stubs() {
        let idt = idt();
        assert_eq!(idt.len(), 64);
        for vector in 0..32u64 {
            let (low, high) = (idt[2 * vector as usize], idt[2 * vector as usize + 1]);
            let offset = (low & 0xffff) | ((low >> 32) & 0xffff_0000) | (high << 32);
            assert_eq!(offset, EXCEPTION_STUBS + vector);
            assert_eq!((low >> 16) & 0xffff, u64::from(KERNEL_CS));
            let attributes = (low >> 40) & 0xff;
            let dpl = if matches!(vector, 3 | 4) { 3 } else { 0 };
            assert_eq!(attributes, 0x8e | (dpl << 5));
        }
    }

    #[test]
    fn tss_has_rsp0_and_no_io_bitmap() {
        let tss = tss();
        assert_eq!(
            u64::from_le_bytes(tss[4..12].try_into().unwrap()),
            KERNEL_STACK_TOP
        );
        assert_eq!(u16::from_le_bytes([tss[102], tss[103]]), TSS_SIZE as u16);
    }
}
