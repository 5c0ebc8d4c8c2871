//! The Linux 64-bit boot protocol, done by the monitor: the kernel is loaded (bzImage or
//! ELF vmlinux, with linux-loader), the zero page (`boot_params`) with its e820 map, the
//! command line and the initrd are written into guest RAM, and vCPU 0 starts directly in
//! long mode at the kernel's 64-bit entry point — no firmware, no real-mode setup code.
//!
//! Guest physical layout (as Firecracker's, so the kernel sees what it expects):
//!
//! | address | what |
//! | --- | --- |
//! | `0x500` | GDT: null, 64-bit code, data, TSS |
//! | `0x520` | an empty IDT (the kernel loads its own before enabling interrupts) |
//! | `0x7000` | zero page |
//! | `0x8ff0` | boot stack top |
//! | `0x9000`.. | identity page tables: PML4, PDPT, four PDs of 2 MiB pages (4 GiB) |
//! | `0x20000` | command line |
//! | `0x9fc00` | MP table (reserved in e820) |
//! | `0x100000`.. | the kernel; the initrd at the top of RAM |

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{KernelLoader, bzimage::BzImage, elf::Elf};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

pub const GDT: u64 = 0x500;
pub const IDT: u64 = 0x520;
pub const ZERO_PAGE: u64 = 0x7000;
pub const BOOT_STACK: u64 = 0x8ff0;
pub const PML4: u64 = 0x9000;
pub const PDPT: u64 = 0xa000;
pub const PD: u64 = 0xb000;
/// Gigabytes the boot page tables identity-map: all of guest RAM (see [`MAX_RAM`]).
const MAPPED_GIB: u64 = 4;
pub const CMDLINE: u64 = 0x20000;
/// The start of the extended BIOS data area; the MP table lives there.
pub const EBDA: u64 = 0x9fc00;
pub const HIMEM: u64 = 0x10_0000;
/// RAM above this would overlap the 32-bit MMIO hole (IOAPIC, LAPIC), which this monitor
/// does not split RAM around.
pub const MAX_RAM: u64 = 3 << 30;
/// What the kernel needs beyond its image and initrd to reach user space (page tables,
/// memmap, slab); measured, Debian's cloud kernel boots to /init in 64 MiB with room left.
const MIN_FREE: u64 = 24 << 20;
/// Where a relocatable bzImage decompresses to (LOAD_PHYSICAL_ADDR).
const LOAD_PHYSICAL_ADDR: u64 = 0x100_0000;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// The loader id for "undefined", as every VMM without an assigned id uses.
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// xloadflags: the kernel has a 64-bit entry at `code32_start + 0x200`.
const XLF_KERNEL_64: u16 = 1;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
/// A cmdline limit for ELF kernels, which carry no setup header to state theirs.
pub const ELF_CMDLINE_MAX: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: not a Linux kernel (neither an ELF vmlinux nor a bzImage)")]
    NotAKernel(String),
    #[error("the bzImage has no 64-bit entry point (boot protocol < 2.12 or a 32-bit kernel)")]
    No64BitEntry,
    #[error("reading the kernel")]
    Read(#[source] std::io::Error),
    #[error("loading the kernel into guest memory: {0}")]
    Load(linux_loader::loader::Error),
    #[error(
        "{have_mib} MiB of guest memory is too little for this kernel and initrd: they need at least {need_mib} MiB (--mem)"
    )]
    TooLittleMemory { need_mib: u64, have_mib: u64 },
    #[error("kernel command line: {0} (the kernel accepts {1} bytes)")]
    Cmdline(linux_loader::cmdline::Error, usize),
    #[error("writing boot data at guest address {addr:#x}")]
    Write {
        addr: u64,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// The kernel formats this monitor boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Elf,
    BzImage,
}

/// What the kernel file is, read from its first bytes before any VM exists, so a wrong
/// file is refused before touching KVM.
pub fn probe(kernel: &mut File, name: &str) -> Result<Format, Error> {
    let mut head = [0u8; 0x210];
    let read = read_up_to(kernel, &mut head).map_err(Error::Read)?;
    if read >= 4 && head[..4] == *b"\x7fELF" {
        return Ok(Format::Elf);
    }
    if read >= 0x206
        && u32::from_le_bytes(head[0x202..0x206].try_into().expect("4 bytes")) == KERNEL_HDR_MAGIC
    {
        return Ok(Format::BzImage);
    }
    Err(Error::NotAKernel(name.to_owned()))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(0))?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The loaded kernel: where to jump and the header to put into the zero page.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub entry: u64,
    pub header: setup_header,
    /// The first byte above everything the kernel occupies while it boots.
    pub end: u64,
}

