//! One VM with one vCPU and one slab of guest RAM: the part every guest kind shares.
//!
//! A guest kind (today the mini kernel, later a Linux boot path) creates a [`Vm`], writes
//! its own boot state into [`Vm::memory`] and the vCPU registers, then drives
//! [`Vm::run`] and decides what each [`Exit`] means. This module knows nothing about what
//! runs inside; it only creates, runs, counts and times.
//!
//! Guest RAM is one anonymous `MAP_NORESERVE` mapping at guest physical address 0: the host
//! pays only for pages the guest (or the monitor on its behalf) actually touches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
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

/// A VM with one vCPU and its RAM.
#[derive(Debug)]
pub struct Vm {
    kvm: Kvm,
    // Kept for the VM's lifetime: dropping it would tear the VM down under the vCPU.
    _vm: VmFd,
    vcpu: VcpuFd,
    memory: GuestMemoryMmap,
    exits: ExitStats,
    created: Instant,
}

impl Vm {
    /// Creates the VM, its RAM (`mem_size` bytes at guest physical 0) and vCPU 0; each
    /// step is recorded in `trace` because together they are most of the boot time.
    pub fn new(mem_size: usize, trace: &mut Trace) -> Result<Self, Error> {
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
        let vcpu = trace
            .step("KVM_CREATE_VCPU", || vm.create_vcpu(0))
            .map_err(Error::CreateVcpu)?;
        Ok(Vm {
            kvm,
            _vm: vm,
            vcpu,
            memory,
            exits: ExitStats::default(),
            created: Instant::now(),
        })
    }

    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    pub fn vcpu(&self) -> &VcpuFd {
        &self.vcpu
    }

    pub fn vcpu_mut(&mut self) -> &mut VcpuFd {
        &mut self.vcpu
    }

    /// The CPUID leaves KVM can offer on this host, as the starting point for the guest's.
    pub fn supported_cpuid(&self) -> Result<CpuId, Error> {
        self.kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(Error::SupportedCpuid)
    }

    /// Gives the host back the pages behind `[addr, addr + len)`; they read as zero
    /// afterwards, which is exactly what a fresh anonymous mapping in the guest must see.
    pub fn discard(&self, addr: u64, len: u64) {
        let Ok(host) = self.memory.get_host_address(GuestAddress(addr)) else {
            return;
        };
        if len == 0
            || self
                .memory
                .get_host_address(GuestAddress(addr + len - 1))
                .is_err()
        {
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

    /// How much of guest RAM the host currently backs with memory (mincore).
    pub fn resident_bytes(&self) -> u64 {
        let Ok(host) = self.memory.get_host_address(GuestAddress(0)) else {
            return 0;
        };
        let len = self.memory.last_addr().0 as usize + 1;
        let mut pages = vec![0u8; len.div_ceil(4096)];
        // SAFETY: `host..host+len` is exactly our guest-RAM mapping and `pages` has one byte
        // per 4 KiB page of it, as mincore requires.
        let rc = unsafe { libc::mincore(host.cast(), len, pages.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        pages.iter().filter(|&&p| p & 1 != 0).count() as u64 * 4096
    }

    /// Runs the vCPU until the next exit, counting it and the time spent in the guest.
    pub fn run(&mut self) -> Result<Exit, Error> {
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
        let spent = start.elapsed();
        if self.exits.first_exit.is_none() {
            self.exits.first_exit = Some(self.created.elapsed());
        }
        let entry = self.exits.by_reason.entry(exit.name()).or_default();
        entry.0 += 1;
        entry.1 += spent;
        Ok(exit)
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

/// The signal that interrupts `KVM_RUN`. A real-time signal nobody else in isolab uses; its
/// handler does nothing, its only job is to make the ioctl return `EINTR`.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

extern "C" fn on_kick(_: libc::c_int) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // No SA_RESTART: the point is that blocking calls (KVM_RUN, pause) return EINTR.
        action.sa_flags = 0;
        // SAFETY: the handler is async-signal-safe (it does nothing) and `action` is a valid
        // sigaction; replacing the disposition of a signal only isolab uses is harmless.
        unsafe {
            libc::sigaction(kick_signal(), &action, std::ptr::null_mut());
        }
    });
}

/// Interrupts the vCPU thread it was made on.
#[derive(Debug, Clone, Copy)]
pub struct Kicker {
    thread: libc::pthread_t,
}

impl Kicker {
    fn kick(self) {
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
        let thread = std::thread::Builder::new()
            .name("isolab-watchdog".into())
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
