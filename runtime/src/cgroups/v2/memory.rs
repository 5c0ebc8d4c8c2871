//! v2 memory controller: memory.max, memory.swap.max, and memory.events for OOM kills.

use std::path::Path;

use super::super::{
    CgroupError, MemorySwap, Resources, Stats, read_key, read_key_opt, read_value, write,
};
use crate::explain::Explain;

pub(super) const NAME: &str = "memory";
const SWAP_MAX: &str = "memory.swap.max";

pub(super) fn limited(resources: &Resources) -> bool {
    resources.memory.is_some() || resources.memory_swap.is_some()
}

pub(super) fn apply(
    dir: &Path,
    resources: &Resources,
    explain: &Explain,
) -> Result<(), CgroupError> {
    if let Some(limit) = resources.memory {
        write(explain, &dir.join("memory.max"), &limit.to_string())?;
    }
    let Some(swap) = resources.memory_swap else {
        return Ok(());
    };
    let file = dir.join(SWAP_MAX);
    // Present in every non-root cgroup when the kernel accounts swap.
    if !file.exists() {
        return Err(CgroupError::Unsupported {
            what: "memory+swap",
            missing: format!("{} is missing (no swap accounting)", file.display()),
            how: "use a kernel with CONFIG_MEMCG_SWAP and without swapaccount=0, or leave out --memory-swap",
        });
    }
    // Docker's --memory-swap is memory plus swap; v2 limits swap alone.
    let value = match (swap, resources.memory) {
        (MemorySwap::Total(total), Some(memory)) => total.saturating_sub(memory).to_string(),
        _ => "max".to_string(),
    };
    write(explain, &file, &value)
}

pub(super) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    read_key(&dir.join("memory.events"), "oom_kill")
}

pub(super) fn stats(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    stats.memory_current_bytes = read_value(&dir.join("memory.current"))?;
    // memory.peak exists from Linux 5.19.
    stats.memory_peak_bytes = read_value(&dir.join("memory.peak"))?;
    stats.memory_limit_bytes = read_value(&dir.join("memory.max"))?;
    stats.oom_kills = read_key_opt(&dir.join("memory.events"), "oom_kill")?;
    Ok(())
}
