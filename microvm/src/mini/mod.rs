//! The mini kernel: runs one static Linux x86-64 program in guest ring 3 and serves its
//! system calls from the monitor.
//!
//! # Design
//!
//! On PVM (this project's main host) guest ring 3 runs natively but guest ring 0 is
//! emulated at ~3M instructions/s, so the mini kernel has almost no ring-0 code:
//!
//! - **Built by the monitor.** Page tables (identity map, 2 MiB user pages, see
//!   [`layout`]), GDT, IDT, TSS, the program image and its initial stack are written into
//!   guest RAM by the monitor, and the vCPU starts *directly in ring 3* at the program's
//!   entry point with CS/SS, CR0/CR3/CR4/EFER and the syscall MSRs loaded through
//!   `KVM_SET_SREGS`/`KVM_SET_MSRS`. No guest instruction runs before `_start`.
//! - **System calls in the monitor** (like Solo5's hvt tender). LSTAR points at a single
//!   `hlt`: `syscall` enters ring 0, the `hlt` exits to the monitor (`KVM_EXIT_HLT`), the
//!   monitor serves the call on guest memory ([`syscalls`]) and resumes the program by
//!   setting RIP=RCX, RFLAGS=R11 (sanitised), RAX=result and the user CS/SS itself, so no
//!   `sysret`/`iretq` runs in emulated ring 0 (PVM does not support `sysret`). All other
//!   registers, vector registers included, are untouched, which is the Linux contract
//!   (only RCX and R11 are clobbered).
//!   The alternative, a ring-0 handler in the guest, would run its whole dispatch in the
//!   emulator (tens of µs per call here) and still need exits for anything touching the
//!   host (stdout, time, randomness).
//! - **Signals from outside.** SIGTERM/SIGINT to the monitor reach a handler the program
//!   installed once it waits for signals (`pause`, `sigsuspend`), through a Linux signal
//!   frame ([`signal`]); without a handler, or at a second signal, they stop the VM
//!   ([`Outcome::Stopped`]).
//! - **Faults end the VM.** Every exception vector enters its own one-byte `hlt` stub, on
//!   the TSS's ring-0 stack; the monitor recovers the vector from RIP and the faulting
//!   context from the stack frame, and ends the run with a [`Crash`].
//! - **No guest build.** The only guest-side code is those `hlt` bytes (`0xf4`), written by
//!   the monitor; there is no nightly toolchain, no extra target and no binary blob.
//!
//! # Costs on PVM (measured, see the module's tests and `--explain`)
//!
//! Each system call costs one ring-3 → ring-0 transition plus one exit; `cpuid` traps to
//! the host kernel. Everything a program does between system calls runs at native speed.
//! Measured (`--explain`, `syscall` mode, release build): ~2.5 µs of each call is the
//! monitor serving it, the rest (30–100 µs, with the host's load) is PVM's exit path
//! inside `KVM_RUN`; `cpu` runs within 1 % of native.
//!
//! # Standard KVM
//!
//! The same code runs unchanged on VMX/SVM, where `syscall` enters real ring 0 and LSTAR's
//! `hlt` exits at once (see `entry_kind`); `tests/sandbox_mini.rs` runs every workload
//! mode, the timeout, SIGTERM, a crash and `--explain` on SVM with NPT in the sandbox and
//! compares each with the native run.

