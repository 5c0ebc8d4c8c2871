//! v1 cpuset controller. A new v1 cpuset starts with no CPUs and no memory nodes, and a
//! process cannot join it until both are set, so each level copies them from its parent.

use std::path::Path;

use super::super::{CgroupError, Resources, read, write};
use crate::explain::Explain;

pub(super) const NAME: &str = "cpuset";

pub(super) fn limited(resources: &Resources) -> bool {
    resources.cpuset_cpus.is_some()
}

/// Copies the parent's CPUs and memory nodes into `dir` where `dir` has none yet.
pub(super) fn inherit(explain: &Explain, parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read(&dir.join(file))?.trim().is_empty() {
            let value = read(&parent.join(file))?;
            write(explain, &dir.join(file), value.trim())?;
        }
    }
    Ok(())
}

pub(super) fn apply(
    dir: &Path,
    resources: &Resources,
    explain: &Explain,
) -> Result<(), CgroupError> {
    match &resources.cpuset_cpus {
        Some(cpus) => write(explain, &dir.join("cpuset.cpus"), cpus),
        None => Ok(()),
    }
}
