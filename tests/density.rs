//! `isolab bench --workload idle` (density) and `--experiment daemon-kill` (blast radius)
//! end to end, with the real targets: isolab containers, mini VMs and, where installed, runc.
//! The host's state is listed before and after each run; what a run left must be nothing.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use isolab_reports::schema::{Density, ResultKind, ResultSet, StopReason};

/// Memory a run may appear to leave behind. The host is shared: other work (a build)
/// moves MemAvailable by hundreds of MiB within seconds, so only gross leaks show here, e.g.
/// 20 mini VMs whose 128 MiB of guest RAM stayed allocated (2.5 GiB). The precise check is
/// the list of what is left ([`traces`]).
const TEARDOWN_TOLERANCE_KIB: i64 = 1024 * 1024;

fn isolab() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isolab"));
    cmd.env_remove("ISOLAB_WORKLOAD");
    cmd
}

fn have(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|dir| Path::new(dir).join(tool).is_file())
}

/// Whether `text` names an instance of a density or daemon-kill run:
/// `isolab-d<pid>-<target>-<index>` (and not, say, a build artifact `isolab-d1c40...`).
fn marked(text: &str) -> bool {
    text.match_indices("isolab-d").any(|(at, _)| {
        let rest = &text[at + "isolab-d".len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        digits > 0
            && rest[digits..]
                .strip_prefix('-')
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_lowercase()))
    })
}

/// What on this host could belong to a density or daemon-kill run (see [`marked`]):
/// cgroups, state directories, mounts, and processes in such a cgroup or naming one on
/// their command line.
fn traces() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if marked(&entry.file_name().to_string_lossy()) {
                found.insert(format!("cgroup {}", entry.path().display()));
            } else if depth < 3 {
                dirs.push((entry.path(), depth + 1));
            }
        }
    }
    for dir in ["/run/isolab", "/run/runc"] {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if marked(&entry.file_name().to_string_lossy()) {
                found.insert(format!("state {}", entry.path().display()));
            }
        }
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    found.extend(
        mounts
            .lines()
            .filter(|l| marked(l))
            .map(|l| format!("mount {l}")),
    );
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if marked(&cgroup) || marked(&String::from_utf8_lossy(&cmdline)) {
            found.insert(format!("process {pid}"));
        }
    }
    found
}

