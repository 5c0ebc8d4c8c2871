//! `isolab image du`: bytes on disk, counted as allocated blocks (`st_blocks * 512`), not as
//! apparent sizes: a sparse or small file costs what the filesystem gave it, and a hard link
//! is counted once.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use super::store::{Store, container_file};
use super::{ImageError, io_err};

/// What the numbers mean, carried in every report.
pub const UNITS: &str = "bytes allocated on disk (st_blocks * 512), not apparent sizes";

#[derive(Debug, Clone, Serialize)]
pub struct LayerUsage {
    pub diff_id: String,
    /// The unpacked directory (what overlayfs reads).
    pub unpacked_bytes: u64,
    /// The blob as imported (what export writes).
    pub blob_bytes: u64,
    /// How many images use it: more than one means shared.
    pub images: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageUsage {
    pub id: String,
    pub names: Vec<String>,
    /// Its layers (unpacked and blob) that no other image uses.
    pub unique_bytes: u64,
    /// Its layers that other images use as well.
    pub shared_bytes: u64,
    /// Its config and manifest blobs and its record.
    pub metadata_bytes: u64,
    /// unique + shared + metadata: what it costs alone.
    pub total_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerUsage {
    pub id: String,
    pub image: Option<String>,
    /// Its upper layer: what the container changed.
    pub upper_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskUsage {
    pub units: &'static str,
    pub layers: Vec<LayerUsage>,
    pub images: Vec<ImageUsage>,
    pub containers: Vec<ContainerUsage>,
    /// Everything under the store root, each inode once.
    pub store_bytes: u64,
}

/// Allocated bytes of `path` and everything under it, without following symlinks; inodes
/// already in `seen` (hard links) are not counted again.
pub fn allocated_bytes(path: &Path, seen: &mut HashSet<(u64, u64)>) -> io::Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut total = 0;
    if meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino())) {
        total += meta.blocks() * 512;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            total += allocated_bytes(&entry?.path(), seen)?;
        }
    }
    Ok(total)
}

fn measure(path: &Path) -> Result<u64, ImageError> {
    allocated_bytes(path, &mut HashSet::new()).map_err(io_err("measuring", path))
}

impl Store {
    pub fn disk_usage(&self) -> Result<DiskUsage, ImageError> {
        let records = self.records()?;
        let names = self.names()?;
        let mut users: BTreeMap<&str, usize> = BTreeMap::new();
        for record in &records {
            for layer in &record.layers {
                *users.entry(layer.diff_id.as_str()).or_default() += 1;
            }
        }
        let mut layers: BTreeMap<String, LayerUsage> = BTreeMap::new();
        for record in &records {
            for layer in &record.layers {
                if layers.contains_key(&layer.diff_id) {
                    continue;
                }
                layers.insert(
                    layer.diff_id.clone(),
                    LayerUsage {
                        diff_id: layer.diff_id.clone(),
                        unpacked_bytes: measure(&self.layer_path(&layer.diff_id))?,
                        blob_bytes: measure(&self.blob_path(&layer.digest))?,
                        images: users[layer.diff_id.as_str()],
                    },
                );
            }
        }
        let mut images = Vec::new();
        for record in &records {
            let (mut unique, mut shared) = (0, 0);
            let mut counted = HashSet::new();
            for layer in &record.layers {
                if !counted.insert(&layer.diff_id) {
                    continue;
                }
                let usage = &layers[&layer.diff_id];
                let bytes = usage.unpacked_bytes + usage.blob_bytes;
                if usage.images > 1 {
                    shared += bytes;
                } else {
                    unique += bytes;
                }
            }
            let metadata = measure(&self.blob_path(&record.id))?
                + measure(&self.blob_path(&record.manifest))?
                + measure(
                    &self
                        .root()
                        .join("images")
                        .join(format!("{}.json", record.id)),
                )?;
            images.push(ImageUsage {
                id: record.id.clone(),
                names: names.get(&record.id).cloned().unwrap_or_default(),
                unique_bytes: unique,
                shared_bytes: shared,
                metadata_bytes: metadata,
                total_bytes: unique + shared + metadata,
            });
        }
        let mut containers = Vec::new();
        for (id, dir) in self.containers()? {
            containers.push(ContainerUsage {
                image: container_file(&dir).0,
                upper_bytes: measure(&dir.join("upper"))?,
                id,
            });
        }
        Ok(DiskUsage {
            units: UNITS,
            layers: layers.into_values().collect(),
            images,
            containers,
            store_bytes: measure(self.root())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_count_once_and_sparse_files_count_their_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, vec![1u8; 10_000]).unwrap();
        fs::hard_link(&file, dir.path().join("g")).unwrap();
        let sparse = fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        let blocks = |p: &Path| fs::symlink_metadata(p).unwrap().blocks() * 512;
        let expected = blocks(dir.path()) + blocks(&file) + blocks(&dir.path().join("sparse"));
        assert_eq!(measure(dir.path()).unwrap(), expected);
        assert!(
            expected < 1 << 20,
            "a 1 GiB sparse file allocates next to nothing"
        );
    }
}
