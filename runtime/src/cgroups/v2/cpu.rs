//! v2 cpu controller: cpu.max (quota and period in one file) and cpu.weight.

use std::path::Path;

use super::super::{CPU_PERIOD_US, CgroupError, Resources, Stats, read_key_opt, write};
use crate::explain::Explain;

pub(super) const NAME: &str = "cpu";

pub(super) fn limited(resources: &Resources) -> bool {
    resources.cpu_quota_us.is_some() || resources.weight().is_some()
}

pub(super) fn apply(
    dir: &Path,
    resources: &Resources,
    explain: &Explain,
) -> Result<(), CgroupError> {
    if let Some(quota) = resources.cpu_quota_us {
        write(
            explain,
            &dir.join("cpu.max"),
            &format!("{quota} {CPU_PERIOD_US}"),
        )?;
    }
    if let Some(weight) = resources.weight() {
        write(explain, &dir.join("cpu.weight"), &weight.to_string())?;
    }
    Ok(())
}

/// cpu.stat counts in µs; [`Stats`] in ns.
pub(super) fn stats(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    let file = dir.join("cpu.stat");
    let ns = |us: Option<u64>| us.map(|us| us.saturating_mul(1000));
    stats.cpu_usage_ns = ns(read_key_opt(&file, "usage_usec")?);
    stats.cpu_throttled_periods = read_key_opt(&file, "nr_throttled")?;
    stats.cpu_throttled_ns = ns(read_key_opt(&file, "throttled_usec")?);
    Ok(())
}
