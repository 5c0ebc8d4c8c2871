//! The mini kernel's Linux system calls, served by the monitor on guest memory.
//!
//! The set is what a static glibc + Rust std program uses (start-up, the workload's modes,
//! an abort): memory (brk/mmap/munmap/mremap/mprotect/madvise), files on the in-memory
//! [`Tmpfs`](super::tmpfs::Tmpfs), stdio, time, identity, and signal set-up (actions are
//! recorded; only a stop signal's handler ever runs, see [`super::signal`]). Everything else
//! returns `-ENOSYS`, as an old kernel would, and is counted.
//!
//! stdout and stderr are a paravirtual channel: `write(1|2, ...)` copies the guest buffer
//! straight to the monitor's own stdout/stderr, with no device model in between. stdin reads
//! as empty (end of file).

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use libc::c_long;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::arena::Arena;
use super::layout::{PAGE, USER_START, align_up};
use super::signal::SigAction;
use super::tmpfs::{self, CHUNK, Tmpfs};
use crate::vm::Vm;

/// What the run loop does after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Resume the program with this value in RAX.
    Return(u64),
    /// `exit_group`: the VM is done, with this status.
    Exit(u8),
    /// The program sent itself this signal (e.g. `abort`): it dies of it.
    Signal(i32),
    /// Block until the VM is stopped from outside (`pause`, `sigsuspend`).
    Block,
    /// `rt_sigreturn`: resume the context saved in the signal frame on the stack.
    SigReturn,
}

/// The user-mode segment bases, which `arch_prctl` reads and writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentBases {
    pub fs: u64,
    pub gs: u64,
}

#[derive(Debug, Clone, Copy)]
enum Fd {
    Stdin,
    Stdout,
    Stderr,
    File { ino: u64, offset: u64, flags: i32 },
}

/// Everything the kernel remembers about the one process it runs.
#[derive(Debug)]
pub struct Kernel {
    ram_end: u64,
    arena: Arena,
    brk_start: u64,
    brk: u64,
    stack_size: u64,
    fds: Vec<Option<Fd>>,
    fs: Tmpfs,
    execfn: String,
    total_ram: u64,
    booted: Instant,
    /// Set by the first write to stdout containing `ISOLAB-READY`.
    pub ready_seen: bool,
    /// What `rt_sigaction` installed, for signals 1..=64.
    actions: [SigAction; 64],
}

type Sys = Result<u64, i32>;

const HOSTNAME: &str = "isolab-mini";

impl Kernel {
    /// `image_end` is where brk starts; `[image_end, stack_bottom)` is the arena for brk,
    /// mmap and tmpfs data.
    pub fn new(
        ram_end: u64,
        image_end: u64,
        stack_bottom: u64,
        stack_size: u64,
        execfn: &str,
    ) -> Self {
        Kernel {
            ram_end,
            arena: Arena::new(image_end, stack_bottom),
            brk_start: image_end,
            brk: image_end,
            stack_size,
            fds: vec![Some(Fd::Stdin), Some(Fd::Stdout), Some(Fd::Stderr)],
            fs: Tmpfs::default(),
            execfn: execfn.to_owned(),
            total_ram: ram_end,
            booted: Instant::now(),
            ready_seen: false,
            actions: [SigAction::default(); 64],
        }
    }

