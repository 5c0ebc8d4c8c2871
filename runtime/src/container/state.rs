//! What isolab remembers about containers between commands: one directory per container
//! under `/run/isolab/<name>/` with `state.json`, `lock` and (detached) `log`.
//!
//! - Creating the directory reserves the name: mkdir is atomic, so of two commands creating
//!   the same name exactly one wins.
//! - Every change is made under an exclusive flock on `lock`, and `state.json` is replaced
//!   atomically (written to a temporary file, then renamed), so readers without the lock
//!   (`ps`) see the old or the new record, never a torn one.
//! - A pid is only trusted together with its start time (`/proc/<pid>/stat` field 22): a
//!   recorded pid whose start time differs belongs to another process now.
//!
//! /run is a tmpfs: the records go with a reboot, as the containers do.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the records live.
pub const STATE_ROOT: &str = "/run/isolab";
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
const LOG_FILE: &str = "log";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The name is reserved and the container is being set up.
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// How `isolab exec` starts a process in the container unless told otherwise: as the
/// container's own command was started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessDefaults {
    pub uid: u32,
    pub gid: u32,
    pub workdir: String,
    pub env: Vec<(String, String)>,
    pub privileged: bool,
    pub seccomp: bool,
    /// `--security-opt seccomp=FILE`: the profile's JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<String>,
}

/// One container's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub name: String,
    /// The container's init, as a host pid; 0 until it exists.
    pub pid: i32,
    pub pid_start_time: u64,
    /// The process that waits for the init and records its end (`isolab run` itself for a
    /// foreground container).
    pub supervisor_pid: i32,
    pub supervisor_start_time: u64,
    pub rootfs: PathBuf,
    pub command: Vec<String>,
    pub cgroups: Vec<PathBuf>,
    /// Seconds since the epoch.
    pub created: u64,
    pub status: Status,
    /// Docker's convention: the command's status, or 128 + the signal.
    pub exit_code: Option<i32>,
    /// `exited`, `killed by signal N`, `oom-killed`, or why the end was not recorded.
    pub exit_reason: Option<String>,
    /// True for a container of a foreground `isolab run`, found through its cgroup.
    #[serde(default)]
    pub foreground: bool,
    pub process: ProcessDefaults,
}

impl State {
    /// Whether the init recorded as running is still the same live process, and someone
    /// still waits for it.
    pub fn is_running(&self) -> bool {
        self.status == Status::Running
            && is_alive(self.pid, self.pid_start_time)
            && is_alive(self.supervisor_pid, self.supervisor_start_time)
    }

    /// Whether the record can no longer change by itself: it is exited, or whoever was to
    /// record the end is gone.
    pub fn is_settled(&self) -> bool {
        self.status == Status::Exited || !is_alive(self.supervisor_pid, self.supervisor_start_time)
    }

    /// The status to show: a running or created record whose supervisor is gone is exited,
    /// with the reason that nobody saw how.
    pub fn observed(mut self) -> State {
        if self.status != Status::Exited && !self.is_running() && self.is_settled() {
            self.status = Status::Exited;
            self.exit_reason = Some("unknown: its supervisor is gone (run isolab gc)".into());
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "a container named {name:?} exists already ({path} is present); remove it with isolab rm {name}"
    )]
    NameInUse { name: String, path: PathBuf },
    #[error("no such container {0}")]
    NoSuchContainer(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid container record: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io { what, path, source }
}

/// The directory of records.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Default for Store {
    fn default() -> Self {
        Store::at(Path::new(STATE_ROOT))
    }
}

impl Store {
    pub fn at(root: &Path) -> Self {
        Store {
            root: root.to_path_buf(),
        }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Whether a record for `name` exists (a cheap stat, for the foreground path).
    pub fn exists(&self, name: &str) -> bool {
        self.dir(name).exists()
    }

    /// Reserves `name` and returns its record locked; `state` is written as its first state.
    pub fn create(&self, state: &State) -> Result<Locked, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io_err("creating", &self.root))?;
        let dir = self.dir(&state.name);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StateError::NameInUse {
                    name: state.name.clone(),
                    path: dir,
                });
            }
            Err(e) => return Err(io_err("creating", &dir)(e)),
        }
        let lock_path = dir.join(LOCK_FILE);
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("creating", &lock_path))
            .and_then(|file| {
                flock(&file, libc::LOCK_EX, &lock_path)?;
                let locked = Locked {
                    dir: dir.clone(),
                    name: state.name.clone(),
                    _lock: file,
                };
                locked.write(state)?;
                Ok(locked)
            });
        if created.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        created
    }

    /// Locks the record of `name`, exclusively or shared.
    pub fn lock(&self, name: &str, exclusive: bool) -> Result<Locked, StateError> {
        self.lock_with(
            name,
            if exclusive {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            },
        )
    }

    /// Like [`lock`](Self::lock) exclusively, but `None` when another command holds it.
    pub fn try_lock(&self, name: &str) -> Result<Option<Locked>, StateError> {
        match self.lock_with(name, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(locked) => Ok(Some(locked)),
            Err(StateError::Io { source, .. })
                if source.raw_os_error() == Some(libc::EWOULDBLOCK) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn lock_with(&self, name: &str, operation: libc::c_int) -> Result<Locked, StateError> {
        let dir = self.dir(name);
        let lock_path = dir.join(LOCK_FILE);
        let file = match File::open(&lock_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NoSuchContainer(name.to_string()));
            }
            Err(e) => return Err(io_err("opening", &lock_path)(e)),
        };
        flock(&file, operation, &lock_path)?;
        // The record may have been removed (and the name even reused) while this waited:
        // the lock only counts if it is on the file that is there now.
        let held = file.metadata().map_err(io_err("reading", &lock_path))?;
        match fs::metadata(&lock_path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => Ok(Locked {
                dir,
                name: name.to_string(),
                _lock: file,
            }),
            _ => Err(StateError::NoSuchContainer(name.to_string())),
        }
    }

    /// Reads a record without locking (replacements are atomic).
    pub fn read(&self, name: &str) -> Result<State, StateError> {
        read_state(&self.dir(name), name)
    }

    /// The names of every record, sorted.
    pub fn names(&self) -> Result<Vec<String>, StateError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("reading", &self.root)(e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // Dot directories are isolab's own (the bridge's leases); no name starts with one.
            .filter(|name| !name.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }
}

