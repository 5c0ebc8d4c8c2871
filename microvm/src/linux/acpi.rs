//! ACPI tables: how the guest learns its CPUs, its interrupt controllers and which legacy
//! devices are (not) there.
//!
//! Distribution kernels find CPUs through ACPI only (Debian's cloud kernel is built
//! without the MP-table parser), so without these tables a guest runs on one CPU in
//! PIC mode whatever `--vcpus` says. The set is the smallest Linux accepts, as Firecracker
//! and Cloud Hypervisor give it: an RSDP where Linux scans for it, an XSDT, a
//! hardware-reduced FADT (no PM timer, SCI or sleep registers to emulate), a DSDT that
//! declares the serial port, and a MADT with one local APIC per vCPU and the I/O APIC.
//!
//! The FADT's boot flags also spare the guest two probes that cost seconds under nested
//! virtualisation: no CMOS RTC (the kernel does not register rtc_cmos) and no i8042 (the
//! kernel skips the controller). The i8042 stays on the port bus for the reset.

/// Where the tables go: the BIOS read-only area, where Linux scans for the RSDP on a
/// 16-byte boundary. It is outside e820 RAM, so the guest never reuses it.
pub const BASE: u64 = 0xe_0000;
/// The local APICs and the I/O APIC at their architectural addresses, as KVM's in-kernel
/// irqchip emulates them.
const LAPIC: u32 = 0xfee0_0000;
const IOAPIC: u32 = 0xfec0_0000;

const HEADER_LEN: usize = 36;
const RSDP_LEN: usize = 36;
/// ACPI 6.0's FADT.
const FADT_LEN: usize = 276;
const FADT_REVISION: u8 = 6;
/// FADT flags: hardware-reduced ACPI.
const FADT_HW_REDUCED: u32 = 1 << 20;
/// IA-PC boot architecture flags: no VGA, no CMOS RTC; legacy devices and 8042 unset.
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_ENABLED: u32 = 1;

/// The DSDT's AML: the serial port, `Scope (\_SB) { Device (COM1) { Name (_HID,
/// EisaId ("PNP0501")) Name (_UID, 0) Name (_CRS, ResourceTemplate () { IO (Decode16,
/// 0x3F8, 0x3F8, 1, 8) IRQNoFlags () {4} }) } }`. A hardware-reduced guest has no legacy
/// PIC, so Linux maps no ISA IRQ by itself: only a device declared here gets its IRQ
/// wired (by the 8250 PnP driver), and without it opening the console fails with EIO.
/// Package lengths are single bytes (each under 64).
const DSDT_AML: [u8; 52] = [
    0x10, 0x33, b'\\', b'_', b'S', b'B', b'_', // Scope (\_SB), 51 bytes
    0x5b, 0x82, 0x2b, b'C', b'O', b'M', b'1', // Device (COM1), 43 bytes
    0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x05, 0x01, // EisaId ("PNP0501")
    0x08, b'_', b'U', b'I', b'D', 0x00, // Zero
    0x08, b'_', b'C', b'R', b'S', 0x11, 0x10, 0x0a, 0x0d, // Buffer (13), 16 bytes
    0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, // IO (Decode16, 0x3f8, 0x3f8, 1, 8)
    0x22, 0x10, 0x00, // IRQNoFlags () {4}
    0x79, 0x00, // end tag
];

/// The tables for `vcpus` vCPUs, to be written at [`BASE`]: RSDP, XSDT, FADT, DSDT, MADT,
/// each 16-byte aligned. `more_aml` goes into the DSDT after the serial port (e.g. the
/// disk's `Scope (\_SB) { Device … }`, see `virtio_blk::dsdt_device`).
pub fn build(vcpus: u8, more_aml: &[u8]) -> Vec<u8> {
    let dsdt = table(b"DSDT", 2, &[&DSDT_AML[..], more_aml].concat());
    let mut madt_body = Vec::new();
    madt_body.extend(LAPIC.to_le_bytes());
    // No PC-AT dual 8259: hardware-reduced guests use the APICs alone.
    madt_body.extend(0u32.to_le_bytes());
    for cpu in 0..vcpus {
        madt_body.extend([MADT_LOCAL_APIC, 8, cpu, cpu]);
        madt_body.extend(MADT_ENABLED.to_le_bytes());
    }
    // The I/O APIC takes the first ID after the CPUs'; its pins are GSIs 0–23, and ISA
    // IRQ n is GSI n, as KVM's default routing has it (so no source overrides).
    madt_body.extend([MADT_IO_APIC, 12, vcpus, 0]);
    madt_body.extend(IOAPIC.to_le_bytes());
    madt_body.extend(0u32.to_le_bytes());
    let madt = table(b"APIC", 5, &madt_body);

    let rsdp_at = BASE;
    let xsdt_at = align(rsdp_at + RSDP_LEN as u64);
    let xsdt_len = HEADER_LEN as u64 + 2 * 8;
    let fadt_at = align(xsdt_at + xsdt_len);
    let dsdt_at = align(fadt_at + FADT_LEN as u64);
    let madt_at = align(dsdt_at + dsdt.len() as u64);

    let mut fadt_body = vec![0u8; FADT_LEN - HEADER_LEN];
    let at = |offset: usize| offset - HEADER_LEN;
    fadt_body[at(109)..at(111)]
        .copy_from_slice(&(IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT).to_le_bytes());
    fadt_body[at(112)..at(116)].copy_from_slice(&FADT_HW_REDUCED.to_le_bytes());
    fadt_body[at(140)..at(148)].copy_from_slice(&dsdt_at.to_le_bytes());
    let fadt = table(b"FACP", FADT_REVISION, &fadt_body);

    let xsdt_body: Vec<u8> = [fadt_at, madt_at]
        .iter()
        .flat_map(|a| a.to_le_bytes())
        .collect();
    let xsdt = table(b"XSDT", 1, &xsdt_body);

    let mut rsdp = Vec::with_capacity(RSDP_LEN);
    rsdp.extend(*b"RSD PTR ");
    rsdp.push(0); // checksum of the first 20 bytes
    rsdp.extend(*b"ISOLAB");
    rsdp.push(2); // ACPI 2.0+: the XSDT is used
    rsdp.extend(0u32.to_le_bytes()); // no RSDT
    rsdp.extend((RSDP_LEN as u32).to_le_bytes());
    rsdp.extend(xsdt_at.to_le_bytes());
    rsdp.extend([0u8; 4]); // extended checksum, reserved
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);

    let mut out = Vec::new();
    for (addr, bytes) in [
        (rsdp_at, rsdp),
        (xsdt_at, xsdt),
        (fadt_at, fadt),
        (dsdt_at, dsdt),
        (madt_at, madt),
    ] {
        out.resize((addr - BASE) as usize, 0);
        out.extend(bytes);
    }
    out
}

