//! Lab 11: a virtual machine from scratch, with nothing but /dev/kvm.
//!
//! Run it as `cargo run -- A B`: the guest adds the two 16-bit numbers A and B and writes
//! the sum to I/O port 0x3f8, then halts. Every time KVM_RUN returns, the program prints
//! one `exit=...` line; at the end `done=1`, and then it keeps the VM until its standard
//! input closes (press Ctrl-D), so that the checker can look at it from outside.

use std::io::Read;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

/// Where the guest's RAM starts in guest-physical memory, and how much there is.
const GUEST_RAM: u64 = 0x1000;
const RAM_SIZE: usize = 0x4000;
/// The I/O port the guest writes its answer to (COM1's, but there is no UART here).
const PORT: u16 = 0x3f8;

/// The guest: 16-bit real-mode machine code, loaded at GUEST_RAM.
#[rustfmt::skip]
const GUEST_CODE: &[u8] = &[
    0x01, 0xd8,                          // add ax, bx
    0xba, PORT as u8, (PORT >> 8) as u8, // mov dx, PORT (the immediate is little-endian)
    0xef,                                // out dx, ax
    0xf4,                                // hlt
];

fn main() {
    let (a, b) = numbers();
    let kvm = Kvm::new().expect("opening /dev/kvm");
    println!("api_version={}", kvm.get_api_version());

    // 1: the VM.
    let vm = kvm.create_vm().expect("KVM_CREATE_VM");

    // 2: guest RAM, and where it sits in the guest's physical address space.
    let ram = guest_ram();
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: GUEST_RAM,
        memory_size: RAM_SIZE as u64,
        userspace_addr: ram.as_ptr() as u64,
        flags: 0,
    };
    // SAFETY: `ram` is RAM_SIZE bytes, page-aligned, and never freed (guest_ram leaks it),
    // so the guest cannot reach memory this program later reuses.
    unsafe { vm.set_user_memory_region(region) }.expect("KVM_SET_USER_MEMORY_REGION");

    // 3: the guest code (GUEST_CODE above), copied to the start of guest RAM.
    ram[..GUEST_CODE.len()].copy_from_slice(GUEST_CODE);

    // 4: vCPU 0, in real mode with CS = 0, so that IP is the physical address.
    let mut vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
    let mut sregs = vcpu.get_sregs().expect("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).expect("KVM_SET_SREGS");
    let mut regs = vcpu.get_regs().expect("KVM_GET_REGS");
    regs.rip = GUEST_RAM;
    regs.rax = u64::from(a);
    regs.rbx = u64::from(b);
    // Bit 1 of RFLAGS is reserved and must be set.
    regs.rflags = 0x2;
    vcpu.set_regs(&regs).expect("KVM_SET_REGS");

    // 5: run the vCPU until the guest halts, reporting every exit.
    loop {
        match vcpu.run().expect("KVM_RUN") {
            VcpuExit::IoOut(port, data) => report_io_out(port, data),
            VcpuExit::Hlt => {
                let rip = vcpu.get_regs().expect("KVM_GET_REGS").rip;
                report_hlt(rip);
                break;
            }
            other => {
                report_other(&format!("{other:?}"));
                break;
            }
        }
    }

    println!("done=1");
    // Keep the VM until standard input closes: the checker looks at it meanwhile.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// A and B from the command line, in decimal or 0x-hexadecimal.
fn numbers() -> (u16, u16) {
    let parse = |text: String| {
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u16::from_str_radix(hex, 16),
            None => text.parse(),
        };
        parsed.unwrap_or_else(|_| panic!("{text:?} is not a 16-bit number"))
    };
    let mut args = std::env::args().skip(1).map(parse);
    match (args.next(), args.next()) {
        (Some(a), Some(b)) => (a, b),
        _ => panic!("usage: cargo run -- A B   (two 16-bit numbers, e.g. 0x1234 7)"),
    }
}

/// RAM_SIZE zeroed bytes on a page boundary, as KVM requires, that live as long as the
/// program: the guest may use them until the very end.
fn guest_ram() -> &'static mut [u8] {
    let layout = std::alloc::Layout::from_size_align(RAM_SIZE, 0x1000).expect("a valid layout");
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!ptr.is_null(), "out of memory");
    // SAFETY: `ptr` points to RAM_SIZE initialised (zeroed) bytes that are never freed.
    unsafe { std::slice::from_raw_parts_mut(ptr, RAM_SIZE) }
}

fn report_io_out(port: u16, data: &[u8]) {
    let value = data
        .iter()
        .rev()
        .fold(0u64, |value, byte| value << 8 | u64::from(*byte));
    println!(
        "exit=io_out port={port:#x} size={} value={value:#x}",
        data.len()
    );
}

fn report_hlt(rip: u64) {
    println!("exit=hlt rip={rip:#x}");
}

fn report_other(what: &str) {
    println!("exit=other {what}");
}