pub mod arena;
pub mod gdt;
pub mod image;
pub mod layout;
pub mod loader;
pub mod paging;
pub mod signal;
pub mod syscalls;
pub mod tmpfs;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kvm_bindings::{CpuId, Msrs, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_xcrs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::explain::{Explanation, SyscallStat, Trace};
use crate::vm::{self, Exit, Vm, Watchdog, vcpu_err};
use image::Image;
use layout::{
    EXCEPTION_STUBS, EXCEPTION_VECTORS, GDT, HUGE_PAGE, IDT, KERNEL_STACK_TOP, MAX_RAM, MIN_RAM,
    PML4, STUBS, SYSCALL_ENTRY, TSS, align_up,
};
use loader::{Program, StackInputs};
use syscalls::{Action, Kernel, SegmentBases};

/// What the guest sees as its executable's path (AT_EXECFN, /proc/self/exe).
pub const EXECFN: &str = "/isolab-workload";

#[derive(Debug, Clone)]
pub struct Config {
    pub workload: PathBuf,
    /// argv, including argv[0].
    pub argv: Vec<String>,
    pub mem_size: u64,
    pub timeout: Option<Duration>,
    /// Also measure how much guest RAM the host had to back (mincore over guest RAM).
    pub measure_memory: bool,
    /// Called once, the first time the program blocks with nothing inside able to wake it
    /// (`idle`): from then on the monitor only waits, and the caller may give memory back.
    pub on_block: Option<fn()>,
}

/// How the program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `exit_group(status)`.
    Exited(u8),
    /// It sent itself this signal (e.g. SIGABRT from `abort()`).
    Signaled(i32),
    /// A CPU exception in ring 3.
    Crashed(Crash),
    /// The `--timeout` passed first.
    TimedOut(Duration),
    /// The monitor received this signal (SIGTERM or SIGINT, see [`vm::stop_on_signals`])
    /// and stopped the VM: the program was not blocked waiting for signals, or had no
    /// handler for it (see [`signal`]).
    Stopped(i32),
}

/// A CPU exception the program took, as the monitor found it in the exception frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    pub vector: u8,
    pub rip: u64,
    pub error_code: Option<u64>,
    /// CR2 for a page fault.
    pub address: Option<u64>,
}

impl Crash {
    /// The signal Linux would have killed the process with.
    pub fn signal(&self) -> i32 {
        match self.vector {
            0 | 16 | 19 => libc::SIGFPE,
            1 | 3 => libc::SIGTRAP,
            6 => libc::SIGILL,
            17 => libc::SIGBUS,
            _ => libc::SIGSEGV,
        }
    }

    fn mnemonic(&self) -> &'static str {
        const NAMES: [&str; 22] = [
            "#DE divide error",
            "#DB debug",
            "NMI",
            "#BP breakpoint",
            "#OF overflow",
            "#BR bound range",
            "#UD invalid opcode",
            "#NM device not available",
            "#DF double fault",
            "coprocessor overrun",
            "#TS invalid TSS",
            "#NP segment not present",
            "#SS stack fault",
            "#GP general protection",
            "#PF page fault",
            "reserved",
            "#MF x87 error",
            "#AC alignment check",
            "#MC machine check",
            "#XM SIMD error",
            "#VE virtualization",
            "#CP control protection",
        ];
        NAMES
            .get(usize::from(self.vector))
            .copied()
            .unwrap_or("exception")
    }
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (vector {}) at rip {:#x}",
            self.mnemonic(),
            self.vector,
            self.rip
        )?;
        if let Some(address) = self.address {
            write!(f, ", address {address:#x}")?;
        }
        if let Some(code) = self.error_code {
            write!(f, ", error code {code:#x}")?;
        }
        Ok(())
    }
}

