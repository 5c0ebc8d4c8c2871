//! v1 cpu controller: CFS bandwidth (quota per period) and shares.

use std::path::Path;

use super::super::{CPU_PERIOD_US, CgroupError, Resources, Stats, read_key_opt, write};
use crate::explain::Explain;

pub(super) const NAME: &str = "cpu";
const QUOTA: &str = "cpu.cfs_quota_us";

pub(super) fn limited(resources: &Resources) -> bool {
    resources.cpu_quota_us.is_some() || resources.shares().is_some()
}

pub(super) fn check(root: &Path, resources: &Resources) -> Result<(), CgroupError> {
    if resources.cpu_quota_us.is_some() && !root.join(QUOTA).exists() {
        return Err(CgroupError::Unsupported {
            what: "CPU time",
            missing: format!("{} is missing", root.join(QUOTA).display()),
            how: "use a kernel built with CONFIG_CFS_BANDWIDTH, or leave out --cpus",
        });
    }
    Ok(())
}

pub(super) fn apply(
    dir: &Path,
    resources: &Resources,
    explain: &Explain,
) -> Result<(), CgroupError> {
    if let Some(quota) = resources.cpu_quota_us {
        write(
            explain,
            &dir.join("cpu.cfs_period_us"),
            &CPU_PERIOD_US.to_string(),
        )?;
        write(explain, &dir.join(QUOTA), &quota.to_string())?;
    }
    if let Some(shares) = resources.shares() {
        write(explain, &dir.join("cpu.shares"), &shares.to_string())?;
    }
    Ok(())
}

/// v1's cpu.stat counts throttling only; usage is cpuacct's.
pub(super) fn stats(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    let file = dir.join("cpu.stat");
    stats.cpu_throttled_periods = read_key_opt(&file, "nr_throttled")?;
    stats.cpu_throttled_ns = read_key_opt(&file, "throttled_time")?;
    Ok(())
}
