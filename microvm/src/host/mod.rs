//! What kind of KVM this host offers, read from the kernel's own module and CPU state, and
//! confirmed by opening /dev/kvm.

mod cpuinfo;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

pub use cpuinfo::VirtFlags;

const SYS_MODULE: &str = "/sys/module";
const DEV_KVM: &str = "/dev/kvm";
const CPUINFO: &str = "/proc/cpuinfo";

/// KVM vendor modules in the order detection trusts them: a PVM host may also have VMX in
/// its CPU flags, but /dev/kvm then belongs to kvm_pvm.
const VENDOR_MODULES: [&str; 3] = ["kvm_pvm", "kvm_intel", "kvm_amd"];

#[derive(Debug, thiserror::Error)]
pub enum KvmHostError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The flavour of /dev/kvm, which decides which guests can boot here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KvmKind {
    /// No usable /dev/kvm.
    Absent,
    /// Hardware virtualisation (Intel VMX or AMD SVM); `tdp` tells whether EPT/NPT is on.
    Vmx {
        tdp: bool,
    },
    Svm {
        tdp: bool,
    },
    /// Pagetable-based Virtual Machine (kvm_pvm): guest ring 3 runs natively, guest ring 0 is
    /// emulated, so standard Linux guests do not boot; the mini kernel does.
    Pvm,
}

impl KvmKind {
    /// Reads which KVM vendor module is loaded; `/sys/module` is the kernel's own answer.
    pub fn detect() -> Self {
        Self::detect_in(Path::new(SYS_MODULE), Path::new(DEV_KVM))
    }

    fn detect_in(sys_module: &Path, dev_kvm: &Path) -> Self {
        if !dev_kvm.exists() {
            return KvmKind::Absent;
        }
        match vendor_module(sys_module) {
            Some("kvm_pvm") => KvmKind::Pvm,
            Some("kvm_intel") => KvmKind::Vmx {
                tdp: param_enabled(&sys_module.join("kvm_intel/parameters/ept")),
            },
            Some("kvm_amd") => KvmKind::Svm {
                tdp: param_enabled(&sys_module.join("kvm_amd/parameters/npt")),
            },
            _ => KvmKind::Absent,
        }
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

    /// Whether EPT/NPT is on; none where the question does not apply (PVM, no KVM).
    pub fn tdp(self) -> Option<bool> {
        match self {
            KvmKind::Vmx { tdp } | KvmKind::Svm { tdp } => Some(tdp),
            KvmKind::Pvm | KvmKind::Absent => None,
        }
    }

    /// Whether standard Linux guests can boot: they need hardware virtualisation.
    pub fn boots_linux(self) -> bool {
        matches!(self, KvmKind::Vmx { .. } | KvmKind::Svm { .. })
    }
}

/// Everything `isolab doctor` reports about KVM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvmSupport {
    /// /dev/kvm exists.
    pub present: bool,
    #[serde(serialize_with = "kind_name")]
    pub kind: KvmKind,
    /// The loaded vendor module (kvm_pvm, kvm_intel or kvm_amd).
    pub module: Option<&'static str>,
    pub tdp: Option<bool>,
    /// The vendor module's `nested` parameter: whether guests may run KVM themselves.
    pub nested: Option<bool>,
    /// /dev/kvm opened and answered KVM_GET_API_VERSION.
    pub open: bool,
    pub open_error: Option<String>,
    pub api_version: Option<i32>,
    pub cpu_flags: VirtFlags,
    /// What this kind of KVM means for isolab's guests.
    pub implication: String,
    /// The command that gets (better) KVM here, when something is missing.
    pub fix: Option<String>,
}

