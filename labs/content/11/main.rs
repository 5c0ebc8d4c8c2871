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
const GUEST_CODE: &[u8] = &[
    // TODO 3: the bytes of
    //   add ax, bx
    //   mov dx, PORT
    //   out dx, ax
    //   hlt
];

fn main() {
    let (a, b) = numbers();
    let kvm = Kvm::new().expect("opening /dev/kvm");
    println!("api_version={}", kvm.get_api_version());

    // TODO 1: create the VM (Kvm::create_vm).

    // TODO 2: give it RAM: guest_ram() below allocates RAM_SIZE bytes; tell KVM to map them
    // at guest-physical GUEST_RAM with VmFd::set_user_memory_region and a
    // kvm_userspace_memory_region (slot 0, flags 0). That call is unsafe: say why it is sound
    // in a `// SAFETY:` comment.

    // TODO 3: fill in GUEST_CODE above with the machine code of the four instructions, and
    // copy it to the start of the guest's RAM.

    // TODO 4: create vCPU 0 (VmFd::create_vcpu). In its special registers (get_sregs /
    // set_sregs) set CS's base and selector to 0; in its registers (get_regs / set_regs) set
    // RIP to GUEST_RAM, RAX to `a`, RBX to `b` and RFLAGS to 0x2 (bit 1 is reserved, always 1).
    let _ = (a, b);

    // TODO 5: call VcpuFd::run in a loop. For VcpuExit::IoOut(port, data) call
    // report_io_out(port, data) and go on; for VcpuExit::Hlt read the registers, call
    // report_hlt(rip) and stop; for any other exit call report_other(&format!("{other:?}"))
    // and stop.

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
