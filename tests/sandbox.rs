//! The test sandbox (`isolab_bench::sandbox`, `isolab sandbox`): real boots of Debian's
//! cloud kernel under QEMU/TCG with nested SVM, checked from inside — standard KVM with
//! NPT, cgroup2 alone, the isolab binaries running there, statuses, streams and timeouts.
//!
//! One preparation is shared by every test (the first one fetches the kernel into the
//! cache; later runs find it there); each boot takes a few seconds of one core.

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use isolab_bench::sandbox::{RunSpec, SandboxError, SandboxOutput};

#[path = "common/sandbox.rs"]
mod sandbox_common;
use sandbox_common::{bin_dir, chain, sandbox};

fn run(spec: &RunSpec) -> SandboxOutput {
    sandbox()
        .run(spec)
        .unwrap_or_else(|e| panic!("{:?}: {}", spec.argv, chain(&e)))
}

fn sh(script: &str) -> RunSpec {
    RunSpec::new(["sh", "-c", script]).timeout(Duration::from_secs(120))
}

/// Looks up the rest of the stdout line that starts with a key ("oom=137" → "137"); a
/// missing key fails the test with both streams.
fn prefixed<'a>(stdout: &'a str, stderr: &'a str) -> impl Fn(&str) -> String + 'a {
    move |key| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {stdout}\n{stderr}"))
            .to_string()
    }
}

/// `text` (all of stdout, or its last line) as JSON, with the run's streams on failure.
fn json(text: &str, output: &SandboxOutput) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| {
        panic!(
            "{text:?}: {e}\nstderr: {}\nconsole:\n{}",
            output.stderr_text(),
            String::from_utf8_lossy(&output.console)
        )
    })
}

#[test]
fn kvm_has_npt_and_nested_and_cgroup2_is_alone() {
    let out = run(&sh("test -c /dev/kvm && echo kvm=char; \
         echo npt=$(cat /sys/module/kvm_amd/parameters/npt); \
         echo nested=$(cat /sys/module/kvm_amd/parameters/nested); \
         echo magic=$(stat -f -c %t /sys/fs/cgroup); \
         grep cgroup /proc/mounts | cut -d' ' -f1-3"));
    assert_eq!(out.status, 0, "{}", out.stderr_text());
    assert_eq!(
        out.stdout_text(),
        "kvm=char\nnpt=Y\nnested=1\nmagic=63677270\ncgroup2 /sys/fs/cgroup cgroup2\n",
        "cgroup2's statfs magic is 0x63677270, and nothing else is mounted for cgroups"
    );
    assert!(out.boot < out.elapsed);
}

#[test]
fn doctor_inside_sees_cgroup_v2_and_svm_with_npt() {
    let out = run(&RunSpec::new(["isolab", "doctor", "--json"]).isolab_binaries(&bin_dir()));
    let report = json(&out.stdout_text(), &out);
    assert_eq!(report["cgroup"]["mode"], "v2", "{report:#}");
    assert_eq!(report["kvm"]["kind"], "svm", "{report:#}");
    assert_eq!(report["kvm"]["tdp"], true, "{report:#}");
    assert_eq!(report["kvm"]["nested"], true, "{report:#}");
    assert_eq!(report["basic_container_path"]["ok"], true, "{report:#}");
    assert_eq!(out.status, 0, "{}", out.stderr_text());
}

#[test]
fn the_workload_probe_runs_inside() {
    let out = run(&RunSpec::new(["isolab-workload", "probe"]).isolab_binaries(&bin_dir()));
    assert_eq!(out.status, 0, "{}", out.stderr_text());
    let probe = json(out.stdout_text().lines().last().unwrap_or_default(), &out);
    assert_eq!(probe["mode"], "probe");
    assert_eq!(probe["hostname"], "sandbox");
    assert_eq!(probe["uid"], 0);
    // Pure cgroup v2: one line in /proc/self/cgroup.
    assert_eq!(
        probe["cgroup"].as_array().map(Vec::len),
        Some(1),
        "{probe:#}"
    );
}

#[test]
fn a_failing_command_gives_its_status_and_its_two_streams() {
    let out = run(&sh("printf 'no newline'; echo oops >&2; exit 7"));
    assert_eq!(out.status, 7);
    assert_eq!(out.stdout, b"no newline");
    assert_eq!(out.stderr, b"oops\n");
    let missing = run(&RunSpec::new(["no-such-command"]));
    assert_eq!(missing.status, 127, "{}", missing.stderr_text());
}

#[test]
fn a_command_that_never_ends_hits_the_timeout_and_leaves_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let mut spec = sh("echo started; exec sleep 1000").timeout(Duration::from_secs(20));
    spec.scratch = Some(scratch.path().to_owned());
    let error = sandbox()
        .run(&spec)
        .expect_err("sleep 1000 cannot finish in 20s");
    let SandboxError::Timeout { began, .. } = &error else {
        panic!("not a timeout: {}", chain(&error));
    };
    assert!(*began, "the 20s ran out while booting: {error}");
    let message = error.to_string();
    assert!(
        message.contains("ran past its timeout of 20s while the command ran"),
        "{message}"
    );
    // No QEMU is left (its command line names the scratch directory), nor any file.
    assert_eq!(processes_mentioning(scratch.path()), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

/// The command lines of live processes that contain `path`.
fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&needle))
        .collect()
}

