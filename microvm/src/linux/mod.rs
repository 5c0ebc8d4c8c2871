//! Booting a standard Linux kernel: `isolab vm run --kernel PATH --workload MODE ARGS…`.
//!
//! The monitor loads an ELF vmlinux or a bzImage ([`boot`]), gives the guest an in-kernel
//! irqchip and PIT, a 16550 console and an i8042 ([`devices`]), ACPI tables ([`acpi`]) and
//! an MP table ([`mptable`], for kernels without ACPI) for its vCPUs, and an initramfs
//! whose `/init` is `isolab-workload` ([`initramfs`]) — or, with `--disk`, a read-only
//! virtio block device holding it ([`virtio_blk`]) and an initramfs that mounts it.
//! [`peer`] boots the same guest under QEMU's microvm machine, for comparison.
//!
//! # How a run ends
//!
//! The workload is PID 1: when it exits the kernel panics with "Attempted to kill init!
//! exitcode=0x…" (the wait status). The command line carries `panic=-1 reboot=k`, so the
//! kernel reboots at once through the i8042, which the monitor turns into the end of the
//! VM. The workload's exit status is read from that panic line; any other panic is a
//! guest kernel panic. A triple fault, a KVM internal error, or the `--timeout` (default
//! [`DEFAULT_TIMEOUT`]) end the run too; the vCPU threads are always joined and the VM
//! closed before returning, so nothing outlives the run.
//!
//! # PVM
//!
//! On a PVM host guest ring 0 is emulated and a standard kernel cannot boot; the host is
//! checked ([`KvmKind::detect`]) after the inputs and before any VM exists.

