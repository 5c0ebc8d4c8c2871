//! v1 devices controller: which device nodes the container may open. Everything is denied,
//! then runc's default list is allowed again: the nodes the container's /dev has.

use std::path::Path;

use super::super::{CgroupError, Resources, write};
use crate::explain::Explain;

pub(super) const NAME: &str = "devices";

/// runc's default allowlist (libcontainer/specconv AllowedDevices). mknod of any node is
/// allowed (`m`), since a node alone opens nothing; read and write only for the nodes
/// rootfs.rs binds into /dev (null, zero, full, random, urandom, tty), the console, ptmx
/// and the pseudo-terminals of devpts (the --tty slave among them).
const ALLOW: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// A privileged container keeps the parent's list, which allows every device.
pub(super) fn apply(
    dir: &Path,
    resources: &Resources,
    explain: &Explain,
) -> Result<(), CgroupError> {
    if resources.all_devices {
        return Ok(());
    }
    write(explain, &dir.join("devices.deny"), "a")?;
    let allow = dir.join("devices.allow");
    ALLOW
        .iter()
        .try_for_each(|rule| write(explain, &allow, rule))
}
