//! The guest's root filesystem: a cached base archive (busybox, the KVM modules, init) and a
//! small per-run archive appended to it (the command, the nonce, the isolab binaries and
//! any other files), so a new binary or command never rebuilds the base.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::console::{BEGIN, EXIT, SETUP_FAILED};
use super::kernel::{Kernel, Module};
use isolab_microvm::linux::cpio::{CpioError, CpioWriter};

/// `PATH` in the guest, for init and the command alike.
pub const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the per-run files of init's protocol live in the guest.
pub const SANDBOX_DIR: &str = "/sandbox";
/// Where the modules lie in the guest.
const MODULE_DIR: &str = "/lib/modules/sandbox";
/// Part of the base's cache key: bump when the layout of the base changes in a way its
/// inputs do not show.
const BASE_FORMAT: &str = "isolab-sandbox-base-1";
/// Directories the base creates; the kernel's unpacker does not create parents itself.
const BASE_DIRS: &[&str] = &[
    "bin",
    "sbin",
    "usr",
    "usr/bin",
    "usr/sbin",
    "usr/local",
    "usr/local/bin",
    "usr/local/sbin",
    "lib",
    "lib/modules",
    "lib/modules/sandbox",
    "dev",
    "proc",
    "sys",
    "tmp",
    "run",
    "root",
    "etc",
    "mnt",
    "sandbox",
];
/// Guest paths that init mounts over or owns: files put there would be hidden or clash.
pub const RESERVED: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/tmp",
    "/run",
    SANDBOX_DIR,
    "/init",
];

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("building {path}")]
    Cpio {
        path: PathBuf,
        #[source]
        source: CpioError,
    },
    #[error("`{busybox} --list-full` failed: is it busybox?")]
    Applets { busybox: PathBuf },
}

/// A file to copy into the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFile {
    pub host: PathBuf,
    /// Absolute path in the guest.
    pub guest: String,
    /// Copy it without debug sections (`objcopy --strip-debug`). The debug build of
    /// `isolab` is ~48 MB, mostly DWARF, and the guest's emulated CPU unpacks every byte:
    /// stripping saves about a second per boot. Only for binaries whose exact bytes do not
    /// matter — never the workload, whose sha256 is compared across targets.
    pub strip_debug: bool,
}

/// What one run appends to the base.
#[derive(Debug, Clone)]
pub struct Payload<'a> {
    pub nonce: &'a str,
    pub command_script: &'a str,
    pub files: &'a [GuestFile],
}

/// Returns the cached base archive for this kernel and busybox, building it if needed.
pub fn ensure_base(
    cache: &Path,
    kernel: &Kernel,
    busybox: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, InitramfsError> {
    let busybox_bytes = fs::read(busybox).map_err(|source| io_err(busybox, source))?;
    let applets = applets(busybox)?;
    let init = init_script(&kernel.modules);
    let mut key = Sha256::new();
    for part in [
        BASE_FORMAT.as_bytes(),
        init.as_bytes(),
        &busybox_bytes,
        applets.join("\n").as_bytes(),
    ] {
        key.update((part.len() as u64).to_le_bytes());
        key.update(part);
    }
    let mut modules = Vec::new();
    for module in &kernel.modules {
        let bytes = fs::read(&module.path).map_err(|source| io_err(&module.path, source))?;
        key.update(module.name.as_bytes());
        key.update((bytes.len() as u64).to_le_bytes());
        key.update(&bytes);
        modules.push((module, bytes));
    }
    let hash: String = key
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = cache.join(format!("base-{}-{hash}.cpio", kernel.package));
    if path.is_file() {
        return Ok(path);
    }
    log(&format!(
        "building the base initramfs {} (busybox, {} module(s), init)",
        path.display(),
        modules.len()
    ));
    // Written beside its final name and renamed, so a reader never sees half an archive.
    let partial = tempfile::Builder::new()
        .prefix(".base-")
        .tempfile_in(cache)
        .map_err(|source| io_err(cache, source))?;
    let cpio_err = |source| InitramfsError::Cpio {
        path: path.clone(),
        source,
    };
    let mut w = CpioWriter::new(BufWriter::new(partial.as_file()));
    for dir in BASE_DIRS {
        w.dir(dir, 0o755).map_err(cpio_err)?;
    }
    // The kernel opens the console before init runs, and init's output goes there.
    w.char_device("dev/console", 0o600, 5, 1)
        .map_err(cpio_err)?;
    w.file("bin/busybox", 0o755, &busybox_bytes)
        .map_err(cpio_err)?;
    for applet in &applets {
        w.symlink(applet, "/bin/busybox").map_err(cpio_err)?;
    }
    for (module, bytes) in &modules {
        let name = format!("{}/{}.ko", &MODULE_DIR[1..], module.name);
        w.file(&name, 0o644, bytes).map_err(cpio_err)?;
    }
    w.file("init", 0o755, init.as_bytes()).map_err(cpio_err)?;
    w.finish()
        .map_err(cpio_err)?
        .into_inner()
        .map_err(|e| io_err(partial.path(), e.into_error()))?;
    partial.persist(&path).map_err(|e| io_err(&path, e.error))?;
    // Bases built from older inputs are never used again; a run still copying one keeps
    // its open file.
    let stale = fs::read_dir(cache)
        .map_err(|source| io_err(cache, source))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| *p != path && is_base(p));
    for old in stale {
        log(&format!("removing the outdated {}", old.display()));
        fs::remove_file(&old).map_err(|source| io_err(&old, source))?;
    }
    Ok(path)
}

