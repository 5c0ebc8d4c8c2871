//! pids controller: pids.max and pids.current have the same names and meaning in v1 and v2,
//! so both managers share this file.

use std::path::Path;

use super::{CgroupError, Resources, Stats, read_value, write};
use crate::explain::Explain;

pub(crate) const NAME: &str = "pids";

pub(crate) fn limited(resources: &Resources) -> bool {
    resources.pids_limit.is_some()
}

pub(crate) fn apply(
    dir: &Path,
    resources: &Resources,
    explain: &Explain,
) -> Result<(), CgroupError> {
    match resources.pids_limit {
        Some(max) => write(explain, &dir.join("pids.max"), &max.to_string()),
        None => Ok(()),
    }
}

pub(crate) fn stats(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    stats.pids_current = read_value(&dir.join("pids.current"))?;
    stats.pids_limit = read_value(&dir.join("pids.max"))?;
    Ok(())
}
