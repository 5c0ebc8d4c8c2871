//! A sandbox with standard KVM and a pure cgroup-v2 host inside, for tests that this host
//! cannot give: QEMU under TCG (no host KVM needed) emulating an AMD CPU with SVM and NPT,
//! booting Debian's cloud kernel with KVM loaded (`kvm_amd nested=1`) and nothing but
//! cgroup2 mounted at /sys/fs/cgroup.
//!
//! ```no_run
//! use isolab_bench::sandbox::{RunSpec, Sandbox};
//! let sandbox = Sandbox::prepare()?;
//! let out = sandbox.run(&RunSpec::new(["cat", "/sys/module/kvm_amd/parameters/npt"]))?;
//! assert_eq!(out.status, 0);
//! assert_eq!(out.stdout, b"Y\n");
//! # Ok::<(), isolab_bench::sandbox::SandboxError>(())
//! ```
//!
//! Preparing fetches and caches, under [`default_cache_dir`], the kernel (see [`kernel`])
//! and a base initramfs (see [`initramfs`]); it is idempotent and takes milliseconds once
//! cached. Each run appends a small archive with the command and its files to the base,
//! boots one vCPU, and reads the serial console (see [`console`]): the command's stdout
//! comes back byte for byte, its stderr through a second serial port, and its exit status
//! as the run's status. The two streams are separate, so their relative order is lost;
//! only the kernel's emergency messages (a panic) can land among the stdout bytes.
//!
//! The guest looks like a standard host to the code under test: cgroup2 alone, KVM with
//! NPT, overlayfs, and a root mount that is not the initial ramfs (which pivot_root(2)
//! refuses to leave) and is `shared`, as systemd leaves it. It runs as root, with no
//! network but `lo`.
//!
//! A run is bounded by its timeout: QEMU is killed, and the run's scratch directory is
//! removed, whatever the outcome. If the calling process itself is killed, the kernel
//! kills QEMU with it (`PR_SET_PDEATHSIG`); only the scratch directory is then left.

pub mod console;
pub mod initramfs;
pub mod kernel;
pub mod peers;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use goblin::elf::Elf;
use isolab_microvm::linux::peer::find_on_path;

use self::console::{ConsoleParser, Event};
pub use self::initramfs::GuestFile;
use self::initramfs::{InitramfsError, Payload, RESERVED};
pub use self::kernel::Kernel;
use self::kernel::KernelError;

/// The cache, unless `ISOLAB_SANDBOX_CACHE` names another: it outlives runs and CI jobs on
/// the same machine.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/isolab/sandbox";
/// The guest's userland. It must be static: the guest has no dynamic loader.
pub const BUSYBOX: &str = "/bin/busybox";
pub const QEMU: &str = "qemu-system-x86_64";
/// Where [`RunSpec::isolab_binaries`] puts `isolab` and `isolab-workload` (on the guest's
/// `PATH`, and side by side, as `isolab` expects its workload).
pub const GUEST_BIN_DIR: &str = "/usr/local/bin";
/// AMD, so KVM in the guest is `kvm_amd`; `+svm,+npt` give it SVM with nested paging.
const CPU: &str = "EPYC,+svm,+npt";
/// `quiet`: serial output is emulated byte by byte, and a chatty boot takes three times
/// as long. `panic=-1`: a guest kernel panic reboots at once, which `-no-reboot` turns
/// into QEMU exiting, so a crashed guest ends the run instead of hanging until the timeout.
const KERNEL_CMDLINE: &str = "console=ttyS0 quiet panic=-1";
/// How long QEMU may take to exit after the guest reported the command's status.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Work files in the cache older than this are left over from an interrupted preparation.
const INTERRUPTED_AGE: Duration = Duration::from_secs(3600);
/// Console lines quoted in an error.
const TAIL_LINES: usize = 25;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("preparing the sandbox's kernel")]
    Kernel(#[from] KernelError),
    #[error("preparing the sandbox's initramfs")]
    Initramfs(#[from] InitramfsError),
    #[error("{QEMU} is not on PATH: install Debian's qemu-system-x86 (`isolab setup --for tests`)")]
    NoQemu,
    #[error(
        "{path}: {problem}; the sandbox needs a static busybox (Debian's busybox-static, `isolab setup --for tests`)"
    )]
    Busybox { path: PathBuf, problem: String },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`objcopy --strip-debug {path}` failed: is it an ELF file?")]
    Strip { path: PathBuf },
    #[error("guest path {path:?}: {reason}")]
    BadGuestPath { path: String, reason: String },
    #[error("starting {QEMU}")]
    Spawn(#[source] io::Error),
    #[error(
        "the sandbox ran past its timeout of {}s {} and was stopped (QEMU killed); last console lines:\n{console_tail}",
        timeout.as_secs_f64(),
        if *began { "while the command ran" } else { "while booting" }
    )]
    Timeout {
        timeout: Duration,
        began: bool,
        console_tail: String,
    },
    #[error("the sandbox's init failed at `{step}`; last console lines:\n{console_tail}")]
    SetupFailed { step: String, console_tail: String },
    #[error(
        "QEMU ended ({qemu}) before the guest reported the command's status; QEMU said: {qemu_stderr}; last console lines:\n{console_tail}"
    )]
    NoStatus {
        qemu: ExitStatus,
        qemu_stderr: String,
        console_tail: String,
    },
}

