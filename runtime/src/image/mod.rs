//! The content-addressed image store: OCI images kept as verified blobs and unpacked layers,
//! shared by every container that uses them, each container's root an overlay on top.
//!
//! Layout under the store root (default `/var/lib/isolab`, or `$ISOLAB_STORE`):
//!
//! ```text
//! lock                  store-wide flock: commits, the names index, removal
//! index.json            names (name:tag) → image id
//! blobs/sha256/<hex>    manifests, configs and layer blobs, as imported (digest = name)
//! layers/<diffid>/      each layer unpacked once, overlay whiteouts in place
//! images/<id>.json      one record per image (id = config digest): manifest and layers
//! containers/<id>/      a container's upper and work directories, and `image`: the id of
//!                       the image it uses and its owner (isolab: pid and start time);
//!                       the directory itself is the overlay's mount point
//! locks/                per-layer flock files, present only while a layer is in use
//! tmp/                  staging: everything is built here and renamed into place
//! ```
//!
//! Every change is staged under `tmp/` and renamed into place only after every digest has
//! been checked, so a failed import leaves the store as it was.

mod build;
mod changes;
mod digest;
mod du;
mod export;
mod import;
mod pack;
mod store;
mod unpack;

use std::io;
use std::path::PathBuf;

pub use build::{Base, BuildOptions};
pub use changes::{Change, ChangeKind};
pub use du::{ContainerUsage, DiskUsage, ImageUsage, LayerUsage, allocated_bytes};
pub use store::{ImageRecord, ImageSummary, LayerRef, OverlayRoot, RunConfig, Store};
pub use unpack::UnpackError;

/// Where the store lives unless `--store` or `$ISOLAB_STORE` says otherwise.
pub const DEFAULT_ROOT: &str = "/var/lib/isolab";

/// Why an image operation failed. [`ImageError::is_bad_input`] tells the user's fault (a bad
/// file, name or reference) from the host's.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {reason}; the store was left unchanged")]
    BadArchive { path: PathBuf, reason: String },
    #[error("no image {0:?} in the store (isolab image ls lists them)")]
    NotFound(String),
    #[error("image reference {reference:?} matches several images: {ids}")]
    Ambiguous { reference: String, ids: String },
    #[error(
        "invalid image name {0:?}: expected NAME[:TAG], NAME of letters, digits, '.', '_', '-', '/'"
    )]
    BadName(String),
    #[error("invalid container id {0:?}: expected letters, digits, '.', '_', '-'")]
    BadContainerId(String),
    #[error("no container {id} in the image store {store} (was it started from an image?)")]
    NoContainer { id: String, store: PathBuf },
    #[error("container {0} already has a root in the store")]
    ContainerExists(String),
    #[error("image {id} is used by container(s) {containers}; remove them first")]
    InUse { id: String, containers: String },
    #[error(
        "the store path {0} holds a character overlayfs options cannot carry (',', ':' or '\\')"
    )]
    UnmountablePath(PathBuf),
    #[error("{0}")]
    HostLacks(String),
    #[error("{what} {path}: {error}")]
    Io {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
}

impl ImageError {
    /// The user's input was at fault (exit code 2), not the host or the store.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ImageError::BadArchive { .. }
                | ImageError::NotFound(_)
                | ImageError::Ambiguous { .. }
                | ImageError::BadName(_)
                | ImageError::BadContainerId(_)
                | ImageError::NoContainer { .. }
                | ImageError::ContainerExists(_)
                | ImageError::InUse { .. }
        )
    }

    pub fn is_host_lacking(&self) -> bool {
        matches!(self, ImageError::HostLacks(_))
    }
}

/// Builds the `map_err` closure for an I/O step on a path.
pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> ImageError {
    let path = path.into();
    move |error| ImageError::Io { what, path, error }
}

/// Normalises `name[:tag]` to `name:tag` (tag `latest` when absent), or says why it is invalid.
pub fn normalize_name(text: &str) -> Result<String, ImageError> {
    let bad = || ImageError::BadName(text.to_string());
    // A ':' after the last '/' starts the tag; one before it belongs to a registry's port.
    let (name, tag) = match text.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (text, "latest"),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if name_ok && tag_ok {
        Ok(format!("{name}:{tag}"))
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_a_default_tag() {
        assert_eq!(normalize_name("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize_name("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(
            normalize_name("localhost:5000/a/b").unwrap(),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(
            normalize_name("localhost/wl:v1").unwrap(),
            "localhost/wl:v1"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", ":x", "a b", "-a", "a:", "a:b c", "../x"] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
    }
}
