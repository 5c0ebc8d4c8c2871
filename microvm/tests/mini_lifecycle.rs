//! Boots real mini VMs on this host's /dev/kvm through the library API.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use isolab_microvm::explain::Trace;
use isolab_microvm::mini::{self, Config, Outcome};
use isolab_microvm::vm::Vm;
use vm_memory::{Bytes, GuestAddress};

/// The leak test reads process-wide counts (fds, threads, maps): every test holds this
/// lock, so no VM of another test runs meanwhile.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The workload ELF (`cargo build -p isolab-workload` builds it).
fn workload() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/x86_64-unknown-linux-gnu/debug/isolab-workload");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p isolab-workload`",
        path.display()
    );
    path
}

fn config(args: &[&str]) -> Config {
    let mut argv = vec!["isolab-workload".to_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Config {
        workload: workload(),
        argv,
        mem_size: 64 << 20,
        timeout: Some(Duration::from_secs(20)),
        measure_memory: false,
        on_block: None,
    }
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// The guest RAM size the leak tests use: a size nothing else in the process maps, so a
/// leaked guest-RAM mapping is recognisable in /proc/self/maps.
const LEAK_TEST_RAM: u64 = 72 << 20;

fn guest_ram_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|line| {
            let range = line.split_whitespace().next().unwrap();
            let (start, end) = range.split_once('-').unwrap();
            let size =
                u64::from_str_radix(end, 16).unwrap() - u64::from_str_radix(start, 16).unwrap();
            size == LEAK_TEST_RAM
        })
        .count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// What a finished VM must not leave behind: descriptors (VM, vCPU, the mapped ELF),
/// threads (watchdogs, KVM's per-VM kernel workers), guest RAM mappings, memory.
#[derive(Debug)]
struct Footprint {
    fds: usize,
    threads: usize,
    rss_kib: u64,
}

impl Footprint {
    fn now() -> Self {
        Footprint {
            fds: count("/proc/self/fd"),
            threads: count("/proc/self/task"),
            rss_kib: rss_kib(),
        }
    }

    /// Threads may still be exiting for a moment after their join, KVM's kernel workers
    /// after the VM fd closed; memory may stay in the allocator's caches, but far below a
    /// single VM's image.
    fn assert_unchanged(&self, what: &str) {
        let before = self;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while count("/proc/self/task") > before.threads && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let after = Footprint::now();
        assert_eq!(after.fds, before.fds, "{what}: file descriptors leaked");
        assert_eq!(after.threads, before.threads, "{what}: threads leaked");
        assert_eq!(guest_ram_mappings(), 0, "{what}: guest RAM left mapped");
        assert!(
            after.rss_kib < before.rss_kib + 8 * 1024,
            "{what}: memory grew from {before:?} to {after:?}"
        );
    }
}

fn leak_test_config() -> Config {
    let mut cfg = config(&["ready"]);
    cfg.mem_size = LEAK_TEST_RAM;
    cfg
}

/// One test, not two: the checks read process-wide counts, which a VM of a test running
/// in parallel would disturb.
#[test]
fn two_hundred_sequential_and_fifty_concurrent_vms_leave_nothing_behind() {
    let _serial = serial();
    // Warm up once so lazily created process-wide state (the CPUID cache, the kick signal
    // handler) is not counted as a leak.
    assert_eq!(
        mini::run(&config(&["--help"])).unwrap().outcome,
        Outcome::Exited(0)
    );
    let before = Footprint::now();
    for _ in 0..200 {
        let run = mini::run(&leak_test_config()).unwrap();
        assert_eq!(run.outcome, Outcome::Exited(0));
    }
    before.assert_unchanged("200 sequential VMs");

    let concurrent: Vec<_> = (0..50)
        .map(|_| std::thread::spawn(|| mini::run(&leak_test_config()).unwrap().outcome))
        .collect();
    for vm in concurrent {
        assert_eq!(vm.join().unwrap(), Outcome::Exited(0));
    }
    before.assert_unchanged("50 concurrent VMs");
}

#[test]
fn the_timeout_stops_a_blocked_guest_and_joins_its_watchdog() {
    let _serial = serial();
    let mut cfg = config(&["idle"]);
    cfg.timeout = Some(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let run = mini::run(&cfg).unwrap();
    assert!(
        matches!(run.outcome, Outcome::TimedOut(_)),
        "{:?}",
        run.outcome
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn explanation_counts_syscalls_and_exits() {
    let _serial = serial();
    let run = mini::run(&config(&["syscall", "--n", "50"])).unwrap();
    assert_eq!(run.outcome, Outcome::Exited(0));
    let getppid = &run.explanation.syscalls["getppid"];
    assert!(getppid.count >= 50, "{getppid:?}");
    assert!(run.explanation.exits.by_reason["hlt"].0 >= 50);
    let steps: Vec<&str> = run
        .explanation
        .steps
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        steps.contains(&"KVM_CREATE_VM") && steps.contains(&"first VM exit"),
        "{steps:?}"
    );
}

#[test]
fn a_non_elf_file_is_refused_before_any_vm_exists() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-elf");
    std::fs::write(&path, b"#!/bin/sh\necho hi\n").unwrap();
    let mut cfg = config(&["ready"]);
    cfg.workload = path;
    let err = mini::run(&cfg).unwrap_err();
    assert!(matches!(err, mini::Error::Load { .. }), "{err}");
}

#[test]
fn file_backed_guest_ram_is_private_and_discards_to_zero() {
    let _serial = serial();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&[0xab; 8192]).unwrap();
    let mut vm = Vm::new(16 << 20, &mut Trace::new()).unwrap();
    let at = 4 << 20;
    vm.map_file(file.as_file(), 4096, at, 4096).unwrap();
    let read = |vm: &Vm, addr: u64| vm.memory().read_obj::<u8>(GuestAddress(addr)).unwrap();
    assert_eq!(read(&vm, at), 0xab, "the file's bytes show in guest RAM");
    assert_eq!(
        read(&vm, at + 4096),
        0,
        "only the mapped page is the file's"
    );
    vm.memory().write_obj(0x11u8, GuestAddress(at)).unwrap();
    assert_eq!(read(&vm, at), 0x11);
    assert_eq!(
        std::fs::read(file.path()).unwrap()[4096],
        0xab,
        "the file never changes"
    );
    vm.discard(at, 4096);
    assert_eq!(
        read(&vm, at),
        0,
        "a discarded file page reads as zero, not as the file"
    );
    assert!(
        vm.map_file(file.as_file(), 0, at + 1, 4096).is_err(),
        "unaligned"
    );
    assert!(
        vm.map_file(file.as_file(), 0, 16 << 20, 4096).is_err(),
        "outside RAM"
    );
}

/// A minimal static ET_EXEC ELF: one PT_LOAD of two pages at 0x400000 whose second page,
/// mapped from the file rather than copied, starts with `code` (the entry point).
fn tiny_elf(code: &[u8]) -> tempfile::NamedTempFile {
    const BASE: u64 = 0x40_0000;
    let mut elf = vec![0u8; 0x2000];
    let mut put = |at: usize, bytes: &[u8]| elf[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, b"\x7fELF\x02\x01\x01");
    put(16, &2u16.to_le_bytes()); // ET_EXEC
    put(18, &62u16.to_le_bytes()); // EM_X86_64
    put(20, &1u32.to_le_bytes());
    put(24, &(BASE + 0x1000).to_le_bytes()); // e_entry
    put(32, &64u64.to_le_bytes()); // e_phoff
    put(52, &64u16.to_le_bytes()); // e_ehsize
    put(54, &56u16.to_le_bytes()); // e_phentsize
    put(56, &1u16.to_le_bytes()); // e_phnum
    put(64, &1u32.to_le_bytes()); // PT_LOAD
    put(68, &5u32.to_le_bytes()); // R X
    put(80, &BASE.to_le_bytes()); // p_vaddr
    put(88, &BASE.to_le_bytes()); // p_paddr
    put(96, &0x2000u64.to_le_bytes()); // p_filesz
    put(104, &0x2000u64.to_le_bytes()); // p_memsz
    put(112, &0x1000u64.to_le_bytes()); // p_align
    put(0x1000, code);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&elf).unwrap();
    file
}

