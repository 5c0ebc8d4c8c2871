//! Every mode, run for real with small arguments.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

#[test]
fn ready_prints_the_marker_then_json() {
    let out = run(&["ready"]);
    let json = ok_json(&["ready"], &out, "ready");
    assert_keys(&json, &["mode"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "ISOLAB-READY\n{\"mode\":\"ready\"}\n");
    assert_eq!(text.lines().next(), Some("ISOLAB-READY"));
    assert!(out.stderr.is_empty());
}

fn expected_chain(iters: u64) -> String {
    let mut digest: [u8; 32] = std::array::from_fn(|i| i as u8);
    for _ in 0..iters {
        digest = Sha256::digest(digest).into();
    }
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn cpu_chain_is_deterministic_and_correct() {
    let args = ["cpu", "--iters", "1000"];
    let first = ok_json(&args, &run(&args), "cpu");
    assert_keys(&first, &["mode", "iters", "digest", "elapsed_ns"]);
    assert_eq!(u64_of(&first, "iters"), 1000);
    assert!(u64_of(&first, "elapsed_ns") > 0);
    let second = ok_json(&args, &run(&args), "cpu");
    assert_eq!(first["digest"], second["digest"]);
    assert_eq!(first["digest"], expected_chain(1000).as_str());

    let args = ["cpu", "--iters=3"];
    let small = ok_json(&args, &run(&args), "cpu");
    assert_eq!(small["digest"], expected_chain(3).as_str());
    assert_ne!(small["digest"], first["digest"]);
}

#[test]
fn mem_touches_every_page() {
    let args = ["mem", "--mib", "8"];
    let json = ok_json(&args, &run(&args), "mem");
    assert_keys(
        &json,
        &["mode", "mib", "pages", "elapsed_ns", "ns_per_page"],
    );
    assert_eq!(u64_of(&json, "mib"), 8);
    assert_eq!(u64_of(&json, "pages"), 8 * 256);
    let elapsed = u64_of(&json, "elapsed_ns");
    assert!(elapsed > 0);
    let per_page = f64_of(&json, "ns_per_page");
    assert!((per_page - elapsed as f64 / 2048.0).abs() < 0.01, "{json}");
}

#[test]
fn mem_larger_than_ram_fails_at_run_time() {
    let out = run(&["mem", "--mib", "1048576"]);
    // Unless this machine really has 1 TiB of RAM.
    if out.status.code() == Some(1) {
        let json = last_json(&out.stdout, "mem");
        assert!(json["error"].as_str().unwrap().contains("RAM"), "{json}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn syscall_counts_calls() {
    let args = ["syscall", "--n", "10000"];
    let json = ok_json(&args, &run(&args), "syscall");
    assert_keys(&json, &["mode", "n", "elapsed_ns", "ns_per_call"]);
    assert_eq!(u64_of(&json, "n"), 10_000);
    let elapsed = u64_of(&json, "elapsed_ns");
    assert!(elapsed > 0);
    let per_call = f64_of(&json, "ns_per_call");
    assert!(per_call > 0.0 && per_call < 1e6, "{json}");
}

#[test]
fn io_writes_verifies_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["io", "--mib", "4"];
    let json = ok_json(&args, &run_in(Some(dir.path()), &args), "io");
    for key in [
        "mode",
        "mib",
        "write_ns",
        "fsync_ns",
        "read_ns",
        "write_mb_s",
        "read_mb_s",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    assert_eq!(u64_of(&json, "mib"), 4);
    for key in ["write_ns", "fsync_ns", "read_ns"] {
        assert!(u64_of(&json, key) > 0, "{key} in {json}");
    }
    let write_ns = u64_of(&json, "write_ns") as f64;
    let expected_rate = 4.0 * 1_048_576.0 * 1e3 / write_ns; // MB = 10^6 bytes
    let rate = f64_of(&json, "write_mb_s");
    assert!(
        (rate - expected_rate).abs() <= 0.001 + expected_rate * 1e-9,
        "{json}"
    );
    assert!(f64_of(&json, "read_mb_s") > 0.0);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "io left files behind: {left:?}");
}

#[test]
fn io_failure_exits_1_with_a_message_and_error_json() {
    // No file can be created in /proc, not even by root.
    let out = run_in(Some(std::path::Path::new("/proc")), &["io", "--mib", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json = last_json(&out.stdout, "io");
    assert!(json["error"].is_string(), "{json}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot create"), "{stderr}");
}

#[test]
fn idle_waits_until_sigterm() {
    let mut child = Command::new(BIN)
        .arg("idle")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn idle");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "ISOLAB-READY\n");

    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "idle exited on its own"
    );

    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: `pid` is our own child, not yet reaped, so the id cannot have been reused.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let json = last_json(&rest, "idle");
    assert_keys(&json, &["mode"]);
}

#[test]
fn idle_stops_on_sigterm_sent_right_after_ready() {
    // The signal races with the workload entering its wait: it must not be lost.
    for _ in 0..20 {
        let mut child = Command::new(BIN)
            .arg("idle")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn idle");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert_eq!(first, "ISOLAB-READY\n");
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: `pid` is our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0));
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("idle did not stop after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn help_exits_0() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("usage:") && text.contains("probe"), "{text}");
    }
}