/// Runs `isolab` with `args` and checks that it left nothing that was not there before.
fn run_clean(args: &[&str], wrap_in: Option<&Path>) -> Output {
    let before = traces();
    let output = match wrap_in {
        // Joins the cgroup first, so the bench and everything it starts count against it.
        Some(cgroup) => Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
                cgroup.display()
            ))
            .arg(env!("CARGO_BIN_EXE_isolab"))
            .args(args)
            .env_remove("ISOLAB_WORKLOAD")
            .output()
            .unwrap(),
        None => isolab().args(args).output().unwrap(),
    };
    let after = traces();
    let left: Vec<_> = after.difference(&before).collect();
    assert!(
        left.is_empty(),
        "left behind: {left:?}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn results(dir: &Path) -> ResultSet {
    let json = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a results file");
    ResultSet::load(&json).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Figures that must hold for any target's density run that completed.
fn check_consistent(name: &str, d: &Density, count: u32, step: u32) {
    let running: Vec<u32> = d.steps.iter().map(|s| s.running).collect();
    let expected: Vec<u32> = (1..=count / step).map(|k| k * step).collect();
    assert_eq!(running, expected, "{name}");
    assert_eq!(d.stop_reason, Some(StopReason::Completed), "{name}");
    assert_eq!(d.requested, Some(count), "{name}");
    assert!(d.stopped_clean, "{name}");
    // Memory rises with the count: every step's instances add PSS of their own.
    for pair in d.steps.windows(2) {
        assert!(
            pair[1].pss_sum_kib > pair[0].pss_sum_kib,
            "{name}: {:?}",
            d.steps
        );
    }
    for s in &d.steps {
        let (runtime, instance) = (s.runtime_pss_kib.unwrap(), s.instance_pss_kib.unwrap());
        // No daemons: the two sides split the instances' own trees.
        assert_eq!(runtime + instance, s.pss_sum_kib, "{name}: {s:?}");
        assert!(instance > 0 && runtime > 0, "{name}: {s:?}");
        assert!(s.kernel.is_some() && s.probe_ns.is_some(), "{name}: {s:?}");
    }
    assert!(
        d.host_used_after_stop_kib < TEARDOWN_TOLERANCE_KIB,
        "{name}: {} KiB still used after the stop",
        d.host_used_after_stop_kib
    );
}

#[test]
fn instance_names_are_told_from_build_artifacts() {
    assert!(marked(
        "/sys/fs/cgroup/memory/isolab/isolab-d4242-container-3"
    ));
    assert!(marked("runc run --bundle /tmp/b isolab-d7-runc-0"));
    assert!(!marked("target/debug/deps/isolab-d1c4036c6fcad000.rcgu.o"));
    assert!(!marked("isolab-dtest-12"));
}

#[test]
fn a_small_density_run_completes_with_consistent_figures_and_leaves_nothing() {
    let _serial = common::serial("density");
    let out = tempfile::tempdir().unwrap();
    let mut targets = vec!["container", "vm-mini"];
    if have("runc") {
        targets.push("runc");
    }
    let list = targets.join(",");
    let output = run_clean(
        &[
            "bench",
            "--workload",
            "idle",
            "--quick",
            "--step",
            "5",
            "--target",
            &list,
            "--out",
            out.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("container: reached 20 of 20 (completed)"),
        "{stdout}"
    );
    let set = results(out.path());
    assert_eq!(set.kind, ResultKind::Density);
    assert_eq!(set.targets.len(), targets.len());
    for target in &set.targets {
        assert_eq!(target.runs.len(), 20, "{}", target.name);
        let density = target.density.as_ref().unwrap();
        check_consistent(&target.name, density, 20, 5);
    }
}

#[test]
fn a_start_failing_midway_stops_the_run_cleanly() {
    let _serial = common::serial("density");
    // A real limit: a pids cgroup around the bench. Each foreground container keeps its
    // `isolab run` in it, so after a few instances the next clone3 fails with EAGAIN.
    // The v1 pids hierarchy where there is one, else the unified hierarchy's root.
    let v1 = Path::new("/sys/fs/cgroup/pids");
    let pids = if v1.join("cgroup.procs").is_file() {
        v1
    } else {
        Path::new("/sys/fs/cgroup")
    };
    let cgroup = pids.join(format!("isolab-dtest-{}", std::process::id()));
    fs::create_dir(&cgroup).unwrap();
    fs::write(cgroup.join("pids.max"), "14").unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = run_clean(
        &[
            "bench",
            "--workload",
            "idle",
            "--count",
            "20",
            "--step",
            "2",
            "--target",
            "container",
            "--out",
            out.path().to_str().unwrap(),
        ],
        Some(&cgroup),
    );
    fs::remove_dir(&cgroup).unwrap();
    // Nothing is left (run_clean checked the host): the failed start cleaned up after
    // itself, and the step's other start was let finish rather than killed halfway, which
    // used to leave its cgroups (and fail the target with exit 4).
    assert!(output.status.success(), "{}", text(&output.stderr));
    let set = results(out.path());
    let density = set.targets[0].density.as_ref().unwrap();
    assert_eq!(density.stop_reason, Some(StopReason::StartFailed));
    let reached = density.reached();
    assert!((2..20).contains(&reached), "{density:?}");
    // The fork fails in `isolab run` (clone3) or in the bench itself (spawn).
    let detail = density.stop_detail.as_deref().unwrap();
    assert!(
        detail.contains("EAGAIN") || detail.contains("os error 11"),
        "{density:?}"
    );
    assert!(density.stopped_clean);
}

#[test]
fn daemon_kill_with_isolab_targets_alone_names_the_skipped_peers() {
    let _serial = common::serial("density");
    let out = tempfile::tempdir().unwrap();
    let output = run_clean(
        &[
            "bench",
            "--experiment",
            "daemon-kill",
            "--quick",
            "--target",
            "container,vm-mini",
            "--out",
            out.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for peer in ["runc", "podman", "docker"] {
        assert!(
            stdout.contains(&format!("skipped {peer}: not in --target")),
            "{stdout}"
        );
    }
    let set = results(out.path());
    assert_eq!(set.kind, ResultKind::BlastRadius);
    let blast = set.blast_radius.unwrap();
    assert_eq!(blast.kinds.len(), 2);
    assert_eq!(blast.skipped.len(), 3);
    assert!(blast.restored.is_empty());
    for kind in &blast.kinds {
        assert_eq!((kind.instances, kind.hit), (2, 1), "{kind:?}");
        // The instance whose supervisor or monitor was not killed keeps running, answers
        // and is managed.
        assert!(kind.running_after_kill >= 1, "{kind:?}");
        assert!(kind.answered >= 1 && kind.managed >= 1, "{kind:?}");
    }
    let vm = blast.kinds.iter().find(|k| k.target == "vm-mini").unwrap();
    // A VM whose monitor is killed is gone: the monitor is the VM.
    assert_eq!(vm.running_after_kill, 1, "{vm:?}");
}
