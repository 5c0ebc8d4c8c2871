//! What kind of KVM this host offers, read from the kernel's own module and CPU state.

use std::fs;
use std::path::Path;

use serde::Serialize;

/// The flavour of /dev/kvm, which decides which guests can boot here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KvmKind {
    /// No usable /dev/kvm.
    Absent,
    /// Hardware virtualisation (Intel VMX or AMD SVM); `tdp` tells whether EPT/NPT is on.
    Vmx { tdp: bool },
    Svm { tdp: bool },
    /// Pagetable-based Virtual Machine (kvm_pvm): guest ring 3 runs natively, guest ring 0 is
    /// emulated, so standard Linux guests do not boot; the mini kernel does.
    Pvm,
}

impl KvmKind {
    /// Reads which KVM vendor module is loaded; `/sys/module` is the kernel's own answer.
    pub fn detect() -> Self {
        Self::detect_in(Path::new("/sys/module"), Path::new("/dev/kvm"))
    }

    fn detect_in(sys_module: &Path, dev_kvm: &Path) -> Self {
        if !dev_kvm.exists() {
            return KvmKind::Absent;
        }
        if sys_module.join("kvm_pvm").exists() {
            return KvmKind::Pvm;
        }
        if sys_module.join("kvm_intel").exists() {
            return KvmKind::Vmx {
                tdp: param_enabled(&sys_module.join("kvm_intel/parameters/ept")),
            };
        }
        if sys_module.join("kvm_amd").exists() {
            return KvmKind::Svm {
                tdp: param_enabled(&sys_module.join("kvm_amd/parameters/npt")),
            };
        }
        KvmKind::Absent
    }

    /// Short name used in host fingerprints and JSON: `pvm`, `vmx`, `svm` or `absent`.
    pub fn name(self) -> &'static str {
        match self {
            KvmKind::Absent => "absent",
            KvmKind::Vmx { .. } => "vmx",
            KvmKind::Svm { .. } => "svm",
            KvmKind::Pvm => "pvm",
        }
    }
}

/// Module parameters read `Y`/`N` or `1`/`0`.
fn param_enabled(path: &Path) -> bool {
    fs::read_to_string(path)
        .map(|v| matches!(v.trim(), "Y" | "y" | "1"))
        .unwrap_or(false)
}
