//! /proc/<pid>/mountinfo: what is mounted where, in the reader's mount namespace.

use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountInfoError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}: {text:?}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: &'static str,
        text: String,
    },
}

/// One line of mountinfo (proc(5)); only the fields isolab reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem: bind mounts of one filesystem share it.
    pub device: String,
    /// The directory of the filesystem that is mounted here (not `/` for bind mounts).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options, e.g. `rw,memory` for a v1 memory hierarchy.
    pub super_options: Vec<String>,
}

/// Reads and parses a mountinfo file, usually /proc/self/mountinfo.
pub fn read(path: &Path) -> Result<Vec<Mount>, MountInfoError> {
    let text = fs::read_to_string(path).map_err(|source| MountInfoError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            parse_line(line).map_err(|reason| MountInfoError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
                text: line.to_owned(),
            })
        })
        .collect()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: six
/// fixed fields, any number of optional ones, a lone `-`, then type, source and super options.
fn parse_line(line: &str) -> Result<Mount, &'static str> {
    let (head, tail) = line
        .split_once(" - ")
        .ok_or("no ` - ` separator before the filesystem type")?;
    let mut head = head.split(' ');
    let mut fixed = || head.next().ok_or("fewer than six fields before ` - `");
    let (_id, _parent, device, root, mount_point) =
        (fixed()?, fixed()?, fixed()?, fixed()?, fixed()?);
    let mut tail = tail.split(' ');
    let fs_type = tail.next().ok_or("no filesystem type")?;
    let source = tail.next().ok_or("no mount source")?;
    let super_options = tail.next().ok_or("no super options")?;
    Ok(Mount {
        device: device.to_owned(),
        root: PathBuf::from(unescape(root)),
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: unescape(fs_type),
        source: unescape(source),
        super_options: super_options.split(',').map(unescape).collect(),
    })
}

/// The kernel writes space, tab, newline and backslash in paths as three-digit octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_manual_example() {
        let m = parse_line(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(m.device, "98:0");
        assert_eq!(m.root, Path::new("/mnt1"));
        assert_eq!(m.mount_point, Path::new("/mnt2"));
        assert_eq!(m.fs_type, "ext3");
        assert_eq!(m.source, "/dev/root");
        assert_eq!(m.super_options, ["rw", "errors=continue"]);
    }

    #[test]
    fn parses_cgroup_lines_without_optional_fields() {
        let v1 =
            parse_line("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory")
                .unwrap();
        assert_eq!(v1.fs_type, "cgroup");
        assert_eq!(v1.super_options, ["rw", "memory"]);
        let v2 = parse_line(
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 master:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot",
        )
        .unwrap();
        assert_eq!(v2.fs_type, "cgroup2");
        assert_eq!(v2.mount_point, Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn unescapes_octal_in_paths() {
        let m = parse_line(r"40 23 8:1 / /mnt/with\040space\134x rw - ext4 /dev/sda1 rw").unwrap();
        assert_eq!(m.mount_point, Path::new(r"/mnt/with space\x"));
        assert_eq!(unescape(r"a\9b\04"), r"a\9b\04");
    }

    #[test]
    fn rejects_truncated_lines() {
        assert!(parse_line("36 35 98:0 /mnt1 /mnt2 rw").is_err());
        assert!(parse_line("36 35 - ext3 /dev/root rw").is_err());
        assert!(parse_line("36 35 98:0 / /x rw - ext3").is_err());
    }

    #[test]
    fn reads_this_process_mounts() {
        let mounts = read(Path::new("/proc/self/mountinfo")).unwrap();
        assert!(mounts.iter().any(|m| m.mount_point == Path::new("/")));
        let missing = read(Path::new("/nonexistent/mountinfo")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/mountinfo"));
    }
}
