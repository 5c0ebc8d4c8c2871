//! What the container targets run in: a root filesystem holding the very workload file the
//! harness hashed (hard-linked where possible, else copied, and its sha256 checked either
//! way), plus busybox when the host has it; and, for runc, an OCI bundle whose config.json
//! asks for the isolation `isolab run` gives by default.
//!
//! Docker and Podman get the same root filesystem as an image, imported once per workload
//! build: [`import_image`].
//!
//! Differences from `isolab run` that runc 1.1 cannot close: no time namespace (runc 1.2
//! adds it), and no seccomp filter (runc applies none of its own; Docker passes its profile
//! in config.json, which needs syscall names isolab's BPF builder does not keep).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use isolab_runtime::container::{DEFAULT_PATH, defaults};
use isolab_runtime::image::{Base, BuildOptions, ImageError, Store};
use serde_json::{Value, json};

use crate::workload::{Workload, hash_file};

/// The workload's path inside every root filesystem built here.
pub const WORKLOAD_IN_ROOT: &str = "/isolab-workload";
/// The limits every container target runs under, so that a cgroup with limits is part of
/// what is measured.
pub const MEMORY_LIMIT: &str = "256M";
const MEMORY_LIMIT_BYTES: u64 = 256 << 20;
pub const PIDS_LIMIT: u64 = 256;
const BUSYBOX: &str = "/bin/busybox";

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{cli} import of {tag} failed: {stderr}")]
    Import {
        cli: String,
        tag: String,
        stderr: String,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("building the benchmark image: {0}")]
    Image(#[from] ImageError),
    #[error("the workload copied to {path} has sha256 {found}, not the measured {expected}")]
    NotTheSameBytes {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.to_path_buf();
    move |source| RootfsError::Io { what, path, source }
}

/// A temporary root filesystem, removed when dropped.
#[derive(Debug)]
pub struct Rootfs {
    dir: tempfile::TempDir,
}

impl Rootfs {
    /// `<dir>/` with the workload at [`WORKLOAD_IN_ROOT`] and busybox at /bin/busybox.
    pub fn build(workload: &Workload) -> Result<Rootfs, RootfsError> {
        let dir = tempfile::Builder::new()
            .prefix("isolab-rootfs-")
            .tempdir()
            .map_err(io_err(
                "creating a temporary directory in",
                &std::env::temp_dir(),
            ))?;
        let root = dir.path();
        // World-searchable: the container's processes need to reach their files.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))
            .map_err(io_err("setting permissions of", root))?;
        let target = root.join(WORKLOAD_IN_ROOT.trim_start_matches('/'));
        // A hard link is the same inode; a copy (across filesystems) is checked below.
        if fs::hard_link(&workload.path, &target).is_err() {
            fs::copy(&workload.path, &target)
                .map_err(io_err("copying the workload to", &target))?;
        }
        check_same_bytes(&target, workload)?;
        if Path::new(BUSYBOX).exists() {
            let bin = root.join("bin");
            fs::create_dir(&bin).map_err(io_err("creating", &bin))?;
            fs::copy(BUSYBOX, bin.join("busybox")).map_err(io_err("copying busybox to", &bin))?;
        }
        for mount_point in ["proc", "sys", "dev"] {
            let path = root.join(mount_point);
            fs::create_dir(&path).map_err(io_err("creating", &path))?;
        }
        Ok(Rootfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The workload inside it, as a host path.
    pub fn workload(&self) -> PathBuf {
        self.path().join(WORKLOAD_IN_ROOT.trim_start_matches('/'))
    }
}

/// The image `isolab-workload:<sha256 of the workload>` in the engine `cli` (docker or
/// podman): the root filesystem of [`Rootfs::build`] as one layer. An image with that tag
/// holds these very bytes, so a later run finds it and imports nothing. Returns the tag.
pub fn import_image(cli: &str, workload: &Workload) -> Result<String, RootfsError> {
    let tag = format!("isolab-workload:{}", workload.sha256);
    let known = Command::new(cli)
        .args(["image", "inspect", "--format", "{{.Id}}", &tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(io_err("running", Path::new(cli)))?;
    if known.success() {
        return Ok(tag);
    }
    let rootfs = Rootfs::build(workload)?;
    let mut import = Command::new(cli)
        .args(["import", "-", &tag])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err("running", Path::new(cli)))?;
    // The tar stream goes straight into the engine: no archive file on disk.
    let written = import.stdin.take().map(|stdin| {
        let mut archive = tar::Builder::new(stdin);
        archive.follow_symlinks(false);
        archive
            .append_dir_all(".", rootfs.path())
            .and_then(|()| archive.finish())
    });
    let mut stderr = String::new();
    if let Some(mut pipe) = import.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = import
        .wait()
        .map_err(io_err("waiting for", Path::new(cli)))?;
    match written {
        Some(Err(e)) if status.success() => Err(io_err("archiving", rootfs.path())(e)),
        _ if status.success() => Ok(tag),
        _ => Err(RootfsError::Import {
            cli: cli.to_owned(),
            tag,
            stderr: stderr.trim().to_owned(),
        }),
    }
}

/// That `copy` holds the very bytes the harness measured.
fn check_same_bytes(copy: &Path, workload: &Workload) -> Result<(), RootfsError> {
    let (found, _) = hash_file(copy).map_err(|e| RootfsError::Io {
        what: "hashing",
        path: copy.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?;
    if found != workload.sha256 {
        return Err(RootfsError::NotTheSameBytes {
            path: copy.to_path_buf(),
            expected: workload.sha256.clone(),
            found,
        });
    }
    Ok(())
}

/// A temporary image store holding [`ImageStore::IMAGE`]: a scratch image of only the
/// workload (at [`WORKLOAD_IN_ROOT`]), for the container-image target. Removed when dropped.
#[derive(Debug)]
pub struct ImageStore {
    dir: tempfile::TempDir,
    workload: PathBuf,
}

impl ImageStore {
    pub const IMAGE: &str = "isolab-bench:latest";

    pub fn build(workload: &Workload) -> Result<ImageStore, RootfsError> {
        let dir = tempfile::Builder::new()
            .prefix("isolab-store-")
            .tempdir()
            .map_err(io_err(
                "creating a temporary directory in",
                &std::env::temp_dir(),
            ))?;
        let store = Store::open(dir.path())?;
        let record = store.build(&BuildOptions {
            base: Base::Scratch,
            name: Self::IMAGE.to_owned(),
            workload: Some(workload.path.clone().into()),
        })?;
        // The layer directory overlayfs reads: the bytes the container will execute.
        let workload_path = dir
            .path()
            .join("layers")
            .join(&record.layers[0].diff_id)
            .join(WORKLOAD_IN_ROOT.trim_start_matches('/'));
        check_same_bytes(&workload_path, workload)?;
        Ok(ImageStore {
            dir,
            workload: workload_path,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The workload in the image's layer, as a host path.
    pub fn workload(&self) -> PathBuf {
        self.workload.clone()
    }
}

/// An OCI bundle: `<dir>/config.json` and the root filesystem at `<dir>/rootfs`.
#[derive(Debug)]
pub struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    /// `id` names the container and its cgroup (`/isolab-bench-<id>`, removed by runc).
    pub fn build(workload: &Workload, id: &str) -> Result<Bundle, RootfsError> {
        let rootfs = Rootfs::build(workload)?;
        let dir = tempfile::Builder::new()
            .prefix("isolab-bundle-")
            .tempdir()
            .map_err(io_err(
                "creating a temporary directory in",
                &std::env::temp_dir(),
            ))?;
        let root = dir.path().join("rootfs");
        // A rename within the temporary directory's filesystem; the TempDir of the rootfs
        // is disarmed, as the bundle's own removes it now.
        let built = rootfs.dir.keep();
        fs::rename(&built, &root).map_err(io_err("moving the root filesystem to", &root))?;
        let mut argv = vec![WORKLOAD_IN_ROOT.to_owned()];
        argv.extend(workload.argv());
        let config = config_json(&argv, id);
        let path = dir.path().join("config.json");
        fs::write(
            &path,
            serde_json::to_vec_pretty(&config).unwrap_or_default(),
        )
        .map_err(io_err("writing", &path))?;
        Ok(Bundle { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The workload inside its root filesystem, as a host path.
    pub fn workload(&self) -> PathBuf {
        self.path()
            .join("rootfs")
            .join(WORKLOAD_IN_ROOT.trim_start_matches('/'))
    }
}

/// config.json for `argv` with `isolab run`'s default isolation (OCI runtime spec 1.0).
pub fn config_json(argv: &[String], id: &str) -> Value {
    let caps = defaults::capabilities();
    let namespaces: Vec<Value> = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
        .iter()
        .map(|t| json!({ "type": t }))
        .collect();
    let mount = |destination: &str, kind: &str, source: &str, options: &[&str]| json!({"destination": destination, "type": kind, "source": source, "options": options});
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": [format!("PATH={DEFAULT_PATH}"), "HOSTNAME=isolab-bench", "HOME=/root"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
                "inheritable": [], "ambient": []
            },
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "isolab-bench",
        "mounts": [
            mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
            mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
            mount("/dev/pts", "devpts", "devpts",
                &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            mount("/dev/shm", "tmpfs", "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
            mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
            mount("/sys/fs/cgroup", "cgroup", "cgroup",
                &["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ],
        "linux": {
            "cgroupsPath": format!("/isolab-bench-{id}"),
            "resources": {
                "memory": {"limit": MEMORY_LIMIT_BYTES},
                "pids": {"limit": PIDS_LIMIT},
                "devices": [{"allow": false, "access": "rwm"}]
            },
            "namespaces": namespaces,
            "maskedPaths": defaults::MASKED,
            "readonlyPaths": defaults::READ_ONLY
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_config_matches_isolabs_defaults() {
        let config = config_json(&["/isolab-workload".into(), "ready".into()], "x");
        assert_eq!(config["process"]["args"][1], "ready");
        assert_eq!(
            config["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(config["linux"]["maskedPaths"][0], "/proc/acpi");
        assert_eq!(config["linux"]["resources"]["memory"]["limit"], 256 << 20);
        assert_eq!(config["linux"]["cgroupsPath"], "/isolab-bench-x");
        assert_eq!(config["linux"]["namespaces"].as_array().unwrap().len(), 6);
    }
}
