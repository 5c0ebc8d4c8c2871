//! `isolab image import`: a plain root-filesystem tar, an OCI image layout (directory or tar)
//! or a `docker save` / `podman save` archive, each gzipped or not.
//!
//! Every blob is hashed while it is read and compared with the digest that names it (and its
//! size); every layer's uncompressed stream with its diffid in the config. Everything is
//! staged first and committed only when all of it checked out.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use oci_spec::image::{
    Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os,
};
use serde::Deserialize;

use super::digest::{HashingReader, is_hex64, parse_sha256, sha256_hex};
use super::store::{ImageRecord, LayerRef, Staging, Store};
use super::unpack::{self, CopyError};
use super::{ImageError, io_err, normalize_name};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Where archive members come from: a directory, or offsets into an uncompressed tar file.
#[derive(Debug)]
enum Source {
    Dir(PathBuf),
    Tar {
        file: File,
        members: HashMap<String, Member>,
    },
}

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Symlink(String),
}

/// The path as a key: no leading `./` or `/`.
fn member_key(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Source {
    fn has(&self, path: &str) -> bool {
        match self {
            Source::Dir(dir) => dir.join(path).is_file(),
            Source::Tar { members, .. } => members.contains_key(path),
        }
    }

    /// Opens a member; `Err` carries the reason for the user.
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>, String> {
        match self {
            Source::Dir(dir) => {
                // Members are named by digests or fixed names, checked before they get here.
                File::open(dir.join(path))
                    .map(|f| Box::new(f) as Box<dyn Read>)
                    .map_err(|e| format!("{path}: {e}"))
            }
            Source::Tar { file, members } => {
                let mut key = member_key(path);
                // Docker's archives may link a layer to its blob; follow a few links.
                for _ in 0..8 {
                    match members.get(&key) {
                        Some(Member::File { offset, size }) => {
                            return Ok(Box::new(Slice {
                                file,
                                pos: *offset,
                                end: offset + size,
                            }));
                        }
                        Some(Member::Symlink(target)) => {
                            let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
                            key = resolve_relative(dir, target);
                        }
                        None => break,
                    }
                }
                Err(format!("the archive has no member {path:?}"))
            }
        }
    }

    fn read_small(&self, path: &str) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        self.open(path)?
            .take(64 << 20)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading {path}: {e}"))?;
        Ok(bytes)
    }
}

/// A member's bytes, read with pread: several can be open at once on one file.
struct Slice<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn resolve_relative(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|p| !p.is_empty()).collect()
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// The blob a layer comes from and what it must hash to.
pub(crate) struct LayerSource<'a> {
    pub(crate) reader: Box<dyn Read + 'a>,
    pub(crate) what: String,
    pub(crate) digest: Option<String>,
    pub(crate) size: Option<u64>,
    pub(crate) diff_id: Option<String>,
    pub(crate) media_type: Option<String>,
}

impl<'a> LayerSource<'a> {
    /// A tar with no manifest behind it (a root-filesystem tar, a container's packed upper
    /// layer): no digest or size to check, its diff_id computed while it is unpacked.
    pub(crate) fn unverified(reader: impl Read + 'a, what: impl Into<String>) -> Self {
        LayerSource {
            reader: Box::new(reader),
            what: what.into(),
            digest: None,
            size: None,
            diff_id: None,
            media_type: None,
        }
    }
}

