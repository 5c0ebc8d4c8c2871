//! The store on disk: opening it, locks, staging and atomic commits, the names index, image
//! records, removal with garbage collection, and the overlay roots containers run on.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use super::digest::is_hex64;
use super::{DEFAULT_ROOT, ImageError, io_err, normalize_name};

/// One layer of an image: its blob as stored and its unpacked directory's diffid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// sha256 hex of the blob (compressed or not, as imported).
    pub digest: String,
    /// sha256 hex of the uncompressed tar: names `layers/<diff_id>`.
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

/// `images/<id>.json`: what the store knows about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// sha256 hex of the config blob.
    pub id: String,
    /// sha256 hex of the manifest blob.
    pub manifest: String,
    /// Bottom layer first, as in the manifest.
    pub layers: Vec<LayerRef>,
}

/// A line of `isolab image ls`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub id: String,
    pub names: Vec<String>,
    pub layers: usize,
    /// Sum of the layer blobs' sizes (as transferred, not as unpacked).
    pub size: u64,
    pub created: Option<String>,
}

/// What the image's config says to run, for the container code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// A container's root, ready for `mount("overlay", …, "lowerdir=…,upperdir=…,workdir=…")`.
#[derive(Debug, Clone)]
pub struct OverlayRoot {
    pub image_id: String,
    /// Top layer first: the order overlayfs's `lowerdir=` takes.
    pub lowerdirs: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The container's directory, to mount the overlay on in the container's own mount
    /// namespace (where it hides `upper` and `work`, which overlayfs holds already): one
    /// directory fewer to create per start than a separate mount point.
    pub mount_point: PathBuf,
    pub config: RunConfig,
}

impl OverlayRoot {
    /// The overlay mount's data string. Store paths with ',', ':' or '\' are refused when the
    /// root is prepared, so nothing here needs escaping.
    pub fn mount_data(&self) -> String {
        let lower: Vec<String> = self
            .lowerdirs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        )
    }
}

/// The names index, `index.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    names: BTreeMap<String, String>,
}

/// An open store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Changes staged under `tmp/`, renamed into place by [`Store::commit`]; dropped, they vanish.
#[derive(Debug)]
pub(crate) struct Staging {
    pub(crate) dir: tempfile::TempDir,
    /// (staged file, blob hex)
    pub(crate) blobs: Vec<(PathBuf, String)>,
    /// (staged directory, diffid hex)
    pub(crate) layers: Vec<(PathBuf, String)>,
    pub(crate) locks: Vec<LayerLock>,
    counter: usize,
}

impl Staging {
    /// A fresh path inside the staging directory.
    pub(crate) fn path(&mut self, what: &str) -> PathBuf {
        self.counter += 1;
        self.dir.path().join(format!("{what}-{}", self.counter))
    }
}

/// An exclusive flock on `locks/<diffid>`, unlinked while still held when dropped, so lock
/// files exist only while in use. Whoever then wakes on the unlinked file sees that the path
/// no longer names it and tries again.
#[derive(Debug)]
pub(crate) struct LayerLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Drop for LayerLock {
    fn drop(&mut self) {
        // Failure leaves a harmless empty file; the lock itself goes with the descriptor.
        let _ = fs::remove_file(&self.path);
    }
}

/// The store-wide lock, held for index and record updates and for removal.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _lock: Flock<File>,
}

const DIRS: [&str; 7] = [
    "blobs/sha256",
    "layers",
    "images",
    "containers",
    "locks",
    "tmp",
    "",
];

