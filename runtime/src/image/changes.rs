//! What a container changed, read from its upper layer: `isolab diff` lists it, `isolab
//! commit` packs it into a new layer on top of the container's image.
//!
//! In an upper layer a character device 0/0 is a deletion (a whiteout) and a directory with
//! `trusted.overlay.opaque=y` replaced whatever the layers below held at its path; anything
//! else is added, or changed when the layers below have the path too (directories show up
//! as changed when something inside them changed, as with `docker diff`).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::image::HistoryBuilder;
use serde::Serialize;

use super::import::{LayerSource, now_rfc3339};
use super::pack::{is_opaque, is_whiteout, pack};
use super::store::{CONTAINER_FILE, ImageRecord, Store, container_file};
use super::{ImageError, io_err, normalize_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ChangeKind {
    #[serde(rename = "A")]
    Added,
    #[serde(rename = "C")]
    Changed,
    #[serde(rename = "D")]
    Deleted,
}

impl ChangeKind {
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path, absolute inside the container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

/// Whether the layers below (top first) show `rel`: a whiteout or a non-directory on the way
/// hides it, and an opaque directory on the way hides what lies below its layer.
fn exists_below(lowers: &[PathBuf], rel: &Path) -> bool {
    let parts: Vec<_> = rel.components().collect();
    for layer in lowers {
        let mut path = layer.clone();
        let mut opaque = false;
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                if opaque {
                    return false;
                }
                break;
            };
            if is_whiteout(&meta) {
                return false;
            }
            if i + 1 == parts.len() {
                return true;
            }
            if !meta.is_dir() {
                return false;
            }
            opaque |= is_opaque(&path);
        }
    }
    false
}

/// The names the layers below show in directory `rel`.
fn names_below(lowers: &[PathBuf], rel: &Path) -> BTreeSet<OsString> {
    let mut names = BTreeSet::new();
    let mut hidden = BTreeSet::new();
    for layer in lowers {
        let dir = layer.join(rel);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let whiteout = entry.metadata().is_ok_and(|m| is_whiteout(&m));
            if whiteout {
                hidden.insert(name);
            } else if !hidden.contains(&name) {
                names.insert(name);
            }
        }
        if is_opaque(&dir) {
            break;
        }
    }
    names
}

fn walk(upper: &Path, lowers: &[PathBuf], rel: &Path, changes: &mut Vec<Change>) -> io::Result<()> {
    for entry in fs::read_dir(upper.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        let meta = fs::symlink_metadata(upper.join(&path))?;
        let shown = format!("/{}", path.display());
        if is_whiteout(&meta) {
            if exists_below(lowers, &path) {
                changes.push(Change {
                    path: shown,
                    kind: ChangeKind::Deleted,
                });
            }
            continue;
        }
        let below = exists_below(lowers, &path);
        changes.push(Change {
            path: shown.clone(),
            kind: if below {
                ChangeKind::Changed
            } else {
                ChangeKind::Added
            },
        });
        if meta.is_dir() {
            if below && is_opaque(&upper.join(&path)) {
                let kept: BTreeSet<OsString> = fs::read_dir(upper.join(&path))?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<_, _>>()?;
                for name in names_below(lowers, &path).difference(&kept) {
                    changes.push(Change {
                        path: format!("{shown}/{}", name.to_string_lossy()),
                        kind: ChangeKind::Deleted,
                    });
                }
            }
            walk(upper, lowers, &path, changes)?;
        }
    }
    Ok(())
}

impl Store {
    /// The container's directory, or a clear error when it has none in this store.
    fn container_dir(&self, container_id: &str) -> Result<PathBuf, ImageError> {
        let dir = self.container_path(container_id);
        if container_id.contains('/') || !dir.join("upper").is_dir() {
            return Err(ImageError::NoContainer {
                id: container_id.to_string(),
                store: self.root().to_path_buf(),
            });
        }
        Ok(dir)
    }

    /// The image a container runs on.
    fn container_image(&self, dir: &Path) -> Result<ImageRecord, ImageError> {
        let path = dir.join(CONTAINER_FILE);
        let id = container_file(dir)
            .0
            .ok_or_else(|| io_err("reading", &path)(io::ErrorKind::InvalidData.into()))?;
        self.record(&id)
    }

    /// What container `container_id` changed, sorted by path.
    pub fn diff(&self, container_id: &str) -> Result<Vec<Change>, ImageError> {
        let dir = self.container_dir(container_id)?;
        let record = self.container_image(&dir)?;
        let lowers: Vec<PathBuf> = record
            .layers
            .iter()
            .rev()
            .map(|l| self.layer_path(&l.diff_id))
            .collect();
        let upper = dir.join("upper");
        let mut changes = Vec::new();
        walk(&upper, &lowers, Path::new(""), &mut changes).map_err(io_err("reading", &upper))?;
        changes.sort();
        Ok(changes)
    }

    /// Makes container `container_id`'s upper layer a new layer on top of its image's, with
    /// the image's config, and names the new image `name`. A running container is committed
    /// as its upper layer is at that moment.
    pub fn commit_container(
        &self,
        container_id: &str,
        name: &str,
    ) -> Result<ImageRecord, ImageError> {
        let name = normalize_name(name)?;
        let dir = self.container_dir(container_id)?;
        let parent = self.container_image(&dir)?;
        let mut config = self.config(&parent.id)?;
        let mut staging = self.staging()?;
        let upper = dir.join("upper");
        let layer = staging.path("layer.tar.gz");
        pack(&upper, &layer).map_err(io_err("packing", &upper))?;
        let created = now_rfc3339();
        let mut history = config.history().clone().unwrap_or_default();
        history.push(
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("isolab commit {container_id} {name}"))
                .build()
                .expect("every field is optional"),
        );
        config.set_history(Some(history));
        config.set_created(Some(created));
        let reader = File::open(&layer).map_err(io_err("opening", &layer))?;
        self.import_layers_with(
            &upper,
            staging,
            parent.layers,
            vec![LayerSource::unverified(
                reader,
                format!("the upper layer of container {container_id}"),
            )],
            config,
            Some(name),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whiteout(path: &Path) {
        nix::sys::stat::mknod(
            path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
    }

    #[test]
    fn changes_are_added_changed_or_deleted_against_the_layers_below() {
        let dir = tempfile::tempdir().unwrap();
        let (upper, top, base) = (
            dir.path().join("upper"),
            dir.path().join("top"),
            dir.path().join("base"),
        );
        for d in [&upper, &top, &base] {
            fs::create_dir_all(d.join("etc")).unwrap();
        }
        fs::write(base.join("etc/kept"), "").unwrap();
        fs::write(base.join("etc/hidden"), "").unwrap();
        whiteout(&top.join("etc/hidden"));
        fs::write(upper.join("etc/kept"), "changed").unwrap();
        fs::write(upper.join("etc/hidden"), "back").unwrap();
        whiteout(&upper.join("gone"));
        let lowers = [top, base];
        assert!(exists_below(&lowers, Path::new("etc/kept")));
        assert!(!exists_below(&lowers, Path::new("etc/hidden")));
        let mut changes = Vec::new();
        walk(&upper, &lowers, Path::new(""), &mut changes).unwrap();
        changes.sort();
        let shown: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect();
        // /gone never existed below, so its whiteout deletes nothing worth listing.
        assert_eq!(shown, ["C /etc", "A /etc/hidden", "C /etc/kept"]);
    }
}
