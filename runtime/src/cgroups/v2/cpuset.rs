//! v2 cpuset controller: an empty cpuset.cpus means "the parent's", so only a requested set
//! is written (unlike v1, nothing needs copying down).

use std::path::Path;

use super::super::{CgroupError, Resources, write};
use crate::explain::Explain;

pub(super) const NAME: &str = "cpuset";

pub(super) fn limited(resources: &Resources) -> bool {
    resources.cpuset_cpus.is_some()
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