fn is_base(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("base-") && n.ends_with(".cpio"))
}

/// Writes the base followed by this run's archive into `out`.
pub fn write_initrd(out: &Path, base: &Path, payload: &Payload) -> Result<(), InitramfsError> {
    let file = File::create(out).map_err(|source| io_err(out, source))?;
    let mut writer = BufWriter::new(file);
    let mut base_file = File::open(base).map_err(|source| io_err(base, source))?;
    io::copy(&mut base_file, &mut writer).map_err(|source| io_err(out, source))?;
    let cpio_err = |source| InitramfsError::Cpio {
        path: out.to_owned(),
        source,
    };
    let mut w = CpioWriter::new(writer);
    let sandbox = &SANDBOX_DIR[1..];
    w.file(&format!("{sandbox}/nonce"), 0o644, payload.nonce.as_bytes())
        .map_err(cpio_err)?;
    w.file(
        &format!("{sandbox}/command"),
        0o755,
        payload.command_script.as_bytes(),
    )
    .map_err(cpio_err)?;
    let mut made: Vec<String> = BASE_DIRS.iter().map(|d| d.to_string()).collect();
    for file in payload.files {
        let name = file.guest.trim_start_matches('/');
        let mut parent = String::new();
        for part in name.split('/').take(name.split('/').count() - 1) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            if !made.contains(&parent) {
                w.dir(&parent, 0o755).map_err(cpio_err)?;
                made.push(parent.clone());
            }
        }
        let perm = fs::metadata(&file.host)
            .map_err(|source| io_err(&file.host, source))?
            .permissions()
            .mode()
            & 0o7777;
        w.file_from(name, perm, &file.host).map_err(cpio_err)?;
    }
    w.finish()
        .map_err(cpio_err)?
        .into_inner()
        .map_err(|e| io_err(out, e.into_error()))?;
    Ok(())
}