pub mod acpi;
pub mod boot;
pub mod cpio;
pub mod cpuid;
pub mod devices;
pub mod initramfs;
pub mod mptable;
pub mod peer;
pub mod profile;
pub mod virtio_blk;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, Msrs, kvm_msr_entry, kvm_pit_config};
use kvm_ioctls::{Cap, VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::explain::{Explanation, Trace};
use crate::host::KvmKind;
use crate::vm::{self, Exit, Kicker, Vm, Watchdog, vcpu_err};
use devices::{Console, Devices, PortCount, SERIAL_IRQ};

/// The monitor's part of the command line. `console=ttyS0 quiet`: the console is the only
/// output, and every byte of it is an exit. `panic=-1 reboot=k`: see the module docs.
/// `pci=off`: there is no PCI bus to scan. `initcall_blacklist=cmos_init`: there is no RTC,
/// and probing for one polls ports for seconds under emulation (measured: 3.2 s in the
/// sandbox). `i8042.*`: no keyboard or mouse to probe. The ACPI FADT ([`acpi`]) already
/// tells an ACPI kernel there is no RTC or i8042; these two keep the probes off for a
/// kernel built without ACPI. `nomodule=1`, not `nomodule`: a kernel built without module
/// support (`isolab kernel build --minimal`) does not know it, and passes an unknown word
/// to init as an argument but an unknown `key=value` only into its environment.
/// `ISOLAB_DRAIN_CONSOLE=1` reaches the workload's environment
/// and makes it wait for the console to drain before it exits (see its `out` module): init's
/// exit panics the kernel at once, and the panic text must not interleave with its output.
pub const BASE_CMDLINE: &str = "console=ttyS0 quiet panic=-1 reboot=k pci=off nomodule=1 \
    i8042.noaux i8042.nomux i8042.dumbkbd initcall_blacklist=cmos_init ISOLAB_DRAIN_CONSOLE=1";
/// A run without `--timeout` still ends: a guest that hangs is stopped after this.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The smallest guest this monitor boots; [`boot::load_kernel`] checks the real need.
pub const MIN_RAM: u64 = 16 << 20;
/// Console lines quoted in an error.
const TAIL: usize = 15;

#[derive(Debug, Clone)]
pub struct Config {
    pub kernel: PathBuf,
    /// An initrd to use instead of the workload's initramfs.
    pub initrd: Option<PathBuf>,
    /// The workload binary, `/init` of the built initramfs.
    pub workload: PathBuf,
    /// The workload's mode and arguments (init's argv after argv[0]).
    pub args: Vec<String>,
    pub mem_size: u64,
    pub vcpus: u8,
    /// Appended to [`BASE_CMDLINE`].
    pub cmdline: Option<String>,
    pub timeout: Option<Duration>,
    /// Where the built initramfs is cached.
    pub cache: PathBuf,
    /// Copy the guest's console to stdout as it arrives.
    pub echo: bool,
    /// Hold the workload's figures line back from the echo ([`Console::hold_figures`]); it
    /// is then in [`Run::figures`].
    pub hold_figures: bool,
    /// Called once on a thread of its own as the guest starts, to give back the memory
    /// that setting the VM up needed and running it does not (`isolab_runtime::memory::
    /// shed`): the binary's pages for argument parsing, the initramfs, ELF and boot
    /// protocol code. The vCPU loop faults back the few pages it uses, from the page cache.
    pub shed: Option<fn()>,
    /// `--disk`: a read-only virtio block device over this image ([`virtio_blk`]); the
    /// guest boots from it: its `/init` is the workload. The initramfs is then busybox and
    /// the virtio modules, taken from `modules/` beside the kernel file (where `isolab
    /// kernel fetch` keeps them), whose init mounts the disk and hands over to it
    /// ([`initramfs::disk_init`]).
    pub disk: Option<PathBuf>,
    /// `--profile`: sample vCPU 0's instruction pointer ([`profile`]).
    pub profile: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kernel {path}")]
    Kernel {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("initrd {path}")]
    Initrd {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Boot(#[from] boot::Error),
    #[error("building the initramfs")]
    Initramfs(#[from] initramfs::InitramfsError),
    #[error(
        "this host's KVM is PVM (kvm_pvm): a paravirtual KVM that runs guest ring 0 in an emulator, so standard Linux kernels, which need hardware virtualisation (VMX or SVM), cannot boot here; `isolab vm run --guest mini` runs the workload on this host"
    )]
    Pvm,
    #[error("no usable KVM on this host (see `isolab doctor`)")]
    NoKvm,
    #[error("--mem {0} MiB: a Linux guest needs 16 MiB to 3072 MiB")]
    MemSize(u64),
    #[error("--vcpus {0}: 1 to {max} are supported", max = mptable::MAX_VCPUS)]
    Vcpus(u8),
    #[error(transparent)]
    Vm(#[from] vm::Error),
    #[error("writing the ACPI and MP tables")]
    Tables(#[source] vm_memory::GuestMemoryError),
    #[error("creating the serial console's interrupt eventfd")]
    EventFd(#[source] std::io::Error),
    #[error("starting a vCPU thread or the watchdog")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    Peer(#[from] peer::PeerError),
    #[error(transparent)]
    Disk(#[from] virtio_blk::DiskError),
    #[error(
        "--disk needs the kernel's virtio-mmio, virtio-blk and ext4 drivers: as modules in {0} (`isolab kernel fetch` keeps them beside the kernels it stores) or built in, with the kernel's `config` beside it saying so (as `isolab kernel build --minimal` keeps it)"
    )]
    DiskModules(PathBuf),
    #[error(
        "--disk boots through a busybox init, and {} is missing: install busybox-static (`isolab setup --for tests`)",
        initramfs::BUSYBOX
    )]
    NoBusybox,
}

/// How the guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The workload (init) exited with this status.
    Exited(u8),
    /// The workload was killed by this signal.
    Signaled(i32),
    /// The guest kernel panicked for another reason; the panic line.
    Panicked(String),
    /// The guest reset itself without a panic (e.g. `reboot`).
    Reset,
    /// Triple fault: the CPU shut down.
    TripleFault,
    /// KVM could not run the guest (KVM_EXIT_INTERNAL_ERROR or a failed entry).
    KvmFailed(String),
    /// `--timeout` passed; whether the guest had printed `ISOLAB-READY`.
    TimedOut { after: Duration, ready: bool },
    /// The monitor received this signal and stopped the VM.
    Stopped(i32),
}

/// What a run measured; all times are from the monitor's start.
#[derive(Debug, Clone)]
pub struct Run {
    pub outcome: Outcome,
    /// The first `KVM_RUN` of vCPU 0: the guest's first instruction.
    pub first_instruction: Option<Duration>,
    pub first_console_line: Option<Duration>,
    pub ready: Option<Duration>,
    pub total: Duration,
    /// The monitor process's PSS minus the guest RAM it backs.
    pub vmm_pss: Option<u64>,
    /// The monitor's anonymous memory minus the guest RAM: heap, stacks, device state —
    /// what each further VM costs, where the PSS also counts the isolab executable's
    /// pages, which concurrent monitors share (measured in the sandbox: 3.6 of 3.9 MiB).
    pub vmm_anon: Option<u64>,
    pub guest_ram_touched: Option<u64>,
    /// Port I/O exits by port, all vCPUs together.
    pub ports: BTreeMap<u16, PortCount>,
    /// The last console lines, for messages.
    pub console_tail: String,
    /// The workload's figures line, when [`Config::hold_figures`] held it back.
    pub figures: Option<String>,
    /// Requests the `--disk` device served.
    pub disk_requests: Option<u64>,
    /// Where vCPU 0 was when sampled, with [`Config::profile`].
    pub profile: Option<profile::Profile>,
    pub explanation: Explanation,
}

/// Boots the kernel with the workload as init and runs it to its end.
pub fn run(config: &Config) -> Result<Run, Error> {
    let mut trace = Trace::new();
    let Inputs {
        mut kernel,
        format,
        initrd: initrd_path,
        disk,
    } = check_inputs(config, &mut trace)?;
    let initrd_err = |source| Error::Initrd {
        path: initrd_path.clone(),
        source,
    };
    let mut initrd = File::open(&initrd_path).map_err(initrd_err)?;
    let initrd_size = initrd.metadata().map_err(initrd_err)?.len();

    let cpuid = trace.step("KVM_GET_SUPPORTED_CPUID", vm::supported_cpuid)?;
    let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(Error::EventFd)?;
    let disk_irq = EventFd::new(EFD_NONBLOCK).map_err(Error::EventFd)?;
    let mut vm = Vm::new_with(config.mem_size as usize, &mut trace, |fd, trace| {
        let ioctl = |ioctl| move |source| vm::Error::Vcpu { ioctl, source };
        trace
            .step("KVM_CREATE_IRQCHIP", || fd.create_irq_chip())
            .map_err(ioctl("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        trace
            .step("KVM_CREATE_PIT2", || fd.create_pit2(pit))
            .map_err(ioctl("KVM_CREATE_PIT2"))?;
        trace
            .step("KVM_IRQFD (serial, GSI 4)", || {
                fd.register_irqfd(&serial_irq, SERIAL_IRQ)
            })
            .map_err(ioctl("KVM_IRQFD"))?;
        if config.disk.is_some() {
            trace
                .step("KVM_IRQFD (disk, GSI 5)", || {
                    fd.register_irqfd(&disk_irq, virtio_blk::IRQ)
                })
                .map_err(ioctl("KVM_IRQFD"))?;
        }
        Ok(())
    })?;
    let block = disk.map(|image| virtio_blk::Block::new(image, vm.memory().clone(), disk_irq));

    let loaded = trace.step("load kernel", || {
        boot::load_kernel(
            vm.memory(),
            &mut kernel,
            format,
            initrd_size,
            config.mem_size,
        )
    })?;
    let initrd_addr = boot::initrd_address(&loaded.header, config.mem_size, initrd_size);
    trace
        .step("load initrd", || {
            vm.memory().read_exact_volatile_from(
                GuestAddress(initrd_addr),
                &mut initrd,
                initrd_size as usize,
            )
        })
        .map_err(|e| initrd_err(std::io::Error::other(e)))?;
    // `nomodule` would keep the disk boot's init from loading the virtio modules.
    let base = match config.disk {
        Some(_) => BASE_CMDLINE.replace(" nomodule=1", ""),
        None => BASE_CMDLINE.to_owned(),
    };
    let line = boot::cmdline(
        &base,
        config.cmdline.as_deref(),
        &config.args,
        boot::cmdline_capacity(&loaded.header),
    )?;
    let line_len = line.as_cstring().map(|c| c.as_bytes().len()).unwrap_or(0);
    let params = boot::boot_params(
        loaded.header,
        line_len,
        Some((initrd_addr, initrd_size)),
        config.mem_size,
    );
    trace.step("zero page, e820, cmdline, GDT, page tables", || {
        boot::write_boot_data(vm.memory(), &params, &line)
    })?;
    trace
        .step("ACPI and MP tables", || {
            let disk_aml = match block {
                Some(_) => virtio_blk::dsdt_device(),
                None => Vec::new(),
            };
            vm.memory().write_slice(
                &acpi::build(config.vcpus, &disk_aml),
                GuestAddress(acpi::BASE),
            )?;
            vm.memory().write_slice(
                &mptable::build(boot::EBDA, config.vcpus),
                GuestAddress(boot::EBDA),
            )
        })
        .map_err(Error::Tables)?;

    let tsc_deadline = vm.vm_fd().check_extension(Cap::TscDeadlineTimer);
    let cpuid_for = |index| cpuid::for_vcpu(&cpuid, index, config.vcpus, tsc_deadline);
    trace.step("vCPU 0: CPUID, MSRs, FPU, LAPIC, long mode", || {
        set_up_vcpu(vm.vcpu(), &cpuid_for(0))?;
        // From KVM, not `Vm::sregs`: before the first KVM_RUN the copy in kvm_run is
        // zeros, and writing it back would clear APIC_BASE, which disables the local
        // APIC (and KVM then hides it from CPUID): the guest would boot in PIC mode on
        // one CPU.
        let sregs = vm.vcpu().get_sregs().map_err(vcpu_err("KVM_GET_SREGS"))?;
        let sregs = boot::boot_sregs(sregs);
        vm.set_sregs(&sregs)?;
        vm.set_regs(&boot::boot_regs(loaded.entry))
    })?;
    let mut aps = Vec::new();
    for index in 1..config.vcpus {
        let vcpu = trace
            .step("KVM_CREATE_VCPU (AP)", || {
                vm.vm_fd().create_vcpu(u64::from(index))
            })
            .map_err(vm::Error::CreateVcpu)?;
        set_up_vcpu(&vcpu, &cpuid_for(index))?;
        aps.push(vcpu);
    }

    let mut devices = Devices::new(serial_irq, console_for(config, trace_origin(&trace)));
    devices.block = block;
    let devices = Arc::new(Mutex::new(devices));
    let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let watchdog = Watchdog::start(Some(timeout), vm.kicker()).map_err(Error::Thread)?;
    let mut rips = Vec::new();
    let sampler = config
        .profile
        .then(|| profile::Sampler::start(vm.kicker()))
        .transpose()
        .map_err(Error::Thread)?;
    let ap_exits = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let first_instruction = trace.since_start();
    trace.mark("first KVM_RUN (vCPU 0)");
    let (outcome, ap_count) = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        let bsp = vm.kicker();
        for vcpu in aps {
            let (devices, stop, exits) = (&devices, &stop, &ap_exits);
            let (tx, rx) = std::sync::mpsc::channel();
            let handle = std::thread::Builder::new()
                .name("isolab-vcpu".into())
                .spawn_scoped(scope, move || {
                    block_stop_signals();
                    // The receiver lives until this thread is known; a failed send only
                    // means the main thread is gone already.
                    let _ = tx.send(Kicker::current());
                    run_ap(vcpu, devices, stop, exits, bsp)
                })
                .map_err(Error::Thread)?;
            let kicker = rx
                .recv()
                .map_err(|e| Error::Thread(std::io::Error::other(e)))?;
            handles.push((handle, kicker));
        }
        if let Some(shed) = config.shed {
            std::thread::Builder::new()
                .name("isolab-shed".into())
                .spawn_scoped(scope, shed)
                .map_err(Error::Thread)?;
        }
        let outcome = run_bsp(
            &mut vm,
            &devices,
            &watchdog,
            timeout,
            sampler.is_some().then_some(&mut rips),
        );
        drop(sampler);
        stop.store(true, Ordering::SeqCst);
        // An AP blocked in KVM_RUN (its guest CPU idling in HLT) leaves only on a signal;
        // a kick that lands just before its next KVM_RUN is lost, so repeat until it left.
        for (handle, kicker) in &handles {
            while !handle.is_finished() {
                kicker.kick();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let count = handles.len();
        for (handle, _) in handles {
            // A panicking AP thread has nothing left to report; the BSP's outcome stands.
            let _ = handle.join();
        }
        Ok::<_, Error>((outcome, count))
    })?;
    let outcome = outcome?;
    drop(watchdog);
    let total = trace.since_start();
    let ram = vm.ram_use().ok();
    let without_guest = |field| {
        ram.and_then(|ram| smaps_rollup(field).map(|bytes| bytes.saturating_sub(ram.total)))
    };
    let (vmm_pss, vmm_anon) = (without_guest("Pss:"), without_guest("Anonymous:"));
    let mut exits = vm.exit_stats().clone();
    if ap_count > 0 {
        exits.by_reason.insert(
            "ap_exits",
            (ap_exits.load(Ordering::SeqCst), Duration::ZERO),
        );
    }
    let devices = devices.lock().unwrap_or_else(PoisonError::into_inner);
    let console = devices.console();
    trace.mark("end of run");
    let explanation = Explanation {
        steps: trace.steps().to_vec(),
        exits,
        cpuid_leaves_set: cpuid.as_slice().len(),
        guest_ram_touched: ram,
        registers_via_kvm_run: vm.syncs_registers(),
        ..Explanation::default()
    };
    Ok(Run {
        outcome,
        first_instruction: Some(first_instruction),
        first_console_line: console.first_line,
        ready: console.ready,
        total,
        vmm_pss,
        vmm_anon,
        guest_ram_touched: ram.map(|r| r.total),
        console_tail: console.tail(TAIL),
        figures: console.figures.clone(),
        disk_requests: devices.block.as_ref().map(|b| b.requests),
        ports: devices.ports.clone(),
        profile: config
            .profile
            .then(|| profile::profile(&rips, &profile::kernel_functions(&config.kernel))),
        explanation,
    })
}

/// What [`check_inputs`] opened and built.
struct Inputs {
    kernel: File,
    format: boot::Format,
    initrd: PathBuf,
    disk: Option<virtio_blk::Image>,
}

/// What every run checks before it boots, whatever the VMM: the kernel file (opened, and
/// its format), the disk image, the memory and vCPU counts, then the host (standard KVM),
/// then the initramfs (built, or the given initrd). Inputs come first, so a wrong file is
/// named before anything about the host.
fn check_inputs(config: &Config, trace: &mut Trace) -> Result<Inputs, Error> {
    let mut kernel = File::open(&config.kernel).map_err(|source| Error::Kernel {
        path: config.kernel.clone(),
        source,
    })?;
    let format = boot::probe(&mut kernel, &config.kernel.display().to_string())?;
    let disk = config
        .disk
        .as_deref()
        .map(virtio_blk::Image::open)
        .transpose()?;
    if !(MIN_RAM..=boot::MAX_RAM).contains(&config.mem_size) {
        return Err(Error::MemSize(config.mem_size >> 20));
    }
    if !(1..=mptable::MAX_VCPUS).contains(&config.vcpus) {
        return Err(Error::Vcpus(config.vcpus));
    }
    match KvmKind::detect() {
        KvmKind::Pvm => return Err(Error::Pvm),
        KvmKind::Absent => return Err(Error::NoKvm),
        KvmKind::Vmx { .. } | KvmKind::Svm { .. } => {}
    }
    let initrd = match (&config.initrd, &config.disk) {
        (Some(path), _) => path.clone(),
        (None, None) => trace.step("initramfs (cached by content)", || {
            initramfs::ensure(&config.cache, &config.workload)
        })?,
        (None, Some(_)) => {
            let beside = config.kernel.parent().unwrap_or(std::path::Path::new("."));
            let modules = beside.join("modules");
            // `isolab kernel fetch` keeps the cloud kernel's modules beside it; `isolab
            // kernel build --minimal` keeps the configuration its drivers are built into.
            let modules = if modules.is_dir() {
                Some(modules)
            } else if initramfs::disk_drivers_built_in(&beside.join("config")) {
                None
            } else {
                return Err(Error::DiskModules(modules));
            };
            if !std::path::Path::new(initramfs::BUSYBOX).is_file() {
                return Err(Error::NoBusybox);
            }
            trace.step("disk boot initramfs (cached by content)", || {
                initramfs::ensure_disk_boot(&config.cache, modules.as_deref())
            })?
        }
    };
    Ok(Inputs {
        kernel,
        format,
        initrd,
        disk,
    })
}

/// The guest's console as `config` asks for it, its times counted from `started`.
fn console_for(config: &Config, started: Instant) -> Console {
    let console = Console::new(started, config.echo);
    if config.hold_figures {
        console.hold_figures()
    } else {
        console
    }
}

/// The instant the trace's times count from.
fn trace_origin(trace: &Trace) -> Instant {
    Instant::now() - trace.since_start()
}

/// CPUID, MSRs, FPU and the local APIC's LINT pins, for any vCPU.
fn set_up_vcpu(vcpu: &VcpuFd, cpuid: &kvm_bindings::CpuId) -> Result<(), vm::Error> {
    const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
    const MISC_ENABLE_FAST_STRING: u64 = 1;
    vcpu.set_cpuid2(cpuid).map_err(vcpu_err("KVM_SET_CPUID2"))?;
    let msrs = Msrs::from_entries(&[kvm_msr_entry {
        index: MSR_IA32_MISC_ENABLE,
        data: MISC_ENABLE_FAST_STRING,
        ..Default::default()
    }])
    .expect("one entry is within the limit");
    vcpu.set_msrs(&msrs).map_err(vcpu_err("KVM_SET_MSRS"))?;
    vcpu.set_fpu(&boot::boot_fpu())
        .map_err(vcpu_err("KVM_SET_FPU"))?;
    set_lint(vcpu)
}

/// LINT0 as ExtINT (the PIC's virtual wire) and LINT1 as NMI, as a BIOS leaves them.
fn set_lint(vcpu: &VcpuFd) -> Result<(), vm::Error> {
    const LVT_LINT0: usize = 0x350;
    const LVT_LINT1: usize = 0x360;
    const DELIVERY_MODE: u32 = 0x700;
    const EXTINT: u32 = 0x700;
    const NMI: u32 = 0x400;
    let mut lapic = vcpu.get_lapic().map_err(vcpu_err("KVM_GET_LAPIC"))?;
    for (offset, mode) in [(LVT_LINT0, EXTINT), (LVT_LINT1, NMI)] {
        let bytes: [u8; 4] = lapic.regs[offset..offset + 4]
            .iter()
            .map(|b| *b as u8)
            .collect::<Vec<u8>>()
            .try_into()
            .expect("4 bytes");
        let value = (u32::from_le_bytes(bytes) & !DELIVERY_MODE) | mode;
        for (dst, src) in lapic.regs[offset..offset + 4]
            .iter_mut()
            .zip(value.to_le_bytes())
        {
            *dst = src as libc::c_char;
        }
    }
    vcpu.set_lapic(&lapic).map_err(vcpu_err("KVM_SET_LAPIC"))
}

/// vCPU 0's loop: serves port I/O until the guest ends, the watchdog fires, or a stop
/// signal arrives; with `rips`, records where the guest was at each kick.
fn run_bsp(
    vm: &mut Vm,
    devices: &Mutex<Devices>,
    watchdog: &Watchdog,
    timeout: Duration,
    mut rips: Option<&mut Vec<u64>>,
) -> Result<Outcome, Error> {
    loop {
        let exit = vm.run()?;
        match exit {
            Exit::IoOut(port) => {
                let data = vm.io_data().to_vec();
                let mut dev = devices.lock().unwrap_or_else(PoisonError::into_inner);
                dev.port_write(port, &data);
                if over(&dev) {
                    return Ok(ended(dev.console()));
                }
            }
            Exit::IoIn(port) => {
                let mut dev = devices.lock().unwrap_or_else(PoisonError::into_inner);
                dev.port_read(port, vm.io_data());
            }
            Exit::Shutdown => {
                let dev = devices.lock().unwrap_or_else(PoisonError::into_inner);
                // A panic followed by a failed reset ends in a triple fault too.
                return Ok(match dev.console().panic {
                    Some(_) => ended(dev.console()),
                    None => Outcome::TripleFault,
                });
            }
            Exit::InternalError { suberror } => {
                return Ok(Outcome::KvmFailed(format!(
                    "KVM internal error, suberror {suberror}"
                )));
            }
            Exit::FailEntry(reason) => {
                return Ok(Outcome::KvmFailed(format!(
                    "VM entry failed, hardware reason {reason:#x}"
                )));
            }
            Exit::Interrupted => {
                if let (Some(rips), Ok(regs)) = (rips.as_deref_mut(), vm.regs()) {
                    rips.push(regs.rip);
                }
                let dev = devices.lock().unwrap_or_else(PoisonError::into_inner);
                if over(&dev) {
                    return Ok(ended(dev.console()));
                }
                drop(dev);
                if let Some(signal) = vm::stop_requested() {
                    return Ok(Outcome::Stopped(signal));
                }
                if watchdog.expired() {
                    let ready = devices
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .console()
                        .ready
                        .is_some();
                    return Ok(Outcome::TimedOut {
                        after: timeout,
                        ready,
                    });
                }
            }
            Exit::Mmio(addr) => {
                let (write, data) = vm.mmio_data();
                devices
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .mmio(addr, write, data);
            }
            // With the in-kernel irqchip HLT stays in KVM.
            Exit::Hlt | Exit::Other(_) => {}
        }
    }
}

/// An AP's loop: the same port bus; it stops when told (and kicked) by vCPU 0's thread.
fn run_ap(
    mut vcpu: VcpuFd,
    devices: &Mutex<Devices>,
    stop: &AtomicBool,
    exits: &AtomicU64,
    bsp: Kicker,
) {
    while !stop.load(Ordering::SeqCst) {
        let exit = vcpu.run();
        exits.fetch_add(1, Ordering::Relaxed);
        let mut dev = devices.lock().unwrap_or_else(PoisonError::into_inner);
        match exit {
            Ok(VcpuExit::IoOut(port, data)) => dev.port_write(port, data),
            Ok(VcpuExit::IoIn(port, data)) => dev.port_read(port, data),
            Ok(VcpuExit::MmioWrite(addr, data)) => dev.mmio(addr, true, &mut data.to_vec()),
            Ok(VcpuExit::MmioRead(addr, data)) => dev.mmio(addr, false, data),
            // The guest's end (reset, shutdown) is vCPU 0's to see: Linux stops the APs
            // before it resets, so an AP only waits to be told.
            _ => {}
        }
        if over(&dev) {
            // The panicking CPU resets; vCPU 0 is then idle inside KVM and must be kicked
            // out to see it, until it has (it sets `stop`).
            drop(dev);
            while !stop.load(Ordering::SeqCst) {
                bsp.kick();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// SIGTERM and SIGINT must reach vCPU 0's thread, which turns them into a clean stop.
fn block_stop_signals() {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; the mask
    // change only affects this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Whether the run is over: the guest reset, or its init exited. The latter is final at
/// the panic line: what the kernel prints after it (a stack dump of the exit path, ~40
/// lines, every byte an exit) tells nothing about the workload, so the VM ends there
/// rather than at the reset that follows. Other panics run on to the reset, so the
/// console tail keeps their stack dump.
fn over(devices: &Devices) -> bool {
    devices.reset() || init_exited(devices.console())
}

/// Whether the console shows init's exit (its panic line).
fn init_exited(console: &Console) -> bool {
    console
        .panic
        .as_deref()
        .is_some_and(|line| init_exit_status(line).is_some())
}

/// The outcome a reset (or a post-panic shutdown) means, read from the console.
fn ended(console: &Console) -> Outcome {
    match console.panic.as_deref() {
        None => Outcome::Reset,
        Some(line) => match init_exit_status(line) {
            Some(status) if status & 0x7f == 0 => Outcome::Exited(((status >> 8) & 0xff) as u8),
            Some(status) => Outcome::Signaled((status & 0x7f) as i32),
            None => Outcome::Panicked(line.to_owned()),
        },
    }
}

/// The wait status in "Kernel panic - not syncing: Attempted to kill init!
/// exitcode=0x00000100": init exited (status in bits 8..16) or was killed (signal in 0..7).
fn init_exit_status(panic: &str) -> Option<u32> {
    let rest = panic.split("Attempted to kill init!").nth(1)?;
    let hex = rest.split("exitcode=0x").nth(1)?;
    let digits: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
    u32::from_str_radix(&digits, 16).ok()
}

/// One total of this process's /proc/self/smaps_rollup, e.g. `Pss:`, in bytes.
fn smaps_rollup(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    smaps_field(&text, field)
}

/// The first `field` line of smaps-formatted `text` (`Pss:   12 kB`), in bytes.
fn smaps_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_exit_statuses_come_from_the_panic_line() {
        let line = |code: &str| {
            format!(
                "[    1.2] Kernel panic - not syncing: Attempted to kill init! exitcode=0x{code}"
            )
        };
        assert_eq!(init_exit_status(&line("00000000")), Some(0));
        assert_eq!(init_exit_status(&line("00000200")), Some(0x200));
        assert_eq!(
            init_exit_status("Kernel panic - not syncing: VFS: Unable to mount root fs"),
            None
        );
        let mut console = Console::new(Instant::now(), false);
        console.panic = Some(line("00000300"));
        assert_eq!(ended(&console), Outcome::Exited(3));
        console.panic = Some(line("00000009"));
        assert_eq!(ended(&console), Outcome::Signaled(9));
        console.panic = Some("Kernel panic - not syncing: No working init found.".into());
        assert!(matches!(ended(&console), Outcome::Panicked(_)));
        console.panic = None;
        assert_eq!(ended(&console), Outcome::Reset);
    }

    #[test]
    fn an_init_exit_ends_the_run_at_its_panic_line_other_panics_at_the_reset() {
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut dev = Devices::new(irq, Console::new(Instant::now(), false));
        let print = |dev: &mut Devices, text: &str| {
            text.bytes()
                .for_each(|b| dev.port_write(devices::SERIAL_BASE, &[b]));
        };
        print(
            &mut dev,
            "Kernel panic - not syncing: VFS: Unable to mount root fs\n",
        );
        assert!(
            !over(&dev),
            "the stack dump and the reset are still to come"
        );
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut dev = Devices::new(irq, Console::new(Instant::now(), false));
        print(
            &mut dev,
            "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n",
        );
        assert!(over(&dev));
        assert_eq!(ended(dev.console()), Outcome::Exited(1));
    }

    #[test]
    fn smaps_rollup_totals_are_read_in_bytes() {
        let pss = smaps_rollup("Pss:").expect("Linux has smaps_rollup");
        let anon = smaps_rollup("Anonymous:").expect("and an anonymous total");
        assert!(pss > 0 && anon > 0 && pss % 1024 == 0);
        assert_eq!(smaps_rollup("NoSuchField:"), None);
    }

    #[test]
    fn the_base_cmdline_fits_and_ends_runs_cleanly() {
        assert!(BASE_CMDLINE.contains("panic=-1") && BASE_CMDLINE.contains("reboot=k"));
        assert!(BASE_CMDLINE.len() < 2048);
        assert!(
            !BASE_CMDLINE.contains("  "),
            "no double spaces: {BASE_CMDLINE}"
        );
    }
}
