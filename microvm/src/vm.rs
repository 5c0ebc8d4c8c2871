//! One VM with one vCPU and one slab of guest RAM: the part every guest kind shares.
//!
//! A guest kind (today the mini kernel, later a Linux boot path) creates a [`Vm`], writes
//! its own boot state into [`Vm::memory`] and the vCPU registers, then drives
//! [`Vm::run`] and decides what each [`Exit`] means. This module knows nothing about what
//! runs inside; it only creates, runs, counts and times.
//!
//! Guest RAM is one anonymous `MAP_NORESERVE` mapping at guest physical address 0: the host
//! pays only for pages the guest (or the monitor on its behalf) actually touches. Parts of it
//! can be replaced by private mappings of a file ([`Vm::map_file`]), so a program image is
//! read from the page cache (shared by every VM running it) instead of copied.
//!
//! # Registers
//!
//! Where KVM offers `KVM_CAP_SYNC_REGS`, general and system registers travel through the
//! vCPU's shared `kvm_run` area: KVM fills them in at every exit and loads the ones marked
//! dirty at the next entry, which saves four ioctls per exit (measured ~7 µs each on PVM).
//! Elsewhere [`Vm::regs`] and friends fall back to `KVM_GET/SET_(S)REGS`.
//!
//! # Stopping
//!
//! A vCPU blocked in `KVM_RUN` leaves it only at an exit or on a signal. The kick signal
//! (the timeout watchdog) and, once [`stop_on_signals`] installed them, SIGTERM and SIGINT
//! both set the running VM's `kvm_run.immediate_exit` from their handler, so a signal that
//! lands between the run loop's check and its next `KVM_RUN` is not lost: KVM returns at
//! once instead of entering the guest.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Once, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{
    CpuId, KVM_MAX_CPUID_ENTRIES, KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS, kvm_regs, kvm_run,
    kvm_sregs, kvm_userspace_memory_region,
};
use kvm_ioctls::{Cap, Kvm, SyncReg, VcpuExit, VcpuFd, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::explain::Trace;

/// What went wrong talking to KVM; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening /dev/kvm")]
    OpenKvm(#[source] kvm_ioctls::Error),
    #[error("KVM_CREATE_VM")]
    CreateVm(#[source] kvm_ioctls::Error),
    #[error("allocating {size} bytes of guest memory")]
    Memory {
        size: usize,
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("KVM_SET_USER_MEMORY_REGION")]
    SetMemory(#[source] kvm_ioctls::Error),
    #[error("KVM_CREATE_VCPU")]
    CreateVcpu(#[source] kvm_ioctls::Error),
    #[error("KVM_GET_SUPPORTED_CPUID")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
    #[error("{ioctl}")]
    Vcpu {
        ioctl: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("KVM_RUN")]
    Run(#[source] kvm_ioctls::Error),
    #[error("mapping {len:#x} bytes of a file at guest address {guest:#x}")]
    MapFile {
        guest: u64,
        len: u64,
        #[source]
        source: std::io::Error,
    },
}

/// The CPUID leaves KVM can offer on this host, as the starting point for a guest's.
/// Asked once per process: it is a property of the host, and costs ~0.4 ms on PVM.
pub fn supported_cpuid() -> Result<CpuId, Error> {
    static SUPPORTED: OnceLock<CpuId> = OnceLock::new();
    if let Some(cpuid) = SUPPORTED.get() {
        return Ok(cpuid.clone());
    }
    let cpuid = Kvm::new()
        .map_err(Error::OpenKvm)?
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(Error::SupportedCpuid)?;
    Ok(SUPPORTED.get_or_init(|| cpuid).clone())
}

/// Shorthand for vCPU register ioctls: `vm.vcpu().get_regs().map_err(vcpu_err("KVM_GET_REGS"))`.
pub fn vcpu_err(ioctl: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Vcpu { ioctl, source }
}

/// Why `KVM_RUN` returned, reduced to what a guest kind needs to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Hlt,
    IoOut(u16),
    IoIn(u16),
    Mmio(u64),
    /// Triple fault.
    Shutdown,
    /// KVM could not handle something (e.g. an instruction its emulator lacks).
    InternalError {
        suberror: u32,
    },
    FailEntry(u64),
    /// The run was interrupted by [`Kicker::kick`] (or any other signal).
    Interrupted,
    Other(String),
}

impl Exit {
    fn name(&self) -> &'static str {
        match self {
            Exit::Hlt => "hlt",
            Exit::IoOut(_) => "io_out",
            Exit::IoIn(_) => "io_in",
            Exit::Mmio(_) => "mmio",
            Exit::Shutdown => "shutdown",
            Exit::InternalError { .. } => "internal_error",
            Exit::FailEntry(_) => "fail_entry",
            Exit::Interrupted => "intr",
            Exit::Other(_) => "other",
        }
    }
}

/// Count and host time spent inside `KVM_RUN`, per exit reason.
#[derive(Debug, Default, Clone)]
pub struct ExitStats {
    pub by_reason: BTreeMap<&'static str, (u64, Duration)>,
    pub first_exit: Option<Duration>,
}

/// How much of guest RAM the host backs, from this process's page tables.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RamUse {
    /// All backed pages.
    pub total: u64,
    /// Of which page-cache pages of a mapped file, shared with every other VM mapping it.
    pub file: u64,
}

/// A VM with one vCPU and its RAM.
#[derive(Debug)]
pub struct Vm {
    // Kept for the VM's lifetime: dropping it would tear the VM down under the vCPU.
    _vm: VmFd,
    vcpu: VcpuFd,
    memory: GuestMemoryMmap,
    /// Registers travel through `kvm_run` (KVM_CAP_SYNC_REGS) rather than ioctls.
    sync_regs: bool,
    /// Guest ranges `(start, len)` replaced by private file mappings ([`Vm::map_file`]).
    file_backed: Vec<(u64, u64)>,
    exits: ExitStats,
    created: Instant,
    /// The vCPU thread's `RUNNING` pointer names this VM's `kvm_run` once it ran; `Drop`
    /// clears it, which only works on that same thread, so a `Vm` never changes threads.
    _not_send: PhantomData<*const ()>,
}

impl Vm {
    /// Creates the VM, its RAM (`mem_size` bytes at guest physical 0) and vCPU 0; each
    /// step is recorded in `trace` because together they are most of the boot time.
    pub fn new(mem_size: usize, trace: &mut Trace) -> Result<Self, Error> {
        Self::new_with(mem_size, trace, |_, _| Ok(()))
    }

    /// As [`Vm::new`], with `before_vcpu` run on the VM between creating its RAM and vCPU 0:
    /// VM-wide devices such as the in-kernel IRQ chip must exist before any vCPU does.
    pub fn new_with(
        mem_size: usize,
        trace: &mut Trace,
        before_vcpu: impl FnOnce(&VmFd, &mut Trace) -> Result<(), Error>,
    ) -> Result<Self, Error> {
        let kvm = trace
            .step("open /dev/kvm", Kvm::new)
            .map_err(Error::OpenKvm)?;
        let vm = trace
            .step("KVM_CREATE_VM", || kvm.create_vm())
            .map_err(Error::CreateVm)?;
        let memory = trace
            .step("guest memory mmap", || {
                GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), mem_size)])
            })
            .map_err(|source| Error::Memory {
                size: mem_size,
                source,
            })?;
        let region = memory
            .iter()
            .next()
            .expect("from_ranges with one range yields one region");
        let host = memory
            .get_host_address(GuestAddress(0))
            .expect("guest address 0 is inside the only region");
        let slot = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        trace
            .step("KVM_SET_USER_MEMORY_REGION", || {
                // SAFETY: the region is a live mapping of exactly `memory_size` bytes owned by
                // `memory`, which this struct keeps alive for as long as the VM (`_vm`) exists;
                // the fields are declared so that `memory` is dropped after the VM fds.
                unsafe { vm.set_user_memory_region(slot) }
            })
            .map_err(Error::SetMemory)?;
        before_vcpu(&vm, trace)?;
        let mut vcpu = trace
            .step("KVM_CREATE_VCPU", || vm.create_vcpu(0))
            .map_err(Error::CreateVcpu)?;
        let wanted = (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS) as i32;
        let sync_regs = kvm.check_extension_int(Cap::SyncRegs) & wanted == wanted;
        if sync_regs {
            vcpu.set_sync_valid_reg(SyncReg::Register);
            vcpu.set_sync_valid_reg(SyncReg::SystemRegister);
        }
        Ok(Vm {
            _vm: vm,
            vcpu,
            memory,
            sync_regs,
            file_backed: Vec::new(),
            exits: ExitStats::default(),
            created: Instant::now(),
            _not_send: PhantomData,
        })
    }

    /// Whether registers are exchanged through `kvm_run` (see the module docs).
    pub fn syncs_registers(&self) -> bool {
        self.sync_regs
    }

    /// The general registers as of the last exit.
    pub fn regs(&self) -> Result<kvm_regs, Error> {
        if self.sync_regs {
            // KVM_SYNC_X86_REGS is in kvm_valid_regs: KVM filled them in at the last exit.
            return Ok(self.vcpu.sync_regs().regs);
        }
        self.vcpu.get_regs().map_err(vcpu_err("KVM_GET_REGS"))
    }

    /// The system registers as of the last exit.
    pub fn sregs(&self) -> Result<kvm_sregs, Error> {
        if self.sync_regs {
            // As in `regs`, for KVM_SYNC_X86_SREGS.
            return Ok(self.vcpu.sync_regs().sregs);
        }
        self.vcpu.get_sregs().map_err(vcpu_err("KVM_GET_SREGS"))
    }

    /// Loads general registers for the next entry.
    pub fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), Error> {
        if self.sync_regs {
            self.vcpu.sync_regs_mut().regs = *regs;
            self.vcpu.set_sync_dirty_reg(SyncReg::Register);
            return Ok(());
        }
        self.vcpu.set_regs(regs).map_err(vcpu_err("KVM_SET_REGS"))
    }

    /// Loads system registers for the next entry.
    pub fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<(), Error> {
        if self.sync_regs {
            self.vcpu.sync_regs_mut().sregs = *sregs;
            self.vcpu.set_sync_dirty_reg(SyncReg::SystemRegister);
            return Ok(());
        }
        self.vcpu
            .set_sregs(sregs)
            .map_err(vcpu_err("KVM_SET_SREGS"))
    }

    /// Replaces guest RAM `[guest, guest + len)` by a private mapping of `file` from
    /// `offset`: the guest reads the file's page-cache pages in place and its writes go to
    /// private copies, so the file never changes. All three must be page-aligned.
    pub fn map_file(
        &mut self,
        file: &File,
        offset: u64,
        guest: u64,
        len: u64,
    ) -> Result<(), Error> {
        let error = |source| Error::MapFile { guest, len, source };
        let host = self
            .host_range(guest, len)
            .ok_or_else(|| error(std::io::Error::from_raw_os_error(libc::EFAULT)))?;
        if (offset | guest | len) % 4096 != 0 {
            return Err(error(std::io::Error::from_raw_os_error(libc::EINVAL)));
        }
        // SAFETY: `host..host+len` lies inside our guest-RAM mapping (checked above), which
        // nothing but the guest and vm-memory's volatile accessors use, so replacing its
        // pages with the file's cannot invalidate any Rust reference. MAP_FIXED over our own
        // mapping is the intent; MAP_PRIVATE keeps every write away from the file. KVM
        // follows the change through its MMU notifier.
        let mapped = unsafe {
            libc::mmap(
                host.cast(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(error(std::io::Error::last_os_error()));
        }
        self.file_backed.push((guest, len));
        Ok(())
    }

    /// The host address of guest `[addr, addr + len)` when all of it is guest RAM.
    fn host_range(&self, addr: u64, len: u64) -> Option<*mut u8> {
        let host = self.memory.get_host_address(GuestAddress(addr)).ok()?;
        let last = addr.checked_add(len.checked_sub(1)?)?;
        self.memory.get_host_address(GuestAddress(last)).ok()?;
        Some(host)
    }

    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    pub fn vcpu(&self) -> &VcpuFd {
        &self.vcpu
    }

    /// The VM itself, for VM-wide ioctls (IRQ lines, irqfds, further vCPUs).
    pub fn vm_fd(&self) -> &VmFd {
        &self._vm
    }

    /// Gives the host back the pages behind `[addr, addr + len)`; they read as zero
    /// afterwards, which is exactly what a fresh anonymous mapping in the guest must see.
    pub fn discard(&self, addr: u64, len: u64) {
        let Some(host) = self.host_range(addr, len) else {
            return;
        };
        let from_file = self
            .file_backed
            .iter()
            .any(|&(start, size)| addr < start + size && start < addr + len);
        if from_file {
            // MADV_DONTNEED on a private file mapping would bring the file's bytes back,
            // not zeros: map fresh anonymous memory over the range instead.
            // SAFETY: as in `map_file`: our own guest-RAM range, only accessed volatilely.
            unsafe {
                libc::mmap(
                    host.cast(),
                    len as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                    -1,
                    0,
                );
            }
            return;
        }
        // SAFETY: the range lies inside our own anonymous guest-RAM mapping (both ends were
        // checked above); MADV_DONTNEED on private anonymous memory only replaces its
        // contents with zero pages, which no Rust reference observes (guest RAM is only ever
        // accessed through vm-memory's volatile accessors).
        unsafe {
            libc::madvise(host.cast(), len as usize, libc::MADV_DONTNEED);
        }
    }

    /// How much of guest RAM the host currently backs, from /proc/self/pagemap: a page
    /// counts once this process maps it (KVM faults guest pages in through our page
    /// tables). Unlike mincore, a file page counts only once this VM touched it, not
    /// whenever the file happens to be in the page cache.
    pub fn ram_use(&self) -> std::io::Result<RamUse> {
        const PRESENT: u64 = 1 << 63;
        const SWAPPED: u64 = 1 << 62;
        const FILE_OR_SHARED: u64 = 1 << 61;
        let host = self.host_range(0, 1).unwrap_or_default() as u64;
        let pages = (self.memory.last_addr().0 + 1).div_ceil(4096);
        let mut raw = vec![0u8; pages as usize * 8];
        File::open("/proc/self/pagemap")?.read_exact_at(&mut raw, host / 4096 * 8)?;
        let mut use_ = RamUse::default();
        for entry in raw.chunks_exact(8) {
            let entry = u64::from_le_bytes(entry.try_into().expect("8-byte chunks"));
            if entry & (PRESENT | SWAPPED) != 0 {
                use_.total += 4096;
                if entry & FILE_OR_SHARED != 0 {
                    use_.file += 4096;
                }
            }
        }
        Ok(use_)
    }

    /// Runs the vCPU until the next exit, counting it and the time spent in the guest.
    pub fn run(&mut self) -> Result<Exit, Error> {
        let area: *mut kvm_run = self.vcpu.get_kvm_run();
        RUNNING.with(|running| running.set(area));
        let start = Instant::now();
        let exit = match self.vcpu.run() {
            Ok(VcpuExit::Hlt) => Exit::Hlt,
            Ok(VcpuExit::IoOut(port, _)) => Exit::IoOut(port),
            Ok(VcpuExit::IoIn(port, _)) => Exit::IoIn(port),
            Ok(VcpuExit::MmioRead(addr, _) | VcpuExit::MmioWrite(addr, _)) => Exit::Mmio(addr),
            Ok(VcpuExit::Shutdown) => Exit::Shutdown,
            Ok(VcpuExit::InternalError) => {
                // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so the kernel filled the
                // `internal` member of the union.
                let suberror =
                    unsafe { self.vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                Exit::InternalError { suberror }
            }
            Ok(VcpuExit::FailEntry(reason, _)) => Exit::FailEntry(reason),
            Ok(VcpuExit::Intr) => Exit::Interrupted,
            Ok(other) => Exit::Other(format!("{other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Exit::Interrupted,
            Err(e) => return Err(Error::Run(e)),
        };
        if exit == Exit::Interrupted {
            // Set by a signal handler (see the module docs); it has done its job.
            self.vcpu.set_kvm_immediate_exit(0);
        }
        let spent = start.elapsed();
        if self.exits.first_exit.is_none() {
            self.exits.first_exit = Some(self.created.elapsed());
        }
        let entry = self.exits.by_reason.entry(exit.name()).or_default();
        entry.0 += 1;
        entry.1 += spent;
        Ok(exit)
    }

    /// The data of the last exit if it was port I/O: the bytes an `out` wrote, or the
    /// buffer an `in` reads from at the next entry. Empty after any other exit.
    pub fn io_data(&mut self) -> &mut [u8] {
        let run = self.vcpu.get_kvm_run();
        if run.exit_reason != kvm_bindings::KVM_EXIT_IO {
            return &mut [];
        }
        // SAFETY: the exit reason is KVM_EXIT_IO, so the kernel filled the `io` member of
        // the union; its data lies `data_offset` bytes into this vCPU's kvm_run mapping,
        // `size * count` bytes long, and the mapping lives as long as the vCPU (`&mut self`
        // keeps anything else from touching it meanwhile).
        unsafe {
            let io = run.__bindgen_anon_1.io;
            let base = std::ptr::from_mut(run).cast::<u8>();
            std::slice::from_raw_parts_mut(
                base.add(io.data_offset as usize),
                usize::from(io.size) * io.count as usize,
            )
        }
    }

    /// The data of an MMIO exit: whether the guest writes, and the bytes it writes or the
    /// buffer its read is answered in. Empty after any other exit.
    pub fn mmio_data(&mut self) -> (bool, &mut [u8]) {
        let run = self.vcpu.get_kvm_run();
        if run.exit_reason != kvm_bindings::KVM_EXIT_MMIO {
            return (false, &mut []);
        }
        // SAFETY: the exit reason is KVM_EXIT_MMIO, so the kernel filled the `mmio` member
        // of the union; `len` is at most the 8 bytes of its `data`, which lives in this
        // vCPU's kvm_run mapping as long as the vCPU (`&mut self` keeps it exclusive).
        unsafe {
            let mmio = &mut run.__bindgen_anon_1.mmio;
            let len = (mmio.len as usize).min(mmio.data.len());
            (mmio.is_write != 0, &mut mmio.data[..len])
        }
    }

    pub fn exit_stats(&self) -> &ExitStats {
        &self.exits
    }

    /// A handle another thread can use to make the current `KVM_RUN` on this thread return.
    /// Must be called on the thread that runs the vCPU.
    pub fn kicker(&self) -> Kicker {
        install_kick_handler();
        Kicker {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let area: *mut kvm_run = self.vcpu.get_kvm_run();
        RUNNING.with(|running| {
            if running.get() == area {
                running.set(std::ptr::null_mut());
            }
        });
    }
}

thread_local! {
    /// The `kvm_run` area of the VM this thread runs, for the signal handlers. A const
    /// initialiser and no destructor make it a plain thread-local load, safe in a handler.
    static RUNNING: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The stop signal received, 0 while none.
static STOP: AtomicI32 = AtomicI32::new(0);

/// The signal that interrupts `KVM_RUN`. A real-time signal nobody else in isolab uses; its
/// only job is to make the ioctl (or a sleep) return `EINTR`.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

/// The signals [`stop_on_signals`] turns into a clean stop.
const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

extern "C" fn on_signal(signal: libc::c_int) {
    if STOP_SIGNALS.contains(&signal) {
        STOP.store(signal, Ordering::SeqCst);
    }
    RUNNING.with(|running| {
        let area = running.get();
        if !area.is_null() {
            // SAFETY: `area` is the kvm_run mapping of a VM alive on this thread (`Vm::drop`
            // clears the pointer first, and a `Vm` never changes threads). KVM reads
            // `immediate_exit` at each entry; a volatile byte store is async-signal-safe.
            unsafe { std::ptr::addr_of_mut!((*area).immediate_exit).write_volatile(1) };
        }
    });
}

fn install_handler(signal: libc::c_int) {
    // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // No SA_RESTART: the point is that blocking calls (KVM_RUN, sigsuspend) return EINTR.
    action.sa_flags = 0;
    // SAFETY: the handler is async-signal-safe (an atomic store and a volatile byte store)
    // and `action` is a valid sigaction.
    unsafe {
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| install_handler(kick_signal()));
}

/// From now on SIGTERM and SIGINT stop every VM of this process cleanly instead of killing
/// it: the vCPU leaves `KVM_RUN` (or its sleep), the run loop sees [`stop_requested`] and
/// the VM is torn down. For a monitor process that runs one VM (`isolab vm run`); the
/// signal must reach the vCPU thread, so other threads block it (the watchdog does).
pub fn stop_on_signals() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| STOP_SIGNALS.into_iter().for_each(install_handler));
}

/// The stop signal this process received, if any (see [`stop_on_signals`]).
pub fn stop_requested() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The stop signal received since the last call, if any: a guest kind that passes it on
/// to the guest (see `mini::signal`) takes it, so that only a further one stops the VM.
pub fn take_stop_request() -> Option<i32> {
    match STOP.swap(0, Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Blocks `signals` on this thread until dropped, restoring the previous mask.
struct Blocked(libc::sigset_t);

impl Blocked {
    fn new(signals: &[libc::c_int]) -> Self {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid, writable sets; pthread_sigmask only changes this thread's mask.
        unsafe {
            libc::sigemptyset(&mut set);
            for &signal in signals {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        }
        Blocked(old)
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Sleeps until `watchdog` expires or a stop signal arrives (for a guest that blocked
/// forever, e.g. in `pause`); returns the stop signal, or `None` when the watchdog expired.
/// The signals are blocked around the checks and unblocked atomically by sigsuspend, so
/// one landing between a check and the sleep is not slept through.
pub fn sleep_until_stopped(watchdog: &Watchdog) -> Option<i32> {
    let mut signals = STOP_SIGNALS.to_vec();
    signals.push(kick_signal());
    let blocked = Blocked::new(&signals);
    loop {
        if let Some(signal) = stop_requested() {
            return Some(signal);
        }
        if watchdog.expired() {
            return None;
        }
        let mut wait = blocked.0;
        // SAFETY: `wait` is the initialised previous mask; deleting members is valid.
        unsafe {
            for &signal in &signals {
                libc::sigdelset(&mut wait, signal);
            }
            libc::sigsuspend(&wait);
        }
    }
}

/// Interrupts the vCPU thread it was made on.
#[derive(Debug, Clone, Copy)]
pub struct Kicker {
    thread: libc::pthread_t,
}

impl Kicker {
    /// A kicker for the calling thread, e.g. an extra vCPU's own thread.
    pub fn current() -> Kicker {
        install_kick_handler();
        Kicker {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
        }
    }

    /// Interrupts a blocking call (`KVM_RUN`) on the kicker's thread with `EINTR`. The caller
    /// must keep that thread alive meanwhile; a kick that lands just before `KVM_RUN` is
    /// missed, so callers repeat it until the thread has left.
    pub fn kick(self) {
        // SAFETY: the watchdog that calls this is joined before the vCPU thread can leave
        // `Watchdog`'s scope, so `thread` names a live thread; the handler is installed.
        unsafe {
            libc::pthread_kill(self.thread, kick_signal());
        }
    }
}

/// Enforces a deadline on the vCPU thread: when it passes, `expired()` turns true and the
/// vCPU thread is kicked out of `KVM_RUN` (or any other blocking call), again every
/// millisecond until the watchdog is dropped, so a kick that lands between the loop's
/// check and its next `KVM_RUN` cannot be lost.
#[derive(Debug)]
pub struct Watchdog {
    expired: Arc<AtomicBool>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// `None` means no deadline: no thread is started at all.
    pub fn start(timeout: Option<Duration>, kicker: Kicker) -> std::io::Result<Self> {
        let expired = Arc::new(AtomicBool::new(false));
        let Some(timeout) = timeout else {
            return Ok(Watchdog {
                expired,
                stop: None,
                thread: None,
            });
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let flag = Arc::clone(&expired);
        // Stop signals sent to the process must reach the vCPU thread, never this one: it
        // is created with them blocked (a new thread inherits its creator's mask).
        let _blocked = Blocked::new(&STOP_SIGNALS);
        let thread = std::thread::Builder::new()
            .name("isolab-watchdog".into())
            // It only waits on a channel: a small stack keeps the monitor's footprint small.
            .stack_size(64 << 10)
            .spawn(move || {
                if stopped.recv_timeout(timeout) != Err(mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
                flag.store(true, Ordering::SeqCst);
                loop {
                    kicker.kick();
                    if stopped.recv_timeout(Duration::from_millis(1))
                        != Err(mpsc::RecvTimeoutError::Timeout)
                    {
                        return;
                    }
                }
            })?;
        Ok(Watchdog {
            expired,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic in the watchdog thread has nothing left to report.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_without_timeout_starts_no_thread() {
        let kicker = Kicker {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
        };
        let dog = Watchdog::start(None, kicker).unwrap();
        assert!(dog.thread.is_none());
        assert!(!dog.expired());
    }

    #[test]
    fn watchdog_expires_and_interrupts_a_blocking_call() {
        install_kick_handler();
        let kicker = Kicker {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
        };
        let dog = Watchdog::start(Some(Duration::from_millis(20)), kicker).unwrap();
        while !dog.expired() {
            // SAFETY: pause has no preconditions; the kick signal makes it return.
            unsafe { libc::pause() };
        }
        drop(dog);
    }
}
