//! The system calls the container's init makes while building its root, behind a trait so
//! the decisions around them (what to mask, which flags a remount must keep) are unit
//! tested with a recorder; and the process plumbing (clone3, pipes) the parent uses.
//!
//! The Linux implementation is also the one `--explain` hook: every call logs itself,
//! with its real arguments, right before it is made.

use std::ffi::CStr;
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statvfs::FsFlags;
use nix::unistd::Pid;

use crate::explain::Explain;

/// What is at a path, for deciding how to mask it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Directory,
    Other,
}

pub(crate) trait Sys {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> nix::Result<()>;
    fn umount_detach(&self, target: &CStr) -> nix::Result<()>;
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> nix::Result<()>;
    fn chdir(&self, path: &CStr) -> nix::Result<()>;
    fn mkdir(&self, path: &CStr) -> nix::Result<()>;
    /// Creates an empty regular file, for a bind mount of a file to land on.
    fn create_file(&self, path: &CStr) -> nix::Result<()>;
    fn symlink(&self, target: &CStr, link: &CStr) -> nix::Result<()>;
    fn kind(&self, path: &CStr) -> nix::Result<Kind>;
    /// The per-mount flags of the mount at `path` that a bind remount must repeat: inside a
    /// user namespace the kernel refuses to clear nosuid/nodev/noexec/atime flags set by
    /// a more privileged namespace.
    fn locked_flags(&self, path: &CStr) -> nix::Result<MsFlags>;
}

/// The real calls, each logged to `--explain` first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Linux {
    pub(crate) explain: Explain,
}

/// `"text"` or `NULL`, as in a C call.
struct Arg<'a>(Option<&'a CStr>);

impl fmt::Display for Arg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => write!(f, "{s:?}"),
            None => f.write_str("NULL"),
        }
    }
}

/// Mount flags by their C names, `MS_BIND|MS_REC`, or `0`.
pub(crate) struct MountFlags(pub(crate) MsFlags);

impl fmt::Display for MountFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = self.0.iter_names().map(|(name, _)| name);
        match names.next() {
            None => f.write_str("0"),
            Some(first) => {
                f.write_str(first)?;
                names.try_for_each(|n| write!(f, "|{n}"))
            }
        }
    }
}

impl Sys for Linux {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> nix::Result<()> {
        self.explain.step(format_args!(
            "mount({}, {target:?}, {}, {}, {})",
            Arg(source),
            Arg(fstype),
            MountFlags(flags),
            Arg(data)
        ));
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount_detach(&self, target: &CStr) -> nix::Result<()> {
        self.explain
            .step(format_args!("umount2({target:?}, MNT_DETACH)"));
        nix::mount::umount2(target, MntFlags::MNT_DETACH)
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> nix::Result<()> {
        self.explain
            .step(format_args!("pivot_root({new_root:?}, {put_old:?})"));
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chdir(&self, path: &CStr) -> nix::Result<()> {
        self.explain.step(format_args!("chdir({path:?})"));
        nix::unistd::chdir(path)
    }

    fn mkdir(&self, path: &CStr) -> nix::Result<()> {
        self.explain.step(format_args!("mkdir({path:?}, 0755)"));
        nix::unistd::mkdir(path, Mode::from_bits_truncate(0o755))
    }

    fn create_file(&self, path: &CStr) -> nix::Result<()> {
        self.explain
            .step(format_args!("mknod({path:?}, S_IFREG|0644, 0)"));
        nix::sys::stat::mknod(path, SFlag::S_IFREG, Mode::from_bits_truncate(0o644), 0)
    }

    fn symlink(&self, target: &CStr, link: &CStr) -> nix::Result<()> {
        self.explain
            .step(format_args!("symlink({target:?}, {link:?})"));
        nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link)
    }

    fn kind(&self, path: &CStr) -> nix::Result<Kind> {
        let stat = nix::sys::stat::stat(path)?;
        let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        Ok(if is_dir { Kind::Directory } else { Kind::Other })
    }

    fn locked_flags(&self, path: &CStr) -> nix::Result<MsFlags> {
        let flags = nix::sys::statvfs::statvfs(path)?.flags();
        let pairs = [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ];
        Ok(pairs
            .iter()
            .filter(|(st, _)| flags.contains(*st))
            .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms))
    }
}

/// Clone flags by their C names, for `--explain`.
pub(crate) struct CloneFlags(pub(crate) u64);

impl fmt::Display for CloneFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(libc::c_int, &str); 8] = [
            (libc::CLONE_NEWNS, "CLONE_NEWNS"),
            (libc::CLONE_NEWPID, "CLONE_NEWPID"),
            (libc::CLONE_NEWUTS, "CLONE_NEWUTS"),
            (libc::CLONE_NEWIPC, "CLONE_NEWIPC"),
            (libc::CLONE_NEWNET, "CLONE_NEWNET"),
            (libc::CLONE_NEWUSER, "CLONE_NEWUSER"),
            (libc::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
            (libc::CLONE_NEWTIME, "CLONE_NEWTIME"),
        ];
        let mut first = true;
        for (bit, name) in NAMES {
            if self.0 & bit as u64 != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first { f.write_str("0") } else { Ok(()) }
    }
}

