//! `isolab-oci` on real OCI bundles, as root: the lifecycle's state transitions (create,
//! start, state, kill, delete), hooks with the state on stdin and in the spec's order, the
//! console socket receiving a pty master, exec and run, and bad bundles refused with one
//! line and nothing left behind (state, cgroups, processes).
//!
//! Needs root and /bin/busybox (busybox-static).

mod common;

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A bundle (busybox root, config.json) and a state root of its own.
struct Bundle {
    dir: tempfile::TempDir,
    id: String,
}

impl Bundle {
    /// `args` as the container's command, with isolab run's default isolation.
    fn new(name: &str, args: &[&str]) -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect("/bin/busybox (busybox-static)");
        for applet in [
            "sh", "sleep", "echo", "cat", "tty", "ls", "mkdir", "readlink", "hostname", "pwd",
            "id", "touch",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let id = format!("oci-test-{name}-{}", std::process::id());
        let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let bundle = Bundle { dir, id };
        bundle.write_config(isolab_bench::rootfs::config_json(&argv, &bundle.id));
        bundle
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn root(&self) -> PathBuf {
        self.path().join("state")
    }

    fn config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path().join("config.json")).unwrap()).unwrap()
    }

    fn write_config(&self, config: Value) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
    }

    /// `isolab-oci --root <root> ARGS` with no pipe that a container it leaves running
    /// would hold open: output to `out`, stderr through a file into the result.
    fn oci(&self, args: &[&str]) -> Output {
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(name == "out")
                .truncate(name == "err")
                .open(self.path().join(name))
                .unwrap()
        };
        let status = Command::new(oci_binary())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(open("out")))
            .stderr(Stdio::from(open("err")))
            .status()
            .unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr: std::fs::read(self.path().join("err")).unwrap(),
        }
    }

    /// Like [`oci`](Self::oci), for commands whose stdout is the answer (state, ps, ...).
    fn query(&self, args: &[&str]) -> Output {
        Command::new(oci_binary())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn create(&self) -> Output {
        self.oci(&[
            "create",
            "--bundle",
            self.path().to_str().unwrap(),
            &self.id,
        ])
    }

    fn state(&self) -> Value {
        let out = self.query(&["state", &self.id]);
        assert_eq!(code(&out), 0, "state: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn rootfs_file(&self, name: &str) -> PathBuf {
        self.path().join("rootfs").join(name)
    }

    /// Nothing of the container is left: no record, no cgroup (neither `isolab/<id>` nor
    /// the first level of its cgroups path, in any hierarchy), no process.
    fn assert_gone(&self, pid: Option<i64>) {
        let left: Vec<_> = std::fs::read_dir(self.root())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "records left: {left:?}");
        let cgroups = isolab_runtime::cgroups::names().unwrap();
        assert!(
            !cgroups.contains(&self.id),
            "cgroup isolab/{} left",
            self.id
        );
        // A test may have left a config that does not parse; it made no cgroup then.
        let config: Option<Value> =
            serde_json::from_slice(&std::fs::read(self.path().join("config.json")).unwrap()).ok();
        if let Some(path) = config
            .as_ref()
            .and_then(|c| c["linux"]["cgroupsPath"].as_str())
        {
            let top = Path::new(path)
                .components()
                .find(|c| matches!(c, std::path::Component::Normal(_)))
                .unwrap();
            for root in cgroup_roots() {
                let dir = root.join(top);
                assert!(!dir.exists(), "{} left", dir.display());
            }
        }
        if let Some(pid) = pid {
            wait_until(|| isolab_runtime::container::state::start_time(pid as i32).is_none());
        }
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // A failed test's container goes too.
        let _ = self.oci(&["delete", "--force", &self.id]);
    }
}

/// The mount point of every cgroup hierarchy (v1 ones, or the one v2 tree).
fn cgroup_roots() -> Vec<PathBuf> {
    let host = isolab_runtime::host::cgroup::CgroupSupport::detect().unwrap();
    match host.mode {
        isolab_runtime::host::cgroup::CgroupMode::V2 => {
            vec![host.unified.unwrap().mount_point]
        }
        _ => host
            .v1_hierarchies
            .into_iter()
            .map(|h| h.mount_point)
            .collect(),
    }
}

