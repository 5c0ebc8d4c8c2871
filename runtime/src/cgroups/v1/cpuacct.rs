//! v1 cpuacct controller: no limits, only the CPU time the container used. It is joined
//! so that `isolab stats` can report usage where cpuacct is not co-mounted with cpu.

use std::path::Path;

use super::super::{CgroupError, Resources, Stats, read_value};
use crate::explain::Explain;

pub(super) const NAME: &str = "cpuacct";

pub(super) fn apply(_: &Path, _: &Resources, _: &Explain) -> Result<(), CgroupError> {
    Ok(())
}

pub(super) fn stats(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    stats.cpu_usage_ns = read_value(&dir.join("cpuacct.usage"))?;
    Ok(())
}
