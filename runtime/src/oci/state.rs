//! One directory per container under the root: `state.json` (replaced atomically), the
//! start FIFO while the container is created, and `lock`, whose exclusive flock every
//! command that changes the container holds.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::runtime::{ContainerState, Spec};
use serde::{Deserialize, Serialize};

use super::OciError;
use crate::cgroups::{self, CgroupManager};
use crate::container::state as runtime_state;

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
const FIFO: &str = "exec.fifo";

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OciError {
    let path = path.to_path_buf();
    move |source| OciError::Io { what, path, source }
}

/// What isolab-oci remembers about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    /// The init's host pid and its start time (a pid alone may be reused).
    pub pid: i32,
    pub pid_start_time: u64,
    /// `start` has let the init go on.
    pub started: bool,
    /// Seconds since the epoch.
    pub created: u64,
    /// The config, for exec (seccomp) and the poststop hooks after the bundle may be gone.
    pub spec: Spec,
    /// The container's cgroup directories (one per hierarchy), and the levels above them
    /// that were made for it and go with it.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    #[serde(default)]
    pub cgroup_parents: Vec<PathBuf>,
    /// The exit status of an init that failed between `start` and its command's execve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<u8>,
}

impl Record {
    pub fn status(&self) -> ContainerState {
        if !runtime_state::is_alive(self.pid, self.pid_start_time) {
            ContainerState::Stopped
        } else if self.started {
            ContainerState::Running
        } else {
            ContainerState::Created
        }
    }

    /// The manager of the container's cgroups, wherever `linux.cgroupsPath` put them.
    pub fn cgroups(&self) -> Result<Box<dyn CgroupManager>, OciError> {
        Ok(if self.cgroups.is_empty() {
            // Written before the cgroups were known: isolab's default place.
            cgroups::existing(&self.id)?
        } else {
            cgroups::at(&self.cgroups, &self.cgroup_parents)?
        })
    }

    /// The spec's state JSON (also what hooks read on stdin).
    pub fn oci_state(&self, status: ContainerState) -> oci_spec::runtime::State {
        let mut state = oci_spec::runtime::State::default();
        state.set_version(super::OCI_VERSION.to_string());
        state.set_id(self.id.clone());
        state.set_status(status);
        state.set_pid((status != ContainerState::Stopped && self.pid > 0).then_some(self.pid));
        state.set_bundle(self.bundle.clone());
        state.set_annotations(Some(self.spec.annotations().clone().unwrap_or_default()));
        state
    }
}

/// The directory of records (`--root`).
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

/// A container's directory, locked.
#[derive(Debug)]
pub struct Locked {
    pub dir: PathBuf,
    _lock: Flock<File>,
}

impl Root {
    pub fn new(dir: &Path) -> Self {
        Root {
            dir: dir.to_path_buf(),
        }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn fifo(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(FIFO)
    }

    /// Reserves `id` (mkdir is atomic: of two creators one wins) and makes its FIFO.
    pub fn create(&self, id: &str) -> Result<Locked, OciError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err("creating", &self.dir))?;
        let dir = self.container_dir(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(OciError::Exists {
                    id: id.to_string(),
                    path: dir,
                });
            }
            Err(e) => return Err(io_err("creating", &dir)(e)),
        }
        let locked = match lock(&dir) {
            Ok(locked) => locked,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let fifo = dir.join(FIFO);
        // Writable by anyone: the init reaches it through its descriptor only, after it
        // has become the container's user; by path only root reaches it (the directory is
        // 0700). chmod, as mkfifo's mode goes through the umask.
        let made = nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .map_err(io::Error::from)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&fifo, fs::Permissions::from_mode(0o622))
            });
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&dir);
            return Err(io_err("creating", &fifo)(e));
        }
        Ok(locked)
    }

    pub fn lock(&self, id: &str) -> Result<Locked, OciError> {
        let dir = self.container_dir(id);
        if !dir.is_dir() {
            return Err(OciError::NoSuchContainer(id.to_string()));
        }
        lock(&dir)
    }

    pub fn read(&self, id: &str) -> Result<Record, OciError> {
        let path = self.container_dir(id).join(STATE_FILE);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OciError::NoSuchContainer(id.to_string()));
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        serde_json::from_slice(&text).map_err(|source| OciError::Corrupt { path, source })
    }
}

fn lock(dir: &Path) -> Result<Locked, OciError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("opening", &path))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err("locking", &path)(e.into()))?;
    Ok(Locked {
        dir: dir.to_path_buf(),
        _lock: lock,
    })
}

impl Locked {
    /// Replaces the record: a temporary file renamed over it, so readers see one or the other.
    pub fn write(&self, record: &Record) -> Result<(), OciError> {
        let path = self.dir.join(STATE_FILE);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(io_err("creating a file in", &self.dir))?;
        let json = serde_json::to_vec(record).map_err(|source| OciError::Corrupt {
            path: path.clone(),
            source,
        })?;
        tmp.write_all(&json)
            .map_err(io_err("writing", tmp.path()))?;
        tmp.persist(&path)
            .map_err(|e| io_err("replacing", &path)(e.error))?;
        Ok(())
    }

    /// Removes the container's directory (and so its record).
    pub fn remove(self) -> Result<(), OciError> {
        fs::remove_dir_all(&self.dir).map_err(io_err("removing", &self.dir))
    }
}