/// `pid`'s memory cgroup as the host sees it, and the file of its limit: v1's
/// memory.limit_in_bytes or v2's memory.max.
fn memory_cgroup(pid: i64) -> (String, PathBuf) {
    let host = isolab_runtime::host::cgroup::CgroupSupport::detect().unwrap();
    let lines = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let entry = |wanted: &str| {
        lines.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let hit = if wanted.is_empty() {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == wanted)
            };
            hit.then(|| path.to_string())
        })
    };
    match host.mode {
        isolab_runtime::host::cgroup::CgroupMode::V2 => {
            let path = entry("").unwrap();
            let file = host.unified.unwrap().mount_point.join(&path[1..]);
            (path, file.join("memory.max"))
        }
        _ => {
            let path = entry("memory").expect("a memory cgroup");
            let root = host
                .v1_hierarchies
                .into_iter()
                .find(|h| h.controllers.iter().any(|c| c == "memory"))
                .unwrap()
                .mount_point;
            (
                path.clone(),
                root.join(&path[1..]).join("memory.limit_in_bytes"),
            )
        }
    }
}

fn oci_binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("isolab-oci")
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Waits (at most a minute, a bound and no timing assertion) for `done`.
fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn create_start_state_kill_delete() {
    let _serial = common::serial("oci");
    let b = Bundle::new("life", &["sh", "-c", "echo ran > /ran; exec sleep 1000"]);
    let out = b.create();
    assert_eq!(code(&out), 0, "create: {}", stderr(&out));

    let state = b.state();
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], b.id.as_str());
    assert_eq!(
        state["bundle"],
        b.path().canonicalize().unwrap().to_str().unwrap()
    );
    let pid = state["pid"]
        .as_i64()
        .expect("a created container has a pid");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(
        !b.rootfs_file("ran").exists(),
        "the command ran before start"
    );

    let out = b.oci(&["start", &b.id]);
    assert_eq!(code(&out), 0, "start: {}", stderr(&out));
    assert_eq!(b.state()["status"], "running");
    wait_until(|| b.rootfs_file("ran").exists());
    let out = b.oci(&["start", &b.id]);
    assert_eq!(code(&out), 1, "a second start is refused");
    assert!(stderr(&out).contains("running"), "{}", stderr(&out));

    let out = b.oci(&["delete", &b.id]);
    assert_eq!(
        code(&out),
        1,
        "delete of a running container without --force"
    );
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(b.state()["status"], "running");

    let out = b.oci(&["kill", &b.id, "KILL"]);
    assert_eq!(code(&out), 0, "kill: {}", stderr(&out));
    wait_until(|| b.state()["status"] == "stopped");
    assert!(
        b.state().get("pid").is_none(),
        "a stopped container has no pid"
    );
    let out = b.oci(&["kill", &b.id, "TERM"]);
    assert_eq!(code(&out), 1, "kill of a stopped container");

    let out = b.oci(&["delete", &b.id]);
    assert_eq!(code(&out), 0, "delete: {}", stderr(&out));
    b.assert_gone(Some(pid));
    let out = b.query(&["state", &b.id]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn delete_force_kills_a_running_container() {
    let _serial = common::serial("oci");
    let b = Bundle::new("force", &["sleep", "1000"]);
    assert_eq!(code(&b.create()), 0);
    let pid = b.state()["pid"].as_i64().unwrap();
    assert_eq!(code(&b.oci(&["start", &b.id])), 0);
    let out = b.oci(&["delete", "--force", &b.id]);
    assert_eq!(code(&out), 0, "delete --force: {}", stderr(&out));
    b.assert_gone(Some(pid));
}

#[test]
fn the_cgroups_path_is_honoured_and_removed_with_the_container() {
    let _serial = common::serial("oci");
    let b = Bundle::new("cgpath", &["sleep", "1000"]);
    let path = format!("/isolab-oci-test/{}", b.id);
    let limit: u64 = 48 << 20;
    let mut config = b.config();
    config["linux"]["cgroupsPath"] = json!(path);
    config["linux"]["resources"]["memory"] = json!({"limit": limit});
    b.write_config(config);
    let out = b.create();
    assert_eq!(code(&out), 0, "create: {}", stderr(&out));
    let pid = b.state()["pid"].as_i64().unwrap();
    let (cgroup, limit_file) = memory_cgroup(pid);
    assert_eq!(cgroup, path);
    assert_eq!(
        std::fs::read_to_string(&limit_file).unwrap().trim(),
        limit.to_string(),
        "{}",
        limit_file.display()
    );
    assert!(
        !isolab_runtime::cgroups::names().unwrap().contains(&b.id),
        "isolab/<id> is not used when the config names a path"
    );
    assert_eq!(code(&b.oci(&["start", &b.id])), 0);
    // kill --all and ps find the processes there.
    let out = b.query(&["ps", "--format", "json", &b.id]);
    let pids: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pids, [pid]);
    assert_eq!(code(&b.oci(&["kill", "--all", &b.id, "KILL"])), 0);
    wait_until(|| b.state()["status"] == "stopped");
    let out = b.oci(&["delete", &b.id]);
    assert_eq!(code(&out), 0, "delete: {}", stderr(&out));
    b.assert_gone(Some(pid));

    // A path that climbs out of the hierarchy, and a systemd unit, are refused.
    for bad in ["/a/../../etc", "system.slice:isolab:x"] {
        let mut config = b.config();
        config["linux"]["cgroupsPath"] = json!(bad);
        b.write_config(config);
        let out = b.create();
        let err = stderr(&out);
        assert_eq!(code(&out), 1, "{bad}: {err}");
        assert!(err.contains("cgroupsPath"), "{err}");
        b.assert_gone(None);
    }
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let _serial = common::serial("oci");
    let b = Bundle::new("hooks", &["true"]);
    let log = b.path().join("hooks");
    std::fs::create_dir(&log).unwrap();
    std::fs::create_dir(b.rootfs_file("hooks")).unwrap();
    // startContainer hooks run after pivot_root: they reach the log through a bind mount
    // at /hooks; the others run with the host's root and use its path.
    let hook = |kind: &str| {
        let dir = if kind == "startContainer" {
            "/hooks".to_string()
        } else {
            log.display().to_string()
        };
        json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!(
                "cat > {dir}/{kind}.json; readlink /proc/self/ns/mnt > {dir}/{kind}.mnt; \
                 readlink /proc/self/ns/pid > {dir}/{kind}.pid; echo {kind} >> {dir}/order"
            )],
            "env": ["PATH=/usr/bin:/bin"],
            "timeout": 30
        })
    };
    let kinds = [
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    let mut config = b.config();
    config["process"]["args"] = json!(["sleep", "1000"]);
    config["hooks"] = kinds
        .iter()
        .map(|k| (k.to_string(), json!([hook(k)])))
        .collect();
    config["annotations"] = json!({"org.example.test": "hooks"});
    config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/hooks", "type": "bind", "source": log, "options": ["rbind", "rw"]}),
    );
    b.write_config(config);

    let out = b.create();
    assert_eq!(code(&out), 0, "create: {}", stderr(&out));
    let pid = b.state()["pid"].as_i64().unwrap();
    let ns = |pid: &str, name: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
            .unwrap()
            .display()
            .to_string()
    };
    let (init_mnt, init_pid) = (ns(&pid.to_string(), "mnt"), ns(&pid.to_string(), "pid"));
    let (host_mnt, host_pid) = (ns("self", "mnt"), ns("self", "pid"));
    assert_ne!(init_mnt, host_mnt);
    let out = b.oci(&["start", &b.id]);
    assert_eq!(code(&out), 0, "start: {}", stderr(&out));
    let out = b.oci(&["delete", "--force", &b.id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let order = std::fs::read_to_string(log.join("order")).unwrap();
    assert_eq!(order.lines().collect::<Vec<_>>(), kinds);
    let expected = [
        ("createRuntime", "creating", false),
        ("createContainer", "creating", true),
        ("startContainer", "created", true),
        ("poststart", "running", false),
        ("poststop", "stopped", false),
    ];
    let read = |name: String| std::fs::read_to_string(log.join(name)).unwrap();
    for (kind, status, in_container) in expected {
        let state: Value = serde_json::from_str(&read(format!("{kind}.json"))).unwrap();
        assert_eq!(state["id"], b.id.as_str(), "{kind}");
        assert_eq!(state["status"], status, "{kind}");
        assert_eq!(state["annotations"]["org.example.test"], "hooks", "{kind}");
        if status != "stopped" {
            assert_eq!(state["pid"], pid, "{kind}");
        }
        let (mnt, pidns) = (read(format!("{kind}.mnt")), read(format!("{kind}.pid")));
        let (want_mnt, want_pid) = if in_container {
            (&init_mnt, &init_pid)
        } else {
            (&host_mnt, &host_pid)
        };
        assert_eq!(mnt.trim(), want_mnt, "{kind}: mount namespace");
        assert_eq!(pidns.trim(), want_pid, "{kind}: pid namespace");
    }
    b.assert_gone(Some(pid));
}

#[test]
fn a_failing_create_hook_leaves_nothing() {
    let _serial = common::serial("oci");
    let b = Bundle::new("hookfail", &["sleep", "1000"]);
    let mut config = b.config();
    config["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    b.write_config(config);
    let out = b.create();
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("createRuntime hook /bin/false"), "{err}");
    b.assert_gone(None);
}

#[test]
fn a_failure_after_start_is_reported_and_kept_in_the_state() {
    let _serial = common::serial("oci");
    let b = Bundle::new("latefail", &["/bin/no-such-command"]);
    let log = b.path().join("oci.log");
    let out = b.create();
    assert_eq!(
        code(&out),
        0,
        "the command is looked for only after start: {}",
        stderr(&out)
    );
    let pid = b.state()["pid"].as_i64().unwrap();
    let out = b.oci(&["--log", log.to_str().unwrap(), "start", &b.id]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/bin/no-such-command"), "{err}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("/bin/no-such-command"), "{logged}");
    wait_until(|| b.state()["status"] == "stopped");
    assert_eq!(b.state()["exitStatus"], 127);
    let out = b.oci(&["delete", &b.id]);
    assert_eq!(code(&out), 0, "delete: {}", stderr(&out));
    b.assert_gone(Some(pid));
}

/// Receives one descriptor sent with SCM_RIGHTS on `listener`.
fn receive_fd(listener: &UnixListener) -> OwnedFd {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    for cmsg in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed this descriptor in this process for us.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor received");
}

#[test]
fn the_console_socket_receives_the_terminal() {
    let _serial = common::serial("oci");
    let b = Bundle::new(
        "tty",
        &["sh", "-c", "tty > /tty-name; echo hello-tty; sleep 1000"],
    );
    let mut config = b.config();
    config["process"]["terminal"] = json!(true);
    b.write_config(config);
    let socket = b.path().join("console.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let receiver = std::thread::spawn(move || receive_fd(&listener));
    let out = b.oci(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--console-socket",
        socket.to_str().unwrap(),
        &b.id,
    ]);
    assert_eq!(code(&out), 0, "create: {}", stderr(&out));
    let master = receiver.join().unwrap();
    // A pty master answers TIOCGPTN with its slave's number.
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int, which lives across the call.
    let ret = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) };
    assert_eq!(ret, 0, "the received descriptor is not a pty master");
    assert_eq!(code(&b.oci(&["start", &b.id])), 0);
    let mut seen = Vec::new();
    let mut file = std::fs::File::from(master);
    while !String::from_utf8_lossy(&seen).contains("hello-tty") {
        let mut buf = [0u8; 256];
        let n = std::io::Read::read(&mut file, &mut buf).unwrap();
        assert!(n > 0, "the terminal closed before the greeting");
        seen.extend_from_slice(&buf[..n]);
    }
    // The terminal is the container's own: opened from its /dev/ptmx, so its name is
    // one of the container's devpts.
    wait_until(|| b.rootfs_file("tty-name").exists());
    let name = std::fs::read_to_string(b.rootfs_file("tty-name")).unwrap();
    assert!(name.starts_with("/dev/pts/"), "tty named {name:?}");
    assert_eq!(code(&b.oci(&["delete", "--force", &b.id])), 0);
    b.assert_gone(None);
}

