//! An Intel MultiProcessor Specification 1.4 table: how a kernel without ACPI learns its
//! CPUs (distribution kernels, Debian's cloud kernel among them, are built without the MP
//! parser and read [`super::acpi`] instead): one processor entry per vCPU, the I/O APIC
//! and how the 16 ISA IRQs reach it. Linux finds it by scanning the last KiB of base
//! memory, where [`super::boot::EBDA`] puts it; e820 reserves that KiB.

/// Where the local APICs and the I/O APIC sit (the architectural defaults, which KVM's
/// in-kernel irqchip emulates).
const LAPIC: u32 = 0xfee0_0000;
const IOAPIC: u32 = 0xfec0_0000;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// ISA IRQs routed through the I/O APIC, pin for pin.
const ISA_IRQS: u8 = 16;
/// vCPUs the table has room for within the EBDA's KiB.
pub const MAX_VCPUS: u8 = 32;

const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;

/// The floating pointer structure followed by the configuration table, for a table placed
/// at guest physical `base`.
pub fn build(base: u64, vcpus: u8) -> Vec<u8> {
    assert!(
        (1..=MAX_VCPUS).contains(&vcpus),
        "callers check the vCPU count"
    );
    let ioapic_id = vcpus;
    let mut entries = Vec::new();
    for cpu in 0..vcpus {
        let flags = if cpu == 0 { 0b11 } else { 0b01 }; // enabled, and BSP for vCPU 0
        entries.extend([0, cpu, APIC_VERSION, flags]);
        // CPU signature (family 6) and feature flags (FPU, APIC): informational.
        entries.extend(0x600u32.to_le_bytes());
        entries.extend(0x201u32.to_le_bytes());
        entries.extend([0u8; 8]);
    }
    entries.extend([1, 0]);
    entries.extend(*b"ISA   ");
    entries.extend([2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend(IOAPIC.to_le_bytes());
    for irq in 0..ISA_IRQS {
        // INT, conforming polarity and trigger, bus 0 IRQ n → I/O APIC pin n.
        entries.extend([3, 0, 0, 0, 0, irq, ioapic_id, irq]);
    }
    // LINT0 is ExtINT (the PIC's virtual wire) and LINT1 NMI, on every local APIC.
    entries.extend([4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend([4, 1, 0, 0, 0, 0, 0xff, 1]);
    let entry_count = u16::from(vcpus) + 1 + 1 + u16::from(ISA_IRQS) + 2;

    let mut table = Vec::with_capacity(HEADER_LEN + entries.len());
    table.extend(*b"PCMP");
    table.extend(((HEADER_LEN + entries.len()) as u16).to_le_bytes());
    table.extend([4, 0]); // spec revision 1.4, checksum below
    table.extend(*b"ISOLAB  ");
    table.extend(*b"MICROVM     ");
    table.extend([0u8; 6]); // no OEM table
    table.extend(entry_count.to_le_bytes());
    table.extend(LAPIC.to_le_bytes());
    table.extend([0u8; 4]); // no extended table
    table.extend(entries);
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(FLOATING_LEN + table.len());
    floating.extend(*b"_MP_");
    floating.extend(((base as u32) + FLOATING_LEN as u32).to_le_bytes());
    floating.extend([1, 4, 0, 0, 0, 0, 0, 0]); // 16 bytes, revision 1.4, no default config
    floating[10] = checksum(&floating);
    floating.extend(table);
    floating
}

/// The byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    #[test]
    fn table_checksums_and_points_at_itself() {
        let bytes = build(0x9fc00, 2);
        assert_eq!(&bytes[..4], b"_MP_");
        assert_eq!(sum(&bytes[..16]), 0);
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 0x9fc10);
        let table = &bytes[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes(table[4..6].try_into().unwrap()) as usize;
        assert_eq!(len, table.len());
        assert_eq!(sum(table), 0);
        // 2 processors + bus + I/O APIC + 16 IRQs + 2 local interrupts.
        assert_eq!(u16::from_le_bytes(table[34..36].try_into().unwrap()), 22);
    }

    #[test]
    fn one_processor_entry_per_vcpu_and_only_vcpu0_is_bsp() {
        let bytes = build(0x9fc00, 3);
        let first = 16 + HEADER_LEN;
        let cpus: Vec<(u8, u8)> = (0..3)
            .map(|i| (bytes[first + i * 20 + 1], bytes[first + i * 20 + 3]))
            .collect();
        assert_eq!(cpus, [(0, 3), (1, 1), (2, 1)]);
        // The I/O APIC takes the first ID after the CPUs'.
        assert_eq!(bytes[first + 60 + 8 + 1], 3);
    }

    #[test]
    fn the_largest_table_fits_in_the_ebda_kib() {
        assert!(build(0x9fc00, MAX_VCPUS).len() <= 1024);
    }
}