/// Loads the kernel at its preferred address and checks that it fits with room to boot.
pub fn load_kernel(
    memory: &GuestMemoryMmap,
    kernel: &mut File,
    format: Format,
    initrd_size: u64,
    mem_size: u64,
) -> Result<Loaded, Error> {
    let himem = Some(GuestAddress(HIMEM));
    let loaded = match format {
        Format::Elf => {
            // An ELF vmlinux is its decompressed self: it occupies [load, end) exactly.
            let end = elf_end(kernel).map_err(Error::Read)?;
            check_fits(end, initrd_size, mem_size)?;
            let result = Elf::load(memory, None, kernel, himem).map_err(Error::Load)?;
            Loaded {
                entry: result.kernel_load.raw_value(),
                header: elf_header(),
                end: result.kernel_end,
            }
        }
        Format::BzImage => {
            let mut header = setup_header::default();
            kernel.seek(SeekFrom::Start(0x1f1)).map_err(Error::Read)?;
            // SAFETY: setup_header is a packed struct of integers: any bytes are a valid
            // value, and the slice covers exactly its size.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(
                    (&raw mut header).cast::<u8>(),
                    std::mem::size_of::<setup_header>(),
                )
            };
            kernel.read_exact(bytes).map_err(Error::Read)?;
            if header.version < 0x020c || header.xloadflags & XLF_KERNEL_64 == 0 {
                return Err(Error::No64BitEntry);
            }
            // The decompressor moves the kernel to LOAD_PHYSICAL_ADDR (or its preferred
            // address) and needs `init_size` bytes from there.
            let end = u64::from(header.code32_start)
                .max(LOAD_PHYSICAL_ADDR)
                .max(header.pref_address)
                + u64::from(header.init_size);
            check_fits(end, initrd_size, mem_size)?;
            let result = BzImage::load(memory, None, kernel, himem).map_err(Error::Load)?;
            Loaded {
                entry: result.kernel_load.raw_value() + 0x200,
                header: result.setup_header.unwrap_or(header),
                end: end.max(result.kernel_end),
            }
        }
    };
    Ok(loaded)
}

fn check_fits(end: u64, initrd_size: u64, mem_size: u64) -> Result<(), Error> {
    let need = end + initrd_size.next_multiple_of(4096) + MIN_FREE;
    if need > mem_size {
        return Err(Error::TooLittleMemory {
            need_mib: need.div_ceil(1 << 20),
            have_mib: mem_size >> 20,
        });
    }
    Ok(())
}

/// The highest physical address an ELF kernel's loadable segments reach.
fn elf_end(kernel: &mut File) -> std::io::Result<u64> {
    let mut ehdr = [0u8; 64];
    read_up_to(kernel, &mut ehdr)?;
    let phoff = u64::from_le_bytes(ehdr[32..40].try_into().expect("8 bytes"));
    let phentsize = u16::from_le_bytes(ehdr[54..56].try_into().expect("2 bytes"));
    let phnum = u16::from_le_bytes(ehdr[56..58].try_into().expect("2 bytes"));
    let mut end = 0;
    for i in 0..u64::from(phnum) {
        let mut ph = [0u8; 56];
        kernel.seek(SeekFrom::Start(phoff + i * u64::from(phentsize)))?;
        kernel.read_exact(&mut ph)?;
        // PT_LOAD segments only; p_paddr + p_memsz.
        if u32::from_le_bytes(ph[0..4].try_into().expect("4 bytes")) == 1 {
            let paddr = u64::from_le_bytes(ph[24..32].try_into().expect("8 bytes"));
            let memsz = u64::from_le_bytes(ph[40..48].try_into().expect("8 bytes"));
            end = end.max(paddr.saturating_add(memsz));
        }
    }
    kernel.seek(SeekFrom::Start(0))?;
    Ok(end)
}