#[test]
fn exec_and_run_return_the_commands_status() {
    let _serial = common::serial("oci");
    let b = Bundle::new("exec", &["sleep", "1000"]);
    assert_eq!(code(&b.create()), 0);
    assert_eq!(code(&b.oci(&["start", &b.id])), 0);
    let out = b.query(&["exec", &b.id, "sh", "-c", "echo in-container; exit 3"]);
    assert_eq!(code(&out), 3, "exec: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in-container\n");
    let out = b.query(&["ps", "--format", "json", &b.id]);
    let pids: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        pids.contains(&b.state()["pid"].as_i64().unwrap()),
        "{pids:?}"
    );
    assert_eq!(code(&b.oci(&["delete", "--force", &b.id])), 0);
    b.assert_gone(None);

    let r = Bundle::new("run", &["sh", "-c", "exit 7"]);
    let out = r.query(&["run", "--bundle", r.path().to_str().unwrap(), &r.id]);
    assert_eq!(code(&out), 7, "run: {}", stderr(&out));
    r.assert_gone(None);
}

/// A process in a network namespace of its own, for a config to join by path.
struct NetNs(std::process::Child);

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_configs_process_mounts_and_kernel_settings_are_honoured() {
    let _serial = common::serial("oci");
    let b = Bundle::new("config", &["true"]);
    let data = b.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "host data\n").unwrap();
    std::fs::create_dir(b.rootfs_file("work")).unwrap();
    // unshare -n execs sleep in the same process, now in a new network namespace.
    let netns = NetNs(
        Command::new("unshare")
            .args(["-n", "sleep", "1000"])
            .spawn()
            .unwrap(),
    );
    let ns_path = format!("/proc/{}/ns/net", netns.0.id());
    wait_until(|| {
        std::fs::read_link(&ns_path).ok() != std::fs::read_link("/proc/self/ns/net").ok()
    });
    let mut config = b.config();
    config["hostname"] = json!("honoured");
    config["process"]["args"] = json!([
        "sh",
        "-c",
        concat!(
            "id -u; id -G; pwd; echo $FOO; ulimit -n; cat /data/f; ",
            "touch /data/new 2>/dev/null && echo data-rw || echo data-ro; ",
            "mkdir /denied 2>/dev/null || echo mkdir-denied; ",
            "cat /proc/sys/net/ipv4/ping_group_range; hostname; readlink /proc/self/ns/net; ",
            "cat /proc/version 2>&1 | wc -c"
        )
    ]);
    config["process"]["env"] = json!(["PATH=/bin", "FOO=bar"]);
    config["process"]["cwd"] = json!("/work");
    config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 6]});
    config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}]);
    config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "ro"]}),
    );
    config["linux"]["sysctl"] = json!({"net.ipv4.ping_group_range": "0 5"});
    config["linux"]["maskedPaths"] = json!(["/proc/version"]);
    config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
        {"type": "network", "path": ns_path}
    ]);
    config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    b.write_config(config);
    let out = b.query(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(code(&out), 0, "run: {}", stderr(&out));
    let ns = std::fs::read_link(&ns_path).unwrap();
    let expected = format!(
        "1000\n1000 5 6\n/work\nbar\n1024\nhost data\ndata-ro\nmkdir-denied\n0\t5\nhonoured\n{}\n0\n",
        ns.display()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert!(!data.join("new").exists());
    b.assert_gone(None);
}

#[test]
fn a_user_namespace_gets_the_configs_id_maps() {
    let _serial = common::serial("oci");
    let b = Bundle::new(
        "userns",
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u",
        ],
    );
    // The namespace's root is host uid 200000: it must be able to reach the root, and
    // cannot create the mount points in a root owned by the host's root.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for dir in ["proc", "sys", "dev"] {
        std::fs::create_dir(b.rootfs_file(dir)).unwrap();
    }
    let mut config = b.config();
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 1000}]);
    b.write_config(config);
    let out = b.query(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(code(&out), 0, "run: {}", stderr(&out));
    let words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(words, ["0", "200000", "65536", "0", "300000", "1000", "0"]);
    b.assert_gone(None);
}

