//! Boots real mini VMs on this host's /dev/kvm through the library API.

use std::path::PathBuf;
use std::time::Duration;

use isolab_microvm::mini::{self, Config, Outcome};

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
    }
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn twenty_sequential_vms_leave_no_fds_or_threads_behind() {
    // Warm up once so lazily created process-wide state is not counted as a leak.
    assert_eq!(
        mini::run(&config(&["--help"])).unwrap().outcome,
        Outcome::Exited(0)
    );
    let (fds, threads) = (count("/proc/self/fd"), count("/proc/self/task"));
    for _ in 0..20 {
        let run = mini::run(&config(&["syscall", "--n", "10"])).unwrap();
        assert_eq!(run.outcome, Outcome::Exited(0));
    }
    assert_eq!(count("/proc/self/fd"), fds, "file descriptors leaked");
    assert_eq!(count("/proc/self/task"), threads, "threads leaked");
}

#[test]
fn the_timeout_stops_a_blocked_guest_and_joins_its_watchdog() {
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-elf");
    std::fs::write(&path, b"#!/bin/sh\necho hi\n").unwrap();
    let mut cfg = config(&["ready"]);
    cfg.workload = path;
    let err = mini::run(&cfg).unwrap_err();
    assert!(matches!(err, mini::Error::Load { .. }), "{err}");
}