/// Init (PID 1): mount what a standard host has — cgroup2 alone at /sys/fs/cgroup — load
/// KVM, run the command between the console markers and power off.
///
/// Init's own messages go to the console; the command's stdout goes to ttyS0 (the console
/// too, between the markers) and its stderr to ttyS1. Both ttys are raw, so bytes arrive
/// unchanged. `stty` sets attributes with TCSADRAIN, so the one after the exit marker also
/// waits until it has left the UART: `poweroff -f` does not flush tty buffers.
pub fn init_script(modules: &[Module]) -> String {
    let mut insmods = String::new();
    for module in modules {
        let params = if module.params.is_empty() {
            String::new()
        } else {
            format!(" {}", module.params)
        };
        insmods.push_str(&format!(
            "step insmod {MODULE_DIR}/{}.ko{params}\n",
            module.name
        ));
    }
    format!(
        r#"#!/bin/busybox sh
# isolab sandbox init (PID 1), generated by isolab_bench::sandbox::initramfs.
export PATH={GUEST_PATH}
nonce=$(cat {SANDBOX_DIR}/nonce)
fail() {{
	printf '\n{SETUP_FAILED} %s %s\n' "$nonce" "$*"
	poweroff -f
}}
step() {{ "$@" || fail "$*"; }}
# The kernel starts init on rootfs, the initial ramfs, which pivot_root(2) cannot leave
# (EINVAL), so a container runtime could not start here. Moving a bind mount of / over /
# and entering it, as switch_root does with a copy, gives a root with a parent mount.
if [ "$1" != rerooted ]; then
	step mount -o bind / /mnt
	cd /mnt || fail "cd /mnt"
	step mount -o move . /
	exec chroot . /init rerooted
fi
# Shared, as systemd leaves it on standard hosts: a runtime must make its mounts private.
step mount --make-rshared /
step mount -t proc proc /proc
# Only emergencies on the console from now on: it carries the command's output.
step dmesg -n 1
step mount -t sysfs sysfs /sys
step mount -t devtmpfs devtmpfs /dev
step mount -t tmpfs -o mode=1777 tmpfs /tmp
step mount -t tmpfs -o mode=0755 tmpfs /run
step mount -t cgroup2 cgroup2 /sys/fs/cgroup
{insmods}step ip link set lo up
step hostname sandbox
step stty -F /dev/ttyS0 raw -echo
step stty -F /dev/ttyS1 raw -echo
printf '\n{BEGIN} %s\n' "$nonce"
{SANDBOX_DIR}/command </dev/null >/dev/ttyS0 2>/dev/ttyS1
status=$?
stty -F /dev/ttyS1 raw -echo
printf '\n{EXIT} %s %s\n' "$nonce" "$status"
stty -F /dev/ttyS0 raw -echo
poweroff -f
"#
    )
}