fn read_state(dir: &Path, name: &str) -> Result<State, StateError> {
    let path = dir.join(STATE_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StateError::NoSuchContainer(name.to_string()));
        }
        Err(e) => return Err(io_err("reading", &path)(e)),
    };
    serde_json::from_slice(&text).map_err(|source| StateError::Corrupt { path, source })
}

fn flock(file: &File, operation: libc::c_int, path: &Path) -> Result<(), StateError> {
    loop {
        // SAFETY: flock takes a descriptor this File owns and an integer; no memory is shared.
        let ret = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if ret == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(io_err("locking", path)(error));
        }
    }
}

/// A record with its lock held; dropping it releases the lock.
#[derive(Debug)]
pub struct Locked {
    dir: PathBuf,
    name: String,
    _lock: File,
}

impl Locked {
    pub fn read(&self) -> Result<State, StateError> {
        read_state(&self.dir, &self.name)
    }

    /// Replaces state.json atomically: a temporary file in the same directory, renamed over.
    pub fn write(&self, state: &State) -> Result<(), StateError> {
        let path = self.dir.join(STATE_FILE);
        let temp = self
            .dir
            .join(format!(".{STATE_FILE}.{}", std::process::id()));
        let json = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| file.write_all(&json))
            .and_then(|()| fs::rename(&temp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map_err(io_err("writing", &path))
    }

    /// Where a detached container's output goes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// Removes the record (and its log); the name is free again.
    pub fn remove(self) -> Result<(), StateError> {
        fs::remove_dir_all(&self.dir).map_err(io_err("removing", &self.dir))
    }
}

/// The log file of container `name` (which may not exist).
pub fn log_path(store: &Store, name: &str) -> PathBuf {
    store.dir(name).join(LOG_FILE)
}

/// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot;
/// `None` when there is no such process.
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; it ends at the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    // rest starts at field 3 (state); a zombie has exited already.
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether `pid` is still the live (not zombie) process that started at `start`.
pub fn is_alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(name: &str) -> State {
        State {
            id: "0123abcd".into(),
            name: name.into(),
            pid: 0,
            pid_start_time: 0,
            supervisor_pid: std::process::id() as i32,
            supervisor_start_time: start_time(std::process::id() as i32).unwrap(),
            rootfs: "/r".into(),
            command: vec!["sh".into()],
            cgroups: Vec::new(),
            created: 1,
            status: Status::Created,
            exit_code: None,
            exit_reason: None,
            foreground: false,
            process: ProcessDefaults::default(),
        }
    }

    #[test]
    fn names_are_reserved_once_and_freed_by_remove() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::at(root.path());
        let locked = store.create(&sample("a")).unwrap();
        assert!(matches!(
            store.create(&sample("a")),
            Err(StateError::NameInUse { .. })
        ));
        // Held by `locked`: a second exclusive lock must wait, so try_lock answers None.
        assert!(store.try_lock("a").unwrap().is_none());
        let mut state = locked.read().unwrap();
        state.status = Status::Running;
        locked.write(&state).unwrap();
        assert_eq!(store.read("a").unwrap().status, Status::Running);
        assert_eq!(store.names().unwrap(), ["a"]);
        locked.remove().unwrap();
        assert!(matches!(
            store.lock("a", false),
            Err(StateError::NoSuchContainer(_))
        ));
        store.create(&sample("a")).unwrap();
    }

    #[test]
    fn only_live_pids_with_their_start_time_count() {
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1));
        assert!(!is_alive(0, 0));
        let mut lost = sample("x");
        lost.status = Status::Running;
        lost.pid = me;
        lost.pid_start_time = start;
        assert!(lost.clone().observed().status == Status::Running);
        lost.supervisor_start_time += 1;
        let observed = lost.observed();
        assert_eq!(observed.status, Status::Exited);
        assert!(observed.exit_reason.unwrap().contains("supervisor is gone"));
    }
}
