//! Whether overlayfs, which container root filesystems are built from, mounts here.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::ptr;

use nix::errno::Errno;
use serde::Serialize;

use super::{Probe, child};

const PROC_FILESYSTEMS: &str = "/proc/filesystems";

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating scratch directory {path}: {source}")]
    Scratch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("overlay options cannot name {path}: it contains a comma, colon, backslash or NUL")]
    UnusablePath { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverlayfsSupport {
    /// Listed in /proc/filesystems; when not, the first mount may still load the module.
    pub registered: bool,
    /// A real lower/upper/work mount, made in a private mount namespace of a child process.
    pub mount: Probe,
    /// Where the scratch layers were made; overlayfs rejects some upper filesystems.
    pub scratch_parent: PathBuf,
}

impl OverlayfsSupport {
    /// Mounts an overlay over scratch directories under `scratch_parent` (the temp dir, so
    /// TMPDIR picks the filesystem), then removes them. Nothing stays mounted: the mount
    /// lives in the child's own mount namespace, which ends with the child.
    pub fn probe(scratch_parent: &Path) -> Result<Self, OverlayError> {
        let filesystems =
            fs::read_to_string(PROC_FILESYSTEMS).map_err(|source| OverlayError::Read {
                path: PROC_FILESYSTEMS.into(),
                source,
            })?;
        let registered = filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"));
        let scratch = tempfile::Builder::new()
            .prefix("isolab-overlay-probe-")
            .tempdir_in(scratch_parent)
            .map_err(|source| OverlayError::Scratch {
                path: scratch_parent.to_path_buf(),
                source,
            })?;
        let mount = mount_in_child(scratch.path())?;
        // Dropping `scratch` removes the layers, including the work/work directory
        // overlayfs created inside the work dir.
        drop(scratch);
        Ok(OverlayfsSupport {
            registered,
            mount,
            scratch_parent: scratch_parent.to_path_buf(),
        })
    }
}

fn mount_in_child(scratch: &Path) -> Result<Probe, OverlayError> {
    let layer = |name: &str| {
        let path = scratch.join(name);
        fs::create_dir(&path).map_err(|source| OverlayError::Scratch {
            path: path.clone(),
            source,
        })?;
        Ok::<_, OverlayError>(path)
    };
    let (lower, upper, work, merged) = (
        layer("lower")?,
        layer("upper")?,
        layer("work")?,
        layer("merged")?,
    );
    let options = overlay_options(&lower, &upper, &work)?;
    let target = c_path(&merged)?;
    let (root, overlay) = (c"/", c"overlay");
    let body = || {
        // SAFETY: unshare only reads its integer argument.
        Errno::result(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
        // Without this the overlay would propagate back into the caller's namespace
        // wherever the scratch directory sits on a shared mount (systemd makes / shared).
        // SAFETY: the pointers are NUL-terminated strings that outlive the call, or null
        // where mount(2) accepts null.
        Errno::result(unsafe {
            libc::mount(
                ptr::null(),
                root.as_ptr(),
                ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                ptr::null(),
            )
        })?;
        // SAFETY: as above; `options` is the NUL-terminated data string overlayfs parses.
        Errno::result(unsafe {
            libc::mount(
                overlay.as_ptr(),
                target.as_ptr(),
                overlay.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        })
        .map(drop)
    };
    // SAFETY: every string the body uses was built before the fork; it only makes system
    // calls on them and allocates nothing.
    let outcome = unsafe { child::errno_in_child(body) };
    Ok(Probe::from_child(outcome))
}

/// The legacy mount(2) data string has no escaping, so paths with its separators are refused
/// rather than silently misparsed.
fn overlay_options(lower: &Path, upper: &Path, work: &Path) -> Result<CString, OverlayError> {
    let mut options = String::new();
    for (key, path) in [("lowerdir", lower), ("upperdir", upper), ("workdir", work)] {
        let text = path
            .to_str()
            .filter(|t| !t.contains([',', ':', '\\']))
            .ok_or_else(|| OverlayError::UnusablePath {
                path: path.to_path_buf(),
            })?;
        if !options.is_empty() {
            options.push(',');
        }
        options.push_str(&format!("{key}={text}"));
    }
    CString::new(options).map_err(|_| OverlayError::UnusablePath {
        path: lower.to_path_buf(),
    })
}

fn c_path(path: &Path) -> Result<CString, OverlayError> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| OverlayError::UnusablePath {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_each_layer() {
        let opts =
            overlay_options(Path::new("/t/l"), Path::new("/t/u"), Path::new("/t/w")).unwrap();
        assert_eq!(
            opts.to_str().unwrap(),
            "lowerdir=/t/l,upperdir=/t/u,workdir=/t/w"
        );
    }

    #[test]
    fn options_refuse_separators_in_paths() {
        for bad in ["/t/a,b", "/t/a:b", r"/t/a\b"] {
            let err =
                overlay_options(Path::new(bad), Path::new("/u"), Path::new("/w")).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn probe_leaves_no_scratch_directory_and_no_mount() {
        let parent = tempfile::tempdir().unwrap();
        let mounts_before = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let support = OverlayfsSupport::probe(parent.path()).unwrap();
        assert!(support.mount.ok || support.mount.error.is_some());
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
        let mounts_after = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts_after.contains("isolab-overlay-probe-"),
            "{mounts_after}"
        );
        assert_eq!(
            mounts_before
                .lines()
                .filter(|l| l.contains(" - overlay "))
                .count(),
            mounts_after
                .lines()
                .filter(|l| l.contains(" - overlay "))
                .count()
        );
    }
}
