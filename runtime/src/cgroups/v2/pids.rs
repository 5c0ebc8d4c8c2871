//! v2 pids controller: pids.max.

use std::path::Path;

use super::super::{CgroupError, Resources, Stats, read_value, write};
use crate::explain::Explain;

pub(super) const NAME: &str = "pids";

pub(super) fn limited(resources: &Resources) -> bool {
    resources.pids_limit.is_some()
}

pub(super) fn apply(
    dir: &Path,
    resources: &Resources,
    explain: &Explain,
) -> Result<(), CgroupError> {
    match resources.pids_limit {
        Some(max) => write(explain, &dir.join("pids.max"), &max.to_string()),
        None => Ok(()),
    }
}

pub(super) fn stats(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    stats.pids_current = read_value(&dir.join("pids.current"))?;
    stats.pids_limit = read_value(&dir.join("pids.max"))?;
    Ok(())
}
