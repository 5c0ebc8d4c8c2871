//! `isolab doctor` against this host: every answer is checked against the kernel's own,
//! computed here independently, so the tests hold on v1, hybrid and v2 hosts, with or
//! without KVM.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::mem::MaybeUninit;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const TMPFS_MAGIC: i64 = 0x0102_1994;

fn isolab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isolab"))
}

/// Runs `doctor --json` with scratch space in `tmpdir` and checks that the exit code agrees
/// with the verdict it printed.
fn doctor_json(tmpdir: &Path) -> Value {
    let output = isolab()
        .args(["doctor", "--json"])
        .env("TMPDIR", tmpdir)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {output:?}"));
    let works = report["basic_container_path"]["ok"].as_bool().unwrap();
    assert_eq!(
        output.status.code(),
        Some(if works { 0 } else { 1 }),
        "{output:?}"
    );
    report
}

#[allow(clippy::unnecessary_cast)] // f_type's width differs between libc targets.
fn fs_magic(path: &str) -> Option<i64> {
    let path = CString::new(path).unwrap();
    let mut stat = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stat` is large enough for the kernel's answer.
    let rc = unsafe { libc::statfs(path.as_ptr(), stat.as_mut_ptr()) };
    // SAFETY: statfs filled `stat` when it returned 0.
    (rc == 0).then(|| unsafe { stat.assume_init() }.f_type as i64)
}

fn kernel_cgroup_mode() -> &'static str {
    match fs_magic("/sys/fs/cgroup") {
        Some(CGROUP2_SUPER_MAGIC) => "v2",
        Some(TMPFS_MAGIC) if fs_magic("/sys/fs/cgroup/unified") == Some(CGROUP2_SUPER_MAGIC) => {
            "hybrid"
        }
        Some(TMPFS_MAGIC) => "v1",
        other => panic!("/sys/fs/cgroup has f_type {other:?}; this test needs cgroups mounted"),
    }
}

/// v1 controllers the kernel has bound to a hierarchy, plus what a cgroup2 root offers.
fn kernel_controllers(mode: &str) -> BTreeSet<String> {
    let words = |path: &str| -> BTreeSet<String> {
        fs::read_to_string(path)
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    if mode == "v2" {
        return words("/sys/fs/cgroup/cgroup.controllers");
    }
    let mut controllers: BTreeSet<String> = fs::read_to_string("/proc/cgroups")
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let bound = f.len() >= 4 && f[1] != "0" && f[3] == "1";
            bound.then(|| f[0].to_owned())
        })
        .collect();
    if mode == "hybrid" {
        controllers.extend(words("/sys/fs/cgroup/unified/cgroup.controllers"));
    }
    controllers
}

fn kernel_kvm_kind() -> &'static str {
    if !Path::new("/dev/kvm").exists() {
        return "absent";
    }
    [("kvm_pvm", "pvm"), ("kvm_intel", "vmx"), ("kvm_amd", "svm")]
        .into_iter()
        .find(|(module, _)| Path::new("/sys/module").join(module).exists())
        .map_or("absent", |(_, kind)| kind)
}

/// Whether this test process can create the namespace in a forked child.
fn can_unshare(flag: libc::c_int) -> bool {
    // SAFETY: the child only calls unshare and _exit, both async-signal-safe, so forking
    // from the multi-threaded test harness is sound.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: unshare reads only its flag; _exit ends the child without running the
            // parent's atexit handlers.
            unsafe { libc::_exit(if libc::unshare(flag) == 0 { 0 } else { 1 }) }
        }
        pid if pid > 0 => {
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer and `pid` our own child.
            let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(waited, pid);
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
        _ => panic!("fork: {}", std::io::Error::last_os_error()),
    }
}

#[test]
fn json_agrees_with_the_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let report = doctor_json(tmp.path());

    assert_eq!(
        report["kernel"],
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    assert_eq!(
        report["cpus"].as_u64().unwrap() as usize,
        std::thread::available_parallelism().unwrap().get()
    );
    assert!(report["mem_total_kib"].as_u64().unwrap() > 0);
    assert!(report["cpu_model"].is_string());

    let mode = kernel_cgroup_mode();
    assert_eq!(report["cgroup"]["mode"], mode);
    let reported: BTreeSet<String> = report["cgroup"]["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reported, kernel_controllers(mode));

    let kvm = &report["kvm"];
    assert_eq!(kvm["kind"], kernel_kvm_kind());
    assert_eq!(kvm["present"], Path::new("/dev/kvm").exists());
    assert!(kvm["implication"].as_str().is_some_and(|s| !s.is_empty()));
    if kvm["kind"] == "pvm" {
        assert!(
            kvm["implication"]
                .as_str()
                .unwrap()
                .contains("--guest mini")
        );
    }
}

#[test]
fn namespaces_agree_with_what_this_process_can_create() {
    let tmp = tempfile::tempdir().unwrap();
    let report = doctor_json(tmp.path());
    let kinds = [
        ("mnt", libc::CLONE_NEWNS),
        ("uts", libc::CLONE_NEWUTS),
        ("ipc", libc::CLONE_NEWIPC),
        ("pid", libc::CLONE_NEWPID),
        ("net", libc::CLONE_NEWNET),
        ("user", libc::CLONE_NEWUSER),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("time", libc::CLONE_NEWTIME),
    ];
    for (name, flag) in kinds {
        let entry = &report["namespaces"][name];
        assert_eq!(entry["ok"], can_unshare(flag), "{name}: {entry}");
        assert_eq!(
            entry["error"].is_null(),
            entry["ok"] == true,
            "{name}: {entry}"
        );
    }
}

#[test]
fn json_has_every_section_and_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let report = doctor_json(tmp.path());
    for key in [
        "user_namespaces",
        "overlayfs",
        "seccomp",
        "peers",
        "basic_container_path",
        "features",
    ] {
        assert!(report[key].is_object(), "{key} missing: {report}");
    }
    for peer in [
        "runc",
        "crun",
        "podman",
        "docker",
        "qemu-system-x86_64",
        "firecracker",
        "cloud-hypervisor",
    ] {
        let entry = &report["peers"][peer];
        let installed = entry["installed"].as_bool().unwrap();
        // Installed peers name no fix; missing ones always do.
        assert_eq!(entry["fix"].is_null(), installed, "{peer}: {entry}");
    }
    for feature in [
        "container_runtime",
        "cgroup_limits",
        "vm_mini",
        "vm_linux",
        "peers",
    ] {
        let entry = &report["features"][feature];
        assert!(entry["available"].is_boolean(), "{feature}: {entry}");
        for gap in entry["missing"].as_array().unwrap() {
            assert!(gap["fix"].as_str().is_some_and(|f| !f.is_empty()), "{gap}");
        }
    }
}

#[test]
fn human_output_has_every_section() {
    let tmp = tempfile::tempdir().unwrap();
    let output = isolab()
        .arg("doctor")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    for section in [
        "Host",
        "Cgroups",
        "Namespaces",
        "User namespaces",
        "Overlayfs",
        "Seccomp",
        "KVM",
        "Peers",
        "Features",
        "Basic container path",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(section)),
            "no {section} section in:\n{text}"
        );
    }
    let works = text.contains("Basic container path: works");
    assert_eq!(
        output.status.code(),
        Some(if works { 0 } else { 1 }),
        "{text}"
    );
    // Every gap comes with its fix.
    let gaps = text
        .lines()
        .filter(|l| l.trim_start().starts_with("✗"))
        .count();
    let fixes = text
        .lines()
        .filter(|l| l.trim_start().starts_with("fix: "))
        .count();
    assert!(fixes >= gaps, "{gaps} gaps but {fixes} fixes:\n{text}");
}

#[test]
fn unknown_option_is_bad_input() {
    isolab()
        .args(["doctor", "--no-such-option"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--no-such-option"));
}

#[test]
fn leaves_no_mounts_and_no_scratch_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    doctor_json(tmp.path());
    let after = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(before, after);
    let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind in TMPDIR: {left:?}");
}