/// One entry of a `docker save` manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl Store {
    /// Imports the image in `path` (file or OCI layout directory); `name` overrides the name
    /// the archive carries. Returns the record of the image now in the store.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<ImageRecord, ImageError> {
        let name = name.map(normalize_name).transpose()?;
        let bad = |reason: String| ImageError::BadArchive {
            path: path.to_path_buf(),
            reason,
        };
        let mut staging = self.staging()?;
        let meta = fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        let source = if meta.is_dir() {
            Source::Dir(path.to_path_buf())
        } else {
            let tar_path = self.uncompressed(path, &mut staging)?;
            index_tar(&tar_path).map_err(|e| bad(format!("not a readable tar archive: {e}")))?
        };
        if source.has("oci-layout") && source.has("index.json") {
            self.import_oci(path, &source, staging, name)
        } else if source.has("manifest.json") {
            self.import_docker(path, &source, staging, name)
        } else if let Source::Dir(_) = source {
            Err(bad(
                "a directory but no OCI layout (no oci-layout and index.json) nor docker-save (manifest.json)"
                    .into(),
            ))
        } else {
            drop(source);
            let reader = File::open(path).map_err(|e| bad(e.to_string()))?;
            self.import_layers_with(
                path,
                staging,
                Vec::new(),
                vec![LayerSource::unverified(reader, "the root filesystem tar")],
                ImageConfiguration::default(),
                name,
            )
        }
    }

    /// Imports a root-filesystem tar (gzipped or not) as a one-layer image with `config`
    /// (its diff_ids filled in here).
    pub(crate) fn import_rootfs(
        &self,
        path: &Path,
        config: ImageConfiguration,
        name: Option<&str>,
    ) -> Result<ImageRecord, ImageError> {
        let name = name.map(normalize_name).transpose()?;
        let staging = self.staging()?;
        let reader = File::open(path).map_err(io_err("opening", path))?;
        self.import_layers_with(
            path,
            staging,
            Vec::new(),
            vec![LayerSource::unverified(reader, "the root filesystem tar")],
            config,
            name,
        )
    }

    /// A gzipped outer archive is decompressed into staging, since members are read by offset.
    fn uncompressed(&self, path: &Path, staging: &mut Staging) -> Result<PathBuf, ImageError> {
        let bad = |reason: String| ImageError::BadArchive {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut reader = BufReader::new(file);
        let head = reader.fill_buf().map_err(|e| bad(e.to_string()))?;
        if !head.starts_with(&[0x1f, 0x8b]) {
            return Ok(path.to_path_buf());
        }
        let out = staging.path("outer.tar");
        let mut file = File::create(&out).map_err(io_err("creating", &out))?;
        unpack::copy_data(&mut MultiGzDecoder::new(reader), &mut file).map_err(|e| match e {
            CopyError::Read(e) => bad(format!("corrupt gzip data: {e}")),
            CopyError::Write(e) => io_err("writing", &out)(e),
        })?;
        Ok(out)
    }

    fn import_oci(
        &self,
        path: &Path,
        source: &Source,
        staging: Staging,
        name: Option<String>,
    ) -> Result<ImageRecord, ImageError> {
        let bad = |reason: String| ImageError::BadArchive {
            path: path.to_path_buf(),
            reason,
        };
        let layout: serde_json::Value =
            serde_json::from_slice(&source.read_small("oci-layout").map_err(bad)?)
                .map_err(|e| bad(format!("oci-layout: {e}")))?;
        if layout
            .get("imageLayoutVersion")
            .and_then(|v| v.as_str())
            .is_none()
        {
            return Err(bad("oci-layout has no imageLayoutVersion".into()));
        }
        let index: ImageIndex =
            serde_json::from_slice(&source.read_small("index.json").map_err(bad)?)
                .map_err(|e| bad(format!("index.json: {e}")))?;
        let (descriptor, found_name) = pick_manifest(source, &index, 0).map_err(bad)?;
        let name = name.or(found_name.and_then(|n| normalize_name(&n).ok()));
        let manifest_bytes = read_blob(source, &descriptor).map_err(bad)?;
        let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| bad(format!("manifest {}: {e}", descriptor.digest())))?;
        let config_bytes = read_blob(source, manifest.config()).map_err(bad)?;
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(format!("config {}: {e}", manifest.config().digest())))?;
        let diff_ids = diff_ids(&config).map_err(bad)?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(bad(format!(
                "the manifest lists {} layers but the config {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers().iter().zip(&diff_ids) {
            let hex = parse_sha256(layer.digest().as_ref())
                .ok_or_else(|| bad(format!("layer digest {} is not sha256", layer.digest())))?;
            layers.push(LayerSource {
                reader: source.open(&format!("blobs/sha256/{hex}")).map_err(bad)?,
                what: format!("layer {}", layer.digest()),
                digest: Some(hex.to_string()),
                size: Some(layer.size()),
                diff_id: Some(diff_id.clone()),
                media_type: Some(layer.media_type().to_string()),
            });
        }
        self.stage_and_commit(
            path,
            staging,
            layers,
            config_bytes,
            Some(manifest_bytes),
            name,
        )
    }

    fn import_docker(
        &self,
        path: &Path,
        source: &Source,
        staging: Staging,
        name: Option<String>,
    ) -> Result<ImageRecord, ImageError> {
        let bad = |reason: String| ImageError::BadArchive {
            path: path.to_path_buf(),
            reason,
        };
        let entries: Vec<DockerManifest> =
            serde_json::from_slice(&source.read_small("manifest.json").map_err(bad)?)
                .map_err(|e| bad(format!("manifest.json: {e}")))?;
        let entry = entries
            .into_iter()
            .next()
            .ok_or_else(|| bad("manifest.json lists no image".into()))?;
        let config_bytes = source.read_small(&entry.config).map_err(bad)?;
        // Docker names the config after its digest (`<hex>.json` or `blobs/sha256/<hex>`).
        let stem = entry.config.rsplit('/').next().unwrap_or("");
        let claimed = stem.strip_suffix(".json").unwrap_or(stem);
        if is_hex64(claimed) && sha256_hex(&config_bytes) != claimed {
            return Err(bad(format!(
                "digest mismatch: config {} hashes to sha256:{}",
                entry.config,
                sha256_hex(&config_bytes)
            )));
        }
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(format!("config {}: {e}", entry.config)))?;
        let diff_ids = diff_ids(&config).map_err(bad)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(bad(format!(
                "manifest.json lists {} layers but the config {} diff_ids",
                entry.layers.len(),
                diff_ids.len()
            )));
        }
        let name = name.or(entry
            .repo_tags
            .and_then(|tags| tags.into_iter().next())
            .and_then(|n| normalize_name(&n).ok()));
        let mut layers = Vec::new();
        for (member, diff_id) in entry.layers.iter().zip(&diff_ids) {
            // Docker >= 25 stores layers as `blobs/sha256/<digest>`: that name is a digest too.
            let digest = member
                .strip_prefix("blobs/sha256/")
                .filter(|hex| is_hex64(hex))
                .map(str::to_string);
            layers.push(LayerSource {
                reader: source.open(member).map_err(bad)?,
                what: format!("layer {member}"),
                digest,
                size: None,
                diff_id: Some(diff_id.clone()),
                media_type: None,
            });
        }
        self.stage_and_commit(path, staging, layers, config_bytes, None, name)
    }

    /// For images whose config is made here: each layer's diffid is known only once read.
    /// Stages `sources` as the layers above `base` (layers the store holds already) and
    /// commits the image; `config` gets the diffids of all of them.
    pub(crate) fn import_layers_with(
        &self,
        path: &Path,
        mut staging: Staging,
        base: Vec<LayerRef>,
        sources: Vec<LayerSource<'_>>,
        mut config: ImageConfiguration,
        name: Option<String>,
    ) -> Result<ImageRecord, ImageError> {
        let mut layers = base;
        for source in sources {
            layers.push(self.stage_layer(path, &mut staging, source)?);
        }
        config.rootfs_mut().set_diff_ids(
            layers
                .iter()
                .map(|l| format!("sha256:{}", l.diff_id))
                .collect(),
        );
        if config.created().is_none() {
            config.set_created(Some(now_rfc3339()));
        }
        let config_bytes = serde_json::to_vec(&config).expect("configs serialize");
        self.finish(staging, layers, config_bytes, None, name)
    }

    /// For archives that carry a config: its diffids are locked before any layer is read, in
    /// sorted order (two imports of overlapping images cannot deadlock).
    fn stage_and_commit(
        &self,
        path: &Path,
        mut staging: Staging,
        sources: Vec<LayerSource<'_>>,
        config_bytes: Vec<u8>,
        manifest_bytes: Option<Vec<u8>>,
        name: Option<String>,
    ) -> Result<ImageRecord, ImageError> {
        let mut wanted: Vec<&str> = sources
            .iter()
            .filter_map(|s| s.diff_id.as_deref())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        for diff_id in wanted {
            let lock = self
                .lock_layer(diff_id, true)?
                .expect("waiting locks succeed");
            staging.locks.push(lock);
        }
        let mut layers = Vec::new();
        for source in sources {
            layers.push(self.stage_layer(path, &mut staging, source)?);
        }
        self.finish(staging, layers, config_bytes, manifest_bytes, name)
    }

    /// Stages config and manifest (one is generated when the archive has none) and commits.
    fn finish(
        &self,
        mut staging: Staging,
        layers: Vec<LayerRef>,
        config_bytes: Vec<u8>,
        manifest_bytes: Option<Vec<u8>>,
        name: Option<String>,
    ) -> Result<ImageRecord, ImageError> {
        let id = sha256_hex(&config_bytes);
        let manifest_bytes = match manifest_bytes {
            Some(bytes) => bytes,
            None => generated_manifest(&id, config_bytes.len() as u64, &layers),
        };
        let manifest = sha256_hex(&manifest_bytes);
        for (bytes, hex) in [(&config_bytes, &id), (&manifest_bytes, &manifest)] {
            let staged = staging.path("blob");
            fs::write(&staged, bytes).map_err(io_err("writing", &staged))?;
            staging.blobs.push((staged, hex.clone()));
        }
        let record = ImageRecord {
            id,
            manifest,
            layers,
        };
        self.commit(staging, &record, name.as_deref())?;
        Ok(record)
    }

    /// Copies a layer blob into staging while hashing it, checks it, then (unless the store
    /// has the layer already) unpacks it, hashing the uncompressed stream for the diffid.
    fn stage_layer(
        &self,
        path: &Path,
        staging: &mut Staging,
        mut source: LayerSource<'_>,
    ) -> Result<LayerRef, ImageError> {
        let bad = |reason: String| ImageError::BadArchive {
            path: path.to_path_buf(),
            reason,
        };
        let blob = staging.path("blob");
        let mut out = File::create(&blob).map_err(io_err("creating", &blob))?;
        let mut hashing = HashingReader::new(&mut source.reader);
        unpack::copy_data(&mut hashing, &mut out).map_err(|e| match e {
            CopyError::Read(e) => bad(format!("reading {}: {e}", source.what)),
            CopyError::Write(e) => io_err("writing", &blob)(e),
        })?;
        let (digest, size) = hashing
            .finish()
            .map_err(|e| bad(format!("reading {}: {e}", source.what)))?;
        if let Some(want) = &source.digest {
            if *want != digest {
                return Err(bad(format!(
                    "digest mismatch: {} hashes to sha256:{digest}",
                    source.what
                )));
            }
        }
        if let Some(want) = source.size {
            if want != size {
                return Err(bad(format!(
                    "{} is {size} bytes, the manifest says {want} (truncated?)",
                    source.what
                )));
            }
        }
        let mut reader = BufReader::new(File::open(&blob).map_err(io_err("opening", &blob))?);
        let gzipped = reader
            .fill_buf()
            .map_err(io_err("reading", &blob))?
            .starts_with(&[0x1f, 0x8b]);
        let stream: Box<dyn Read> = if gzipped {
            Box::new(MultiGzDecoder::new(reader))
        } else {
            Box::new(reader)
        };
        let mut hashing = HashingReader::new(stream);
        let present = source
            .diff_id
            .as_deref()
            .and_then(parse_sha256)
            .is_some_and(|hex| self.layer_path(hex).is_dir());
        let unpacked = staging.path("layer");
        if !present {
            fs::create_dir(&unpacked).map_err(io_err("creating", &unpacked))?;
            unpack::unpack(&mut hashing, &unpacked).map_err(|e| {
                if e.is_archive_fault() {
                    bad(format!("{}: {e}", source.what))
                } else {
                    ImageError::Io {
                        what: "unpacking into",
                        path: unpacked.clone(),
                        error: io::Error::other(e.to_string()),
                    }
                }
            })?;
        }
        let (diff_id, _) = hashing
            .finish()
            .map_err(|e| bad(format!("{}: corrupt data: {e}", source.what)))?;
        if let Some(want) = &source.diff_id {
            if *want != format!("sha256:{diff_id}") {
                return Err(bad(format!(
                    "digest mismatch: {} unpacks to diff_id sha256:{diff_id}, the config says {want}",
                    source.what
                )));
            }
        }
        if !present {
            if source.diff_id.is_none() {
                // Known only now: lock it before looking whether another import committed it.
                let lock = self
                    .lock_layer(&diff_id, true)?
                    .expect("waiting locks succeed");
                staging.locks.push(lock);
            }
            staging.layers.push((unpacked, diff_id.clone()));
        }
        staging.blobs.push((blob, digest.clone()));
        let media_type = source.media_type.unwrap_or_else(|| {
            if gzipped {
                MediaType::ImageLayerGzip.to_string()
            } else {
                MediaType::ImageLayer.to_string()
            }
        });
        Ok(LayerRef {
            digest,
            diff_id,
            size,
            media_type,
        })
    }
}