    /// Serves system call `nr` with arguments `a` (rdi, rsi, rdx, r10, r8, r9).
    pub fn handle(&mut self, vm: &Vm, nr: u64, a: [u64; 6], seg: &mut SegmentBases) -> Action {
        let Ok(nr) = c_long::try_from(nr) else {
            return Action::Return(errno(libc::ENOSYS));
        };
        let result = match nr {
            libc::SYS_exit | libc::SYS_exit_group => return Action::Exit(a[0] as u8),
            libc::SYS_pause | libc::SYS_rt_sigsuspend => return Action::Block,
            libc::SYS_rt_sigreturn => return Action::SigReturn,
            libc::SYS_kill | libc::SYS_tkill | libc::SYS_tgkill => {
                let (pid, sig) = match nr {
                    libc::SYS_tgkill => (a[0] as i32, a[2] as i32),
                    _ => (a[0] as i32, a[1] as i32),
                };
                if !(-1..=1).contains(&pid) {
                    Err(libc::ESRCH)
                } else if !(0..=64).contains(&sig) {
                    Err(libc::EINVAL)
                } else if sig == 0 {
                    Ok(0)
                } else {
                    // No signal delivery: a signal the program sends itself kills it with
                    // the default action, which is what abort() and raise() rely on.
                    return Action::Signal(sig);
                }
            }
            libc::SYS_futex => self.futex(vm, a),
            libc::SYS_read => self.read(vm, a[0], a[1], a[2], None),
            libc::SYS_pread64 => self.read(vm, a[0], a[1], a[2], Some(a[3])),
            libc::SYS_write => self.write(vm, a[0], a[1], a[2], None),
            libc::SYS_pwrite64 => self.write(vm, a[0], a[1], a[2], Some(a[3])),
            libc::SYS_readv => self.vectored(vm, a, false),
            libc::SYS_writev => self.vectored(vm, a, true),
            libc::SYS_open => self.openat(vm, libc::AT_FDCWD, a[0], a[1] as i32),
            libc::SYS_openat => self.openat(vm, a[0] as i32, a[1], a[2] as i32),
            libc::SYS_close => self.close(vm, a[0]),
            libc::SYS_lseek => self.lseek(a[0], a[1] as i64, a[2] as i32),
            libc::SYS_fstat => self
                .meta_fd(a[0])
                .and_then(|m| self.put(vm, a[1], &m.stat())),
            libc::SYS_stat | libc::SYS_lstat => self
                .meta_path(vm, libc::AT_FDCWD, a[0], 0)
                .and_then(|m| self.put(vm, a[1], &m.stat())),
            libc::SYS_newfstatat => self
                .meta_path(vm, a[0] as i32, a[1], a[3] as i32)
                .and_then(|m| self.put(vm, a[2], &m.stat())),
            libc::SYS_statx => self
                .meta_path(vm, a[0] as i32, a[1], a[2] as i32)
                .and_then(|m| self.put(vm, a[4], &m.statx())),
            libc::SYS_fsync | libc::SYS_fdatasync | libc::SYS_fadvise64 => self.fd(a[0]).map(|_| 0),
            libc::SYS_sync | libc::SYS_syncfs => Ok(0),
            libc::SYS_unlink => self.unlink(vm, libc::AT_FDCWD, a[0], 0),
            libc::SYS_unlinkat => self.unlink(vm, a[0] as i32, a[1], a[2] as i32),
            libc::SYS_dup => self.dup(a[0], 0),
            libc::SYS_dup2 | libc::SYS_dup3 => self.dup2(vm, a[0], a[1]),
            libc::SYS_fcntl => self.fcntl(a[0], a[1] as i32, a[2]),
            libc::SYS_ioctl => self.fd(a[0]).and(Err(libc::ENOTTY)),
            libc::SYS_poll => self.poll(vm, a[0], a[1]),
            libc::SYS_ppoll => self.poll(vm, a[0], a[1]),
            libc::SYS_readlink => self.readlink(vm, a[0], a[1], a[2]),
            libc::SYS_readlinkat => self.readlink(vm, a[1], a[2], a[3]),
            libc::SYS_getcwd => self.getcwd(vm, a[0], a[1]),
            libc::SYS_brk => Ok(self.brk(vm, a[0])),
            libc::SYS_mmap => self.mmap(vm, a),
            libc::SYS_munmap => self.munmap(vm, a[0], a[1]),
            libc::SYS_mremap => self.mremap(vm, a),
            libc::SYS_mprotect => self.user(a[0], a[1]).map(|_| 0).map_err(|_| libc::ENOMEM),
            libc::SYS_madvise => self.madvise(vm, a[0], a[1], a[2] as i32),
            libc::SYS_arch_prctl => self.arch_prctl(vm, a[0] as i32, a[1], seg),
            libc::SYS_set_tid_address | libc::SYS_gettid | libc::SYS_getpid => Ok(1),
            libc::SYS_getppid => Ok(0),
            libc::SYS_getuid | libc::SYS_geteuid | libc::SYS_getgid | libc::SYS_getegid => Ok(0),
            libc::SYS_set_robust_list | libc::SYS_sched_yield => Ok(0),
            // As on a kernel built without CONFIG_RSEQ; glibc then simply does not use it.
            libc::SYS_rseq => Err(libc::ENOSYS),
            libc::SYS_rt_sigaction => self.sigaction(vm, a[0] as i32, a[1], a[2]),
            libc::SYS_rt_sigprocmask => self.put_opt(vm, a[2], &0u64.to_le_bytes()),
            libc::SYS_sigaltstack => self.sigaltstack(vm, a[1]),
            libc::SYS_prlimit64 => self.rlimit(vm, a[1] as u32, a[3]),
            libc::SYS_getrlimit => self.rlimit(vm, a[0] as u32, a[1]),
            libc::SYS_sched_getaffinity => self.affinity(vm, a[1], a[2]),
            libc::SYS_getrandom => self.getrandom(vm, a[0], a[1]),
            libc::SYS_uname => self.uname(vm, a[0]),
            libc::SYS_sysinfo => self.sysinfo(vm, a[0]),
            libc::SYS_prctl => match a[0] as i32 {
                libc::PR_GET_NO_NEW_PRIVS | libc::PR_GET_DUMPABLE => Ok(0),
                _ => Err(libc::EINVAL),
            },
            libc::SYS_clock_gettime => self.clock_gettime(vm, a[0] as i32, a[1]),
            libc::SYS_clock_getres => self.put_opt(vm, a[1], &timespec(Duration::from_nanos(1))),
            libc::SYS_gettimeofday => self.gettimeofday(vm, a[0]),
            libc::SYS_time => self.time(vm, a[0]),
            libc::SYS_nanosleep => self.sleep(vm, libc::CLOCK_MONOTONIC, 0, a[0], a[1]),
            libc::SYS_clock_nanosleep => self.sleep(vm, a[0] as i32, a[1] as i32, a[2], a[3]),
            _ => Err(libc::ENOSYS),
        };
        Action::Return(match result {
            Ok(value) => value,
            Err(e) => errno(e),
        })
    }

    // ---- guest memory ----

    /// `[addr, addr + len)` if it is all user RAM.
    fn user(&self, addr: u64, len: u64) -> Result<GuestAddress, i32> {
        match addr.checked_add(len) {
            Some(end) if addr >= USER_START && end <= self.ram_end => Ok(GuestAddress(addr)),
            _ => Err(libc::EFAULT),
        }
    }

    fn get(&self, vm: &Vm, addr: u64, len: usize) -> Result<Vec<u8>, i32> {
        let at = self.user(addr, len as u64)?;
        let mut buf = vec![0; len];
        vm.memory()
            .read_slice(&mut buf, at)
            .map_err(|_| libc::EFAULT)?;
        Ok(buf)
    }

    fn get_u64(&self, vm: &Vm, addr: u64) -> Result<u64, i32> {
        let at = self.user(addr, 8)?;
        vm.memory().read_obj(at).map_err(|_| libc::EFAULT)
    }

