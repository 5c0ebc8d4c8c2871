//! The host id range a user-namespaced container's ids map onto.
//!
//! Container root becomes the first id of the range /etc/subuid and /etc/subgid give to
//! `root` (the user isolab runs as); the convention shadow-utils, Docker's userns-remap and
//! Podman follow. Without an entry, 100000-165535, the range `useradd` hands out first.
//! Every container shares the range, as with Docker's userns-remap: container root is not
//! host root, but two containers are not isolated from each other by ids.
//!
//! The rootfs is used as it is, not chowned or id-mapped: files owned by host root appear
//! as `nobody` inside, so the rootfs must be world-readable (and executables world-
//! executable); to let container root own its files, chown the rootfs to the range first
//! (e.g. `chown -R 100000:100000 rootfs`).

use std::path::Path;

/// One line of a uid_map or gid_map: container ids `0..count` are host ids `start..start+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

impl IdRange {
    pub const DEFAULT: IdRange = IdRange {
        start: 100_000,
        count: 65_536,
    };

    /// The uid_map/gid_map line.
    pub fn map_line(&self) -> String {
        format!("0 {} {}\n", self.start, self.count)
    }

    /// The first range for `root` (by name or uid 0) in a subid file, if any has at least
    /// 65536 ids (enough for the ids a distribution's files use).
    pub fn for_root(subid_file: &Path) -> IdRange {
        std::fs::read_to_string(subid_file)
            .ok()
            .and_then(|text| Self::parse_root(&text))
            .unwrap_or(Self::DEFAULT)
    }

    fn parse_root(text: &str) -> Option<IdRange> {
        text.lines().find_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?;
            let start = fields.next()?.parse().ok()?;
            let count: u32 = fields.next()?.parse().ok()?;
            ((owner == "root" || owner == "0") && count >= 65_536)
                .then_some(IdRange { start, count })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_range_is_read_from_subid_lines() {
        let text = "alice:100000:65536\nroot:200000:65536\n";
        assert_eq!(
            IdRange::parse_root(text),
            Some(IdRange {
                start: 200_000,
                count: 65_536
            })
        );
        assert_eq!(IdRange::parse_root("root:300000:10\n"), None);
        assert_eq!(
            IdRange::for_root(Path::new("/nonexistent/subuid")),
            IdRange::DEFAULT
        );
        assert_eq!(IdRange::DEFAULT.map_line(), "0 100000 65536\n");
    }
}