/// A program of a few bytes and the exception it must end in.
struct Crash {
    code: &'static [u8],
    vector: u8,
    signal: i32,
    address: Option<u64>,
    rip: u64,
}

impl Crash {
    fn new(code: &'static [u8], vector: u8, signal: i32, address: Option<u64>, rip: u64) -> Self {
        Crash {
            code,
            vector,
            signal,
            address,
            rip,
        }
    }
}

#[test]
fn crash_kinds_end_the_vm_as_linux_would_kill_the_process() {
    let _serial = serial();
    let entry = 0x40_1000;
    // RIP points at the faulting instruction, or past a trap (int3).
    let cases = [
        Crash::new(&[0x0f, 0x0b], 6, libc::SIGILL, None, entry), // ud2
        Crash::new(&[0xcc], 3, libc::SIGTRAP, None, entry + 1),  // int3
        Crash::new(&[0x31, 0xc9, 0xf7, 0xf1], 0, libc::SIGFPE, None, entry + 2), // div by 0
        Crash::new(&[0xf4], 13, libc::SIGSEGV, None, entry),     // hlt in ring 3
        Crash::new(
            &[0xc6, 0x04, 0x25, 0, 0, 0, 0, 0],
            14,
            libc::SIGSEGV,
            Some(0),
            entry,
        ), // *NULL = 0
    ];
    for Crash {
        code,
        vector,
        signal,
        address,
        rip: expected_rip,
    } in cases
    {
        let elf = tiny_elf(code);
        let mut cfg = config(&[]);
        cfg.workload = elf.path().to_owned();
        let outcome = mini::run(&cfg).unwrap().outcome;
        let Outcome::Crashed(crash) = outcome else {
            panic!("{code:x?}: {outcome:?}");
        };
        assert_eq!(crash.vector, vector, "{crash}");
        assert_eq!(crash.signal(), signal, "{crash}");
        assert_eq!(crash.address, address, "{crash}");
        assert_eq!(crash.rip, expected_rip, "{crash}");
    }
}
