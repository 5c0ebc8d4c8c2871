//! Collects the host fingerprint stamped on every result.

use std::fs;
use std::process::Command;
use std::time::SystemTime;

use isolab_microvm::host::KvmKind;
use isolab_reports::schema::HostFingerprint;
use isolab_runtime::host::CgroupMode;

/// Reads the fingerprint of this host now. Fields the host cannot tell are `unknown`.
pub fn collect() -> HostFingerprint {
    HostFingerprint {
        kernel: kernel_release(),
        cpu_model: cpu_model(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        mem_total_kib: mem_total_kib(),
        cgroup_mode: CgroupMode::detect()
            .map(|m| m.name().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned()),
        kvm_kind: KvmKind::detect().name().to_owned(),
        git_revision: git_revision(),
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    }
}

pub fn kernel_release() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(unknown)
}

pub fn mem_total_kib() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The revision of the checkout isolab was built from. Asked at run time so that a result
/// names the tree that produced it even when the binary was built earlier.
fn git_revision() -> String {
    let checkout = env!("CARGO_MANIFEST_DIR");
    Command::new("git")
        .args(["-C", checkout, "describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(unknown)
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| unknown())
}

fn unknown() -> String {
    "unknown".to_owned()
}
