//! The peer runtimes and VMMs isolab can measure side by side: installed or not, which version.

use std::env;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

/// Long enough for a cold `qemu-system-x86_64 --version`; short enough that a peer wrapper
/// which hangs (say, one waiting for a daemon) cannot stall the doctor.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

const NOT_PACKAGED: &str = "not packaged in Debian; optional";

/// Each peer's binary and the command that installs it on Debian.
const PEERS: [(&str, &str); 7] = [
    ("runc", "apt-get install -y runc"),
    ("crun", "apt-get install -y crun"),
    ("podman", "apt-get install -y podman"),
    ("docker", "apt-get install -y docker.io"),
    ("qemu-system-x86_64", "apt-get install -y qemu-system-x86"),
    ("firecracker", NOT_PACKAGED),
    ("cloud-hypervisor", NOT_PACKAGED),
];

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("running {path} --version: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("waiting for {path} --version: {source}")]
    Wait {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} --version did not finish within {}s", .after.as_secs())]
    TimedOut { path: PathBuf, after: Duration },
    #[error("{path} --version failed ({status}): {message}")]
    Failed {
        path: PathBuf,
        status: ExitStatus,
        message: String,
    },
    #[error("{path} --version printed nothing")]
    Silent { path: PathBuf },
}

#[derive(Debug, Serialize)]
pub struct Peer {
    #[serde(skip)]
    pub name: &'static str,
    pub installed: bool,
    pub path: Option<PathBuf>,
    /// The first line `--version` printed.
    pub version: Option<String>,
    /// Why an installed peer did not say its version.
    pub error: Option<String>,
    /// How to install it, when it is not.
    pub fix: Option<&'static str>,
    /// Something about this host that keeps the peer from working even when installed.
    pub note: Option<&'static str>,
}

/// All peers, in a fixed order, serialised as an object keyed by binary name.
#[derive(Debug)]
pub struct Peers(pub Vec<Peer>);

impl Serialize for Peers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|p| (p.name, p)))
    }
}

impl Peers {
    /// Looks each peer up on PATH and asks the ones found for their version, all at once.
    pub fn detect() -> Self {
        let path_var = env::var_os("PATH").unwrap_or_default();
        let peers = thread::scope(|scope| {
            let handles: Vec<_> = PEERS
                .iter()
                .map(|&(name, fix)| {
                    let path_var = &path_var;
                    scope.spawn(move || detect_one(name, fix, path_var))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("peer detection thread panicked"))
                .collect()
        });
        Peers(peers)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Peer> {
        self.0.iter_mut().find(|p| p.name == name)
    }
}

fn detect_one(name: &'static str, fix: &'static str, path_var: &OsStr) -> Peer {
    let Some(path) = find_on_path(name, path_var) else {
        return Peer {
            name,
            installed: false,
            path: None,
            version: None,
            error: None,
            fix: Some(fix),
            note: None,
        };
    };
    let mut command = Command::new(&path);
    command.arg("--version");
    let (version, error) = match first_line(&path, &mut command, VERSION_TIMEOUT) {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Peer {
        name,
        installed: true,
        path: Some(path),
        version,
        error,
        fix: None,
        note: None,
    }
}

/// The first executable file called `name` in the PATH-style list `path_var`.
fn find_on_path(name: &str, path_var: &OsStr) -> Option<PathBuf> {
    env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `command` (which runs `path`) and returns the first non-empty line it printed,
/// stdout first, since some tools print their version to stderr.
fn first_line(path: &Path, command: &mut Command, timeout: Duration) -> Result<String, PeerError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| PeerError::Spawn {
            path: path.to_path_buf(),
            source,
        })?;
    let status = wait_with_timeout(&mut child, timeout).map_err(|e| match e {
        WaitError::Io(source) => PeerError::Wait {
            path: path.to_path_buf(),
            source,
        },
        WaitError::TimedOut => PeerError::TimedOut {
            path: path.to_path_buf(),
            after: timeout,
        },
    })?;
    // Version banners are far below a pipe's capacity, so reading after the exit cannot
    // have blocked the child.
    let drain = |pipe: Option<&mut dyn Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            // A read error leaves the text empty, which reports as `Silent` below.
            let _ = pipe.read_to_string(&mut text);
        }
        text
    };
    let stdout = drain(child.stdout.as_mut().map(|p| p as &mut dyn Read));
    let stderr = drain(child.stderr.as_mut().map(|p| p as &mut dyn Read));
    let first = |text: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned)
    };
    if !status.success() {
        return Err(PeerError::Failed {
            path: path.to_path_buf(),
            status,
            message: first(&stderr)
                .or_else(|| first(&stdout))
                .unwrap_or_default(),
        });
    }
    first(&stdout)
        .or_else(|| first(&stderr))
        .ok_or_else(|| PeerError::Silent {
            path: path.to_path_buf(),
        })
}

enum WaitError {
    Io(io::Error),
    TimedOut,
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<ExitStatus, WaitError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(WaitError::Io)? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            // Killing and reaping may fail only if it exited meanwhile; either way it is gone.
            let _ = child.kill();
            let _ = child.wait();
            return Err(WaitError::TimedOut);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn finds_only_executable_files_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(b.join("tool-dir")).unwrap();
        fs::write(a.join("tool"), "").unwrap(); // not executable
        fs::write(b.join("tool"), "").unwrap();
        fs::set_permissions(b.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        let path_var = env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_on_path("tool", &path_var), Some(b.join("tool")));
        assert_eq!(find_on_path("tool-dir", &path_var), None);
        assert_eq!(find_on_path("absent", &path_var), None);
    }

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn takes_the_first_non_empty_line_from_stdout_then_stderr() {
        let path = Path::new("sh");
        let line = first_line(
            path,
            &mut sh("echo; echo ' tool 1.2 '; echo more"),
            VERSION_TIMEOUT,
        );
        assert_eq!(line.unwrap(), "tool 1.2");
        let line = first_line(path, &mut sh("echo 'tool 3' >&2"), VERSION_TIMEOUT);
        assert_eq!(line.unwrap(), "tool 3");
        let silent = first_line(path, &mut sh("true"), VERSION_TIMEOUT);
        assert!(matches!(silent, Err(PeerError::Silent { .. })));
    }

    #[test]
    fn reports_failures_and_hangs() {
        let path = Path::new("sh");
        let failed = first_line(path, &mut sh("echo broken >&2; exit 3"), VERSION_TIMEOUT);
        let message = failed.unwrap_err().to_string();
        assert!(
            message.contains("broken") && message.contains('3'),
            "{message}"
        );
        let hung = first_line(path, &mut sh("sleep 5"), Duration::from_millis(100));
        assert!(matches!(hung, Err(PeerError::TimedOut { .. })));
    }

    #[test]
    fn serialises_as_an_object_keyed_by_name_in_fixed_order() {
        let peers = Peers(
            PEERS
                .iter()
                .map(|&(name, fix)| detect_one(name, fix, OsStr::new("")))
                .collect(),
        );
        let json = serde_json::to_string(&peers).unwrap();
        assert!(json.starts_with(r#"{"runc":{"installed":false"#), "{json}");
        assert!(
            json.contains(r#""fix":"apt-get install -y docker.io""#),
            "{json}"
        );
    }
}
