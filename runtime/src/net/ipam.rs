//! Address management for the bridge: one lease file per address in use.
//!
//! `<dir>/leases/<address>` holds the container's name and the process that holds the
//! lease (pid and start time: the `isolab run` in the foreground, the supervisor of a
//! detached container). Allocation scans the leases and creates the lowest free one under an
//! exclusive flock on `<dir>/lock`, so two starts at the same moment never get the same
//! address; each file is written to a temporary file and renamed into place, so a reader
//! never sees half a lease. A lease whose holder is gone (SIGKILL) is reclaimed by `gc`.
//! The directory lives on /run, a tmpfs: leases go with a reboot, as do the veths.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::NetError;
use crate::container::state;
use crate::explain::Explain;

/// One address in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    /// The container it belongs to.
    pub name: String,
    pub holder_pid: i32,
    pub holder_start_time: u64,
}

impl Lease {
    /// Whether the process that holds it is still the one that took it.
    pub fn holder_alive(&self) -> bool {
        state::is_alive(self.holder_pid, self.holder_start_time)
    }
}

/// The lease directory and the range it hands out.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    /// The first and last address handed out, inclusive.
    range: (Ipv4Addr, Ipv4Addr),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> NetError {
    let path = path.to_path_buf();
    move |source| NetError::Io { what, path, source }
}

impl Ipam {
    pub fn at(dir: &Path, range: (Ipv4Addr, Ipv4Addr)) -> Ipam {
        Ipam {
            dir: dir.to_path_buf(),
            range,
        }
    }

    /// Whether a bridge container was ever started since boot (the directory is made then).
    pub fn in_use(&self) -> bool {
        self.dir.is_dir()
    }

    fn leases_dir(&self) -> PathBuf {
        self.dir.join("leases")
    }

    /// Takes the allocation lock (created on first use).
    pub fn lock(&self, explain: &Explain) -> Result<Locked<'_>, NetError> {
        let leases = self.leases_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&leases)
            .map_err(io_err("creating", &leases))?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        explain.step(format_args!("flock({}, LOCK_EX)", path.display()));
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io_err("locking", &path)(errno.into()))?;
        Ok(Locked {
            ipam: self,
            _lock: lock,
        })
    }

    /// Every lease on disk, by address.
    pub fn leases(&self) -> Result<Vec<Lease>, NetError> {
        let dir = self.leases_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("reading", &dir)(e)),
        };
        let mut leases = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            // Temporary files of a write in progress start with a dot.
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let text = match fs::read(&path) {
                Ok(text) => text,
                // Released meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("reading", &path)(e)),
            };
            let lease = serde_json::from_slice(&text)
                .map_err(|source| NetError::CorruptLease { path, source })?;
            leases.push(lease);
        }
        leases.sort_by_key(|l: &Lease| l.address);
        Ok(leases)
    }

    fn path_of(&self, address: Ipv4Addr) -> PathBuf {
        self.leases_dir().join(address.to_string())
    }

    /// Removes the lease of `address`; false when there was none.
    pub fn release(&self, address: Ipv4Addr, explain: &Explain) -> Result<bool, NetError> {
        let path = self.path_of(address);
        explain.step(format_args!(
            "unlink {}  (release the lease)",
            path.display()
        ));
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("removing", &path)(e)),
        }
    }
}

/// The allocation lock, held: what allocates must hold it.
#[derive(Debug)]
pub struct Locked<'a> {
    ipam: &'a Ipam,
    _lock: Flock<File>,
}

impl Locked<'_> {
    /// Leases the lowest free address to `name`, held by this process.
    pub fn allocate(&self, name: &str, explain: &Explain) -> Result<Lease, NetError> {
        let taken: Vec<Ipv4Addr> = self.ipam.leases()?.iter().map(|l| l.address).collect();
        let (first, last) = self.ipam.range;
        let address = (u32::from(first)..=u32::from(last))
            .map(Ipv4Addr::from)
            .find(|a| !taken.contains(a))
            .ok_or(NetError::Exhausted {
                first,
                last,
                dir: self.ipam.leases_dir(),
            })?;
        let pid = std::process::id() as i32;
        let lease = Lease {
            address,
            name: name.to_string(),
            holder_pid: pid,
            holder_start_time: state::start_time(pid).unwrap_or(0),
        };
        let path = self.ipam.path_of(address);
        explain.step(format_args!(
            "write {} = {{name: {name:?}, holder pid {pid}}}  (temporary file + rename)",
            path.display()
        ));
        let dir = self.ipam.leases_dir();
        let mut temp = tempfile::Builder::new()
            .prefix(".lease")
            .tempfile_in(&dir)
            .map_err(io_err("creating a temporary file in", &dir))?;
        let json = serde_json::to_vec(&lease).expect("a lease serialises");
        temp.write_all(&json)
            .map_err(io_err("writing", temp.path()))?;
        temp.persist(&path)
            .map_err(|e| io_err("renaming into", &path)(e.error))?;
        Ok(lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(dir: &Path) -> Ipam {
        Ipam::at(
            dir,
            (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 4)),
        )
    }

    #[test]
    fn addresses_are_distinct_reused_after_release_and_run_out() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path());
        let x = Explain::off();
        let locked = ipam.lock(&x).unwrap();
        let a = locked.allocate("a", &x).unwrap();
        let b = locked.allocate("b", &x).unwrap();
        let c = locked.allocate("c", &x).unwrap();
        assert_eq!(
            [a.address, b.address, c.address],
            [
                Ipv4Addr::new(10, 0, 0, 2),
                Ipv4Addr::new(10, 0, 0, 3),
                Ipv4Addr::new(10, 0, 0, 4)
            ]
        );
        let full = locked.allocate("d", &x).unwrap_err();
        assert!(full.to_string().contains("isolab gc"), "{full}");
        assert!(b.holder_alive());
        assert!(ipam.release(b.address, &x).unwrap());
        assert!(!ipam.release(b.address, &x).unwrap());
        assert_eq!(locked.allocate("e", &x).unwrap().address, b.address);
        let names: Vec<String> = ipam.leases().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["a", "e", "c"]);
    }

    #[test]
    fn concurrent_allocations_get_distinct_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let wide = Ipam::at(
            dir.path(),
            (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 200)),
        );
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let ipam = wide.clone();
                std::thread::spawn(move || {
                    let x = Explain::off();
                    // Each thread opens its own lock file description, as separate
                    // processes would, so the flocks exclude each other.
                    ipam.lock(&x)
                        .unwrap()
                        .allocate(&format!("c{i}"), &x)
                        .unwrap()
                        .address
                })
            })
            .collect();
        let mut got: Vec<Ipv4Addr> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 16);
    }

    #[test]
    fn a_corrupt_lease_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path());
        ipam.lock(&Explain::off()).unwrap();
        fs::write(dir.path().join("leases/10.0.0.2"), b"{").unwrap();
        let err = ipam.leases().unwrap_err();
        assert!(err.to_string().contains("leases/10.0.0.2"), "{err}");
    }
}