    fn put(&self, vm: &Vm, addr: u64, data: &[u8]) -> Sys {
        let at = self.user(addr, data.len() as u64)?;
        vm.memory()
            .write_slice(data, at)
            .map_err(|_| libc::EFAULT)?;
        Ok(0)
    }

    /// Writes `data` unless `addr` is NULL (optional out-parameters).
    fn put_opt(&self, vm: &Vm, addr: u64, data: &[u8]) -> Sys {
        if addr == 0 {
            Ok(0)
        } else {
            self.put(vm, addr, data)
        }
    }

    fn copy(&self, vm: &Vm, from: u64, to: u64, len: u64) -> Result<(), i32> {
        let slice = |addr: u64| {
            vm.memory()
                .get_slice(GuestAddress(addr), len as usize)
                .map_err(|_| libc::EFAULT)
        };
        slice(from)?.copy_to_volatile_slice(slice(to)?);
        Ok(())
    }

    fn path(&self, vm: &Vm, addr: u64) -> Result<String, i32> {
        let mut bytes = Vec::new();
        while bytes.len() < libc::PATH_MAX as usize {
            let at = addr + bytes.len() as u64;
            let chunk = 256.min(self.ram_end.saturating_sub(at)) as usize;
            if chunk == 0 {
                return Err(libc::EFAULT);
            }
            let part = self.get(vm, at, chunk)?;
            if let Some(nul) = part.iter().position(|&b| b == 0) {
                bytes.extend_from_slice(&part[..nul]);
                return String::from_utf8(bytes).map_err(|_| libc::ENOENT);
            }
            bytes.extend_from_slice(&part);
        }
        Err(libc::ENAMETOOLONG)
    }

    /// Frees guest ranges back to the arena, zeroed.
    fn release(&mut self, vm: &Vm, start: u64, len: u64) {
        vm.discard(start, len);
        self.arena.release(start, len);
    }

    fn release_chunks(&mut self, vm: &Vm, chunks: Vec<u64>) {
        for chunk in chunks {
            self.release(vm, chunk, CHUNK);
        }
    }

    // ---- files ----

    fn fd(&self, fd: u64) -> Result<Fd, i32> {
        self.fds
            .get(fd as usize)
            .copied()
            .flatten()
            .ok_or(libc::EBADF)
    }

    fn install(&mut self, fd: Fd, lowest: usize) -> Sys {
        let slot = (lowest..)
            .find(|&i| self.fds.get(i).is_none_or(Option::is_none))
            .unwrap_or(lowest);
        if slot >= 1024 {
            return Err(libc::EMFILE);
        }
        if slot >= self.fds.len() {
            self.fds.resize(slot + 1, None);
        }
        self.fds[slot] = Some(fd);
        Ok(slot as u64)
    }

    /// Resolves `path` (relative paths against the root, which is also the cwd).
    fn resolve(&self, vm: &Vm, dirfd: i32, addr: u64) -> Result<String, i32> {
        let path = self.path(vm, addr)?;
        if !path.starts_with('/') && dirfd != libc::AT_FDCWD {
            return Err(if self.fd(dirfd as u64).is_ok() {
                libc::ENOTDIR
            } else {
                libc::EBADF
            });
        }
        Ok(normalize(&path))
    }

    fn openat(&mut self, vm: &Vm, dirfd: i32, path: u64, flags: i32) -> Sys {
        let path = self.resolve(vm, dirfd, path)?;
        if path == "/" || path == "/tmp" {
            return Err(libc::EISDIR);
        }
        let create = flags & libc::O_CREAT != 0;
        if create && !matches!(parent(&path), "/" | "/tmp") {
            return Err(libc::ENOENT);
        }
        let truncate = flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY;
        let (ino, freed) = self
            .fs
            .open(&path, create, flags & libc::O_EXCL != 0, truncate)
            .map_err(fs_errno)?;
        self.release_chunks(vm, freed);
        self.install(
            Fd::File {
                ino,
                offset: 0,
                flags,
            },
            0,
        )
        .inspect_err(|_| {
            self.fs.close(ino);
        })
    }

    fn close(&mut self, vm: &Vm, fd: u64) -> Sys {
        let entry = self.fd(fd)?;
        self.fds[fd as usize] = None;
        if let Fd::File { ino, .. } = entry {
            let freed = self.fs.close(ino);
            self.release_chunks(vm, freed);
        }
        Ok(0)
    }

    fn dup(&mut self, fd: u64, lowest: usize) -> Sys {
        let entry = self.fd(fd)?;
        if let Fd::File { ino, .. } = entry {
            // A new open reference; the path is irrelevant for an existing inode.
            self.fs.reopen(ino);
        }
        self.install(entry, lowest)
    }

    fn dup2(&mut self, vm: &Vm, old: u64, new: u64) -> Sys {
        self.fd(old)?;
        if new >= 1024 {
            return Err(libc::EBADF);
        }
        if old == new {
            return Ok(new);
        }
        if self.fd(new).is_ok() {
            self.close(vm, new)?;
        }
        self.dup(old, new as usize)
    }

    fn fcntl(&mut self, fd: u64, cmd: i32, arg: u64) -> Sys {
        let entry = self.fd(fd)?;
        match cmd {
            libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => self.dup(fd, arg as usize),
            libc::F_GETFD | libc::F_SETFD | libc::F_SETFL => Ok(0),
            libc::F_GETFL => Ok(match entry {
                Fd::Stdin => libc::O_RDONLY,
                Fd::Stdout | Fd::Stderr => libc::O_WRONLY,
                Fd::File { flags, .. } => flags & (libc::O_ACCMODE | libc::O_APPEND),
            } as u64),
            _ => Err(libc::EINVAL),
        }
    }

