//! What the checkers read from the kernel, and the commands they run to read it.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};

use crate::error::LabError;

/// Runs a command to completion; only a failure to start it is an error.
pub fn output(command: &mut Command) -> Result<Output, LabError> {
    command.output().map_err(|source| LabError::Spawn {
        command: describe(command),
        source,
    })
}

/// Runs a command that must succeed, as a reference solution's steps must; its stdout.
pub fn succeed(command: &mut Command) -> Result<String, LabError> {
    let out = output(command)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: describe(command),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A namespace's identity: the inode of its nsfs file (`/proc/<pid>/ns/<kind>`, or a bind
/// mount of one). `None` when there is no such file.
pub fn ns_inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// An nsfs inode for a report; `(none)` where there was no such file.
pub fn show_inode(ns: Option<u64>) -> String {
    ns.map_or_else(|| "(none)".into(), |n| n.to_string())
}

/// One line of /proc/self/mountinfo: where it is mounted, the filesystem type, and the root
/// of the mount within its filesystem (for an nsfs bind mount, the namespace: `uts:[4026532177]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub root: String,
    /// `major:minor` of the filesystem's device.
    pub device: String,
    /// The filesystem's own options (an overlay's `lowerdir=…,upperdir=…`).
    pub options: String,
}

pub fn mounts() -> Result<Vec<Mount>, LabError> {
    mounts_in("/proc/self/mountinfo")
}

/// The mount table of the mount namespace process `pid` is in.
pub fn mounts_of(pid: i32) -> Result<Vec<Mount>, LabError> {
    mounts_in(&format!("/proc/{pid}/mountinfo"))
}

fn mounts_in(path: &str) -> Result<Vec<Mount>, LabError> {
    let text = std::fs::read_to_string(path).map_err(LabError::io("reading", path))?;
    Ok(text.lines().filter_map(parse_mountinfo_line).collect())
}

fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let separator = fields.iter().position(|f| *f == "-")?;
    Some(Mount {
        mount_point: PathBuf::from(unescape(fields.get(4)?)),
        fstype: (*fields.get(separator + 1)?).to_owned(),
        root: unescape(fields.get(3)?),
        device: (*fields.get(2)?).to_owned(),
        options: unescape(fields.get(separator + 3)?),
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The namespace an nsfs file bind-mounted at `path` holds (`uts:[4026532177]`), or `None`
/// when nothing of type nsfs is mounted there. The last mount on a path is the one seen.
pub fn nsfs_at(path: &Path) -> Result<Option<String>, LabError> {
    Ok(mounts()?
        .into_iter()
        .filter(|m| m.mount_point == path && m.fstype == "nsfs")
        .map(|m| m.root)
        .next_back())
}

/// Lazily unmounts everything mounted at or below `dir`, innermost first.
pub fn unmount_below(dir: &Path) -> Result<(), LabError> {
    let mut below: Vec<PathBuf> = mounts()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    below.dedup();
    for point in below {
        // A path mounted twice needs two unmounts; EINVAL means it is gone already.
        while umount2(&point, MntFlags::MNT_DETACH).is_ok() {}
    }
    Ok(())
}

/// The numeric entries of /proc: every process this process can see.
pub fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A `Key:\tvalue` line of /proc/<pid>/status.
pub fn status_field(pid: i32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

pub fn children_of(parent: i32) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|&pid| status_field(pid, "PPid").and_then(|p| p.parse().ok()) == Some(parent))
        .collect()
}

/// The host pids of the processes in the namespace of `kind` (`pid`, `uts`, `ipc`, …) whose
/// nsfs inode is `ns`.
pub fn processes_in_ns(kind: &str, ns: u64) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|pid| ns_inode(Path::new(&format!("/proc/{pid}/ns/{kind}"))) == Some(ns))
        .collect()
}

/// The processes whose executable lies below `dir`: programs a student built in a workspace
/// and left running.
pub fn processes_running_from(dir: &Path) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.starts_with(dir))
        })
        .collect()
}

/// What a process's descriptors point at (`/dev/kvm`, `anon_inode:kvm-vm`, `pipe:[…]`), in
/// descriptor order; empty when the process is gone.
pub fn open_files(pid: i32) -> Vec<String> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<(u32, String)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds.into_iter().map(|(_, target)| target).collect()
}

/// SIGKILLs each process; one that exited meanwhile is no error.
pub fn kill_all(pids: &[i32]) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A program the checker runs and talks to: it waits for `key=value` lines on the
/// program's standard output, and closes its standard input to let it finish.
#[derive(Debug)]
pub struct Conversation {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Conversation {
    pub fn start(command: &mut Command) -> Result<Self, LabError> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| LabError::Spawn {
                command: describe(command),
                source,
            })?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let (sender, lines) = mpsc::channel();
        // A thread reads, so that a program that never prints cannot hang the checker.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Conversation {
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// The values of the `key=value` lines for every key in `keys`, in order; stops early at
    /// end of output or after `timeout`, with whatever arrived.
    pub fn wait_for(&self, keys: &[&str], timeout: Duration) -> Vec<Option<String>> {
        let deadline = Instant::now() + timeout;
        let mut found = vec![None; keys.len()];
        while found.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            if let Some((key, value)) = line.split_once('=')
                && let Some(i) = keys.iter().position(|k| *k == key.trim())
            {
                found[i] = Some(value.trim().to_owned());
            }
        }
        found
    }

    /// Every line the program prints up to and including the first `key=…` line; stops early
    /// at end of output or after `timeout`, with whatever arrived.
    pub fn lines_until(&self, key: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let last = line.split_once('=').is_some_and(|(k, _)| k.trim() == key);
            lines.push(line);
            if last {
                break;
            }
        }
        lines
    }

    /// Closes the program's input and waits for it; kills it if it does not end in time.
    pub fn finish(mut self, timeout: Duration) {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mountinfo_lines() {
        let line = "36 35 0:4 / /var/lib/my\\040dir/ns/uts rw shared:1 - nsfs nsfs rw";
        assert_eq!(
            parse_mountinfo_line(line),
            Some(Mount {
                mount_point: PathBuf::from("/var/lib/my dir/ns/uts"),
                fstype: "nsfs".into(),
                root: "/".into(),
                device: "0:4".into(),
                options: "rw".into(),
            })
        );
    }
}