/// A finished run: how it ended and what it cost.
#[derive(Debug)]
pub struct Run {
    pub outcome: Outcome,
    pub explanation: Explanation,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading workload {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("workload {path} cannot be run")]
    Load {
        path: PathBuf,
        #[source]
        source: loader::Error,
    },
    #[error("guest memory size {0} bytes is outside {MIN_RAM}..={MAX_RAM}")]
    MemSize(u64),
    #[error(transparent)]
    Vm(#[from] vm::Error),
    #[error("writing the boot state into guest memory")]
    GuestMemory(#[from] GuestMemoryError),
    #[error("loading the workload's segments into guest memory")]
    Segments(#[from] image::LoadError),
    #[error("starting the timeout watchdog")]
    Watchdog(#[source] std::io::Error),
    #[error("the VM triple-faulted (KVM_EXIT_SHUTDOWN), rip {rip:#x}")]
    TripleFault { rip: u64 },
    #[error("KVM internal error (suberror {suberror}) at rip {rip:#x}")]
    KvmInternal { suberror: u32, rip: u64 },
    #[error("unexpected VM exit {exit:?} at rip {rip:#x}")]
    UnexpectedExit { exit: Exit, rip: u64 },
}

/// The trace's milestone when the monitor's set-up is done and the guest is entered.
pub const ENTER_GUEST: &str = "enter guest (first KVM_RUN)";
/// The trace's milestone of the guest's first exit: the program's first system call.
pub const FIRST_EXIT: &str = "first VM exit";

/// Boots a fresh VM, runs the program to its end, and tears everything down. Its trace
/// (the explanation's steps) counts from the moment it is called.
pub fn run(config: &Config) -> Result<Run, Error> {
    let mut trace = Trace::new();
    let ram = align_up(config.mem_size, HUGE_PAGE);
    if !(MIN_RAM..=MAX_RAM).contains(&ram) {
        return Err(Error::MemSize(config.mem_size));
    }
    let load_error = |source| Error::Load {
        path: config.workload.clone(),
        source,
    };
    let file = trace
        .step("map workload ELF", || Image::open(&config.workload))
        .map_err(|source| Error::Read {
            path: config.workload.clone(),
            source,
        })?;
    let stack_size = layout::stack_size(ram);
    let stack_bottom = ram - stack_size;
    let program = trace
        .step("parse ELF", || Program::parse(file.bytes(), stack_bottom))
        .map_err(load_error)?;

    // Measured: asking for the CPUID on a second thread while this one creates the VM
    // made the median boot slower on a busy 2-core host (thread start-up and contention
    // ate the ~0.4 ms overlap), so the set-up stays on one thread.
    let mut vm = Vm::new(ram as usize, &mut trace)?;
    let cpuid = trace.step("KVM_GET_SUPPORTED_CPUID", vm::supported_cpuid)?;
    let cpu = CpuFeatures::from_cpuid(&cpuid);
    trace.step("write page tables, GDT, IDT, TSS, stubs", || {
        write_system_area(vm.memory(), ram)
    })?;
    trace.step("map ELF segments", || image::load(&mut vm, &program, &file))?;
    // Guest RAM maps what the guest needs; the monitor's own view of the file (whose pages
    // the ELF parser touched) would only add to this process's PSS for the whole run.
    drop(file);
    let mut random = [0u8; 16];
    syscalls::fill_random(&mut random);
    let stack = loader::build_stack(
        ram,
        &program,
        &StackInputs {
            argv: &config.argv,
            envp: &[],
            execfn: EXECFN,
            random,
            hwcap: cpu.hwcap,
            hwcap2: cpu.hwcap2,
            minsigstksz: cpu.minsigstksz,
        },
    );
    trace.step("write initial stack", || {
        vm.memory()
            .write_slice(&stack.bytes, GuestAddress(ram - stack.bytes.len() as u64))
    })?;
    set_up_vcpu(&vm, &cpuid, &cpu, &program, stack.rsp, &mut trace)?;

    let mut kernel = Kernel::new(ram, program.end, stack_bottom, stack_size, EXECFN);
    let watchdog = Watchdog::start(config.timeout, vm.kicker()).map_err(Error::Watchdog)?;
    trace.mark(ENTER_GUEST);
    let mut stats: BTreeMap<u64, SyscallStat> = BTreeMap::new();
    let outcome = run_loop(
        &mut vm,
        &mut kernel,
        &watchdog,
        config.timeout,
        &mut trace,
        &mut stats,
        config.on_block,
    )?;
    trace.mark("guest finished");
    drop(watchdog);

    let ram_use = config.measure_memory.then(|| vm.ram_use().ok()).flatten();
    let explanation = Explanation {
        steps: trace.steps().to_vec(),
        syscalls: stats
            .into_iter()
            .map(|(nr, stat)| (syscalls::name(nr), stat))
            .collect(),
        exits: vm.exit_stats().clone(),
        cpuid_leaves_set: cpuid.as_slice().len(),
        guest_ram_touched: ram_use,
        registers_via_kvm_run: vm.syncs_registers(),
    };
    Ok(Run {
        outcome,
        explanation,
    })
}

fn run_loop(
    vm: &mut Vm,
    kernel: &mut Kernel,
    watchdog: &Watchdog,
    timeout: Option<Duration>,
    trace: &mut Trace,
    stats: &mut BTreeMap<u64, SyscallStat>,
    mut on_block: Option<fn()>,
) -> Result<Outcome, Error> {
    let timed_out = || Outcome::TimedOut(timeout.unwrap_or_default());
    let (user_cs, user_ss) = (gdt::user_cs(), gdt::user_ss());
    let mut first_exit = true;
    // A stop signal the program has a handler for waits here until the program blocks
    // waiting for signals (see `signal` for why only then); a second one stops the VM.
    let mut pending = None;
    loop {
        if let Some(signal) = vm::take_stop_request() {
            if pending.is_some() || !kernel.handles(signal) {
                return Ok(Outcome::Stopped(signal));
            }
            pending = Some(signal);
        }
        if watchdog.expired() {
            return Ok(timed_out());
        }
        let exit = vm.run()?;
        if first_exit {
            trace.mark(FIRST_EXIT);
            first_exit = false;
        }
        let served = Instant::now();
        let rip = |vm: &Vm| vm.regs().map_or(0, |r| r.rip);
        match exit {
            Exit::Hlt => {}
            Exit::Interrupted => continue,
            Exit::Shutdown => return Err(Error::TripleFault { rip: rip(vm) }),
            Exit::InternalError { suberror } => {
                return Err(Error::KvmInternal {
                    suberror,
                    rip: rip(vm),
                });
            }
            exit => return Err(Error::UnexpectedExit { exit, rip: rip(vm) }),
        }
        let mut regs = vm.regs()?;
        let user_rsp = match entry_kind(vm, &regs)? {
            Entry::Syscall { user_rsp } => user_rsp,
            Entry::Exception(crash) => return Ok(Outcome::Crashed(crash)),
        };
        let mut sregs = vm.sregs()?;
        let mut bases = SegmentBases {
            fs: sregs.fs.base,
            gs: sregs.gs.base,
        };
        let nr = regs.rax;
        let args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
        let was_ready = kernel.ready_seen;
        let action = kernel.handle(vm, nr, args, &mut bases);
        if kernel.ready_seen && !was_ready {
            trace.mark("ISOLAB-READY written");
        }
        let mut deliver = None;
        let result = match action {
            Action::Return(value) => value,
            Action::Exit(status) => return Ok(Outcome::Exited(status)),
            Action::Signal(signal) => return Ok(Outcome::Signaled(signal)),
            Action::SigReturn => {
                let Some(mut restored) = signal::restore(vm.memory(), user_rsp) else {
                    return Ok(Outcome::Signaled(libc::SIGSEGV));
                };
                restored.rflags = sanitize_rflags(restored.rflags);
                sregs.cs = user_cs;
                sregs.ss = user_ss;
                vm.set_sregs(&sregs)?;
                vm.set_regs(&restored)?;
                stats.entry(nr).or_default().count += 1;
                continue;
            }
            // Nothing inside can wake the program: wait for the watchdog or a stop signal,
            // which its handler, if it installed one, receives; the wait returns EINTR.
            Action::Block => {
                if let Some(shed) = on_block.take() {
                    shed();
                }
                let signal = match pending.take() {
                    Some(signal) => signal,
                    None => match vm::sleep_until_stopped(watchdog) {
                        Some(signal) => vm::take_stop_request().unwrap_or(signal),
                        None => return Ok(timed_out()),
                    },
                };
                let Some(handler) = kernel.take_handler(signal) else {
                    return Ok(Outcome::Stopped(signal));
                };
                deliver = Some((signal, handler));
                (-i64::from(libc::EINTR)) as u64
            }
        };
        // Return to the program as `sysret` would, done by the monitor: no sysret or
        // iretq runs in the guest.
        regs.rax = result;
        regs.rip = regs.rcx;
        regs.rflags = sanitize_rflags(regs.r11);
        regs.rsp = user_rsp;
        sregs.cs = user_cs;
        sregs.ss = user_ss;
        sregs.fs.base = bases.fs;
        sregs.gs.base = bases.gs;
        if let Some((signal, handler)) = deliver {
            let (cs, ss) = (user_cs.selector, user_ss.selector);
            signal::push_frame(vm.memory(), &mut regs, signal, &handler, cs, ss)?;
        }
        vm.set_sregs(&sregs)?;
        vm.set_regs(&regs)?;
        let stat = stats.entry(nr).or_default();
        stat.count += 1;
        stat.enosys += u64::from(result as i64 == -i64::from(libc::ENOSYS));
        stat.monitor_time += served.elapsed();
    }
}

/// Why the guest reached one of the `hlt` stubs.
enum Entry {
    Syscall { user_rsp: u64 },
    Exception(Crash),
}

/// Decodes a `hlt` exit from its RIP. A system call arrives one of two ways:
/// - hardware KVM: `syscall` enters ring 0 at LSTAR and its `hlt` exits (RSP is still the
///   user's, `syscall` does not switch stacks);
/// - PVM (measured here): `syscall` reaches LSTAR still at CPL 3, so the `hlt` there raises
///   #GP, delivered through the IDT to the #GP stub; the frame's RIP is LSTAR and its RSP
///   the user's.
///
/// Any other exception is the program's crash.
fn entry_kind(vm: &Vm, regs: &kvm_regs) -> Result<Entry, Error> {
    let rip = regs.rip;
    if rip == SYSCALL_ENTRY + 1 {
        return Ok(Entry::Syscall { user_rsp: regs.rsp });
    }
    let vector = rip.wrapping_sub(EXCEPTION_STUBS + 1);
    if vector >= EXCEPTION_VECTORS {
        return Err(Error::UnexpectedExit {
            exit: Exit::Hlt,
            rip,
        });
    }
    let frame = read_frame(vm, vector as u8)?;
    if vector == 13 && frame.rip == SYSCALL_ENTRY && frame.cs & 3 == 3 {
        return Ok(Entry::Syscall {
            user_rsp: frame.rsp,
        });
    }
    let address = if vector == 14 {
        Some(vm.sregs()?.cr2)
    } else {
        None
    };
    Ok(Entry::Exception(Crash {
        vector: vector as u8,
        rip: frame.rip,
        error_code: frame.error_code,
        address,
    }))
}

/// The exception frame the CPU pushed on the ring-0 stack (from ring 3 it always switches
/// to the TSS's RSP0, so the frame's position is fixed).
struct Frame {
    error_code: Option<u64>,
    rip: u64,
    cs: u64,
    rsp: u64,
}

fn read_frame(vm: &Vm, vector: u8) -> Result<Frame, Error> {
    let mut words = [0u64; 6];
    for (i, word) in words.iter_mut().enumerate() {
        *word = vm
            .memory()
            .read_obj(GuestAddress(KERNEL_STACK_TOP - 48 + 8 * i as u64))?;
    }
    let has_error_code = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
    Ok(Frame {
        error_code: has_error_code.then_some(words[0]),
        rip: words[1],
        cs: words[2],
        rsp: words[4],
    })
}

/// RFLAGS as `sysret` would restore them from R11, minus what ring 3 may not set itself
/// (IOPL, NT, RF, VM, VIF/VIP): a program must not gain port I/O through a system call.
fn sanitize_rflags(r11: u64) -> u64 {
    const USER_SETTABLE: u64 = 0x0024_0fd5; // CF PF AF ZF SF TF IF DF OF AC ID
    (r11 & USER_SETTABLE) | 0x2
}

/// GDT, IDT, TSS, the `hlt` stubs and the page tables.
fn write_system_area(memory: &GuestMemoryMmap, ram: u64) -> Result<(), GuestMemoryError> {
    let words = |words: &[u64]| {
        words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    memory.write_slice(&words(&gdt::gdt()), GuestAddress(GDT))?;
    memory.write_slice(&words(&gdt::idt()), GuestAddress(IDT))?;
    memory.write_slice(&gdt::tss(), GuestAddress(TSS))?;
    const HLT: u8 = 0xf4;
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    memory.write_slice(&[HLT; layout::PAGE as usize], GuestAddress(STUBS))?;
    memory.write_slice(&SYSCALL, GuestAddress(SYSCALL_ENTRY + 1))?;
    for (addr, table) in paging::build(ram) {
        memory.write_slice(&words(&table[..]), GuestAddress(addr))?;
    }
    Ok(())
}

/// What the guest CPU offers, read from the CPUID KVM will give it.
#[derive(Debug, Clone, Copy)]
struct CpuFeatures {
    hwcap: u64,
    hwcap2: u64,
    fsgsbase: bool,
    /// XCR0 to enable (x87|SSE|AVX where supported); 0 without XSAVE.
    xcr0: u64,
    minsigstksz: u64,
}

impl CpuFeatures {
    fn from_cpuid(cpuid: &CpuId) -> Self {
        let leaf = |function: u32, index: u32| {
            cpuid
                .as_slice()
                .iter()
                .find(|e| e.function == function && e.index == index)
                .copied()
                .unwrap_or_default()
        };
        let basic = leaf(1, 0);
        let xsave = basic.ecx & (1 << 26) != 0;
        let fsgsbase = leaf(7, 0).ebx & 1 != 0;
        let xstate = leaf(0xd, 0);
        let xcr0 = if xsave {
            u64::from(xstate.eax) & 0x7
        } else {
            0
        };
        // Linux's AT_MINSIGSTKSZ is the signal frame size: the XSAVE area (at most 4 KiB
        // for x87|SSE|AVX) plus ~1 KiB of siginfo/ucontext.
        let xsave_size = if xsave {
            u64::from(xstate.ebx).clamp(576, 4096)
        } else {
            512
        };
        CpuFeatures {
            hwcap: u64::from(basic.edx),
            hwcap2: if fsgsbase { 2 } else { 0 },
            fsgsbase,
            xcr0,
            minsigstksz: align_up(xsave_size + 1024, 64),
        }
    }
}

const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_FSGSBASE: u64 = 1 << 16;
const CR4_OSXSAVE: u64 = 1 << 18;
const EFER_SCE: u64 = 1;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

/// Loads the CPU state of a process at its entry point: long mode, ring 3, our tables.
fn set_up_vcpu(
    vm: &Vm,
    cpuid: &CpuId,
    cpu: &CpuFeatures,
    program: &Program,
    rsp: u64,
    trace: &mut Trace,
) -> Result<(), Error> {
    let vcpu = vm.vcpu();
    trace
        .step("KVM_SET_CPUID2", || vcpu.set_cpuid2(cpuid))
        .map_err(vcpu_err("KVM_SET_CPUID2"))?;
    if cpu.xcr0 != 0 {
        let mut xcrs = kvm_xcrs {
            nr_xcrs: 1,
            ..Default::default()
        };
        xcrs.xcrs[0].value = cpu.xcr0;
        trace
            .step("KVM_SET_XCRS", || vcpu.set_xcrs(&xcrs))
            .map_err(vcpu_err("KVM_SET_XCRS"))?;
    }
    let msr = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    // syscall: CS = STAR[47:32], SS = +8; the sysret half describes our user segments
    // for completeness (CS = STAR[63:48] + 16, SS = + 8) though sysret is never used.
    let star = (u64::from(gdt::USER32_CS) << 48) | (u64::from(gdt::KERNEL_CS) << 32);
    // Interrupts, single-step, direction and alignment checks off on entry, as Linux does.
    let fmask = 0x4_7700;
    let entries = [
        msr(MSR_STAR, star),
        msr(MSR_LSTAR, SYSCALL_ENTRY),
        msr(MSR_CSTAR, SYSCALL_ENTRY),
        msr(MSR_SYSCALL_MASK, fmask),
    ];
    let msrs = Msrs::from_entries(&entries).expect("4 MSR entries fit");
    let written = trace
        .step("KVM_SET_MSRS", || vcpu.set_msrs(&msrs))
        .map_err(vcpu_err("KVM_SET_MSRS"))?;
    if written != msrs.as_slice().len() {
        return Err(Error::Vm(vm::Error::Vcpu {
            ioctl: "KVM_SET_MSRS",
            source: kvm_ioctls::Error::new(libc::EINVAL),
        }));
    }
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    trace
        .step("KVM_SET_FPU", || vcpu.set_fpu(&fpu))
        .map_err(vcpu_err("KVM_SET_FPU"))?;

    let mut sregs = trace
        .step("KVM_GET_SREGS", || vcpu.get_sregs())
        .map_err(vcpu_err("KVM_GET_SREGS"))?;
    let gdt_entries = gdt::gdt();
    sregs.gdt.base = GDT;
    sregs.gdt.limit = (gdt_entries.len() * 8 - 1) as u16;
    sregs.idt.base = IDT;
    sregs.idt.limit = (EXCEPTION_VECTORS * 16 - 1) as u16;
    sregs.cs = gdt::user_cs();
    sregs.ss = gdt::user_ss();
    sregs.ds = gdt::user_ss();
    sregs.es = gdt::user_ss();
    sregs.fs = gdt::user_ss();
    sregs.gs = gdt::user_ss();
    sregs.tr = gdt::task_register();
    sregs.ldt.unusable = 1;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.cr3 = PML4;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    if cpu.fsgsbase {
        sregs.cr4 |= CR4_FSGSBASE;
    }
    if cpu.xcr0 != 0 {
        sregs.cr4 |= CR4_OSXSAVE;
    }
    sregs.efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
    trace
        .step("KVM_SET_SREGS", || vcpu.set_sregs(&sregs))
        .map_err(vcpu_err("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rip: program.entry,
        rsp,
        rflags: 0x202,
        ..Default::default()
    };
    trace
        .step("KVM_SET_REGS", || vcpu.set_regs(&regs))
        .map_err(vcpu_err("KVM_SET_REGS"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rflags_from_r11_cannot_raise_iopl() {
        assert_eq!(sanitize_rflags(0x3000 | 0x202), 0x202);
        assert_eq!(sanitize_rflags(0x4_0000 | 0x1), 0x4_0003);
        assert_eq!(sanitize_rflags(0), 0x2);
    }

    #[test]
    fn crash_signals_follow_linux() {
        let crash = |vector| Crash {
            vector,
            rip: 0,
            error_code: None,
            address: None,
        };
        assert_eq!(crash(14).signal(), libc::SIGSEGV);
        assert_eq!(crash(13).signal(), libc::SIGSEGV);
        assert_eq!(crash(6).signal(), libc::SIGILL);
        assert_eq!(crash(0).signal(), libc::SIGFPE);
        assert_eq!(crash(3).signal(), libc::SIGTRAP);
        assert!(crash(14).to_string().contains("#PF page fault"));
    }
}
