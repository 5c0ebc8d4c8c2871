//! The versioned result schema every isolab measurement is written in.

use serde::{Deserialize, Serialize};

/// Where a result was measured. Results whose fingerprints differ in anything but `git_revision`
/// and `date` come from different hosts and are never merged into one series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFingerprint {
    /// Kernel release, as `uname -r` prints it.
    pub kernel: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// Logical CPUs online.
    pub cores: u32,
    /// MemTotal in KiB.
    pub mem_total_kib: u64,
    /// `v1`, `hybrid` or `v2`.
    pub cgroup_mode: String,
    /// `vmx`, `svm`, `pvm` or `absent`.
    pub kvm_kind: String,
    /// isolab's git revision (`git describe --always --dirty`), or `unknown` outside a checkout.
    pub git_revision: String,
    /// When the measurement started, RFC 3339 in UTC.
    pub date: String,
}

impl HostFingerprint {
    /// True when two fingerprints describe the same host, whatever the revision and date.
    pub fn same_host(&self, other: &HostFingerprint) -> bool {
        (
            &self.kernel,
            &self.cpu_model,
            self.cores,
            self.mem_total_kib,
            &self.cgroup_mode,
            &self.kvm_kind,
        ) == (
            &other.kernel,
            &other.cpu_model,
            other.cores,
            other.mem_total_kib,
            &other.cgroup_mode,
            &other.kvm_kind,
        )
    }
}
