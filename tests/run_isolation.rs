//! `isolab run` end to end, as root on the host: what the container sees from inside
//! (through `isolab-workload probe` and busybox), exit codes, limits, and that nothing is
//! left behind after success or failure.
//!
//! Needs root, the workload binary built next to isolab (`cargo build -p isolab-workload`),
//! and /bin/busybox (Debian's busybox-static; `isolab setup` installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

const DOCKER_DEFAULT_CAPS: &str = "00000000a80425fb";

struct Rootfs {
    dir: tempfile::TempDir,
}

impl Rootfs {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The workload as /isolab-workload, busybox as /bin/busybox with a relative link per applet.
    fn new() -> Rootfs {
        let dir = tempfile::tempdir().expect("creating a tempdir for the rootfs");
        let isolab = assert_cmd::cargo::cargo_bin("isolab");
        let workload = isolab.with_file_name("isolab-workload");
        assert!(
            workload.exists(),
            "{} is missing: run `cargo build -p isolab-workload` first",
            workload.display()
        );
        std::fs::copy(&workload, dir.path().join("isolab-workload")).unwrap();
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox is missing: install Debian's busybox-static (apt-get install -y busybox-static)"
        );
        // World-searchable, with the mount points in place: with --userns, container root
        // is an unprivileged host id that can neither enter a 0700 tempdir nor create them.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        for mount_point in ["proc", "sys", "dev"] {
            std::fs::create_dir(dir.path().join(mount_point)).unwrap();
        }
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(busybox, bin.join("busybox")).unwrap();
        let list = std::process::Command::new(busybox)
            .arg("--list")
            .output()
            .unwrap();
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
            }
        }
        Rootfs { dir }
    }
}

/// Host state the container `name` must not change: mounts where a container's root lives
/// (isolab mounts nothing elsewhere), and processes in other PID namespaces that are in its
/// cgroup (a leaked container process would be one). Other work on the host starts and
/// ends containers of its own meanwhile; those are not looked at.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    mountinfo: Vec<String>,
    namespaced: Vec<i32>,
}

fn host_state(name: &str) -> HostState {
    let temp = std::env::temp_dir();
    let mut mountinfo: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|point| Path::new(point).starts_with(&temp))
        })
        .map(str::to_string)
        .collect();
    mountinfo.sort();
    HostState {
        mountinfo,
        namespaced: in_other_pid_namespaces(name),
    }
}

fn in_other_pid_namespaces(name: &str) -> Vec<i32> {
    let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let cgroup = format!("/isolab/{name}\n");
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse().ok()?;
            let ns = std::fs::read_link(entry.path().join("ns/pid")).ok()?;
            let joined = std::fs::read_to_string(entry.path().join("cgroup")).ok()?;
            (ns != ours && joined.contains(&cgroup)).then_some(pid)
        })
        .collect();
    pids.sort();
    pids
}

/// The container's cgroup directories, under whichever hierarchies this host has.
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let mut candidates = vec![PathBuf::from("/sys/fs/cgroup/isolab").join(name)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for entry in entries.flatten() {
            candidates.push(entry.path().join("isolab").join(name));
        }
    }
    candidates.into_iter().filter(|p| p.exists()).collect()
}