    fn read(&mut self, vm: &Vm, fd: u64, buf: u64, len: u64, at: Option<u64>) -> Sys {
        self.user(buf, len)?;
        match self.fd(fd)? {
            Fd::Stdin => Ok(0),
            Fd::Stdout | Fd::Stderr => Err(libc::EBADF),
            Fd::File { ino, offset, flags } => {
                if flags & libc::O_ACCMODE == libc::O_WRONLY {
                    return Err(libc::EBADF);
                }
                let start = at.unwrap_or(offset);
                let mut done = 0;
                for (from, n) in self.fs.extents(ino, start, len) {
                    self.copy(vm, from, buf + done, n)?;
                    done += n;
                }
                if at.is_none() {
                    self.fds[fd as usize] = Some(Fd::File {
                        ino,
                        offset: start + done,
                        flags,
                    });
                }
                Ok(done)
            }
        }
    }

    fn write(&mut self, vm: &Vm, fd: u64, buf: u64, len: u64, at: Option<u64>) -> Sys {
        let guest = self.user(buf, len)?;
        match self.fd(fd)? {
            Fd::Stdin => Err(libc::EBADF),
            out @ (Fd::Stdout | Fd::Stderr) => {
                if !self.ready_seen && matches!(out, Fd::Stdout) {
                    let head = self.get(vm, buf, len.min(4096) as usize)?;
                    self.ready_seen = head.windows(12).any(|w| w == b"ISOLAB-READY");
                }
                let host_fd = if matches!(out, Fd::Stdout) { 1 } else { 2 };
                // SAFETY: fds 1 and 2 belong to this process for its whole life; ManuallyDrop
                // keeps this temporary File from closing them.
                let file = ManuallyDrop::new(unsafe { File::from_raw_fd(host_fd) });
                vm.memory()
                    .write_volatile_to(guest, &mut &*file, len as usize)
                    .map(|n| n as u64)
                    .map_err(|_| libc::EIO)
            }
            Fd::File { ino, offset, flags } => {
                if flags & libc::O_ACCMODE == libc::O_RDONLY {
                    return Err(libc::EBADF);
                }
                let start = match at {
                    Some(at) => at,
                    None if flags & libc::O_APPEND != 0 => self.fs.size(ino),
                    None => offset,
                };
                let end = start.checked_add(len).ok_or(libc::EFBIG)?;
                let arena = &mut self.arena;
                self.fs
                    .grow(ino, end, || arena.alloc(CHUNK))
                    .map_err(fs_errno)?;
                let mut done = 0;
                for (to, n) in self.fs.extents(ino, start, len) {
                    self.copy(vm, buf + done, to, n)?;
                    done += n;
                }
                if at.is_none() {
                    self.fds[fd as usize] = Some(Fd::File {
                        ino,
                        offset: end,
                        flags,
                    });
                }
                Ok(done)
            }
        }
    }

