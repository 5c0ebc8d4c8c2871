//! Linux guests under `isolab vm run --kernel`: on this (PVM) host the monitor refuses a
//! standard kernel before booting; inside the sandbox (standard KVM with SVM) Debian's
//! cloud kernel boots with `isolab-workload` as init.
//!
//! A sandbox boot costs seconds of one core, so every in-sandbox case runs in one boot: a
//! shell script runs them in turn and prints each one's status, stdout and stderr between
//! `@@@` marker lines, which [`cases`] parses once for all the tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::OnceLock;
use std::time::Duration;

use assert_cmd::Command;
use isolab_bench::sandbox::{GuestFile, RunSpec};
use isolab_microvm::linux::cpio::CpioWriter;

#[path = "common/sandbox.rs"]
mod sandbox_common;
use sandbox_common::{bin_dir, chain, sandbox};

const VMLINUX: &str = "/root/vmlinux";
const BZIMAGE: &str = "/root/vmlinuz";
const NO_INIT: &str = "/root/no-init.cpio";
/// An ext4 image whose `/init` is the workload, with a marker file beside it.
const DISK: &str = "/root/disk.img";

/// One case's result inside the sandbox.
#[derive(Debug, Clone)]
struct Case {
    status: u8,
    stdout: String,
    stderr: String,
}

impl Case {
    /// The VM report: the last line of stderr.
    fn report(&self) -> serde_json::Value {
        let line = self.stderr.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}\n{self:?}"))
    }

    /// The workload's JSON line for `mode` among the console lines.
    fn workload_json(&self, mode: &str) -> serde_json::Value {
        let prefix = format!(r#"{{"mode":"{mode}""#);
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} line: {self:?}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }
}

/// `(name, isolab vm run arguments)`, run in this order in one sandbox boot.
const CASES: &[(&str, &str)] = &[
    ("ready", "--kernel /root/vmlinux --workload ready"),
    ("ready_bzimage", "--kernel /root/vmlinuz --workload ready"),
    (
        "profile",
        "--kernel /root/vmlinux --profile --workload ready",
    ),
    (
        "cpu",
        "--kernel /root/vmlinux --workload cpu --iters 100000",
    ),
    ("probe", "--kernel /root/vmlinux --workload probe"),
    (
        "vcpus2",
        "--kernel /root/vmlinux --vcpus 2 --workload ready",
    ),
    (
        "no_init",
        "--kernel /root/vmlinux --initrd /root/no-init.cpio --workload ready",
    ),
    (
        "never_ready",
        "--kernel /root/vmlinux --timeout 5 --workload idle",
    ),
    (
        "small_mem",
        "--kernel /root/vmlinux --mem 32M --workload ready",
    ),
    (
        "disk",
        "--kernel /root/vmlinux --disk /root/disk.img --workload probe --host-marker /marker",
    ),
    (
        "disk_missing",
        "--kernel /root/vmlinux --disk /root/no-such.img --workload ready",
    ),
];

fn script() -> String {
    let mut script = String::from(
        "one() { name=$1; shift; isolab vm run \"$@\" >/tmp/$name.out 2>/tmp/$name.err; \
         echo \"@@@ $name status $?\"; cat /tmp/$name.out; echo \"@@@ $name stderr\"; \
         cat /tmp/$name.err; echo \"@@@ $name end\"; }\n",
    );
    for (name, args) in CASES {
        script.push_str(&format!("one {name} {args}\n"));
    }
    script
}

fn parse(stdout: &str) -> HashMap<String, Case> {
    let mut cases = HashMap::new();
    let mut current: Option<(String, u8, String, Option<String>)> = None;
    for line in stdout.lines() {
        let marker = line.strip_prefix("@@@ ").map(|rest| {
            let mut words = rest.split(' ');
            (
                words.next().unwrap_or_default().to_owned(),
                words.next().unwrap_or_default().to_owned(),
                words.next().unwrap_or_default().to_owned(),
            )
        });
        match (marker, &mut current) {
            (Some((name, kind, status)), None) if kind == "status" => {
                current = Some((name, status.parse().expect("a status"), String::new(), None));
            }
            (Some((_, kind, _)), Some((_, _, _, stderr))) if kind == "stderr" => {
                *stderr = Some(String::new());
            }
            (Some((_, kind, _)), Some(_)) if kind == "end" => {
                let (name, status, stdout, stderr) = current.take().expect("a case");
                let stderr = stderr.unwrap_or_default();
                cases.insert(
                    name,
                    Case {
                        status,
                        stdout,
                        stderr,
                    },
                );
            }
            (_, Some((_, _, stdout, stderr))) => {
                let text = stderr.as_mut().unwrap_or(stdout);
                text.push_str(line);
                text.push('\n');
            }
            (_, None) => {}
        }
    }
    cases
}