impl Store {
    /// `dir`, else `$ISOLAB_STORE`, else `/var/lib/isolab`.
    pub fn default_root(dir: Option<&Path>) -> PathBuf {
        dir.map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ISOLAB_STORE").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }

    /// Opens the store at `root`, creating its directories if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, ImageError> {
        let root = root.into();
        for dir in DIRS {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_err("creating", &path))?;
        }
        let lock = root.join("lock");
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock)
            .map_err(io_err("creating", &lock))?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex)
    }

    pub(crate) fn layer_path(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(diff_id)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.root.join("images").join(format!("{id}.json"))
    }

    pub(crate) fn container_path(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    pub(crate) fn lock_store(&self) -> Result<StoreLock, ImageError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("locking", &path)(e.into()))?;
        Ok(StoreLock { _lock: lock })
    }

    /// Locks layer `diff_id`; with `wait` false, None when someone else holds it.
    pub(crate) fn lock_layer(
        &self,
        diff_id: &str,
        wait: bool,
    ) -> Result<Option<LayerLock>, ImageError> {
        let path = self.root.join("locks").join(diff_id);
        let arg = if wait {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockExclusiveNonblock
        };
        loop {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err("creating", &path))?;
            let lock = match Flock::lock(file, arg) {
                Ok(lock) => lock,
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if !wait => return Ok(None),
                Err((_, e)) => return Err(io_err("locking", &path)(e.into())),
            };
            let held = lock.metadata().map_err(io_err("checking", &path))?;
            match fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Some(LayerLock { path, _lock: lock }));
                }
                // The previous holder unlinked it between our open and our lock: again.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("checking", &path)(e)),
            }
        }
    }

    /// A new, empty staging area on the store's filesystem.
    pub(crate) fn staging(&self) -> Result<Staging, ImageError> {
        let tmp = self.root.join("tmp");
        let dir = tempfile::Builder::new()
            .prefix("stage-")
            .tempdir_in(&tmp)
            .map_err(io_err("creating a staging directory in", &tmp))?;
        Ok(Staging {
            dir,
            blobs: Vec::new(),
            layers: Vec::new(),
            locks: Vec::new(),
            counter: 0,
        })
    }

    /// Makes a staged image visible: flushes the staged data, renames blobs and layers into
    /// place (those already present are kept), writes the record and, with `name`, points the
    /// name at it. Blobs and layers are content-addressed, so the first writer wins.
    pub(crate) fn commit(
        &self,
        staging: Staging,
        record: &ImageRecord,
        name: Option<&str>,
    ) -> Result<(), ImageError> {
        let stage_dir =
            File::open(staging.dir.path()).map_err(io_err("opening", staging.dir.path()))?;
        // One syncfs flushes every staged file: cheaper than an fsync per file of a layer.
        nix::unistd::syncfs(&stage_dir)
            .map_err(|e| io_err("flushing", staging.dir.path())(e.into()))?;
        let _store = self.lock_store()?;
        for (staged, hex) in &staging.blobs {
            rename_absent(staged, &self.blob_path(hex))?;
        }
        for (staged, diff_id) in &staging.layers {
            rename_absent(staged, &self.layer_path(diff_id))?;
        }
        for layer in &record.layers {
            let path = self.layer_path(&layer.diff_id);
            if !path.is_dir() {
                return Err(io_err("finding layer", path)(
                    io::ErrorKind::NotFound.into(),
                ));
            }
        }
        let json = serde_json::to_vec_pretty(record).expect("records serialize");
        write_atomic(&self.record_path(&record.id), &json)?;
        if let Some(name) = name {
            let mut index = self.read_index()?;
            index.names.insert(name.to_string(), record.id.clone());
            self.write_index(&index)?;
        }
        for dir in ["blobs/sha256", "layers", "images", ""] {
            sync_dir(&self.root.join(dir))?;
        }
        Ok(())
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io_err("parsing", &path)(io::Error::new(io::ErrorKind::InvalidData, e))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io_err("reading", path)(e)),
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), ImageError> {
        let json = serde_json::to_vec_pretty(index).expect("the index serializes");
        write_atomic(&self.root.join("index.json"), &json)
    }

    pub fn record(&self, id: &str) -> Result<ImageRecord, ImageError> {
        let path = self.record_path(id);
        let bytes = fs::read(&path).map_err(io_err("reading", &path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| io_err("parsing", &path)(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    /// Every image's record.
    pub fn records(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let dir = self.root.join("images");
        let mut records = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if is_hex64(id) {
                records.push(self.record(id)?);
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    /// Names pointing at each image id.
    pub fn names(&self) -> Result<BTreeMap<String, Vec<String>>, ImageError> {
        let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, id) in self.read_index()?.names {
            by_id.entry(id).or_default().push(name);
        }
        Ok(by_id)
    }

    /// `name[:tag]`, or an id (or a unique prefix of one, `sha256:` optional) → the image id.
    pub fn resolve(&self, reference: &str) -> Result<String, ImageError> {
        if let Ok(name) = normalize_name(reference) {
            if let Some(id) = self.read_index()?.names.get(&name) {
                return Ok(id.clone());
            }
        }
        let prefix = reference.strip_prefix("sha256:").unwrap_or(reference);
        let is_hex = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_hex {
            return Err(ImageError::NotFound(reference.to_string()));
        }
        let ids: Vec<String> = self
            .records()?
            .into_iter()
            .map(|r| r.id)
            .filter(|id| id.starts_with(prefix))
            .collect();
        match ids.as_slice() {
            [id] => Ok(id.clone()),
            [] => Err(ImageError::NotFound(reference.to_string())),
            _ => Err(ImageError::Ambiguous {
                reference: reference.to_string(),
                ids: ids
                    .iter()
                    .map(|id| &id[..12])
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The image's OCI config, parsed from its blob.
    pub fn config(&self, id: &str) -> Result<ImageConfiguration, ImageError> {
        let path = self.blob_path(id);
        let bytes = fs::read(&path).map_err(io_err("reading", &path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| io_err("parsing", &path)(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let names = self.names()?;
        self.records()?
            .into_iter()
            .map(|record| {
                let config = self.config(&record.id)?;
                Ok(ImageSummary {
                    names: names.get(&record.id).cloned().unwrap_or_default(),
                    layers: record.layers.len(),
                    size: record.layers.iter().map(|l| l.size).sum(),
                    created: config.created().clone(),
                    id: record.id,
                })
            })
            .collect()
    }

    /// Containers whose root comes from image `id`.
    fn users(&self, id: &str) -> Result<Vec<String>, ImageError> {
        let dir = self.root.join("containers");
        let mut users = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            if container_file(&entry.path()).0.as_deref() == Some(id) {
                users.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(users)
    }

    /// Removes the image (all its names) and whatever blobs and layers no other image uses.
    pub fn remove(&self, reference: &str) -> Result<String, ImageError> {
        let _store = self.lock_store()?;
        let id = self.resolve(reference)?;
        let users = self.users(&id)?;
        if !users.is_empty() {
            return Err(ImageError::InUse {
                id,
                containers: users.join(", "),
            });
        }
        let record = self.record(&id)?;
        let mut index = self.read_index()?;
        index.names.retain(|_, target| *target != id);
        self.write_index(&index)?;
        let path = self.record_path(&id);
        fs::remove_file(&path).map_err(io_err("removing", &path))?;

        let others = self.records()?;
        let mut kept_blobs = BTreeSet::new();
        let mut kept_layers = BTreeSet::new();
        for other in &others {
            kept_blobs.insert(other.id.clone());
            kept_blobs.insert(other.manifest.clone());
            for layer in &other.layers {
                kept_blobs.insert(layer.digest.clone());
                kept_layers.insert(layer.diff_id.clone());
            }
        }
        for blob in [&record.id, &record.manifest] {
            if !kept_blobs.contains(blob) {
                remove_if_present(&self.blob_path(blob))?;
            }
        }
        for layer in &record.layers {
            if kept_layers.contains(&layer.diff_id) {
                continue;
            }
            // An import holding this layer's lock is about to reference it: leave it.
            let Some(_lock) = self.lock_layer(&layer.diff_id, false)? else {
                continue;
            };
            if !kept_blobs.contains(&layer.digest) {
                remove_if_present(&self.blob_path(&layer.digest))?;
            }
            self.remove_tree(&self.layer_path(&layer.diff_id))?;
        }
        Ok(id)
    }

    /// Removes a directory tree atomically as far as readers can tell: first renamed out of
    /// sight into `tmp/`, then deleted.
    fn remove_tree(&self, path: &Path) -> Result<(), ImageError> {
        let staging = self.staging()?;
        let doomed = staging.dir.path().join("doomed");
        match fs::rename(path, &doomed) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", path)(e)),
        }
        // Dropping the staging directory deletes the tree.
    }

    /// What image `id`'s config says to run.
    pub fn run_config(&self, id: &str) -> Result<RunConfig, ImageError> {
        Ok(self
            .config(id)?
            .config()
            .as_ref()
            .map(|c| RunConfig {
                entrypoint: c.entrypoint().clone().unwrap_or_default(),
                cmd: c.cmd().clone().unwrap_or_default(),
                env: c.env().clone().unwrap_or_default(),
                working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
                user: c.user().clone().filter(|u| !u.is_empty()),
            })
            .unwrap_or_default())
    }

    /// Creates `containers/<container_id>/{upper,work}` and returns the overlay to mount.
    /// `owner` is kept with it (first line the image id, second the owner) for whoever
    /// decides later whether the root is still in use ([`Store::container_owner`]).
    pub fn prepare_rootfs(
        &self,
        image_ref: &str,
        container_id: &str,
        owner: &str,
    ) -> Result<OverlayRoot, ImageError> {
        let valid_id = !container_id.is_empty()
            && container_id.len() <= 128
            && container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && container_id.as_bytes()[0].is_ascii_alphanumeric();
        if !valid_id {
            return Err(ImageError::BadContainerId(container_id.to_string()));
        }
        if self
            .root
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .any(|b| b",:\\".contains(b))
        {
            return Err(ImageError::UnmountablePath(self.root.clone()));
        }
        let _store = self.lock_store()?;
        let id = self.resolve(image_ref)?;
        let record = self.record(&id)?;
        let config = self.run_config(&id)?;
        let dir = self.container_path(container_id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ImageError::ContainerExists(container_id.to_string()));
            }
            Err(e) => return Err(io_err("creating", &dir)(e)),
        }
        let upper = dir.join("upper");
        let work = dir.join("work");
        let made = (|| {
            let file = dir.join(CONTAINER_FILE);
            fs::write(&file, format!("{id}\n{owner}\n")).map_err(io_err("writing", &file))?;
            for sub in [&upper, &work] {
                fs::create_dir(sub).map_err(io_err("creating", sub))?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(OverlayRoot {
            lowerdirs: record
                .layers
                .iter()
                .rev()
                .map(|l| self.layer_path(&l.diff_id))
                .collect(),
            image_id: id,
            upper,
            work,
            mount_point: dir,
            config,
        })
    }

    /// Removes a container's upper and work directories (after its overlay is unmounted).
    /// Releasing a container that has none is not an error.
    pub fn release_rootfs(&self, container_id: &str) -> Result<(), ImageError> {
        if container_id.is_empty() || container_id.contains('/') || container_id.starts_with('.') {
            return Err(ImageError::BadContainerId(container_id.to_string()));
        }
        let dir = self.container_path(container_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", dir)(e)),
        }
    }

    /// The owner recorded by [`Store::prepare_rootfs`] for container `container_id`.
    pub fn container_owner(&self, container_id: &str) -> Option<String> {
        container_file(&self.container_path(container_id)).1
    }

    /// Container ids with a root in the store.
    pub(crate) fn containers(&self) -> Result<Vec<(String, PathBuf)>, ImageError> {
        let dir = self.root.join("containers");
        let mut found = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let name: OsString = entry.file_name();
            found.push((name.to_string_lossy().into_owned(), entry.path()));
        }
        found.sort();
        Ok(found)
    }
}

/// A container directory's file naming its image (and owner).
pub(crate) const CONTAINER_FILE: &str = "image";

/// The image id and the owner in container directory `dir`'s file, where readable.
pub(crate) fn container_file(dir: &Path) -> (Option<String>, Option<String>) {
    let text = fs::read_to_string(dir.join(CONTAINER_FILE)).unwrap_or_default();
    let mut lines = text.lines().map(str::to_string);
    (lines.next().filter(|l| !l.is_empty()), lines.next())
}

/// Renames `from` to `to` unless `to` exists already (same content by construction).
fn rename_absent(from: &Path, to: &Path) -> Result<(), ImageError> {
    if to.exists() {
        return Ok(());
    }
    fs::rename(from, to).map_err(io_err("moving into place", to))
}

fn remove_if_present(path: &Path) -> Result<(), ImageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

/// Writes `path` so that readers see the old or the new content, never a part: a temporary
/// file beside it, fsynced, then renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = path.parent().expect("store paths have a parent");
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err("creating a temporary file in", dir))?;
    tmp.write_all(bytes)
        .map_err(io_err("writing", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err("flushing", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io_err("moving into place", path)(e.error))?;
    Ok(())
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("flushing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_locks_vanish_when_released_and_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let diff_id = "a".repeat(64);
        let lock = store.lock_layer(&diff_id, true).unwrap().unwrap();
        assert!(store.lock_layer(&diff_id, false).unwrap().is_none());
        drop(lock);
        assert!(!dir.path().join("locks").join(&diff_id).exists());
        assert!(store.lock_layer(&diff_id, false).unwrap().is_some());
    }

    #[test]
    fn mount_data_lists_the_top_layer_first() {
        let root = OverlayRoot {
            image_id: String::new(),
            lowerdirs: vec!["/s/layers/top".into(), "/s/layers/base".into()],
            upper: "/s/c/upper".into(),
            work: "/s/c/work".into(),
            mount_point: "/s/c".into(),
            config: RunConfig::default(),
        };
        assert_eq!(
            root.mount_data(),
            "lowerdir=/s/layers/top:/s/layers/base,upperdir=/s/c/upper,workdir=/s/c/work"
        );
    }
}