    fn vectored(&mut self, vm: &Vm, a: [u64; 6], write: bool) -> Sys {
        if a[2] > 1024 {
            return Err(libc::EINVAL);
        }
        let mut total = 0;
        for i in 0..a[2] {
            let base = self.get_u64(vm, a[1] + 16 * i)?;
            let len = self.get_u64(vm, a[1] + 16 * i + 8)?;
            if len == 0 {
                continue;
            }
            let n = if write {
                self.write(vm, a[0], base, len, None)
            } else {
                self.read(vm, a[0], base, len, None)
            };
            match n {
                Ok(n) => {
                    total += n;
                    if n < len {
                        break;
                    }
                }
                Err(e) if total == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(total)
    }

    fn lseek(&mut self, fd: u64, off: i64, whence: i32) -> Sys {
        let Fd::File { ino, offset, flags } = self.fd(fd)? else {
            return Err(libc::ESPIPE);
        };
        let base = match whence {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => offset as i64,
            libc::SEEK_END => self.fs.size(ino) as i64,
            _ => return Err(libc::EINVAL),
        };
        let new = base
            .checked_add(off)
            .filter(|n| *n >= 0)
            .ok_or(libc::EINVAL)? as u64;
        self.fds[fd as usize] = Some(Fd::File {
            ino,
            offset: new,
            flags,
        });
        Ok(new)
    }

    fn meta_fd(&self, fd: u64) -> Result<Meta, i32> {
        Ok(match self.fd(fd)? {
            Fd::Stdin | Fd::Stdout | Fd::Stderr => Meta::chardev(fd),
            Fd::File { ino, .. } => Meta::file(ino, self.fs.size(ino)),
        })
    }

    fn meta_path(&self, vm: &Vm, dirfd: i32, addr: u64, flags: i32) -> Result<Meta, i32> {
        if flags & libc::AT_EMPTY_PATH != 0 && self.path(vm, addr)?.is_empty() {
            return self.meta_fd(dirfd as u64);
        }
        let path = self.resolve(vm, dirfd, addr)?;
        match self.fs.lookup(&path) {
            Some(ino) => Ok(Meta::file(ino, self.fs.size(ino))),
            None if path == "/" || path == "/tmp" => Ok(Meta::dir()),
            None => Err(libc::ENOENT),
        }
    }

    fn unlink(&mut self, vm: &Vm, dirfd: i32, addr: u64, flags: i32) -> Sys {
        let path = self.resolve(vm, dirfd, addr)?;
        if flags & libc::AT_REMOVEDIR != 0 {
            return Err(if path == "/" || path == "/tmp" {
                libc::EBUSY
            } else {
                libc::ENOENT
            });
        }
        let freed = self.fs.unlink(&path).map_err(fs_errno)?;
        self.release_chunks(vm, freed);
        Ok(0)
    }

    fn poll(&self, vm: &Vm, fds: u64, n: u64) -> Sys {
        let mut ready = 0;
        for i in 0..n.min(1024) {
            let at = fds + 8 * i;
            let entry = self.get(vm, at, 8)?;
            let fd = i32::from_le_bytes(entry[0..4].try_into().expect("4 bytes"));
            let events = i16::from_le_bytes([entry[4], entry[5]]);
            let revents = if fd < 0 {
                0
            } else if self.fd(fd as u64).is_err() {
                libc::POLLNVAL
            } else {
                events & (libc::POLLIN | libc::POLLOUT)
            };
            ready += u64::from(revents != 0);
            self.put(vm, at + 6, &revents.to_le_bytes())?;
        }
        Ok(ready)
    }

    fn readlink(&self, vm: &Vm, path: u64, buf: u64, size: u64) -> Sys {
        let path = self.path(vm, path)?;
        if path != "/proc/self/exe" {
            return Err(if self.fs.lookup(&normalize(&path)).is_some() {
                libc::EINVAL
            } else {
                libc::ENOENT
            });
        }
        let target = self.execfn.as_bytes();
        let n = target.len().min(size as usize);
        self.put(vm, buf, &target[..n])?;
        Ok(n as u64)
    }

    fn getcwd(&self, vm: &Vm, buf: u64, size: u64) -> Sys {
        if size < 2 {
            return Err(libc::ERANGE);
        }
        self.put(vm, buf, b"/\0")?;
        Ok(2)
    }

    // ---- memory ----

    fn brk(&mut self, vm: &Vm, want: u64) -> u64 {
        let (old_end, new_end) = (align_up(self.brk, PAGE), align_up(want, PAGE));
        if want < self.brk_start {
            return self.brk;
        }
        if new_end > old_end {
            if !self.arena.is_free(old_end, new_end - old_end) {
                return self.brk;
            }
            self.arena.claim(old_end, new_end - old_end);
        } else if new_end < old_end {
            self.release(vm, new_end, old_end - new_end);
        }
        self.brk = want;
        want
    }

    fn mmap(&mut self, vm: &Vm, a: [u64; 6]) -> Sys {
        let [hint, len, _prot, flags, fd, offset] = a;
        let flags = flags as i32;
        if len == 0 || hint % PAGE != 0 || offset % PAGE != 0 {
            return Err(libc::EINVAL);
        }
        let len = align_up(len, PAGE);
        let file = if flags & libc::MAP_ANONYMOUS != 0 {
            None
        } else {
            match self.fd(fd)? {
                Fd::File { ino, .. } => Some(ino),
                _ => return Err(libc::ENODEV),
            }
        };
        let addr = if flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) != 0 {
            self.user(hint, len).map_err(|_| libc::ENOMEM)?;
            if flags & libc::MAP_FIXED_NOREPLACE != 0 && !self.arena.is_free(hint, len) {
                return Err(libc::EEXIST);
            }
            // Replacing a mapping gives fresh zero pages, as on Linux.
            vm.discard(hint, len);
            self.arena.claim(hint, len);
            hint
        } else {
            self.arena.alloc(len).ok_or(libc::ENOMEM)?
        };
        if let Some(ino) = file {
            let mut done = 0;
            for (from, n) in self.fs.extents(ino, offset, len) {
                self.copy(vm, from, addr + done, n)?;
                done += n;
            }
        }
        Ok(addr)
    }

    fn munmap(&mut self, vm: &Vm, addr: u64, len: u64) -> Sys {
        if addr % PAGE != 0 || len == 0 {
            return Err(libc::EINVAL);
        }
        let len = align_up(len, PAGE);
        if self.user(addr, len).is_ok() {
            self.release(vm, addr, len);
        }
        Ok(0)
    }

    fn mremap(&mut self, vm: &Vm, a: [u64; 6]) -> Sys {
        let [old, old_len, new_len, flags, _, _] = a;
        let flags = flags as i32;
        if old % PAGE != 0 || new_len == 0 || flags & libc::MREMAP_FIXED != 0 {
            return Err(libc::EINVAL);
        }
        let (old_len, new_len) = (align_up(old_len, PAGE), align_up(new_len, PAGE));
        self.user(old, old_len)?;
        if new_len <= old_len {
            self.release(vm, old + new_len, old_len - new_len);
            return Ok(old);
        }
        let tail = old + old_len;
        if self.user(tail, new_len - old_len).is_ok() && self.arena.is_free(tail, new_len - old_len)
        {
            self.arena.claim(tail, new_len - old_len);
            return Ok(old);
        }
        if flags & libc::MREMAP_MAYMOVE == 0 {
            return Err(libc::ENOMEM);
        }
        let new = self.arena.alloc(new_len).ok_or(libc::ENOMEM)?;
        self.copy(vm, old, new, old_len)?;
        self.release(vm, old, old_len);
        Ok(new)
    }

    fn madvise(&mut self, vm: &Vm, addr: u64, len: u64, advice: i32) -> Sys {
        if addr % PAGE != 0 {
            return Err(libc::EINVAL);
        }
        let len = align_up(len, PAGE);
        self.user(addr, len).map_err(|_| libc::ENOMEM)?;
        if matches!(advice, libc::MADV_DONTNEED | libc::MADV_FREE) {
            vm.discard(addr, len);
        }
        Ok(0)
    }

    fn futex(&self, vm: &Vm, a: [u64; 6]) -> Result<u64, i32> {
        const WAIT: i32 = 0;
        const WAIT_BITSET: i32 = 9;
        match a[1] as i32 & 0x7f {
            WAIT | WAIT_BITSET => {
                let at = self.user(a[0], 4)?;
                let value: u32 = vm.memory().read_obj(at).map_err(|_| libc::EFAULT)?;
                if value != a[2] as u32 {
                    Err(libc::EAGAIN)
                } else {
                    // Only one thread exists, so nothing could wake it: as good as blocked
                    // forever, but a deadlock is more useful reported than hung.
                    Err(libc::EDEADLK)
                }
            }
            _ => Ok(0),
        }
    }

    // ---- process ----

    fn arch_prctl(&self, vm: &Vm, code: i32, addr: u64, seg: &mut SegmentBases) -> Sys {
        const SET_GS: i32 = 0x1001;
        const SET_FS: i32 = 0x1002;
        const GET_FS: i32 = 0x1003;
        const GET_GS: i32 = 0x1004;
        let canonical = addr < 0x0000_8000_0000_0000;
        match code {
            SET_FS if canonical => seg.fs = addr,
            SET_GS if canonical => seg.gs = addr,
            SET_FS | SET_GS => return Err(libc::EPERM),
            GET_FS => return self.put(vm, addr, &seg.fs.to_le_bytes()),
            GET_GS => return self.put(vm, addr, &seg.gs.to_le_bytes()),
            _ => return Err(libc::EINVAL),
        }
        Ok(0)
    }

    /// Records the action; only a stop signal's handler ever runs (see [`super::signal`]).
    fn sigaction(&mut self, vm: &Vm, sig: i32, act: u64, old: u64) -> Sys {
        if !(1..=64).contains(&sig) || sig == libc::SIGKILL || sig == libc::SIGSTOP {
            return Err(libc::EINVAL);
        }
        let slot = sig as usize - 1;
        let previous = self.actions[slot];
        if act != 0 {
            let raw: [u8; 32] = self.get(vm, act, 32)?.try_into().expect("32 bytes read");
            self.actions[slot] = SigAction::from_bytes(&raw);
        }
        self.put_opt(vm, old, &previous.to_bytes())
    }

    /// Whether the program installed a handler for `signal`.
    pub fn handles(&self, signal: i32) -> bool {
        self.action(signal).is_some_and(|a| a.runs_handler())
    }

    fn action(&self, signal: i32) -> Option<SigAction> {
        let slot = usize::try_from(signal).ok()?.checked_sub(1)?;
        self.actions.get(slot).copied()
    }

    /// The handler to run for `signal`, if the program installed one; a one-shot
    /// (SA_RESETHAND) handler reverts to the default as it is taken.
    pub fn take_handler(&mut self, signal: i32) -> Option<SigAction> {
        let action = self.action(signal).filter(SigAction::runs_handler)?;
        let slot = signal as usize - 1;
        if action.resets() {
            self.actions[slot] = SigAction::default();
        }
        Some(action)
    }

    fn sigaltstack(&self, vm: &Vm, old: u64) -> Sys {
        let mut stack = [0u8; 24];
        stack[8..12].copy_from_slice(&libc::SS_DISABLE.to_le_bytes());
        self.put_opt(vm, old, &stack)
    }

    fn rlimit(&self, vm: &Vm, resource: u32, old: u64) -> Sys {
        let (cur, max) = match resource {
            libc::RLIMIT_STACK => (self.stack_size, libc::RLIM_INFINITY),
            libc::RLIMIT_NOFILE => (1024, 1024),
            _ => (libc::RLIM_INFINITY, libc::RLIM_INFINITY),
        };
        self.put_opt(vm, old, &[cur.to_le_bytes(), max.to_le_bytes()].concat())
    }

    fn affinity(&self, vm: &Vm, len: u64, mask: u64) -> Sys {
        if len < 8 {
            return Err(libc::EINVAL);
        }
        self.put(vm, mask, &1u64.to_le_bytes())?;
        Ok(8)
    }

    fn getrandom(&self, vm: &Vm, buf: u64, len: u64) -> Sys {
        let len = len.min(1 << 20) as usize;
        self.user(buf, len as u64)?;
        let mut bytes = vec![0u8; len];
        fill_random(&mut bytes);
        self.put(vm, buf, &bytes)?;
        Ok(len as u64)
    }

    fn uname(&self, vm: &Vm, buf: u64) -> Sys {
        let mut uts = [0u8; 6 * 65];
        let fields = [
            "Linux",
            HOSTNAME,
            "6.1.0-isolab-mini",
            "#1 isolab mini kernel",
            "x86_64",
            "(none)",
        ];
        for (i, field) in fields.iter().enumerate() {
            uts[65 * i..65 * i + field.len()].copy_from_slice(field.as_bytes());
        }
        self.put(vm, buf, &uts)
    }

    fn sysinfo(&self, vm: &Vm, buf: u64) -> Sys {
        let mut info = [0u8; 112];
        let mut set =
            |at: usize, value: u64| info[at..at + 8].copy_from_slice(&value.to_le_bytes());
        set(0, self.booted.elapsed().as_secs());
        set(32, self.total_ram);
        set(40, self.total_ram.saturating_sub(self.brk - USER_START));
        info[80..82].copy_from_slice(&1u16.to_le_bytes());
        info[104..108].copy_from_slice(&1u32.to_le_bytes());
        self.put(vm, buf, &info)
    }

    // ---- time ----

    fn clock_gettime(&self, vm: &Vm, clock: i32, out: u64) -> Sys {
        let host_clock = match clock {
            libc::CLOCK_REALTIME
            | libc::CLOCK_MONOTONIC
            | libc::CLOCK_MONOTONIC_RAW
            | libc::CLOCK_REALTIME_COARSE
            | libc::CLOCK_MONOTONIC_COARSE
            | libc::CLOCK_BOOTTIME => clock,
            // The program's CPU time is the vCPU thread's.
            libc::CLOCK_PROCESS_CPUTIME_ID | libc::CLOCK_THREAD_CPUTIME_ID => {
                libc::CLOCK_THREAD_CPUTIME_ID
            }
            _ => return Err(libc::EINVAL),
        };
        let now = host_time(host_clock);
        self.put(vm, out, &timespec(now))
    }

    fn gettimeofday(&self, vm: &Vm, out: u64) -> Sys {
        let now = host_time(libc::CLOCK_REALTIME);
        let tv = [
            now.as_secs().to_le_bytes(),
            u64::from(now.subsec_micros()).to_le_bytes(),
        ]
        .concat();
        self.put_opt(vm, out, &tv)
    }

    fn time(&self, vm: &Vm, out: u64) -> Sys {
        let now = host_time(libc::CLOCK_REALTIME).as_secs();
        self.put_opt(vm, out, &now.to_le_bytes())?;
        Ok(now)
    }

    /// Sleeps on the host. The watchdog's kick interrupts it (EINTR), so a `--timeout`
    /// still ends a sleeping guest on time.
    fn sleep(&self, vm: &Vm, clock: i32, flags: i32, req: u64, rem: u64) -> Sys {
        let ts = self.get(vm, req, 16)?;
        let secs = i64::from_le_bytes(ts[0..8].try_into().expect("8 bytes"));
        let nanos = i64::from_le_bytes(ts[8..16].try_into().expect("8 bytes"));
        if secs < 0 || !(0..1_000_000_000).contains(&nanos) {
            return Err(libc::EINVAL);
        }
        let request = libc::timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        };
        let mut left = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: both pointers are to live, properly aligned timespecs on our stack.
        let rc = unsafe { libc::clock_nanosleep(clock, flags, &request, &mut left) };
        match rc {
            0 => Ok(0),
            libc::EINTR => {
                if flags & libc::TIMER_ABSTIME == 0 {
                    let left = Duration::new(left.tv_sec as u64, left.tv_nsec as u32);
                    self.put_opt(vm, rem, &timespec(left))?;
                }
                Err(libc::EINTR)
            }
            e => Err(e),
        }
    }
}

