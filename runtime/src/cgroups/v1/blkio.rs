//! v1 blkio controller: proportional I/O weight. The file exists only under an I/O scheduler
//! that implements weights: `blkio.weight` (CFQ, before 5.0) or `blkio.bfq.weight` (BFQ).

use std::path::{Path, PathBuf};

use super::super::{CgroupError, Resources, write};
use crate::explain::Explain;

pub(super) const NAME: &str = "blkio";
const WEIGHT_FILES: [&str; 2] = ["blkio.weight", "blkio.bfq.weight"];

pub(super) fn limited(resources: &Resources) -> bool {
    resources.blkio_weight.is_some()
}

fn weight_file(dir: &Path) -> Option<PathBuf> {
    WEIGHT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
}

pub(super) fn check(root: &Path, resources: &Resources) -> Result<(), CgroupError> {
    if resources.blkio_weight.is_some() && weight_file(root).is_none() {
        return Err(CgroupError::Unsupported {
            what: "block I/O weight",
            missing: format!(
                "neither blkio.weight nor blkio.bfq.weight is in {}",
                root.display()
            ),
            how: "select the bfq I/O scheduler (echo bfq > /sys/block/<dev>/queue/scheduler), or leave out --blkio-weight",
        });
    }
    Ok(())
}

pub(super) fn apply(
    dir: &Path,
    resources: &Resources,
    explain: &Explain,
) -> Result<(), CgroupError> {
    let Some(weight) = resources.blkio_weight else {
        return Ok(());
    };
    // check() found the file at the hierarchy root, so a new cgroup has it too.
    let file = weight_file(dir).unwrap_or_else(|| dir.join(WEIGHT_FILES[1]));
    write(explain, &file, &weight.to_string())
}