#[test]
fn the_cli_runs_a_command_with_files_and_passes_its_status_on() {
    sandbox();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(&data, "from the host\n").unwrap();
    Command::cargo_bin("isolab")
        .unwrap()
        .args([
            "sandbox",
            "run",
            "--timeout",
            "120",
            "--mem",
            "1G",
            "--file",
        ])
        .arg(format!("{}=/root/data", data.display()))
        .args([
            "--",
            "sh",
            "-c",
            "cat /root/data; isolab-workload ready; exit 3",
        ])
        .assert()
        .code(3)
        .stdout("from the host\nISOLAB-READY\n{\"mode\":\"ready\"}\n");
}

#[test]
fn the_cli_maps_timeouts_and_bad_paths_to_their_codes() {
    sandbox();
    Command::cargo_bin("isolab")
        .unwrap()
        .args(["sandbox", "run", "--timeout", "1", "--", "true"])
        .assert()
        .code(124)
        .stderr(predicates::str::contains(
            "ran past its timeout of 1s while booting",
        ));
    Command::cargo_bin("isolab")
        .unwrap()
        .args([
            "sandbox",
            "run",
            "--file",
            "/bin/busybox=/tmp/busybox",
            "--",
            "true",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("/tmp/busybox"));
}

#[test]
fn the_mini_vm_runs_on_standard_kvm() {
    let out = run(&RunSpec::new([
        "isolab",
        "vm",
        "run",
        "--guest",
        "mini",
        "--timeout",
        "60",
        "--workload",
        "ready",
    ])
    .isolab_binaries(&bin_dir()));
    assert_eq!(out.status, 0, "{}", out.stderr_text());
    assert_eq!(out.stdout_text(), "ISOLAB-READY\n{\"mode\":\"ready\"}\n");
}

#[test]
fn the_runtime_limits_memory_on_pure_cgroup_v2() {
    let out = run(&sh("mkdir -p /root/rootfs/bin \
         && cp /bin/busybox /root/rootfs/bin/ \
         && cp /usr/local/bin/isolab-workload /root/rootfs/ \
         && exec isolab run --rootfs /root/rootfs --memory 32M -- /isolab-workload probe")
    .isolab_binaries(&bin_dir()));
    assert_eq!(out.status, 0, "{}", out.stderr_text());
    let probe = json(out.stdout_text().lines().last().unwrap_or_default(), &out);
    assert_eq!(
        probe["cgroup_limits"]["memory_max_bytes"],
        32 << 20,
        "{probe:#}"
    );
}

/// One boot, the runtime's cgroup v2 paths end to end: the memory limit ends in a reported
/// OOM kill, the pids limit stops a fork loop, the CPU quota throttles, and a detached
/// container takes `exec`, `stats` and `rm -f` and leaves no record, cgroup or process.
#[test]
fn the_runtime_enforces_limits_and_cleans_up_on_pure_cgroup_v2() {
    let out = run(&sh(
        r#"B=/root/rootfs
        mkdir -p $B/bin && cp /bin/busybox $B/bin/ && cp /usr/local/bin/isolab-workload $B/
        for a in sh sleep cat; do ln -s busybox $B/bin/$a; done
        isolab run --name oom --rootfs $B --memory 32M -- /isolab-workload mem --mib 128 >/dev/null
        echo oom=$?
        isolab run --name forks --rootfs $B --pids-limit 16 -- /bin/sh -c \
          '(while :; do sleep 100 & done) 2>/dev/null; read m < /sys/fs/cgroup/pids.max; echo pids.max=$m'
        echo forks=$?
        isolab run --name cpu --rootfs $B --cpus 0.2 -- /bin/sh -c \
          '/isolab-workload cpu --iters 200000 >/dev/null; cat /sys/fs/cgroup/cpu.stat' | grep throttled_usec
        isolab run -d --name det --rootfs $B --memory 64M --pids-limit 32 -- /bin/sleep 1000
        echo enabled=$(cat /sys/fs/cgroup/isolab/cgroup.subtree_control)
        isolab exec det -- /bin/sh -c 'echo exec=$(cat /proc/1/cmdline | tr "\0" " ")'
        isolab stats --json det | tr -d ' \n'; echo
        isolab rm -f det && echo rm=$?
        echo left=$(ls /run/isolab)/$(ls -d /sys/fs/cgroup/isolab/*/ 2>/dev/null)/$(pidof sleep)"#,
    )
    .isolab_binaries(&bin_dir()));
    let stdout = out.stdout_text();
    let stderr = out.stderr_text();
    assert_eq!(out.status, 0, "{stdout}\n{stderr}");
    let value = prefixed(&stdout, &stderr);
    assert_eq!(value("oom="), "137");
    assert!(
        stderr.contains("isolab: container oom was OOM-killed (memory limit 32M)"),
        "{stderr}"
    );
    assert_eq!(value("pids.max="), "16");
    assert_eq!(value("forks="), "0");
    let throttled: u64 = value("throttled_usec ").parse().unwrap();
    assert!(throttled > 0, "{stdout}");
    // The controllers are enabled top-down through cgroup.subtree_control.
    let enabled = value("enabled=");
    for controller in ["cpu", "memory", "pids"] {
        assert!(enabled.split(' ').any(|c| c == controller), "{enabled}");
    }
    assert_eq!(value("exec="), "/bin/sleep 1000");
    let stats: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("stats: {e}\n{stdout}"));
    assert_eq!(stats["memory_limit_bytes"], 64 << 20, "{stats}");
    assert_eq!(stats["pids_limit"], 32, "{stats}");
    assert!(stats["pids_current"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(value("rm="), "0");
    assert_eq!(
        value("left="),
        "//",
        "records/cgroups/sleep pids left behind"
    );
}

/// Docker's capability mask without CAP_MKNOD (bit 27): with no v1 devices controller the
/// runtime drops it (runtime/src/container/capabilities.rs); 0xa80425fb & !(1 << 27).
const V2_CAPS: &str = "00000000a00425fb";

/// One boot, the runtime's isolation checked from inside its containers on pure cgroup v2:
/// PID 1, own hostname, no host processes, lo alone, Docker's capabilities less CAP_MKNOD,
/// seccomp with no_new_privs, the host marker out of sight, masked and read-only kernel
/// paths, a non-identity uid_map with --userns, and no cgroup left behind.
#[test]
fn the_runtime_isolates_its_containers_on_pure_cgroup_v2() {
    let out = run(&sh(r#"B=/root/rootfs
        mkdir -p $B/bin $B/proc $B/sys $B/dev && cp /bin/busybox $B/bin/ \
          && cp /usr/local/bin/isolab-workload $B/ || exit 99
        for a in sh cat echo; do ln -s busybox $B/bin/$a; done
        # World-searchable: with --userns container root is an unprivileged host id.
        chmod 755 /root $B $B/bin $B/proc $B/sys $B/dev && chmod 755 $B/isolab-workload
        touch /root/host-only-marker
        P="/isolab-workload probe --host-marker /root/host-only-marker"
        echo probe=$(isolab run --name v2probe --hostname v2box --net none --rootfs $B -- $P)
        echo userns=$(isolab run --name v2userns --userns --rootfs $B -- $P)
        echo keys=$(isolab run --name v2keys --rootfs $B -- /bin/busybox cat /proc/keys | wc -c)
        isolab run --name v2sys --rootfs $B -- /bin/sh -c 'echo x > /proc/sys/kernel/hostname'
        echo sys=$?
        echo left=$(ls /run/isolab 2>/dev/null)/$(ls -d /sys/fs/cgroup/isolab/*/ 2>/dev/null)"#)
    .isolab_binaries(&bin_dir()));
    let stdout = out.stdout_text();
    let stderr = out.stderr_text();
    assert_eq!(out.status, 0, "{stdout}\n{stderr}");
    let value = prefixed(&stdout, &stderr);

    let p = json(&value("probe="), &out);
    assert_eq!(p["pid"], 1, "{p:#}");
    assert_eq!(p["hostname"], "v2box", "{p:#}");
    assert!(p["visible_pids"].as_u64().unwrap() <= 2, "{p:#}");
    assert_eq!(p["net_interfaces"], serde_json::json!(["lo"]), "{p:#}");
    assert_eq!(p["cap_eff"], V2_CAPS, "{p:#}");
    assert_eq!(p["cap_bnd"], V2_CAPS, "{p:#}");
    assert_eq!(p["seccomp_mode"], 2, "{p:#}");
    assert_eq!(p["no_new_privs"], true, "{p:#}");
    assert_eq!(p["host_marker_visible"], false, "{p:#}");

    let u = json(&value("userns="), &out);
    assert_eq!(u["hostname"], "v2userns", "{u:#}");
    assert_eq!(u["uid"], 0, "{u:#}");
    let map = &u["uid_map"][0];
    assert_eq!(map[0], 0, "{u:#}");
    assert_ne!(map[1], 0, "container root is host root: {u:#}");
    assert_ne!(
        u["uid_map"],
        serde_json::json!([[0, 0, u32::MAX]]),
        "the identity map: {u:#}"
    );
    assert_eq!(u["cap_eff"], V2_CAPS, "{u:#}");

    // /proc/keys is masked: nothing comes out of it.
    assert_eq!(value("keys=").trim(), "0", "{stderr}");
    // /proc/sys is read-only.
    assert_ne!(value("sys="), "0", "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert_eq!(value("left="), "/", "records or cgroups left behind");
}

#[test]
fn prepare_is_idempotent_and_says_so() {
    sandbox();
    Command::cargo_bin("isolab")
        .unwrap()
        .args(["sandbox", "prepare"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "sandbox: the kernel and the base initramfs were cached already",
        ))
        .stdout(predicates::str::contains(
            "sandbox: module kvm_amd nested=1\n",
        ));
}
