//! v1 memory controller: limit, memory+swap limit, OOM-kill count.

use std::path::Path;

use super::super::{
    CgroupError, MemorySwap, Resources, Stats, read_key, read_key_opt, read_value, write,
};
use crate::explain::Explain;

pub(super) const NAME: &str = "memory";
const MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";

pub(super) fn limited(resources: &Resources) -> bool {
    resources.memory.is_some() || resources.memory_swap.is_some()
}

/// memsw files only exist when the kernel accounts swap per cgroup.
pub(super) fn check(root: &Path, resources: &Resources) -> Result<(), CgroupError> {
    if resources.memory_swap.is_some() && !root.join(MEMSW_LIMIT).exists() {
        return Err(CgroupError::Unsupported {
            what: "memory+swap",
            missing: format!(
                "{} is missing (no swap accounting)",
                root.join(MEMSW_LIMIT).display()
            ),
            how: "boot the kernel with swapaccount=1 (CONFIG_MEMCG_SWAP), or leave out --memory-swap",
        });
    }
    Ok(())
}

pub(super) fn apply(
    dir: &Path,
    resources: &Resources,
    explain: &Explain,
) -> Result<(), CgroupError> {
    // The memory limit goes first: the kernel refuses a memsw limit below it.
    if let Some(limit) = resources.memory {
        write(
            explain,
            &dir.join("memory.limit_in_bytes"),
            &limit.to_string(),
        )?;
    }
    match resources.memory_swap {
        Some(MemorySwap::Total(total)) => {
            write(explain, &dir.join(MEMSW_LIMIT), &total.to_string())
        }
        Some(MemorySwap::Unlimited) => write(explain, &dir.join(MEMSW_LIMIT), "-1"),
        None => Ok(()),
    }
}

/// `oom_kill` in memory.oom_control (kernel 4.13+).
pub(super) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    read_key(&dir.join("memory.oom_control"), "oom_kill")
}

pub(super) fn stats(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    stats.memory_current_bytes = read_value(&dir.join("memory.usage_in_bytes"))?;
    stats.memory_peak_bytes = read_value(&dir.join("memory.max_usage_in_bytes"))?;
    stats.memory_limit_bytes = read_value(&dir.join("memory.limit_in_bytes"))?;
    stats.oom_kills = read_key_opt(&dir.join("memory.oom_control"), "oom_kill")?;
    Ok(())
}