fn kind_name<S: Serializer>(kind: &KvmKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

/// What opening /dev/kvm gave: the API version, or the errno and message.
type OpenOutcome = Result<i32, (i32, String)>;

impl KvmSupport {
    pub fn detect() -> Result<Self, KvmHostError> {
        let cpuinfo = fs::read_to_string(CPUINFO).map_err(|source| KvmHostError::Read {
            path: CPUINFO.into(),
            source,
        })?;
        let dev_kvm = Path::new(DEV_KVM);
        let open = dev_kvm.exists().then(|| {
            kvm_ioctls::Kvm::new()
                .map(|kvm| kvm.get_api_version())
                .map_err(|e| (e.errno(), format!("opening {DEV_KVM}: {e}")))
        });
        Ok(Self::assess(
            Path::new(SYS_MODULE),
            dev_kvm,
            VirtFlags::parse(&cpuinfo),
            open,
        ))
    }

    fn assess(
        sys_module: &Path,
        dev_kvm: &Path,
        cpu_flags: VirtFlags,
        open: Option<OpenOutcome>,
    ) -> Self {
        let kind = KvmKind::detect_in(sys_module, dev_kvm);
        let module = vendor_module(sys_module);
        let nested = match kind {
            KvmKind::Vmx { .. } | KvmKind::Svm { .. } => {
                module.map(|m| param_enabled(&sys_module.join(m).join("parameters/nested")))
            }
            KvmKind::Pvm | KvmKind::Absent => None,
        };
        let present = open.is_some();
        let (api_version, open_error, open_errno) = match open {
            Some(Ok(version)) => (Some(version), None, None),
            Some(Err((errno, message))) => (None, Some(message), Some(errno)),
            None => (None, None, None),
        };
        KvmSupport {
            present,
            kind,
            module,
            tdp: kind.tdp(),
            nested,
            open: api_version.is_some(),
            open_error,
            api_version,
            cpu_flags,
            implication: implication(kind, present).to_owned(),
            fix: fix(kind, present, module, cpu_flags, open_errno),
        }
    }
}

fn implication(kind: KvmKind, present: bool) -> &'static str {
    match kind {
        KvmKind::Pvm => {
            "guest ring 0 is emulated; standard Linux guests cannot boot here; use `--guest mini`"
        }
        KvmKind::Vmx { tdp: true } | KvmKind::Svm { tdp: true } => {
            "hardware virtualisation with two-dimensional paging: Linux guests and `--guest mini` both run"
        }
        KvmKind::Vmx { tdp: false } | KvmKind::Svm { tdp: false } => {
            "hardware virtualisation without EPT/NPT: KVM falls back to shadow paging, so guests boot but page-table-heavy work is slower"
        }
        KvmKind::Absent if present => {
            "/dev/kvm exists but none of kvm_intel, kvm_amd, kvm_pvm is loaded: its flavour is unknown, so isolab starts no VMs on it"
        }
        KvmKind::Absent => "no /dev/kvm: only container targets run here; VM targets need KVM",
    }
}

fn fix(
    kind: KvmKind,
    present: bool,
    module: Option<&str>,
    flags: VirtFlags,
    open_errno: Option<i32>,
) -> Option<String> {
    if !present {
        return Some(
            match module {
                // The module is in but udev did not make the node (common in minimal containers).
                Some(_) => "mknod /dev/kvm c 10 232 && chmod 0660 /dev/kvm",
                None if flags.vmx => "modprobe kvm_intel",
                None if flags.svm => "modprobe kvm_amd",
                None => {
                    "modprobe kvm_pvm (PVM-patched kernels only); otherwise enable VT-x/AMD-V in the firmware, or nested virtualisation in the hypervisor running this machine, then modprobe kvm_intel or kvm_amd"
                }
            }
            .to_owned(),
        );
    }
    if open_errno == Some(libc::EACCES) {
        return Some(
            "usermod -aG kvm \"$USER\" (then log in again), or run isolab as root".to_owned(),
        );
    }
    match kind {
        KvmKind::Vmx { tdp: false } => Some(
            "modprobe -r kvm_intel && modprobe kvm_intel ept=1 (needs a CPU with EPT)".to_owned(),
        ),
        KvmKind::Svm { tdp: false } => {
            Some("modprobe -r kvm_amd && modprobe kvm_amd npt=1 (needs a CPU with NPT)".to_owned())
        }
        _ => None,
    }
}

fn vendor_module(sys_module: &Path) -> Option<&'static str> {
    VENDOR_MODULES
        .into_iter()
        .find(|m| sys_module.join(m).exists())
}

