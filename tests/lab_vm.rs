//! `isolab lab` for the virtual-machine labs, end to end on this host: 11 (KVM from scratch),
//! 12 (inside a micro-VM) and 13 (measuring the claims). For each, the untouched starter
//! fails with hints, the reference solution passes, and reset leaves no process behind; a
//! program that prints the right exits without running a VM fails lab 11. Labs this host
//! cannot run (no /dev/kvm, no cargo) are skipped, saying why.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::path::Path;
use std::process::{Child, Stdio};

use lab::{LabDir, failing_steps};

const SUITE: &str = "lab-vm";

/// Resets the lab; nothing may stay running from the labs' directory.
fn reset_leaves_nothing(lab: &LabDir) {
    lab.reset();
    assert_eq!(
        lab::processes_below(&lab.dir),
        Vec::<String>::new(),
        "lab {} left processes",
        lab.id
    );
}

fn full_cycle(id: u32) {
    let Some(lab) = LabDir::new(SUITE, id) else {
        return;
    };
    lab.start_and_solve();
    reset_leaves_nothing(&lab);
}

/// The student's program, built by the check, started by hand and left waiting for Ctrl-D.
fn leave_the_program_running(dir: &Path) -> Child {
    let binary = dir.join("11/vmm/target/debug/vmm");
    // Its input stays open as long as the Child holds it, so it waits there.
    std::process::Command::new(&binary)
        .args(["1", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()))
}

#[test]
fn lab11_kvm_from_scratch() {
    let Some(lab) = LabDir::new(SUITE, 11) else {
        return;
    };
    lab.start_and_solve();
    let left = leave_the_program_running(&lab.dir);
    reset_leaves_nothing(&lab);
    lab::killed(left, "lab 11", |_| false);
}

/// Printing the exits the guest would cause, with no VM behind them, does not pass.
#[test]
fn lab11_a_program_without_a_vm_fails() {
    let Some(lab) = LabDir::new(SUITE, 11) else {
        return;
    };
    lab.start();
    let fake = r#"use std::io::Read;
fn main() {
    let n: Vec<u16> = std::env::args()
        .skip(1)
        .map(|a| u16::from_str_radix(a.trim_start_matches("0x"), 16).unwrap())
        .collect();
    let _kvm = kvm_ioctls::Kvm::new().unwrap();
    println!("exit=io_out port=0x3f8 size=2 value={:#x}", n[0].wrapping_add(n[1]));
    println!("exit=hlt rip=0x1007");
    println!("done=1");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
"#;
    std::fs::write(lab.ws().join("vmm/src/main.rs"), fake).unwrap();
    let (code, report) = lab.check();
    assert_eq!(code, 1, "{report:#}");
    let failing: Vec<&str> = failing_steps(&report)
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(failing.contains(&"a VM with a vCPU"), "{report:#}");
    // The program itself built and printed what a real one would.
    assert_eq!(report["steps"][0]["passed"], true, "{report:#}");
    assert_eq!(report["steps"][2]["passed"], true, "{report:#}");
    reset_leaves_nothing(&lab);
}

#[test]
fn lab12_inside_a_micro_vm() {
    full_cycle(12);
}

#[test]
fn lab13_measuring_the_claims() {
    full_cycle(13);
}
