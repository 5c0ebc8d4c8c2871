//! Linux guests under `isolab vm run --kernel`: on this (PVM) host the monitor refuses a
//! standard kernel before booting; inside the sandbox (standard KVM with SVM) Debian's
//! cloud kernel boots with `isolab-workload` as init.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use assert_cmd::Command;
use isolab_bench::sandbox::{GuestFile, RunSpec, Sandbox};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::prepare().expect("preparing the sandbox"))
}

fn bin_dir() -> PathBuf {
    assert_cmd::cargo::cargo_bin("isolab")
        .parent()
        .expect("a directory")
        .to_owned()
}

const GUEST_KERNEL: &str = "/root/vmlinuz";

fn in_sandbox(args: &[&str]) -> isolab_bench::sandbox::SandboxOutput {
    let mut argv = vec![
        "isolab",
        "vm",
        "run",
        "--kernel",
        GUEST_KERNEL,
        "--timeout",
        "60",
    ];
    argv.extend_from_slice(args);
    let mut spec = RunSpec::new(argv)
        .isolab_binaries(&bin_dir())
        .timeout(Duration::from_secs(120));
    spec.files.push(GuestFile {
        host: sandbox().kernel().vmlinuz.clone(),
        guest: GUEST_KERNEL.to_owned(),
        strip_debug: false,
    });
    sandbox().run(&spec).expect("the sandbox runs")
}

#[test]
fn pvm_hosts_refuse_a_standard_kernel_with_one_line() {
    if !std::fs::read_to_string("/proc/modules").is_ok_and(|m| m.contains("kvm_pvm")) {
        return;
    }
    let kernel = sandbox().kernel().vmlinuz.clone();
    let out = Command::cargo_bin("isolab")
        .unwrap()
        .args(["vm", "run", "--workload", "ready", "--kernel"])
        .arg(kernel)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("PVM") && stderr.contains("--guest mini"),
        "{stderr}"
    );
}

#[test]
fn missing_and_garbage_kernels_are_named() {
    let missing = Command::cargo_bin("isolab")
        .unwrap()
        .args([
            "vm",
            "run",
            "--kernel",
            "/no/such/vmlinuz",
            "--workload",
            "ready",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(127));
    let garbage = Command::cargo_bin("isolab")
        .unwrap()
        .args(["vm", "run", "--kernel", "Cargo.toml", "--workload", "ready"])
        .output()
        .unwrap();
    assert_eq!(garbage.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("not a Linux kernel"));
}

#[test]
fn the_cloud_kernel_boots_the_workload_in_the_sandbox() {
    let out = in_sandbox(&["--workload", "ready"]);
    let stdout = out.stdout_text();
    assert_eq!(out.status, 0, "{stdout}\n{}", out.stderr_text());
    assert!(stdout.contains("ISOLAB-READY"), "{stdout}");
    assert!(stdout.contains(r#"{"mode":"ready"}"#), "{stdout}");
    let stderr = out.stderr_text();
    let report: serde_json::Value =
        serde_json::from_str(stderr.lines().last().unwrap_or_default()).expect("the VM report");
    assert!(report["vm"]["ready_ms"].as_f64().is_some(), "{report}");
}
