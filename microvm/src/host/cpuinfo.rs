//! The CPU flags in /proc/cpuinfo that decide which KVM this host can have.

use serde::Serialize;

/// Virtualisation-related flags of the first CPU (all CPUs of one host share them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct VirtFlags {
    /// Intel VT-x is exposed to this kernel.
    pub vmx: bool,
    /// AMD-V is exposed to this kernel.
    pub svm: bool,
    /// This kernel itself runs in a virtual machine.
    pub hypervisor: bool,
}

impl VirtFlags {
    /// Reads the `flags` line of the first processor; an empty or odd file means no flags.
    pub fn parse(cpuinfo: &str) -> Self {
        let flags = cpuinfo
            .lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == "flags").then_some(value)
            })
            .unwrap_or("");
        let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
        VirtFlags {
            vmx: has("vmx"),
            svm: has("svm"),
            hypervisor: has("hypervisor"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD_GUEST: &str = "processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme de pse tsc msr hypervisor lahf_lm svm_lock avx2
bugs\t\t: sysret_ss_attrs
";

    #[test]
    fn matches_whole_flags_only() {
        // `svm_lock` is not `svm`.
        let flags = VirtFlags::parse(AMD_GUEST);
        assert_eq!(
            flags,
            VirtFlags {
                vmx: false,
                svm: false,
                hypervisor: true
            }
        );
    }

    #[test]
    fn reads_the_first_flags_line() {
        // Newer kernels add a `vmx flags` line, which is not the `flags` line.
        let intel = "processor\t: 0\nflags\t\t: fpu vmx ept\nvmx flags\t: ept vpid\n\nprocessor\t: 1\nflags\t\t: fpu\n";
        assert_eq!(
            VirtFlags::parse(intel),
            VirtFlags {
                vmx: true,
                svm: false,
                hypervisor: false
            }
        );
        assert_eq!(VirtFlags::parse(""), VirtFlags::default());
    }
}