/// The setup header an ELF kernel lacks: just enough for the kernel to trust the zero page.
fn elf_header() -> setup_header {
    setup_header {
        boot_flag: KERNEL_BOOT_FLAG_MAGIC,
        header: KERNEL_HDR_MAGIC,
        kernel_alignment: 0x0100_0000,
        ..Default::default()
    }
}

/// The longest command line the kernel takes, terminating NUL included.
pub fn cmdline_capacity(header: &setup_header) -> usize {
    match header.cmdline_size {
        0 => ELF_CMDLINE_MAX,
        size => size as usize + 1,
    }
}

/// Builds the command line: the monitor's parameters, the user's, then `--` and init's
/// arguments.
pub fn cmdline(
    base: &str,
    extra: Option<&str>,
    init_args: &[String],
    capacity: usize,
) -> Result<Cmdline, Error> {
    let err = |e| Error::Cmdline(e, capacity - 1);
    let mut line = Cmdline::new(capacity).map_err(err)?;
    line.insert_str(base).map_err(err)?;
    if let Some(extra) = extra.filter(|e| !e.trim().is_empty()) {
        line.insert_str(extra.trim()).map_err(err)?;
    }
    if !init_args.is_empty() {
        line.insert_init_args(init_args.join(" ")).map_err(err)?;
    }
    Ok(line)
}

/// The e820 map: low RAM up to the EBDA, the EBDA reserved (MP table), RAM from 1 MiB.
pub fn e820(mem_size: u64) -> Vec<boot_e820_entry> {
    vec![
        boot_e820_entry {
            addr: 0,
            size: EBDA,
            r#type: E820_RAM,
        },
        boot_e820_entry {
            addr: EBDA,
            size: 0xa0000 - EBDA,
            r#type: E820_RESERVED,
        },
        boot_e820_entry {
            addr: HIMEM,
            size: mem_size - HIMEM,
            r#type: E820_RAM,
        },
    ]
}

/// Where the initrd goes: as high as RAM and the kernel's `initrd_addr_max` allow,
/// page-aligned, so it stays clear of the kernel's decompression area.
pub fn initrd_address(header: &setup_header, mem_size: u64, size: u64) -> u64 {
    let max = match header.initrd_addr_max {
        0 => 0x37ff_ffff,
        max => u64::from(max),
    };
    let top = mem_size.min(max + 1);
    (top - size) & !0xfff
}

/// The zero page for this boot.
pub fn boot_params(
    header: setup_header,
    cmdline_len: usize,
    initrd: Option<(u64, u64)>,
    mem_size: u64,
) -> boot_params {
    let mut params = boot_params {
        hdr: header,
        ..Default::default()
    };
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let map = e820(mem_size);
    params.e820_entries = map.len() as u8;
    params.e820_table[..map.len()].copy_from_slice(&map);
    params
}

/// A GDT descriptor from its access/flags bits (`0xa09b`: 64-bit code), base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (flags as u64, base as u64, limit as u64);
    ((base & 0xff00_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
        | ((limit & 0xf_0000) << 32)
        | (flags << 40)
}

/// The boot GDT: null, code, data, TSS (the kernel replaces it at once, but KVM wants a
/// TR that is a real TSS on entry).
pub const BOOT_GDT: [u64; 4] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// The hidden part of a segment register, as the CPU would load it from `entry`.
pub fn segment(index: u16, entry: u64) -> kvm_segment {
    let granular = (entry >> 55) & 1;
    let raw_limit = ((entry >> 32) & 0xf_0000) | (entry & 0xffff);
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24),
        limit: if granular == 1 {
            ((raw_limit << 12) | 0xfff) as u32
        } else {
            raw_limit as u32
        },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: granular as u8,
        avl: ((entry >> 52) & 1) as u8,
        unusable: if (entry >> 47) & 1 == 1 { 0 } else { 1 },
        padding: 0,
    }
}

/// The identity page tables: `(address, 8-byte entries)` for the PML4, PDPT and the PDs,
/// 2 MiB pages covering the low [`MAPPED_GIB`] GiB.
pub fn page_tables() -> Vec<(u64, Vec<u64>)> {
    const PRESENT_RW: u64 = 0b11;
    const HUGE: u64 = 1 << 7;
    let mut tables = vec![
        (PML4, vec![PDPT | PRESENT_RW]),
        (
            PDPT,
            (0..MAPPED_GIB)
                .map(|i| (PD + i * 0x1000) | PRESENT_RW)
                .collect(),
        ),
    ];
    for gib in 0..MAPPED_GIB {
        let entries = (0..512)
            .map(|i| ((gib << 30) + (i << 21)) | PRESENT_RW | HUGE)
            .collect();
        tables.push((PD + gib * 0x1000, entries));
    }
    tables
}