fn errno(e: i32) -> u64 {
    (-i64::from(e)) as u64
}

fn fs_errno(e: tmpfs::Error) -> i32 {
    match e {
        tmpfs::Error::NotFound => libc::ENOENT,
        tmpfs::Error::Exists => libc::EEXIST,
        tmpfs::Error::NoSpace => libc::ENOSPC,
    }
}

/// An absolute path with `.`, `..` and repeated slashes resolved; relative to `/`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn timespec(d: Duration) -> [u8; 16] {
    let mut ts = [0u8; 16];
    ts[0..8].copy_from_slice(&d.as_secs().to_le_bytes());
    ts[8..16].copy_from_slice(&u64::from(d.subsec_nanos()).to_le_bytes());
    ts
}

fn host_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec; the clock ids passed are all valid on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Host randomness (getrandom(2)), for AT_RANDOM and the guest's getrandom.
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
}

/// What `stat` and `statx` report about a file.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: u32,
    ino: u64,
    size: u64,
    rdev: (u32, u32),
}

impl Meta {
    fn file(ino: u64, size: u64) -> Self {
        Meta {
            mode: libc::S_IFREG | 0o644,
            ino: ino + 100,
            size,
            rdev: (0, 0),
        }
    }

    fn dir() -> Self {
        Meta {
            mode: libc::S_IFDIR | 0o755,
            ino: 2,
            size: 0,
            rdev: (0, 0),
        }
    }