fn align(addr: u64) -> u64 {
    addr.next_multiple_of(16)
}

/// A system description table: the standard header, then `body`.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(HEADER_LEN + body.len());
    t.extend(signature);
    t.extend(((HEADER_LEN + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum
    t.extend(*b"ISOLAB");
    t.extend(*b"MICROVM ");
    t.extend(1u32.to_le_bytes()); // OEM revision
    t.extend(*b"ISOL");
    t.extend(1u32.to_le_bytes()); // creator revision
    t.extend(body);
    t[9] = checksum(&t);
    t
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

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    /// The table at guest address `addr`, checked: its length and zero checksum.
    fn table_at<'a>(tables: &'a [u8], addr: u64, signature: &[u8; 4]) -> &'a [u8] {
        let start = (addr - BASE) as usize;
        assert_eq!(&tables[start..start + 4], signature);
        let t = &tables[start..start + u32_at(tables, start + 4) as usize];
        assert_eq!(sum(t), 0, "{}", String::from_utf8_lossy(signature));
        t
    }

    #[test]
    fn the_rsdp_leads_through_the_xsdt_to_fadt_dsdt_and_madt() {
        let tables = build(2, &[]);
        assert_eq!(&tables[..8], b"RSD PTR ");
        assert_eq!(sum(&tables[..20]), 0);
        assert_eq!(sum(&tables[..RSDP_LEN]), 0);
        assert_eq!(tables[15], 2);
        let xsdt = table_at(&tables, u64_at(&tables, 24), b"XSDT");
        let fadt = table_at(&tables, u64_at(xsdt, 36), b"FACP");
        assert_eq!((fadt.len(), fadt[8]), (FADT_LEN, 6));
        assert_eq!(u32_at(fadt, 112), FADT_HW_REDUCED);
        let boot_arch = u16::from_le_bytes([fadt[109], fadt[110]]);
        assert_eq!(boot_arch & 0b10, 0, "no i8042 for the kernel to probe");
        assert_ne!(boot_arch & IAPC_CMOS_RTC_NOT_PRESENT, 0);
        let dsdt = table_at(&tables, u64_at(fadt, 140), b"DSDT");
        assert_eq!(&dsdt[HEADER_LEN..], DSDT_AML);
        table_at(&tables, u64_at(xsdt, 44), b"APIC");
    }

    #[test]
    fn the_madt_lists_each_vcpu_and_the_io_apic() {
        let tables = build(3, &[]);
        let xsdt = table_at(&tables, u64_at(&tables, 24), b"XSDT");
        let madt = table_at(&tables, u64_at(xsdt, 44), b"APIC");
        assert_eq!(u32_at(madt, 36), LAPIC);
        let entries = &madt[44..];
        let cpus: Vec<(u8, u8, u32)> = entries
            .chunks(8)
            .take(3)
            .map(|e| (e[0], e[3], u32_at(e, 4)))
            .collect();
        assert_eq!(cpus, [(0, 0, 1), (0, 1, 1), (0, 2, 1)]);
        let ioapic = &entries[24..];
        assert_eq!((ioapic[0], ioapic[1], ioapic[2]), (MADT_IO_APIC, 12, 3));
        assert_eq!(u32_at(ioapic, 4), IOAPIC);
        assert_eq!(ioapic.len(), 12);
    }

    /// Each AML package length counts itself and what follows, to the end of the table.
    #[test]
    fn the_dsdt_package_lengths_add_up() {
        assert_eq!(DSDT_AML[1] as usize, DSDT_AML.len() - 1);
        assert_eq!(DSDT_AML[9] as usize, DSDT_AML.len() - 9);
        let crs = DSDT_AML.len() - 17;
        assert_eq!(&DSDT_AML[crs..crs + 2], [0x11, 0x10]);
        assert_eq!(DSDT_AML[crs + 1] as usize, DSDT_AML.len() - (crs + 1));
        assert_eq!(DSDT_AML[crs + 3] as usize, DSDT_AML.len() - (crs + 4));
    }

    #[test]
    fn the_tables_fit_below_the_bios_rom_end() {
        assert!(BASE + build(u8::MAX, &[]).len() as u64 <= 0x10_0000);
    }
}
