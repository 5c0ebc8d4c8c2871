//! `isolab vm run --guest mini`: every workload mode in a real VM on this host's /dev/kvm,
//! compared with the same binary run natively.

use std::path::PathBuf;
use std::process::Command as StdCommand;

use assert_cmd::Command;

fn workload() -> PathBuf {
    let path = assert_cmd::cargo::cargo_bin("isolab-workload");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p isolab-workload`",
        path.display()
    );
    path
}

fn vm(args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("isolab").unwrap();
    cmd.args(["vm", "run", "--guest", "mini", "--timeout", "60"]);
    cmd.arg("--workload-bin").arg(workload());
    cmd.args(args);
    cmd
}

fn last_json(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().expect("some output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let out = vm(args).output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    last_json(&out.stdout)
}

#[test]
fn ready_prints_the_marker() {
    let out = vm(&["--workload", "ready"]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("ISOLAB-READY\n"), "{stdout}");
    assert_eq!(last_json(stdout.as_bytes())["mode"], "ready");
}

#[test]
fn cpu_digest_is_identical_to_native() {
    let guest = run_json(&["--workload", "cpu", "--iters", "2000"]);
    let native = StdCommand::new(workload())
        .args(["cpu", "--iters", "2000"])
        .output()
        .unwrap();
    assert_eq!(guest["digest"], last_json(&native.stdout)["digest"]);
}

#[test]
fn mem_syscall_and_io_report_json() {
    assert_eq!(
        run_json(&["--workload", "mem", "--mib", "8"])["pages"],
        2048
    );
    assert_eq!(run_json(&["--workload", "syscall", "--n", "100"])["n"], 100);
    let io = run_json(&["--workload", "io", "--mib", "2"]);
    assert_eq!(io["mode"], "io");
    assert!(io["write_ns"].as_u64().unwrap() > 0);
}

#[test]
fn probe_sees_the_guest_view() {
    let probe = run_json(&["--workload", "probe"]);
    assert_eq!(probe["pid"], 1);
    assert_eq!(probe["hostname"], "isolab-mini");
}

#[test]
fn exit_status_passes_through() {
    // A usage error in the workload exits 2, from inside the VM.
    vm(&["--workload", "no-such-mode"]).assert().code(2);
}

#[test]
fn explain_lists_enosys_calls_and_phases() {
    let out = vm(&["--explain", "--workload", "ready"]).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "KVM_CREATE_VM",
        "first VM exit",
        "ISOLAB-READY written",
        "answered ENOSYS",
        "rseq",
        "hlt",
    ] {
        assert!(stderr.contains(needle), "{needle} missing in:\n{stderr}");
    }
}

#[test]
fn garbage_workload_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, [0x5au8; 4096]).unwrap();
    let out = Command::cargo_bin("isolab")
        .unwrap()
        .args(["vm", "run", "--workload-bin"])
        .arg(&garbage)
        .args(["--workload", "ready"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("not an ELF executable") && stderr.lines().count() == 1,
        "{stderr}"
    );
    Command::cargo_bin("isolab")
        .unwrap()
        .args([
            "vm",
            "run",
            "--workload-bin",
            "/nonexistent/isolab-workload",
            "--workload",
            "ready",
        ])
        .assert()
        .code(127);
}

#[test]
fn timeout_on_idle_ends_with_124() {
    let started = std::time::Instant::now();
    let mut cmd = Command::cargo_bin("isolab").unwrap();
    cmd.args(["vm", "run", "--timeout", "0.5", "--workload-bin"])
        .arg(workload())
        .args(["--workload", "idle"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(124));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ISOLAB-READY"));
    assert!(started.elapsed().as_secs() < 10);
}
