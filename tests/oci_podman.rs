//! podman driving `isolab-oci` as its OCI runtime (through conmon), end to end as root:
//! `run --rm` with the command's output, `run -t` with the container's own terminal, and
//! `run -d` (in podman's cgroup) + `exec` + `stop` + `rm`, on an image
//! imported from a busybox root filesystem tar (no registry is reachable). Without the
//! ulimit flags podman asks for more open files than this host's hard limit; isolab-oci's
//! error then names the limit and the flag to pass.
//!
//! Needs root, podman (installed by `isolab setup --for tests`) and /bin/busybox.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
];

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman is installed by `isolab setup --for tests`")
}

/// The image and container this test makes; removed when dropped (also on a failure).
struct Podman {
    runtime: String,
    image: String,
    container: String,
}

impl Podman {
    fn new(dir: &Path) -> Podman {
        let tag = std::process::id();
        let runtime = assert_cmd::cargo::cargo_bin("isolab-oci")
            .canonicalize()
            .unwrap();
        let p = Podman {
            runtime: runtime.to_str().unwrap().to_string(),
            image: format!("localhost/isolab-oci-test-{tag}"),
            container: format!("isolab-oci-test-{tag}"),
        };
        let root = dir.join("rootfs");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect("/bin/busybox (busybox-static)");
        for applet in ["sh", "sleep", "echo", "cat", "grep", "tty"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let tar = dir.join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        let out = podman(&["import", "-q", tar.to_str().unwrap(), &p.image]);
        assert_eq!(code(&out), 0, "podman import: {}", text(&out.stderr));
        p
    }

    /// `podman --runtime <isolab-oci> ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--runtime", self.runtime.as_str()];
        all.extend_from_slice(args);
        podman(&all)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.run(&["rm", "-f", "-t", "0", &self.container]);
        podman(&["rmi", "-f", &self.image]);
    }
}

/// Nothing of container `id` is left in isolab-oci's state or the cgroups.
fn assert_gone(id: &str) {
    let record = PathBuf::from(isolab_runtime::oci::DEFAULT_ROOT).join(id);
    assert!(!record.exists(), "{} left", record.display());
    assert!(
        !isolab_runtime::cgroups::names().unwrap().contains(id),
        "cgroup isolab/{id} left"
    );
}

#[test]
fn podman_runs_and_execs_with_isolab_oci() {
    let _serial = common::serial("oci-podman");
    let dir = tempfile::tempdir().unwrap();
    let p = Podman::new(dir.path());

    let mut args = vec!["run", "--rm", "--net", "none"];
    args.extend(ULIMITS);
    args.extend([
        p.image.as_str(),
        "sh",
        "-c",
        "echo hello from isolab-oci; grep Seccomp: /proc/self/status",
    ]);
    let out = p.run(&args);
    assert_eq!(code(&out), 0, "podman run --rm: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from isolab-oci\nSeccomp:\t2\n");

    let mut args = vec!["run", "-d", "--name", &p.container, "--net", "none"];
    args.extend(ULIMITS);
    args.extend([p.image.as_str(), "sleep", "1000"]);
    let out = p.run(&args);
    assert_eq!(code(&out), 0, "podman run -d: {}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    // The container's cgroups are where podman's cgroupsPath puts them (cgroupfs:
    // /libpod_parent/libpod-<id>), not isolab's own.
    let out = podman(&["inspect", "--format", "{{.State.Pid}}", &id]);
    let pid = text(&out.stdout).trim().to_string();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let placed: Vec<&str> = cgroups
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .filter(|path| path.ends_with(&id))
        .collect();
    assert!(!placed.is_empty(), "not in podman's cgroup: {cgroups}");
    assert!(!cgroups.contains("/isolab/"), "{cgroups}");

    let out = p.run(&[
        "exec",
        &p.container,
        "sh",
        "-c",
        "echo exec-ok; cat /proc/1/cmdline; exit 3",
    ]);
    assert_eq!(code(&out), 3, "podman exec: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "exec-ok\nsleep\u{0}1000\u{0}");

    let out = p.run(&["stop", "-t", "1", &p.container]);
    assert_eq!(code(&out), 0, "podman stop: {}", text(&out.stderr));
    let out = p.run(&["rm", &p.container]);
    assert_eq!(code(&out), 0, "podman rm: {}", text(&out.stderr));
    assert_gone(&id);
    for path in placed {
        for root in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let dir = root.path().join(&path[1..]);
            assert!(!dir.exists(), "{} left", dir.display());
        }
    }
}

#[test]
fn podman_run_t_gets_the_containers_own_terminal() {
    let _serial = common::serial("oci-podman");
    let dir = tempfile::tempdir().unwrap();
    let p = Podman::new(dir.path());
    let mut args = vec!["run", "--rm", "-t", "--net", "none"];
    args.extend(ULIMITS);
    args.extend([p.image.as_str(), "tty"]);
    // conmon relays the terminal; stdin need not be one (no -i).
    let out = p.run(&args);
    assert_eq!(code(&out), 0, "podman run -t: {}", text(&out.stderr));
    let name = text(&out.stdout);
    assert!(
        name.trim_end().starts_with("/dev/pts/"),
        "tty inside named {name:?}"
    );
}

#[test]
fn an_rlimit_above_the_hosts_is_named_with_its_fix() {
    let _serial = common::serial("oci-podman");
    // podman asks for 1048576 open files by default; only a host that cannot grant them
    // shows the error.
    let host = isolab_runtime::container::extra::host_limit(libc::RLIMIT_NOFILE);
    if host >= 1_048_576 || isolab_runtime::container::extra::can_exceed_host_limits() {
        eprintln!("skipped: this host grants RLIMIT_NOFILE 1048576");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Podman::new(dir.path());
    let out = p.run(&["run", "--rm", "--net", "none", &p.image, "echo", "never"]);
    assert_ne!(code(&out), 0);
    let err = text(&out.stderr);
    assert!(err.contains("RLIMIT_NOFILE"), "{err}");
    assert!(err.contains("1048576"), "{err}");
    assert!(
        err.contains(&format!("--ulimit nofile={host}:{host}")),
        "{err}"
    );
    assert!(text(&out.stdout).is_empty());
}