/// A prepared sandbox: cached kernel and base initramfs, and QEMU found.
#[derive(Debug, Clone)]
pub struct Sandbox {
    cache: PathBuf,
    kernel: Kernel,
    base: PathBuf,
}

/// One command to run in a fresh sandbox.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The command and its arguments; `argv[0]` is looked up in the guest's `PATH`.
    pub argv: Vec<String>,
    /// Set in the command's environment, over the defaults (`PATH`, `HOME=/root`,
    /// `TERM=dumb`, `ISOLAB_SANDBOX=1`); nothing else is inherited.
    pub env: Vec<(String, String)>,
    /// Host files copied into the guest (mode kept), e.g. the binaries under test.
    pub files: Vec<GuestFile>,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// Wall-clock limit for the whole run, boot included.
    pub timeout: Duration,
    /// Where the run's scratch directory goes (default: the system's temp directory).
    pub scratch: Option<PathBuf>,
}

impl RunSpec {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RunSpec {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            files: Vec::new(),
            mem_mib: 2048,
            timeout: Duration::from_secs(120),
            scratch: None,
        }
    }

    /// Adds `isolab` and `isolab-workload` from `dir` (where cargo builds them) as
    /// `/usr/local/bin/isolab` and `/usr/local/bin/isolab-workload`; `isolab` without its
    /// debug sections, the workload byte for byte.
    pub fn isolab_binaries(mut self, dir: &Path) -> Self {
        for (name, strip_debug) in [("isolab", true), ("isolab-workload", false)] {
            self.files.push(GuestFile {
                host: dir.join(name),
                guest: format!("{GUEST_BIN_DIR}/{name}"),
                strip_debug,
            });
        }
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// What a finished run gave back.
#[derive(Debug, Clone)]
pub struct SandboxOutput {
    /// The command's exit status (128+n when a signal n ended it; 127 not found, 126 not
    /// executable).
    pub status: u8,
    /// The command's stdout, byte for byte.
    pub stdout: Vec<u8>,
    /// The command's stderr, byte for byte.
    pub stderr: Vec<u8>,
    /// Everything on the serial console: kernel messages, init's markers, the stdout.
    pub console: Vec<u8>,
    /// From starting QEMU to the command starting.
    pub boot: Duration,
    /// From starting QEMU to QEMU's exit.
    pub elapsed: Duration,
}

impl SandboxOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// `$ISOLAB_SANDBOX_CACHE`, else [`DEFAULT_CACHE_DIR`].
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("ISOLAB_SANDBOX_CACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from)
}

impl Sandbox {
    /// Prepares in the default cache, silently.
    pub fn prepare() -> Result<Sandbox, SandboxError> {
        Sandbox::prepare_in(&default_cache_dir(), &mut |_| {})
    }

    /// Fetches and builds whatever `cache` lacks; `log` hears about each step that does
    /// work (downloads, unpacking, building), and nothing when all is cached.
    pub fn prepare_in(cache: &Path, log: &mut dyn FnMut(&str)) -> Result<Sandbox, SandboxError> {
        if find_on_path(QEMU).is_none() {
            return Err(SandboxError::NoQemu);
        }
        let busybox = Path::new(BUSYBOX);
        check_static(busybox)?;
        fs::create_dir_all(cache).map_err(|source| SandboxError::Io {
            path: cache.to_owned(),
            source,
        })?;
        prune_interrupted(cache, log)?;
        let kernel = kernel::ensure(cache, busybox, log)?;
        let base = initramfs::ensure_base(cache, &kernel, busybox, log)?;
        Ok(Sandbox {
            cache: cache.to_owned(),
            kernel,
            base,
        })
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// The cached base initramfs.
    pub fn base_initramfs(&self) -> &Path {
        &self.base
    }

    /// Runs `spec` and collects its output.
    pub fn run(&self, spec: &RunSpec) -> Result<SandboxOutput, SandboxError> {
        self.run_streaming(spec, &mut io::sink(), &mut io::sink())
    }

    /// Runs `spec`, copying the command's stdout and stderr to the given writers as they
    /// arrive, and collects them too.
    pub fn run_streaming(
        &self,
        spec: &RunSpec,
        stdout: &mut (dyn Write + Send),
        stderr: &mut (dyn Write + Send),
    ) -> Result<SandboxOutput, SandboxError> {
        for file in &spec.files {
            check_guest_path(&file.guest)?;
        }
        let scratch_parent = spec.scratch.clone().unwrap_or_else(std::env::temp_dir);
        let scratch = tempfile::Builder::new()
            .prefix("isolab-sandbox-")
            .tempdir_in(&scratch_parent)
            .map_err(|source| SandboxError::Io {
                path: scratch_parent.clone(),
                source,
            })?;
        let nonce = nonce()?;
        let files = spec
            .files
            .iter()
            .enumerate()
            .map(|(i, file)| strip_debug(file, &scratch.path().join(format!("stripped-{i}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let initrd = scratch.path().join("initrd");
        let command_script = initramfs::command_script(&spec.argv, &spec.env);
        initramfs::write_initrd(
            &initrd,
            &self.base,
            &Payload {
                nonce: &nonce,
                command_script: &command_script,
                files: &files,
            },
        )?;
        // QEMU writes the guest's second serial port (the command's stderr) here; it is
        // created first so that it can be followed from the start.
        let stderr_path = scratch.path().join("stderr");
        File::create(&stderr_path).map_err(|source| SandboxError::Io {
            path: stderr_path.clone(),
            source,
        })?;
        let mut command = Command::new(QEMU);
        command
            .args(["-accel", "tcg", "-cpu", CPU, "-smp", "1"])
            .arg("-m")
            .arg(format!("{}M", spec.mem_mib))
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ])
            .args(["-serial", "stdio", "-serial"])
            .arg(format!("file:{}", stderr_path.display()))
            .arg("-kernel")
            .arg(&self.kernel.vmlinuz)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", KERNEL_CMDLINE])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // prctl(2) and getppid(2), which are async-signal-safe; it touches no memory
        // shared with the parent.
        unsafe {
            command.pre_exec(|| {
                // If this process dies without stopping QEMU (SIGKILL, a crash), the kernel
                // kills QEMU too, rather than leave a 2 GB guest running unwatched.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() == 1 {
                    return Err(io::Error::other("isolab exited while starting QEMU"));
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let child = command.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SandboxError::NoQemu
            } else {
                SandboxError::Spawn(e)
            }
        })?;
        let mut qemu = Qemu(child);
        let result = watch(
            &mut qemu,
            spec,
            &nonce,
            &stderr_path,
            started,
            stdout,
            stderr,
        );
        // Whatever happened, QEMU is gone before the scratch directory is removed.
        qemu.stop();
        result
    }
}

/// Removes what an interrupted preparation left (`.fetch-*`: a kernel package and its
/// unpacked tree, ~100 MB; `.base-*`: half an archive). Only entries older than an hour
/// go, so a preparation running beside this one keeps its work.
fn prune_interrupted(cache: &Path, log: &mut dyn FnMut(&str)) -> Result<(), SandboxError> {
    let io_err = |path: &Path, source| SandboxError::Io {
        path: path.to_owned(),
        source,
    };
    for entry in fs::read_dir(cache).map_err(|e| io_err(cache, e))? {
        let path = entry.map_err(|e| io_err(cache, e))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !(name.starts_with(".fetch-") || name.starts_with(".base-")) {
            continue;
        }
        let age = fs::symlink_metadata(&path)
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default());
        if age.is_ok_and(|age| age > INTERRUPTED_AGE) {
            log(&format!(
                "removing {}, left by an interrupted preparation",
                path.display()
            ));
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(|e| io_err(&path, e))?;
        }
    }
    Ok(())
}

/// The file to archive for `file`: a copy without debug sections at `copy` when it asks
/// for one. Without `objcopy` (binutils), the file goes in whole: slower to boot, the
/// same to run.
fn strip_debug(file: &GuestFile, copy: &Path) -> Result<GuestFile, SandboxError> {
    if !file.strip_debug {
        return Ok(file.clone());
    }
    if !file.host.is_file() {
        // Let the archive writer report the missing file, naming it.
        return Ok(file.clone());
    }
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&file.host)
        .arg(copy)
        .stderr(Stdio::null())
        .status();
    match stripped {
        Ok(status) if status.success() => Ok(GuestFile {
            host: copy.to_owned(),
            guest: file.guest.clone(),
            strip_debug: false,
        }),
        Ok(_) => Err(SandboxError::Strip {
            path: file.host.clone(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(file.clone()),
        Err(source) => Err(SandboxError::Io {
            path: file.host.clone(),
            source,
        }),
    }
}

/// Kills QEMU when dropped early (an error or a panic), so no run outlives its caller.
struct Qemu(Child);

impl Qemu {
    /// Lets QEMU exit by itself for up to `grace` (its console closes a moment before it
    /// exits), then kills it.
    fn finish(&mut self, grace: Duration) {
        let until = Instant::now() + grace;
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < until {
            thread::sleep(Duration::from_millis(10));
        }
        self.stop();
    }

    fn stop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the console until the command's status arrives and QEMU exits, or the timeout.
fn watch(
    qemu: &mut Qemu,
    spec: &RunSpec,
    nonce: &str,
    stderr_path: &Path,
    started: Instant,
    stdout_sink: &mut (dyn Write + Send),
    stderr_sink: &mut (dyn Write + Send),
) -> Result<SandboxOutput, SandboxError> {
    let console_pipe = qemu.0.stdout.take().expect("stdout is piped");
    let mut qemu_stderr_pipe = qemu.0.stderr.take().expect("stderr is piped");
    let deadline = started + spec.timeout;
    let stop_following = AtomicBool::new(false);
    thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        scope.spawn(move || {
            let mut pipe = console_pipe;
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let qemu_said = scope.spawn(move || {
            let mut text = String::new();
            let _ = qemu_stderr_pipe.read_to_string(&mut text);
            text
        });
        let follower = scope.spawn(|| follow(stderr_path, &stop_following, stderr_sink));

        let mut parser = ConsoleParser::new(nonce);
        let mut console = Vec::new();
        let mut stdout = Vec::new();
        let mut boot = None;
        let mut status = None;
        let mut setup_failed = None;
        let mut timed_out = false;
        // The timeout, or the shutdown grace after the status, ran out: no more waiting.
        let mut waited_enough = false;
        loop {
            // After the status, QEMU only has to power off; give it a grace period.
            let until = if parser.is_done() {
                deadline.min(Instant::now() + SHUTDOWN_GRACE)
            } else {
                deadline
            };
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(chunk) => {
                    console.extend_from_slice(&chunk);
                    for event in parser.feed(&chunk) {
                        match event {
                            Event::Began => boot = Some(started.elapsed()),
                            Event::Output(bytes) => {
                                // A closed sink (e.g. `| head`) must not stop the run.
                                let _ = stdout_sink
                                    .write_all(&bytes)
                                    .and_then(|()| stdout_sink.flush());
                                stdout.extend(bytes);
                            }
                            Event::Exited(code) => status = Some(code),
                            Event::SetupFailed(step) => setup_failed = Some(step),
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    timed_out = status.is_none() && setup_failed.is_none();
                    waited_enough = true;
                    break;
                }
            }
        }
        if waited_enough {
            qemu.stop();
        } else {
            qemu.finish(SHUTDOWN_GRACE.min(deadline.saturating_duration_since(Instant::now())));
        }
        let elapsed = started.elapsed();
        stop_following.store(true, Ordering::SeqCst);
        let stderr = follower.join().expect("the stderr follower does not panic");
        let qemu_said = qemu_said
            .join()
            .expect("the QEMU stderr reader does not panic");
        let console_tail = tail(&console);
        if timed_out {
            return Err(SandboxError::Timeout {
                timeout: spec.timeout,
                began: boot.is_some(),
                console_tail,
            });
        }
        if let Some(step) = setup_failed {
            return Err(SandboxError::SetupFailed { step, console_tail });
        }
        let Some(status) = status else {
            return Err(SandboxError::NoStatus {
                qemu: qemu.0.wait().map_err(SandboxError::Spawn)?,
                qemu_stderr: qemu_complaints(&qemu_said),
                console_tail,
            });
        };
        Ok(SandboxOutput {
            status,
            stdout,
            stderr: stderr.map_err(|source| SandboxError::Io {
                path: stderr_path.to_owned(),
                source,
            })?,
            console,
            boot: boot.unwrap_or(elapsed),
            elapsed,
        })
    })
}

/// Copies what QEMU appends to the stderr file to `sink` until told to stop, then reads
/// what is left. `stop` is read before each empty read, so a read after QEMU ended sees
/// everything QEMU wrote.
fn follow(path: &Path, stop: &AtomicBool, sink: &mut (dyn Write + Send)) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let mut all = Vec::new();
    let mut buf = vec![0u8; 1 << 14];
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let n = file.read(&mut buf)?;
        if n > 0 {
            let _ = sink.write_all(&buf[..n]).and_then(|()| sink.flush());
            all.extend_from_slice(&buf[..n]);
        } else if stopping {
            return Ok(all);
        } else {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What QEMU printed, less its warnings about the EPYC model's features that TCG cannot
/// emulate (printed on every start, harmless: the guest simply does not see them).
fn qemu_complaints(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("TCG doesn't support requested feature"))
        .collect();
    if lines.is_empty() {
        "nothing".to_owned()
    } else {
        lines.join("\n")
    }
}

/// The last lines of the console, for error messages.
fn tail(console: &[u8]) -> String {
    let text = String::from_utf8_lossy(console).replace('\r', "");
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    let tail = lines[start..].join("\n");
    if tail.trim().is_empty() {
        "(nothing)".to_owned()
    } else {
        tail
    }
}

/// Random per run, so nothing the command prints can pass for init's markers.
fn nonce() -> Result<String, SandboxError> {
    let path = Path::new("/dev/urandom");
    let mut bytes = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| SandboxError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn check_guest_path(path: &str) -> Result<(), SandboxError> {
    let bad = |reason: &str| SandboxError::BadGuestPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(bad("must be absolute"));
    }
    if path[1..]
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(bad("must name a file, without `.`, `..` or empty parts"));
    }
    if let Some(reserved) = RESERVED.iter().find(|r| p.starts_with(r)) {
        return Err(bad(&format!(
            "lies in {reserved}, which the sandbox's init mounts over or uses itself"
        )));
    }
    Ok(())
}

fn check_static(path: &Path) -> Result<(), SandboxError> {
    let problem = |problem: String| SandboxError::Busybox {
        path: path.to_owned(),
        problem,
    };
    let bytes = fs::read(path).map_err(|e| problem(e.to_string()))?;
    let elf = Elf::parse(&bytes).map_err(|e| problem(format!("not an ELF file ({e})")))?;
    match elf.interpreter {
        Some(interpreter) => Err(problem(format!("dynamically linked (needs {interpreter})"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_checked() {
        assert!(check_guest_path("/usr/local/bin/tool").is_ok());
        assert!(check_guest_path("/root/data.json").is_ok());
        for bad in [
            "relative",
            "/a/../b",
            "/a/./b",
            "/tmp/x",
            "/run/x",
            "/sandbox/command",
            "/init",
            "/proc",
            "/a/",
            "/a//b",
        ] {
            assert!(
                matches!(
                    check_guest_path(bad),
                    Err(SandboxError::BadGuestPath { .. })
                ),
                "{bad}"
            );
        }
        // Only whole components count: /runner is not under /run.
        assert!(check_guest_path("/runner").is_ok());
    }

    #[test]
    fn the_console_tail_is_the_end() {
        let console: String = (0..100).map(|i| format!("line {i}\r\n")).collect();
        let tail = tail(console.as_bytes());
        assert!(tail.starts_with("line 75\nline 76"), "{tail}");
        assert!(tail.ends_with("line 99"));
        assert_eq!(super::tail(b"\r\n"), "(nothing)");
    }

    #[test]
    fn qemus_feature_warnings_are_left_out() {
        let stderr = "qemu-system-x86_64: warning: TCG doesn't support requested feature: \
                      CPUID.07H:EBX.rdseed [bit 18]\nqemu-system-x86_64: terminating on signal 15\n";
        assert_eq!(
            qemu_complaints(stderr),
            "qemu-system-x86_64: terminating on signal 15"
        );
        assert_eq!(qemu_complaints(""), "nothing");
    }

    #[test]
    fn nonces_differ() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn the_stderr_follower_reads_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr");
        fs::write(&path, b"first ").unwrap();
        let stop = AtomicBool::new(false);
        let mut sink = Vec::new();
        let all = thread::scope(|s| {
            let handle = s.spawn(|| follow(&path, &stop, &mut sink));
            thread::sleep(Duration::from_millis(50));
            fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(b"second")
                .unwrap();
            stop.store(true, Ordering::SeqCst);
            handle.join().unwrap().unwrap()
        });
        assert_eq!(all, b"first second");
        assert_eq!(sink, b"first second");
    }
}