/// An initramfs without /init: the kernel finds nothing to run and panics.
fn no_init_cpio(dir: &Path) -> PathBuf {
    let path = dir.join("no-init.cpio");
    let mut writer = CpioWriter::new(std::fs::File::create(&path).unwrap());
    writer.dir("etc", 0o755).unwrap();
    writer.finish().unwrap();
    path
}

/// An ext4 image (mkfs.ext4 -d) holding the workload as `/init` and `/marker`.
fn disk_image(dir: &Path) -> PathBuf {
    let root = dir.join("disk-root");
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::copy(bin_dir().join("isolab-workload"), root.join("init")).unwrap();
    std::fs::write(root.join("marker"), "on the disk\n").unwrap();
    let image = dir.join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let made = StdCommand::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&image)
        .status()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(made.success());
    image
}

/// The virtio modules of the sandbox's kernel, as `isolab kernel fetch` keeps them.
fn disk_modules() -> Vec<(PathBuf, String)> {
    let cache = isolab_microvm::kernel::default_cache();
    let kernel = isolab_microvm::kernel::fetch(&cache, &mut |_| {})
        .unwrap_or_else(|e| panic!("isolab kernel fetch: {}", chain(&e)));
    assert_eq!(
        kernel.package,
        sandbox().kernel().package,
        "the fetched kernel's modules must match the sandbox's kernel: fetch both anew"
    );
    isolab_microvm::linux::initramfs::DISK_MODULES
        .iter()
        .map(|m| {
            (
                kernel
                    .vmlinux
                    .with_file_name("modules")
                    .join(format!("{m}.ko")),
                format!("/root/modules/{m}.ko"),
            )
        })
        .collect()
}

/// Every in-sandbox case, run once.
fn cases() -> &'static HashMap<String, Case> {
    static CASES_RUN: OnceLock<HashMap<String, Case>> = OnceLock::new();
    CASES_RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let vmlinuz = sandbox().kernel().vmlinuz.clone();
        let vmlinux = dir.path().join("vmlinux");
        isolab_microvm::kernel::write_vmlinux(&vmlinuz, &vmlinux).expect("the vmlinux");
        let mut spec = RunSpec::new(["sh", "-c", &script()])
            .isolab_binaries(&bin_dir())
            .timeout(Duration::from_secs(150));
        let files = [
            (vmlinux, VMLINUX.to_owned()),
            (vmlinuz, BZIMAGE.to_owned()),
            (no_init_cpio(dir.path()), NO_INIT.to_owned()),
            (disk_image(dir.path()), DISK.to_owned()),
        ];
        for (host, guest) in files.into_iter().chain(disk_modules()) {
            spec.files.push(GuestFile {
                host,
                guest,
                strip_debug: false,
            });
        }
        let out = sandbox()
            .run(&spec)
            .unwrap_or_else(|e| panic!("the sandbox run failed: {}", chain(&e)));
        let cases = parse(&out.stdout_text());
        assert_eq!(
            cases.len(),
            CASES.len(),
            "status {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            out.stdout_text(),
            out.stderr_text()
        );
        cases
    })
}

fn case(name: &str) -> &'static Case {
    &cases()[name]
}