/// Runs `isolab run --name NAME ARGS...` and checks that it left nothing behind.
fn run(name: &str, args: &[&str]) -> Output {
    let _serial = common::serial("run-isolation-tests");
    let before = host_state(name);
    let output = Command::cargo_bin("isolab")
        .unwrap()
        .args(["run", "--name", name])
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(
        host_state(name),
        before,
        "isolab run {args:?} changed host state"
    );
    assert_eq!(
        cgroup_dirs(name),
        Vec::<PathBuf>::new(),
        "cgroups left behind by {args:?}"
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .expect("isolab exits, it is not killed")
}

fn probe(name: &str, extra: &[&str]) -> Value {
    let rootfs = Rootfs::new();
    let root = rootfs.path().to_str().unwrap();
    let marker = tempfile::NamedTempFile::new().unwrap();
    let marker = marker.path().to_str().unwrap();
    let mut args = vec!["--rootfs", root];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/isolab-workload", "probe", "--host-marker", marker]);
    let output = run(name, &args);
    assert_eq!(code(&output), 0, "probe failed: {}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&output)))
}

fn sh(name: &str, extra: &[&str], script: &str) -> Output {
    let rootfs = Rootfs::new();
    let root = rootfs.path().to_str().unwrap();
    let mut args = vec!["--rootfs", root];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    run(name, &args)
}

#[test]
fn the_container_sees_only_itself() {
    let p = probe("probe-default", &["--hostname", "inside"]);
    assert_eq!(p["pid"], 1, "{p}");
    assert_eq!(p["hostname"], "inside");
    assert!(p["visible_pids"].as_u64().unwrap() <= 2, "{p}");
    assert_eq!(p["net_interfaces"], serde_json::json!(["lo"]));
    assert_eq!(p["cap_eff"], DOCKER_DEFAULT_CAPS);
    assert_eq!(p["cap_bnd"], DOCKER_DEFAULT_CAPS);
    assert_eq!(p["seccomp_mode"], 2);
    assert_eq!(p["no_new_privs"], true);
    assert_eq!(p["host_marker_visible"], false);
    // Its own cgroup namespace: every hierarchy shows the container's cgroup as the root.
    for line in p["cgroup"].as_array().unwrap() {
        assert!(line.as_str().unwrap().ends_with(":/") || line == "/", "{p}");
    }
}

#[test]
fn the_hostname_defaults_to_the_name() {
    let p = probe("named-box", &[]);
    assert_eq!(p["hostname"], "named-box");
}

#[test]
fn userns_maps_root_to_an_unprivileged_range() {
    let p = probe("probe-userns", &["--userns"]);
    let map = &p["uid_map"][0];
    assert_eq!(map[0], 0, "{p}");
    assert_ne!(map[1], 0, "container root is host root: {p}");
    assert_eq!(p["uid"], 0);
    assert_eq!(p["cap_eff"], DOCKER_DEFAULT_CAPS);
}

#[test]
fn privileged_and_unconfined_relax_what_they_name() {
    let p = probe(
        "probe-unconfined",
        &["--security-opt", "seccomp=unconfined"],
    );
    assert_eq!(p["seccomp_mode"], 0);
    assert_eq!(p["cap_eff"], DOCKER_DEFAULT_CAPS);
    let rootfs = Rootfs::new();
    let out = run(
        "privileged",
        &[
            "--rootfs",
            rootfs.path().to_str().unwrap(),
            "--privileged",
            "--",
            "/bin/true",
        ],
    );
    assert_eq!(code(&out), 0);
    assert!(
        stderr(&out).contains("WARNING: --privileged"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn kernel_interfaces_are_masked_and_read_only() {
    let out = sh(
        "masked",
        &[],
        "for f in /proc/kcore /proc/keys /proc/timer_list; do [ -e $f ] && cat $f; done | wc -c; \
         find /proc/acpi /sys/firmware -mindepth 1 | wc -l; \
         echo x > /proc/sys/kernel/domainname && echo WROTE; \
         touch /sys/x 2>/dev/null && echo WROTE; true",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines: Vec<_> = stdout(&out)
        .lines()
        .map(str::trim)
        .map(String::from)
        .collect();
    assert_eq!(lines, ["0", "0"], "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn read_only_makes_the_root_read_only() {
    let out = sh(
        "read-only",
        &["--read-only"],
        "touch /x && echo WROTE; touch /dev/shm/x && echo SHM",
    );
    assert_eq!(stdout(&out).trim(), "SHM", "{}", stderr(&out));
}

#[test]
fn dev_has_the_usual_nodes() {
    let out = sh(
        "dev",
        &[],
        "head -c 4 /dev/zero | wc -c; ls /dev/pts/ptmx /dev/shm /dev/mqueue /dev/fd/ >/dev/null && echo OK; readlink /dev/ptmx",
    );
    assert_eq!(stdout(&out), "4\nOK\npts/ptmx\n", "{}", stderr(&out));
}

#[test]
fn only_the_containers_own_devices_open() {
    // mknod itself is allowed (`b *:* m`, as runc); opening the host's first disk is not.
    let out = sh(
        "devices",
        &[],
        "mkdir /tmp && mknod /tmp/sda b 8 0 && echo made; \
         dd if=/tmp/sda of=/dev/null bs=512 count=1 && echo read; \
         echo x >/dev/null && echo null-ok; cat /sys/fs/cgroup/devices/devices.list",
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("made\nnull-ok\n"),
        "{text}{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    let list: Vec<&str> = text.lines().skip(2).collect();
    for rule in [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 5:2 rwm",
        "c 136:* rwm",
    ] {
        assert!(list.contains(&rule), "{rule} missing from {list:?}");
    }
    assert!(!list.contains(&"a *:* rwm"), "{list:?}");
}

#[test]
fn tty_gives_the_command_a_terminal() {
    // The init opens the pty from the container's own /dev/ptmx, as runc does, so its name
    // is the container's first pts.
    let out = sh("tty-name", &["--tty"], "tty");
    assert_eq!(stdout(&out), "/dev/pts/0\r\n", "{}", stderr(&out));
    let out = sh(
        "tty-test",
        &["--tty"],
        "test -t 0 && test -t 1 && test -t 2 && echo tty-ok",
    );
    assert_eq!(stdout(&out), "tty-ok\r\n", "{}", stderr(&out));
    let out = sh("no-tty", &[], "test -t 1 || echo no-tty");
    assert_eq!(stdout(&out), "no-tty\n", "{}", stderr(&out));
}

#[test]
fn no_descriptor_leaks_into_the_container() {
    // Opened without O_CLOEXEC, so isolab inherits it.
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
    assert!(fd > 2);
    let out = sh("fds", &[], "ls /proc/self/fd");
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    // 0-2 and the directory ls reads.
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
}

#[test]
fn the_commands_status_passes_through() {
    assert_eq!(code(&sh("exit3", &[], "exit 3")), 3);
}

#[test]
fn sigterm_is_forwarded_to_the_container() {
    let _serial = common::serial("run-isolation-tests");
    let rootfs = Rootfs::new();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("isolab"))
        .args([
            "run",
            "--name",
            "forwarded",
            "--rootfs",
            rootfs.path().to_str().unwrap(),
        ])
        .args([
            "--",
            "/bin/sh",
            "-c",
            "trap 'exit 7' TERM; echo ready; sleep 30 & wait",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready, "ready\n");
    // SAFETY: signals the isolab process this test started and has not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(cgroup_dirs("forwarded"), Vec::<PathBuf>::new());
}

#[test]
fn exec_failures_use_dockers_codes() {
    let rootfs = Rootfs::new();
    let root = rootfs.path().to_str().unwrap();
    let out = run("notfound", &["--rootfs", root, "--", "no-such-command"]);
    assert_eq!(code(&out), 127);
    assert!(stderr(&out).contains("no-such-command"), "{}", stderr(&out));
    std::fs::write(rootfs.path().join("plain"), "not a program").unwrap();
    let out = run("notexec", &["--rootfs", root, "--", "/plain"]);
    assert_eq!(code(&out), 126, "{}", stderr(&out));
    assert!(stderr(&out).contains("/plain"), "{}", stderr(&out));
}

#[test]
fn isolab_failures_exit_125_with_one_line() {
    let rootfs = Rootfs::new();
    let root = rootfs.path().to_str().unwrap();
    let cases: [(&str, Vec<&str>, &str); 5] = [
        (
            "no-rootfs",
            vec!["--rootfs", "/nonexistent/rootfs"],
            "/nonexistent/rootfs",
        ),
        (
            "bad-memory",
            vec!["--rootfs", root, "--memory", "12x"],
            "invalid size \"12x\"",
        ),
        (
            "bad-net",
            vec!["--rootfs", root, "--net", "overlay"],
            "unknown --net mode",
        ),
        (
            "no-workdir",
            vec!["--rootfs", root, "--workdir", "/missing"],
            "/missing",
        ),
        (
            "bad-cpuset",
            vec!["--rootfs", root, "--cpuset-cpus", "999"],
            "cpuset.cpus",
        ),
    ];
    for (name, mut args, message) in cases {
        args.extend_from_slice(&["--", "/bin/true"]);
        let out = run(name, &args);
        assert_eq!(code(&out), 125, "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(
            err.starts_with("isolab: ") && err.contains(message),
            "{name}: {err}"
        );
    }
}

#[test]
fn the_memory_limit_ends_in_a_reported_oom_kill() {
    let rootfs = Rootfs::new();
    let root = rootfs.path().to_str().unwrap();
    let out = run(
        "oom",
        &[
            "--rootfs",
            root,
            "--memory",
            "32M",
            "--",
            "/isolab-workload",
            "mem",
            "--mib",
            "200",
        ],
    );
    assert_eq!(code(&out), 137, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("isolab: container oom was OOM-killed (memory limit 32M)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_pids_limit_stops_a_fork_loop() {
    let started = Instant::now();
    let out = sh(
        "forks",
        &["--pids-limit", "16"],
        // The loop runs in a subshell that dies when fork fails; the rest uses builtins only,
        // because the sleepers hold every pid the limit allows.
        "(n=0; while [ $n -lt 40 ]; do sleep 5 & n=$((n+1)); done) 2>/dev/null; \
         set -- /proc/[0-9]*; echo $#; \
         read m < /sys/fs/cgroup/pids/pids.max 2>/dev/null || read m < /sys/fs/cgroup/pids.max; echo $m",
    );
    let lines: Vec<_> = stdout(&out).lines().map(String::from).collect();
    assert!(lines.len() == 2, "{}: {}", stdout(&out), stderr(&out));
    assert!(lines[0].parse::<u32>().unwrap() <= 16, "{lines:?}");
    assert_eq!(lines[1], "16");
    // The limit stops the loop; the container's end kills the sleepers.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn the_cpu_quota_throttles() {
    let out = sh(
        "throttled",
        &["--cpus", "0.2"],
        "/isolab-workload cpu --iters 3000000 >/dev/null; \
         cat /sys/fs/cgroup/cpu/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpu.stat",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stat = stdout(&out);
    let throttled = stat
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            ["nr_throttled", "throttled_usec"]
                .contains(&k)
                .then(|| v.parse::<u64>().unwrap())
        })
        .unwrap_or_else(|| panic!("no throttling counters in {stat}"));
    assert!(throttled > 0, "{stat}");
}

#[test]
fn explain_logs_each_step_with_a_time_stamp() {
    let rootfs = Rootfs::new();
    let out = run(
        "explained",
        &[
            "--rootfs",
            rootfs.path().to_str().unwrap(),
            "--memory",
            "64M",
            "--explain",
            "--",
            "/bin/true",
        ],
    );
    assert_eq!(code(&out), 0);
    let err = stderr(&out);
    for step in [
        "clone3({flags=CLONE_NEWNS|CLONE_NEWPID",
        "pivot_root(\".\", \".\")",
        "umount2(\".\", MNT_DETACH)",
        "mount(\"proc\"",
        "= \"67108864\"",
        "PR_CAPBSET_DROP",
        "seccomp(SECCOMP_SET_MODE_FILTER",
        "execve(\"/bin/true\"",
    ] {
        assert!(err.contains(step), "missing {step:?} in:\n{err}");
    }
    // How the init gets into its cgroup: it moves itself (v1), clone3 creates it there
    // (v2), or the parent moves it.
    assert!(
        ["/tasks\" = \"0\"", "CLONE_INTO_CGROUP", "cgroup.procs"]
            .iter()
            .any(|step| err.contains(step)),
        "no cgroup placement in:\n{err}"
    );
    assert!(
        err.lines()
            .all(|l| l.starts_with('[') && l.contains(" µs] ")),
        "{err}"
    );
}