    /// stdio looks like a terminal-less character device (/dev/null's numbers).
    fn chardev(fd: u64) -> Self {
        Meta {
            mode: libc::S_IFCHR | 0o620,
            ino: 10 + fd,
            size: 0,
            rdev: (1, 3),
        }
    }

    /// `struct stat` for x86-64, laid out field by field (144 bytes).
    fn stat(&self) -> [u8; 144] {
        let mut st = [0u8; 144];
        let rdev = libc::makedev(self.rdev.0, self.rdev.1);
        st[8..16].copy_from_slice(&self.ino.to_le_bytes());
        st[16..24].copy_from_slice(&1u64.to_le_bytes());
        st[24..28].copy_from_slice(&self.mode.to_le_bytes());
        st[40..48].copy_from_slice(&rdev.to_le_bytes());
        st[48..56].copy_from_slice(&self.size.to_le_bytes());
        st[56..64].copy_from_slice(&PAGE.to_le_bytes());
        st[64..72].copy_from_slice(&self.size.div_ceil(512).to_le_bytes());
        st
    }

    /// `struct statx` (256 bytes) with the basic fields.
    fn statx(&self) -> [u8; 256] {
        let mut sx = [0u8; 256];
        sx[0..4].copy_from_slice(&libc::STATX_BASIC_STATS.to_le_bytes());
        sx[4..8].copy_from_slice(&(PAGE as u32).to_le_bytes());
        sx[16..20].copy_from_slice(&1u32.to_le_bytes());
        sx[28..30].copy_from_slice(&(self.mode as u16).to_le_bytes());
        sx[32..40].copy_from_slice(&self.ino.to_le_bytes());
        sx[40..48].copy_from_slice(&self.size.to_le_bytes());
        sx[48..56].copy_from_slice(&self.size.div_ceil(512).to_le_bytes());
        sx[128..132].copy_from_slice(&self.rdev.0.to_le_bytes());
        sx[132..136].copy_from_slice(&self.rdev.1.to_le_bytes());
        sx
    }
}