fn assert_ready(case: &Case) {
    assert_eq!(case.status, 0, "{case:?}");
    assert!(case.stdout.contains("ISOLAB-READY\n"), "{case:?}");
    assert!(case.stdout.contains(r#"{"mode":"ready"}"#), "{case:?}");
    let report = case.report();
    let vm = &report["vm"];
    assert!(vm["ready_ms"].as_f64().is_some(), "{report}");
    assert_eq!(vm["outcome"], "Exited(0)", "{report}");
    assert!(vm["vmm_pss_bytes"].as_u64().is_some(), "{report}");
    assert!(vm["vmm_anon_bytes"].as_u64().is_some(), "{report}");
}

#[test]
fn the_cloud_kernel_boots_the_workload_as_vmlinux_and_as_bzimage() {
    assert_ready(case("ready"));
    assert_ready(case("ready_bzimage"));
}

/// Debian's vmlinux is stripped: the samples are counted, and the table says why they
/// have no names (naming is unit-tested on an ELF with symbols).
#[test]
fn the_profile_samples_the_guest_through_its_boot() {
    let profile = case("profile");
    assert_ready(profile);
    let head = profile
        .stderr
        .lines()
        .find(|l| l.starts_with("guest time by function ("))
        .unwrap_or_else(|| panic!("no profile: {profile:?}"));
    let samples: u64 = head["guest time by function (".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{head}"));
    // A boot of several seconds, a sample every millisecond.
    assert!(samples > 100, "{head}");
    assert!(head.contains("has no symbols"), "{head}");
    let intr = profile.report()["vm"]["exits"]["intr"].as_u64();
    assert!(intr.is_some_and(|n| n >= samples), "{intr:?} {head}");
}

#[test]
fn two_vcpus_boot() {
    assert_ready(case("vcpus2"));
    let exits = &case("vcpus2").report()["vm"]["exits"];
    assert!(exits["ap_exits"].as_u64().is_some_and(|n| n > 0), "{exits}");
}

#[test]
fn cpu_work_in_the_guest_gives_the_native_digest() {
    let guest = case("cpu");
    assert_eq!(guest.status, 0, "{guest:?}");
    let guest = guest.workload_json("cpu");
    let native = StdCommand::new(bin_dir().join("isolab-workload"))
        .args(["cpu", "--iters", &guest["iters"].to_string()])
        .output()
        .unwrap();
    assert!(native.status.success());
    let native: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&native.stdout).trim()).unwrap();
    assert_eq!(guest["iters"], native["iters"]);
    assert_eq!(guest["digest"], native["digest"]);
}

#[test]
fn probe_shows_the_guest_view() {
    let probe = case("probe");
    assert_eq!(probe.status, 0, "{probe:?}");
    let probe = probe.workload_json("probe");
    assert_eq!(probe["pid"], 1, "the workload is init: {probe}");
    assert_eq!(probe["hostname"], "(none)", "the kernel's default: {probe}");
    assert!(
        probe["kernel_release"]
            .as_str()
            .is_some_and(|r| r.contains("cloud-amd64")),
        "{probe}"
    );
}

#[test]
fn a_kernel_panic_is_121_with_the_panic_line() {
    let panic = case("no_init");
    assert_eq!(panic.status, 121, "{panic:?}");
    assert!(panic.stderr.contains("guest kernel panic"), "{panic:?}");
}

#[test]
fn a_guest_that_never_ends_times_out_with_124() {
    let idle = case("never_ready");
    assert_eq!(idle.status, 124, "{idle:?}");
    // Whether `idle` printed its ready line within 5 s depends on the sandbox's speed.
    assert!(idle.stderr.contains("timed out after 5 s"), "{idle:?}");
}

#[test]
fn too_little_memory_is_a_usage_error() {
    let small = case("small_mem");
    assert_eq!(small.status, 2, "{small:?}");
    assert!(small.stderr.contains("--mem"), "{small:?}");
    assert_eq!(small.stderr.lines().count(), 1, "{small:?}");
}

#[test]
fn a_disk_image_is_the_root_and_holds_the_workload() {
    let disk = case("disk");
    assert_eq!(disk.status, 0, "{disk:?}");
    let probe = disk.workload_json("probe");
    assert_eq!(probe["pid"], 1, "the disk's /init runs as init: {probe}");
    assert_eq!(probe["host_marker_visible"], true, "{probe}");
    let requests = disk.report()["vm"]["disk_requests"].as_u64();
    assert!(requests.is_some_and(|n| n > 0), "{disk:?}");
}

#[test]
fn a_missing_disk_image_is_a_usage_error() {
    let missing = case("disk_missing");
    assert_eq!(missing.status, 2, "{missing:?}");
    assert!(missing.stderr.contains("/root/no-such.img"), "{missing:?}");
    assert_eq!(missing.stderr.lines().count(), 1, "{missing:?}");
}

/// Runs `isolab vm run ARGS` on this host and checks that it left no process behind.
fn on_host(args: &[&str]) -> std::process::Output {
    let out = Command::cargo_bin("isolab")
        .unwrap()
        .args(["vm", "run"])
        .args(args)
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let marker = args.join("\0");
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.contains("vm\0run") && c.contains(&marker))
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
    out
}

#[test]
fn pvm_hosts_refuse_a_standard_kernel_with_one_line() {
    if !std::fs::read_to_string("/proc/modules").is_ok_and(|m| m.contains("kvm_pvm")) {
        return;
    }
    let kernel = sandbox().kernel().vmlinuz.display().to_string();
    let out = on_host(&["--workload", "ready", "--kernel", &kernel]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("PVM") && stderr.contains("--guest mini"),
        "{stderr}"
    );
}

#[test]
fn missing_and_garbage_kernels_are_named() {
    let missing = on_host(&["--kernel", "/no/such/vmlinuz", "--workload", "ready"]);
    assert_eq!(missing.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/vmlinuz"));
    let garbage = on_host(&["--kernel", "Cargo.toml", "--workload", "ready"]);
    assert_eq!(garbage.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("not a Linux kernel"));
}
