//! v2 io controller: proportional weight. `io.weight` (iocost, 1..=10000) when present,
//! otherwise BFQ's `io.bfq.weight` (1..=1000).

use std::path::Path;

use super::super::{CgroupError, Resources, write};
use crate::explain::Explain;

pub(super) const NAME: &str = "io";

pub(super) fn limited(resources: &Resources) -> bool {
    resources.blkio_weight.is_some()
}

pub(super) fn apply(
    dir: &Path,
    resources: &Resources,
    explain: &Explain,
) -> Result<(), CgroupError> {
    let Some(weight) = resources.blkio_weight else {
        return Ok(());
    };
    let iocost = dir.join("io.weight");
    let bfq = dir.join("io.bfq.weight");
    if iocost.exists() {
        // Docker's 10..=1000 scale mapped onto iocost's 1..=10000, as runc does.
        let scaled = 1 + (u64::from(weight).clamp(10, 1000) - 10) * 9_999 / 990;
        write(explain, &iocost, &format!("default {scaled}"))
    } else if bfq.exists() {
        write(explain, &bfq, &weight.to_string())
    } else {
        Err(CgroupError::Unsupported {
            what: "block I/O weight",
            missing: format!(
                "neither io.weight nor io.bfq.weight is in {}",
                dir.display()
            ),
            how: "select the bfq I/O scheduler (echo bfq > /sys/block/<dev>/queue/scheduler), or leave out --blkio-weight",
        })
    }
}