/// clone3's flag that creates the child inside the cgroup v2 directory `clone_args.cgroup`
/// names (linux/sched.h; Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Who returned from [`clone_process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cloned {
    Child,
    /// `in_cgroup`: the child was created inside the cgroup passed (clone3 took it).
    Parent {
        pid: Pid,
        in_cgroup: bool,
    },
}

/// Creates a child process like fork(2), but already inside the namespaces in `flags` and,
/// with `cgroup` (a cgroup v2 directory), inside that cgroup. Tries clone3 first (the only
/// call that can create a time namespace or place the child into a cgroup), then clone(2)
/// without either where clone3 is missing or filtered (e.g. when isolab itself runs under
/// Docker's seccomp profile); the caller then moves the child into its cgroup itself.
///
/// The caller must be single-threaded: like fork, only the calling thread survives in the
/// child, and any lock another thread held would stay locked there.
pub(crate) fn clone_process(
    flags: u64,
    cgroup: Option<(BorrowedFd<'_>, &Path)>,
    explain: &Explain,
) -> Result<Cloned, Errno> {
    let mut args = clone3_args(flags);
    match cgroup {
        Some((fd, dir)) => {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = fd.as_raw_fd() as u64;
            explain.step(format_args!(
                "clone3({{flags={}|CLONE_INTO_CGROUP, cgroup={} ({}), exit_signal=SIGCHLD}})",
                CloneFlags(flags),
                fd.as_raw_fd(),
                dir.display()
            ));
        }
        None => explain.step(format_args!(
            "clone3({{flags={}, exit_signal=SIGCHLD}})",
            CloneFlags(flags)
        )),
    }
    // SAFETY: `args` is a valid clone_args of the size passed; with no CLONE_VM and no
    // stack the child gets a copy-on-write copy of this address space and returns here,
    // exactly as with fork(2). The cgroup descriptor is borrowed for the call's duration.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    let (ret, in_cgroup) = match Errno::result(ret) {
        Err(Errno::ENOSYS | Errno::EPERM) => {
            let legacy = flags & !(libc::CLONE_NEWTIME as u64);
            explain.step(format_args!(
                "clone3 unavailable; clone({}|SIGCHLD, NULL)",
                CloneFlags(legacy)
            ));
            // SAFETY: as above: fork-like clone without CLONE_VM and with no new stack.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    legacy | libc::SIGCHLD as u64,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                )
            };
            (Errno::result(ret)?, false)
        }
        other => (other?, cgroup.is_some()),
    };
    Ok(if ret == 0 {
        Cloned::Child
    } else {
        Cloned::Parent {
            pid: Pid::from_raw(ret as i32),
            in_cgroup,
        }
    })
}

fn clone3_args(flags: u64) -> libc::clone_args {
    // SAFETY: clone_args is plain old data; all-zero is its documented "no options" value.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags;
    args.exit_signal = libc::SIGCHLD as u64;
    args
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

/// Reads until EOF or `buf` is full; EOF on the first read returns 0.
pub(crate) fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut filled = 0;
    while filled < buf.len() {
        match nix::unistd::read(fd, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_print_by_name() {
        let flags = (libc::CLONE_NEWNS | libc::CLONE_NEWPID) as u64;
        assert_eq!(CloneFlags(flags).to_string(), "CLONE_NEWNS|CLONE_NEWPID");
        assert_eq!(CloneFlags(0).to_string(), "0");
        assert_eq!(
            MountFlags(MsFlags::MS_BIND | MsFlags::MS_REC).to_string(),
            "MS_BIND|MS_REC"
        );
        assert_eq!(MountFlags(MsFlags::empty()).to_string(), "0");
    }
}
