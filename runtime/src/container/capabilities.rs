//! Docker's default capability set, and reducing a process to it.
//!
//! CAP_MKNOD is kept only where the devices cgroup limits what a node opens (v1's devices
//! controller, see cgroups/v1/devices.rs). cgroup v2 has no devices file: runc attaches a
//! BPF device program instead, which isolab does not load, so there a container with
//! CAP_MKNOD could create a node for a host block device (`mknod sda b 8 0`) and open it.
//! Without CAP_MKNOD it can only use the nodes bound into its /dev.

use caps::{CapSet, Capability, CapsHashSet};

use super::extra::CapabilitySets;
use crate::explain::Explain;

/// moby oci/caps/defaults.go; its mask is 0x00000000a80425fb.
pub(crate) const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Everything decided before the clone, so the child only makes the calls.
#[derive(Debug, Clone)]
pub(crate) struct CapabilityPlan {
    /// The permitted set.
    keep: CapsHashSet,
    effective: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
    /// Capabilities this kernel knows that are not kept.
    drop_from_bounding: Vec<Capability>,
}

impl CapabilityPlan {
    /// Docker's set; without CAP_MKNOD unless `devices_limited` (see the module comment).
    pub(crate) fn docker_default(devices_limited: bool) -> Self {
        let keep: CapsHashSet = DOCKER_DEFAULT
            .into_iter()
            .filter(|c| devices_limited || *c != Capability::CAP_MKNOD)
            .collect();
        let drop_from_bounding = caps::runtime::thread_all_supported()
            .into_iter()
            .filter(|c| !keep.contains(c))
            .collect();
        CapabilityPlan {
            effective: keep.clone(),
            inheritable: keep.clone(),
            ambient: CapsHashSet::new(),
            keep,
            drop_from_bounding,
        }
    }

    /// The sets an OCI config lists, by kernel name; an unknown name is refused.
    pub(crate) fn from_sets(sets: &CapabilitySets) -> Result<Self, String> {
        let parse = |names: &[String]| -> Result<CapsHashSet, String> {
            names
                .iter()
                .map(|n| {
                    n.parse::<Capability>()
                        .map_err(|_| format!("unknown capability {n:?}"))
                })
                .collect()
        };
        let bounding = parse(&sets.bounding)?;
        let (keep, inheritable) = (parse(&sets.permitted)?, parse(&sets.inheritable)?);
        // The kernel raises an ambient capability only if it is permitted and inheritable;
        // configs (runc's default one) list others, which runc skips with a warning.
        let ambient = parse(&sets.ambient)?
            .into_iter()
            .filter(|c| keep.contains(c) && inheritable.contains(c))
            .collect();
        Ok(CapabilityPlan {
            effective: parse(&sets.effective)?,
            keep,
            inheritable,
            ambient,
            drop_from_bounding: caps::runtime::thread_all_supported()
                .into_iter()
                .filter(|c| !bounding.contains(c))
                .collect(),
        })
    }

    pub(crate) fn mask(&self) -> u64 {
        self.keep.iter().fold(0, |m, c| m | c.bitmask())
    }

    /// Step one, while still root with every capability: shrink the bounding set (needs
    /// CAP_SETPCAP) and clear the ambient set.
    pub(crate) fn limit_bounding(&self, explain: &Explain) -> Result<(), caps::errors::CapsError> {
        explain.step(format_args!(
            "prctl(PR_CAPBSET_DROP) x{} (bounding set -> {:#018x}); prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
            self.drop_from_bounding.len(),
            self.mask()
        ));
        for cap in &self.drop_from_bounding {
            caps::drop(None, CapSet::Bounding, *cap)?;
        }
        caps::clear(None, CapSet::Ambient)
    }

    /// Step two, after the uid switch: effective, permitted and inheritable. A non-root user
    /// lost its permitted and effective sets with setresuid already; its inheritable set is
    /// cleared too (CVE-2022-24769: inheritable capabilities would flow into file-capability
    /// binaries), as Docker 23+ does.
    pub(crate) fn limit_sets(
        &self,
        root: bool,
        explain: &Explain,
    ) -> Result<(), caps::errors::CapsError> {
        if !root {
            explain.step(format_args!("capset(inheritable = 0)"));
            return caps::clear(None, CapSet::Inheritable);
        }
        explain.step(format_args!(
            "capset(effective = permitted = inheritable = {:#018x})",
            self.mask()
        ));
        // Effective first: the kernel requires effective to stay within permitted.
        caps::set(None, CapSet::Effective, &self.effective)?;
        caps::set(None, CapSet::Permitted, &self.keep)?;
        caps::set(None, CapSet::Inheritable, &self.inheritable)?;
        // Ambient capabilities must be permitted and inheritable already.
        self.ambient
            .iter()
            .try_for_each(|c| caps::raise(None, CapSet::Ambient, *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_has_dockers_mask() {
        let plan = CapabilityPlan::docker_default(true);
        assert_eq!(plan.mask(), 0x0000_0000_a804_25fb);
        assert!(plan.drop_from_bounding.contains(&Capability::CAP_SYS_ADMIN));
        assert!(!plan.drop_from_bounding.contains(&Capability::CAP_KILL));
    }

    #[test]
    fn without_a_devices_cgroup_mknod_is_dropped() {
        let plan = CapabilityPlan::docker_default(false);
        assert_eq!(
            plan.mask(),
            0x0000_0000_a804_25fb & !Capability::CAP_MKNOD.bitmask()
        );
        assert!(plan.drop_from_bounding.contains(&Capability::CAP_MKNOD));
    }
}