/// Lists a tar file's members (their data offsets), seeking past the data.
fn index_tar(path: &Path) -> io::Result<Source> {
    let file = File::open(path)?;
    let mut members = HashMap::new();
    let mut archive = tar::Archive::new(File::open(path)?);
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let key = member_key(&String::from_utf8_lossy(&entry.path_bytes()));
        let member = match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default();
                if entry.header().entry_type() == tar::EntryType::Link {
                    // A hard link names its target from the archive's root.
                    Member::Symlink(format!("/{target}"))
                } else {
                    Member::Symlink(target)
                }
            }
            kind if kind.is_file() => Member::File {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
            _ => continue,
        };
        members.insert(key, member);
    }
    Ok(Source::Tar { file, members })
}

/// Reads a small blob named by a descriptor, checking its digest and size.
fn read_blob(source: &Source, descriptor: &Descriptor) -> Result<Vec<u8>, String> {
    let digest = descriptor.digest().to_string();
    let hex = parse_sha256(&digest).ok_or_else(|| format!("digest {digest} is not sha256"))?;
    let bytes = source.read_small(&format!("blobs/sha256/{hex}"))?;
    let actual = sha256_hex(&bytes);
    if actual != hex {
        return Err(format!(
            "digest mismatch: blob {digest} hashes to sha256:{actual}"
        ));
    }
    if bytes.len() as u64 != descriptor.size() {
        return Err(format!(
            "blob {digest} is {} bytes, its descriptor says {}",
            bytes.len(),
            descriptor.size()
        ));
    }
    Ok(bytes)
}