/// Writes GDT, IDT, page tables, command line and zero page.
pub fn write_boot_data(
    memory: &GuestMemoryMmap,
    params: &boot_params,
    cmdline: &Cmdline,
) -> Result<(), Error> {
    let write = |addr: u64, bytes: &[u8]| {
        memory
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|source| Error::Write { addr, source })
    };
    let gdt: Vec<u8> = BOOT_GDT.iter().flat_map(|e| e.to_le_bytes()).collect();
    write(GDT, &gdt)?;
    write(IDT, &[0u8; 8])?;
    for (addr, entries) in page_tables() {
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        write(addr, &bytes)?;
    }
    let line = cmdline
        .as_cstring()
        .map_err(|e| Error::Cmdline(e, cmdline_capacity(&params.hdr)))?;
    write(CMDLINE, line.as_bytes_with_nul())?;
    memory
        .write_obj(*params, GuestAddress(ZERO_PAGE))
        .map_err(|source| Error::Write {
            addr: ZERO_PAGE,
            source,
        })
}

/// vCPU 0's general registers at the 64-bit entry: RSI points at the zero page.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: ZERO_PAGE,
        ..Default::default()
    }
}

/// Long mode with paging: the state the 64-bit boot protocol requires on entry.
pub fn boot_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    const CR0_PE: u64 = 1;
    const CR0_ET: u64 = 1 << 4;
    const CR0_PG: u64 = 1 << 31;
    const CR4_PAE: u64 = 1 << 5;
    const EFER_LME: u64 = 1 << 8;
    const EFER_LMA: u64 = 1 << 10;
    let code = segment(1, BOOT_GDT[1]);
    let data = segment(2, BOOT_GDT[2]);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(3, BOOT_GDT[3]);
    sregs.gdt.base = GDT;
    sregs.gdt.limit = (BOOT_GDT.len() * 8 - 1) as u16;
    sregs.idt.base = IDT;
    sregs.idt.limit = 7;
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.cr3 = PML4;
    sregs.cr4 |= CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// The FPU as after FNINIT, with SSE exceptions masked.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_flat_long_mode_segments() {
        assert_eq!(BOOT_GDT[1], 0x00af_9b00_0000_ffff);
        assert_eq!(BOOT_GDT[2], 0x00cf_9300_0000_ffff);
        let code = segment(1, BOOT_GDT[1]);
        assert_eq!((code.selector, code.l, code.db, code.present), (8, 1, 0, 1));
        assert_eq!(
            (code.base, code.limit, code.g, code.type_),
            (0, 0xffff_ffff, 1, 0xb)
        );
        let data = segment(2, BOOT_GDT[2]);
        assert_eq!((data.selector, data.db, data.type_, data.s), (16, 1, 3, 1));
        let tss = segment(3, BOOT_GDT[3]);
        assert_eq!((tss.type_, tss.s, tss.unusable), (0xb, 0, 0));
        assert_eq!(segment(0, 0).unusable, 1);
    }

    #[test]
    fn page_tables_identity_map_four_gib_with_huge_pages() {
        let tables = page_tables();
        assert_eq!(tables[0], (PML4, vec![PDPT | 3]));
        assert_eq!(
            tables[1].1,
            vec![
                PD | 3,
                (PD + 0x1000) | 3,
                (PD + 0x2000) | 3,
                (PD + 0x3000) | 3
            ]
        );
        let last_pd = &tables[5];
        assert_eq!(last_pd.0, PD + 0x3000);
        assert_eq!(last_pd.1[511], ((4 << 30) - (2 << 20)) | 0x83);
        assert_eq!(tables[2].1[1], (2 << 20) | 0x83);
        // The tables sit between the stack and the command line, clear of both.
        const { assert!(BOOT_STACK < PML4 && PD + 0x4000 <= CMDLINE) };
    }

    #[test]
    fn e820_reserves_the_ebda_and_skips_the_legacy_hole() {
        let map = e820(128 << 20);
        let plain: Vec<(u64, u64, u32)> = map.iter().map(|e| (e.addr, e.size, e.r#type)).collect();
        assert_eq!(
            plain,
            [
                (0, 0x9fc00, E820_RAM),
                (0x9fc00, 0x400, E820_RESERVED),
                (0x10_0000, (128 << 20) - 0x10_0000, E820_RAM)
            ]
        );
    }

    #[test]
    fn boot_params_carry_cmdline_initrd_and_map() {
        let params = boot_params(elf_header(), 42, Some((0x700_0000, 0x1234)), 128 << 20);
        let hdr = params.hdr;
        assert_eq!(
            (hdr.boot_flag, hdr.header, hdr.type_of_loader),
            (0xaa55, KERNEL_HDR_MAGIC, 0xff)
        );
        assert_eq!((hdr.cmd_line_ptr, hdr.cmdline_size), (CMDLINE as u32, 42));
        assert_eq!((hdr.ramdisk_image, hdr.ramdisk_size), (0x700_0000, 0x1234));
        assert_eq!(params.e820_entries, 3);
        let last = params.e820_table[2];
        assert_eq!({ last.addr }, HIMEM);
        // The zero page is one page, as the protocol has it.
        assert_eq!(std::mem::size_of::<boot_params>(), 4096);
    }

    #[test]
    fn initrd_goes_to_the_top_page_aligned_below_its_limit() {
        let header = setup_header {
            initrd_addr_max: 0x7fff_ffff,
            ..Default::default()
        };
        assert_eq!(
            initrd_address(&header, 128 << 20, 0x1001),
            (128 << 20) - 0x2000
        );
        let low = setup_header {
            initrd_addr_max: 0x3fff_ffff,
            ..Default::default()
        };
        assert_eq!(initrd_address(&low, 2 << 30, 4096), (1 << 30) - 4096);
    }

    #[test]
    fn cmdline_respects_the_kernel_limit_and_puts_init_args_last() {
        let line = cmdline(
            "console=ttyS0",
            Some("quiet"),
            &["cpu".into(), "--iters".into(), "5".into()],
            2048,
        )
        .unwrap();
        assert_eq!(
            line.as_cstring().unwrap().to_str().unwrap(),
            "console=ttyS0 quiet -- cpu --iters 5"
        );
        let long = "x".repeat(100);
        let err = cmdline("console=ttyS0", Some(&long), &[], 64).unwrap_err();
        assert!(err.to_string().contains("63 bytes"), "{err}");
        assert_eq!(cmdline_capacity(&elf_header()), ELF_CMDLINE_MAX);
        let bz = setup_header {
            cmdline_size: 2047,
            ..Default::default()
        };
        assert_eq!(cmdline_capacity(&bz), 2048);
    }

    #[test]
    fn long_mode_sregs() {
        let sregs = boot_sregs(kvm_sregs::default());
        assert_eq!(sregs.cr0 & 0x8000_0001, 0x8000_0001);
        assert_eq!(
            (sregs.cr3, sregs.cr4 & 0x20, sregs.efer & 0x500),
            (PML4, 0x20, 0x500)
        );
        assert_eq!(
            (sregs.cs.selector, sregs.ss.selector, sregs.gdt.limit),
            (8, 16, 31)
        );
        let regs = boot_regs(0x100_0200);
        assert_eq!(
            (regs.rip, regs.rsi, regs.rflags),
            (0x100_0200, ZERO_PAGE, 2)
        );
    }

    #[test]
    fn files_that_are_not_kernels_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage");
        std::fs::write(&path, b"not a kernel at all").unwrap();
        let err = probe(&mut File::open(&path).unwrap(), "garbage").unwrap_err();
        assert!(matches!(err, Error::NotAKernel(_)));
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&path, &bz).unwrap();
        assert_eq!(
            probe(&mut File::open(&path).unwrap(), "bz").unwrap(),
            Format::BzImage
        );
    }

    #[test]
    fn too_little_memory_names_both_sizes() {
        let err = check_fits(60 << 20, 5 << 20, 64 << 20).unwrap_err();
        assert!(
            err.to_string().contains("64 MiB") && err.to_string().contains("89 MiB"),
            "{err}"
        );
        assert!(check_fits(60 << 20, 5 << 20, 128 << 20).is_ok());
    }
}