/// Module parameters read `Y`/`N` or `1`/`0`.
fn param_enabled(path: &Path) -> bool {
    fs::read_to_string(path)
        .map(|v| matches!(v.trim(), "Y" | "y" | "1"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /sys/module with the given vendor module and parameters, and a fake /dev/kvm.
    struct FakeHost {
        dir: tempfile::TempDir,
    }

    impl FakeHost {
        fn new(module: Option<&str>, params: &[(&str, &str)], dev_kvm: bool) -> Self {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("sys_module/kvm/parameters")).unwrap();
            if let Some(module) = module {
                let params_dir = dir
                    .path()
                    .join("sys_module")
                    .join(module)
                    .join("parameters");
                fs::create_dir_all(&params_dir).unwrap();
                for (name, value) in params {
                    fs::write(params_dir.join(name), format!("{value}\n")).unwrap();
                }
            }
            if dev_kvm {
                fs::write(dir.path().join("kvm"), "").unwrap();
            }
            FakeHost { dir }
        }

        fn kind(&self) -> KvmKind {
            KvmKind::detect_in(
                &self.dir.path().join("sys_module"),
                &self.dir.path().join("kvm"),
            )
        }

        fn assess(&self, flags: VirtFlags, open: Option<OpenOutcome>) -> KvmSupport {
            KvmSupport::assess(
                &self.dir.path().join("sys_module"),
                &self.dir.path().join("kvm"),
                flags,
                open,
            )
        }
    }

    #[test]
    fn detects_each_kind_from_sys_module() {
        assert_eq!(
            FakeHost::new(Some("kvm_pvm"), &[], true).kind(),
            KvmKind::Pvm
        );
        assert_eq!(
            FakeHost::new(Some("kvm_intel"), &[("ept", "Y")], true).kind(),
            KvmKind::Vmx { tdp: true }
        );
        assert_eq!(
            FakeHost::new(Some("kvm_intel"), &[("ept", "N")], true).kind(),
            KvmKind::Vmx { tdp: false }
        );
        assert_eq!(
            FakeHost::new(Some("kvm_amd"), &[("npt", "1")], true).kind(),
            KvmKind::Svm { tdp: true }
        );
        assert_eq!(
            FakeHost::new(Some("kvm_amd"), &[], false).kind(),
            KvmKind::Absent
        );
        assert_eq!(FakeHost::new(None, &[], true).kind(), KvmKind::Absent);
    }

    #[test]
    fn pvm_implies_the_mini_guest() {
        let host = FakeHost::new(Some("kvm_pvm"), &[], true);
        let flags = VirtFlags {
            hypervisor: true,
            ..VirtFlags::default()
        };
        let support = host.assess(flags, Some(Ok(12)));
        assert_eq!(
            (support.kind, support.module),
            (KvmKind::Pvm, Some("kvm_pvm"))
        );
        assert_eq!((support.tdp, support.nested), (None, None));
        assert_eq!((support.open, support.api_version), (true, Some(12)));
        assert!(support.implication.contains("--guest mini"));
        assert_eq!(support.fix, None);
    }

    #[test]
    fn vmx_reports_tdp_and_nested_and_fixes_missing_ept() {
        let host = FakeHost::new(Some("kvm_intel"), &[("ept", "N"), ("nested", "Y")], true);
        let support = host.assess(VirtFlags::default(), Some(Ok(12)));
        assert_eq!((support.tdp, support.nested), (Some(false), Some(true)));
        assert!(support.implication.contains("shadow paging"));
        assert!(support.fix.unwrap().contains("ept=1"));
    }

    #[test]
    fn absent_kvm_says_how_to_get_it() {
        let host = FakeHost::new(None, &[], false);
        let vmx = VirtFlags {
            vmx: true,
            ..VirtFlags::default()
        };
        let support = host.assess(vmx, None);
        assert!(!support.present && !support.open);
        assert_eq!(support.fix.as_deref(), Some("modprobe kvm_intel"));
        let bare = host.assess(VirtFlags::default(), None);
        assert!(bare.fix.unwrap().contains("modprobe kvm_pvm"));
        let loaded = FakeHost::new(Some("kvm_amd"), &[], false).assess(VirtFlags::default(), None);
        assert!(loaded.fix.unwrap().starts_with("mknod /dev/kvm"));
    }

    #[test]
    fn unopenable_kvm_points_at_permissions() {
        let host = FakeHost::new(Some("kvm_amd"), &[("npt", "1")], true);
        let support = host.assess(
            VirtFlags::default(),
            Some(Err((libc::EACCES, "denied".into()))),
        );
        assert!(!support.open);
        assert_eq!(support.open_error.as_deref(), Some("denied"));
        assert!(support.fix.unwrap().contains("usermod -aG kvm"));
    }

    #[test]
    fn serialises_kind_as_its_name() {
        let host = FakeHost::new(Some("kvm_pvm"), &[], true);
        let json = serde_json::to_value(host.assess(VirtFlags::default(), Some(Ok(12)))).unwrap();
        assert_eq!(json["kind"], "pvm");
        assert_eq!(json["api_version"], 12);
    }
}