/// The command as a script: a clean environment, then `exec`, so its status is the
/// command's own (126 and 127 from `env` when it cannot be run or found).
pub fn command_script(argv: &[String], env: &[(String, String)]) -> String {
    let mut vars: Vec<(String, String)> = [
        ("PATH", GUEST_PATH),
        ("HOME", "/root"),
        ("TERM", "dumb"),
        ("ISOLAB_SANDBOX", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (key, value) in env {
        vars.retain(|(k, _)| k != key);
        vars.push((key.clone(), value.clone()));
    }
    let assignments: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "#!/bin/sh\ncd /root\nexec env -i {} {}\n",
        shell_words::join(&assignments),
        shell_words::join(argv)
    )
}

/// The applet links busybox knows (`bin/sh`, `usr/bin/awk`, …), so the guest looks like a
/// small ordinary system and programs found through `PATH` work.
fn applets(busybox: &Path) -> Result<Vec<String>, InitramfsError> {
    let output = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|source| io_err(busybox, source))?;
    if !output.status.success() {
        return Err(InitramfsError::Applets {
            busybox: busybox.to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| {
            l.contains('/')
                && *l != "bin/busybox"
                && BASE_DIRS
                    .iter()
                    .any(|d| Path::new(l).parent() == Some(Path::new(d)))
        })
        .map(str::to_owned)
        .collect())
}

fn io_err(path: &Path, source: io::Error) -> InitramfsError {
    InitramfsError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules() -> Vec<Module> {
        ["irqbypass", "kvm", "kvm_amd"]
            .iter()
            .map(|name| Module {
                name: name.to_string(),
                path: PathBuf::from(format!("/cache/{name}.ko")),
                params: if *name == "kvm_amd" {
                    "nested=1".into()
                } else {
                    String::new()
                },
            })
            .collect()
    }

    #[test]
    fn init_loads_modules_in_order_with_parameters() {
        let script = init_script(&modules());
        let insmods: Vec<&str> = script.lines().filter(|l| l.contains("insmod")).collect();
        assert_eq!(
            insmods,
            [
                "step insmod /lib/modules/sandbox/irqbypass.ko",
                "step insmod /lib/modules/sandbox/kvm.ko",
                "step insmod /lib/modules/sandbox/kvm_amd.ko nested=1",
            ]
        );
    }

    #[test]
    fn init_mounts_cgroup2_alone_and_marks_the_command() {
        let script = init_script(&modules());
        assert!(script.starts_with("#!/bin/busybox sh\n"));
        let mounts: Vec<&str> = script.lines().filter(|l| l.contains("mount -t")).collect();
        assert_eq!(
            mounts
                .iter()
                .filter(|l| l.contains("cgroup"))
                .collect::<Vec<_>>(),
            [&"step mount -t cgroup2 cgroup2 /sys/fs/cgroup"]
        );
        // The markers are those the host's parser looks for, each after a newline.
        assert!(script.contains(r#"printf '\nISOLAB-SANDBOX-BEGIN %s\n' "$nonce""#));
        assert!(script.contains(r#"printf '\nISOLAB-SANDBOX-EXIT %s %s\n' "$nonce" "$status""#));
        let command = script.find("/sandbox/command <").unwrap();
        assert!(script.find("ISOLAB-SANDBOX-BEGIN").unwrap() < command);
        assert!(command < script.find("ISOLAB-SANDBOX-EXIT").unwrap());
        assert!(script.trim_end().ends_with("poweroff -f"));
    }

    #[test]
    fn the_command_script_quotes_and_cleans_the_environment() {
        let argv = ["sh", "-c", "echo 'it''s' \"$X\"; exit 7"].map(String::from);
        let script = command_script(
            &argv,
            &[("X".into(), "a b".into()), ("TERM".into(), "vt100".into())],
        );
        let exec = script.lines().last().unwrap();
        let words = shell_words::split(exec).unwrap();
        assert_eq!(words[..3], ["exec", "env", "-i"], "{exec}");
        assert_eq!(words[3], format!("PATH={GUEST_PATH}"));
        assert!(words.contains(&"X=a b".to_owned()), "{exec}");
        assert!(words.contains(&"TERM=vt100".to_owned()), "{exec}");
        assert!(!words.contains(&"TERM=dumb".to_owned()), "{exec}");
        assert_eq!(&words[words.len() - 3..], argv);
    }

    #[test]
    fn the_initrd_is_the_base_then_the_payload() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.cpio");
        let mut w = CpioWriter::new(Vec::new());
        w.file("init", 0o755, b"x").unwrap();
        let base_bytes = w.finish().unwrap();
        fs::write(&base, &base_bytes).unwrap();
        let host = dir.path().join("tool");
        fs::write(&host, b"#!/bin/sh\n").unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(0o750)).unwrap();
        let files = [GuestFile {
            host,
            guest: "/opt/tools/tool".into(),
            strip_debug: false,
        }];
        let out = dir.path().join("initrd");
        write_initrd(
            &out,
            &base,
            &Payload {
                nonce: "abc",
                command_script: "#!/bin/sh\n",
                files: &files,
            },
        )
        .unwrap();
        let initrd = fs::read(&out).unwrap();
        assert!(initrd.starts_with(&base_bytes));
        let payload = String::from_utf8_lossy(&initrd[base_bytes.len()..]);
        let names: Vec<&str> = [
            "sandbox/nonce",
            "sandbox/command",
            "opt\0",
            "opt/tools\0",
            "opt/tools/tool",
        ]
        .into_iter()
        .filter(|n| payload.contains(n))
        .collect();
        assert_eq!(names.len(), 5, "{payload:?}");
        // Base directories are not repeated; the file keeps its mode (0750 → 000081E8).
        assert!(!payload.contains("sandbox\0"));
        assert!(payload.contains("000081E8"));
    }
}