/// The manifest for this host (linux/amd64, or one without a platform), following nested
/// indexes; with the name its annotations give, if any.
fn pick_manifest(
    source: &Source,
    index: &ImageIndex,
    depth: usize,
) -> Result<(Descriptor, Option<String>), String> {
    if depth > 4 {
        return Err("image indexes nest too deep".into());
    }
    let fits = |d: &&Descriptor| {
        d.platform()
            .as_ref()
            .is_none_or(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64)
    };
    let descriptor = index
        .manifests()
        .iter()
        .find(fits)
        .ok_or("index.json lists no manifest for linux/amd64")?;
    let name = descriptor.annotations().as_ref().and_then(|a| {
        a.get(CONTAINERD_NAME)
            .or_else(|| {
                a.get(REF_NAME)
                    .filter(|n| n.contains(':') || n.contains('/'))
            })
            .cloned()
    });
    if *descriptor.media_type() == MediaType::ImageIndex {
        let nested: ImageIndex = serde_json::from_slice(&read_blob(source, descriptor)?)
            .map_err(|e| format!("index {}: {e}", descriptor.digest()))?;
        let (found, inner_name) = pick_manifest(source, &nested, depth + 1)?;
        return Ok((found, name.or(inner_name)));
    }
    Ok((descriptor.clone(), name))
}