/// A name for `--explain`: the handled calls and the common unhandled ones.
pub fn name(nr: u64) -> String {
    macro_rules! names {
        ($($n:ident),* $(,)?) => {
            match c_long::try_from(nr).unwrap_or(-1) {
                $(libc::$n => Some(&stringify!($n)[4..]),)*
                _ => None,
            }
        };
    }
    let known = names!(
        SYS_read,
        SYS_write,
        SYS_open,
        SYS_close,
        SYS_stat,
        SYS_fstat,
        SYS_lstat,
        SYS_poll,
        SYS_lseek,
        SYS_mmap,
        SYS_mprotect,
        SYS_munmap,
        SYS_brk,
        SYS_rt_sigaction,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_ioctl,
        SYS_pread64,
        SYS_pwrite64,
        SYS_readv,
        SYS_writev,
        SYS_access,
        SYS_pipe,
        SYS_select,
        SYS_sched_yield,
        SYS_mremap,
        SYS_msync,
        SYS_mincore,
        SYS_madvise,
        SYS_dup,
        SYS_dup2,
        SYS_pause,
        SYS_nanosleep,
        SYS_getpid,
        SYS_socket,
        SYS_connect,
        SYS_clone,
        SYS_fork,
        SYS_vfork,
        SYS_execve,
        SYS_exit,
        SYS_wait4,
        SYS_kill,
        SYS_uname,
        SYS_fcntl,
        SYS_flock,
        SYS_fsync,
        SYS_fdatasync,
        SYS_truncate,
        SYS_ftruncate,
        SYS_getdents,
        SYS_getcwd,
        SYS_chdir,
        SYS_rename,
        SYS_mkdir,
        SYS_rmdir,
        SYS_unlink,
        SYS_readlink,
        SYS_chmod,
        SYS_umask,
        SYS_gettimeofday,
        SYS_getrlimit,
        SYS_getrusage,
        SYS_sysinfo,
        SYS_times,
        SYS_getuid,
        SYS_getgid,
        SYS_geteuid,
        SYS_getegid,
        SYS_getppid,
        SYS_getpgrp,
        SYS_setsid,
        SYS_getgroups,
        SYS_capget,
        SYS_rt_sigsuspend,
        SYS_sigaltstack,
        SYS_statfs,
        SYS_fstatfs,
        SYS_prctl,
        SYS_arch_prctl,
        SYS_sync,
        SYS_gettid,
        SYS_tkill,
        SYS_time,
        SYS_futex,
        SYS_sched_getaffinity,
        SYS_getdents64,
        SYS_set_tid_address,
        SYS_fadvise64,
        SYS_clock_gettime,
        SYS_clock_getres,
        SYS_clock_nanosleep,
        SYS_exit_group,
        SYS_tgkill,
        SYS_openat,
        SYS_mkdirat,
        SYS_newfstatat,
        SYS_unlinkat,
        SYS_readlinkat,
        SYS_faccessat,
        SYS_ppoll,
        SYS_set_robust_list,
        SYS_dup3,
        SYS_pipe2,
        SYS_prlimit64,
        SYS_syncfs,
        SYS_getrandom,
        SYS_memfd_create,
        SYS_statx,
        SYS_rseq,
        SYS_faccessat2,
        SYS_clone3,
        SYS_close_range,
        SYS_epoll_create1,
        SYS_eventfd2,
        SYS_sched_setaffinity,
        SYS_getpgid,
        SYS_getsid,
        SYS_setpgid,
    );
    known.map_or_else(|| format!("syscall_{nr}"), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_against_root() {
        assert_eq!(normalize("file"), "/file");
        assert_eq!(normalize("./a//b/../c"), "/a/c");
        assert_eq!(normalize("/../.."), "/");
        assert_eq!(parent("/tmp/x"), "/tmp");
        assert_eq!(parent("/x"), "/");
    }

    #[test]
    fn names_cover_handled_and_unknown_calls() {
        assert_eq!(name(libc::SYS_write as u64), "write");
        assert_eq!(name(libc::SYS_exit_group as u64), "exit_group");
        assert_eq!(name(libc::SYS_clone as u64), "clone");
        assert_eq!(name(100_000), "syscall_100000");
    }

    #[test]
    fn stat_layouts_put_fields_where_glibc_reads_them() {
        let m = Meta::file(1, 5000);
        let st = m.stat();
        // Cross-check against libc's struct definition.
        assert_eq!(std::mem::size_of::<libc::stat>(), st.len());
        assert_eq!(std::mem::offset_of!(libc::stat, st_size), 48);
        assert_eq!(std::mem::offset_of!(libc::stat, st_mode), 24);
        assert_eq!(std::mem::offset_of!(libc::stat, st_blocks), 64);
        assert_eq!(u64::from_le_bytes(st[48..56].try_into().unwrap()), 5000);
        assert_eq!(std::mem::size_of::<libc::statx>(), 256);
        assert_eq!(std::mem::offset_of!(libc::statx, stx_size), 40);
        assert_eq!(std::mem::offset_of!(libc::statx, stx_mode), 28);
        assert_eq!(std::mem::offset_of!(libc::statx, stx_rdev_major), 128);
        let sx = m.statx();
        assert_eq!(
            u16::from_le_bytes([sx[28], sx[29]]) as u32,
            libc::S_IFREG | 0o644
        );
    }

    #[test]
    fn errno_is_negative_in_rax() {
        assert_eq!(errno(libc::ENOSYS) as i64, -38);
    }
}