#[test]
fn bad_bundles_are_refused_with_one_line_and_leave_nothing() {
    let _serial = common::serial("oci");
    let b = Bundle::new("bad", &["true"]);
    let bundle = b.path().to_str().unwrap().to_string();
    let refused = |args: &[&str], needle: &str| {
        let out = b.oci(args);
        let err = stderr(&out);
        assert_eq!(code(&out), 1, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        b.assert_gone(None);
    };
    refused(
        &["create", "--bundle", "/nonexistent/bundle", &b.id],
        "/nonexistent/bundle",
    );
    refused(
        &["create", "--bundle", &bundle, "../escape"],
        "invalid container id",
    );

    std::fs::write(b.path().join("config.json"), "{ not json").unwrap();
    refused(&["create", "--bundle", &bundle, &b.id], "config.json");

    let mut config = isolab_bench::rootfs::config_json(&["true".into()], &b.id);
    config["root"]["path"] = json!("missing-rootfs");
    b.write_config(config.clone());
    refused(&["create", "--bundle", &bundle, &b.id], "missing-rootfs");

    config["root"]["path"] = json!("rootfs");
    config["linux"]["namespaces"] =
        json!([{"type": "pid", "path": "/proc/1/ns/pid"}, {"type": "mount"}]);
    b.write_config(config.clone());
    refused(&["create", "--bundle", &bundle, &b.id], "pid");

    config["linux"]["namespaces"] = json!([{"type": "mount"}]);
    config["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "soft": u64::MAX, "hard": u64::MAX}]);
    b.write_config(config.clone());
    refused(&["create", "--bundle", &bundle, &b.id], "RLIMIT_NOFILE");

    refused(&["--systemd-cgroup", "state", &b.id], "--systemd-cgroup");
}

#[test]
fn features_describe_the_runtime() {
    let out = Command::new(oci_binary()).arg("features").output().unwrap();
    assert_eq!(code(&out), 0);
    let features: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(features["hooks"].as_array().unwrap().len() == 6);
    assert_eq!(features["linux"]["seccomp"]["enabled"], true);
}