fn diff_ids(config: &ImageConfiguration) -> Result<Vec<String>, String> {
    let ids = config.rootfs().diff_ids().clone();
    match ids.iter().find(|id| parse_sha256(id).is_none()) {
        Some(id) => Err(format!("diff_id {id:?} is not a sha256 digest")),
        None => Ok(ids),
    }
}

fn generated_manifest(config_hex: &str, config_size: u64, layers: &[LayerRef]) -> Vec<u8> {
    let descriptor = |media_type: &str, hex: &str, size: u64| serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": size});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "config": descriptor(MediaType::ImageConfig.as_ref(), config_hex, config_size),
        "layers": layers.iter().map(|l| descriptor(&l.media_type, &l.digest, l.size)).collect::<Vec<_>>(),
    });
    // Checked against oci-spec's type, so a generated manifest is one the spec accepts.
    let bytes = serde_json::to_vec(&manifest).expect("json serializes");
    debug_assert!(serde_json::from_slice::<ImageManifest>(&bytes).is_ok());
    bytes
}

/// UTC now as RFC 3339 (seconds), without a date library.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_resolve_inside_the_archive() {
        assert_eq!(
            resolve_relative("abc", "../blobs/sha256/x"),
            "blobs/sha256/x"
        );
        assert_eq!(resolve_relative("a/b", "/c"), "c");
        assert_eq!(member_key("./blobs//sha256/x"), "blobs/sha256/x");
    }

    #[test]
    fn dates_are_rfc3339() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }
}
