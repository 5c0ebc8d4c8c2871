//! `isolab lab`, end to end as root on this host: for every implemented lab the untouched
//! starter fails with hints, the reference solution passes, and reset leaves no mounts,
//! cgroups or processes behind. Labs this host cannot run are skipped, saying why.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::path::Path;

use serde_json::Value;

use lab::{LabDir, isolab};

/// One lab at a time: a fork bomb and the labs' own timings should not share the CPUs.
const SUITE: &str = "lab-cli";

/// What a lab must not leave behind, scoped to what the lab itself creates (its workspace
/// directory, its `isolab-lab<id>` cgroups), so that tests running beside it, in this binary
/// or another, cannot make it flake.
#[derive(Debug, PartialEq, Eq, Default)]
struct Leftovers {
    /// Mount points at or below the labs' directory.
    mounts: Vec<String>,
    cgroups: Vec<String>,
    /// Processes whose cwd, executable or root is in the labs' directory, or whose command
    /// line names it.
    processes: Vec<String>,
}

fn leftovers(dir: &Path, id: u32) -> Leftovers {
    Leftovers {
        mounts: lab::mounts_below(dir),
        cgroups: lab::cgroups([format!("isolab-lab{id}")]),
        processes: lab::processes_below(dir),
    }
}

/// The nsfs bind mounts below `dir`: where, and which namespace (`uts:[4026532177]`).
fn bound_namespaces(dir: &Path) -> Vec<(String, String)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .filter(|l| l.contains(" - nsfs "))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            Path::new(fields[4])
                .starts_with(dir)
                .then(|| (fields[4].to_owned(), fields[3].to_owned()))
        })
        .collect()
}

/// The processes still in one of `namespaces`.
fn processes_in(namespaces: &[String]) -> Vec<u32> {
    lab::pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/ns"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .any(|link| namespaces.contains(&link.to_string_lossy().into_owned()))
        })
        .collect()
}

fn starter_fails_solution_passes_reset_cleans(id: u32) {
    let Some(lab) = LabDir::new(SUITE, id) else {
        return;
    };
    assert_eq!(
        leftovers(&lab.dir, id),
        Leftovers::default(),
        "lab {id}: not clean before start"
    );
    lab.start_and_solve();
    // A process the student left in a namespace of the workspace: reset must end it too.
    let bound = bound_namespaces(&lab.dir);
    let left = bound.first().map(|(path, ns)| {
        let kind = ns.split(':').next().unwrap();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--{kind}={path}"))
            .args(["sleep", "300"])
            .spawn()
            .unwrap();
        let link = format!("/proc/{}/ns/{kind}", child.id());
        lab::wait_until(|| std::fs::read_link(&link).is_ok_and(|l| l.to_string_lossy() == *ns));
        child
    });
    let namespaces: Vec<String> = bound.into_iter().map(|(_, ns)| ns).collect();
    lab.reset();
    assert_eq!(
        leftovers(&lab.dir, id),
        Leftovers::default(),
        "lab {id} left something behind"
    );
    assert_eq!(
        processes_in(&namespaces),
        Vec::<u32>::new(),
        "lab {id}: processes remain in the namespaces its workspace held: {namespaces:?}"
    );
    if let Some(left) = left {
        lab::killed(left, &format!("lab {id}"), |_| false);
    }
}

#[test]
fn lab1_pid_namespace() {
    starter_fails_solution_passes_reset_cleans(1);
}

#[test]
fn lab3_uts_and_ipc_namespaces() {
    starter_fails_solution_passes_reset_cleans(3);
}

#[test]
fn lab5_user_namespace() {
    starter_fails_solution_passes_reset_cleans(5);
}

#[test]
fn lab6_cgroup_memory() {
    starter_fails_solution_passes_reset_cleans(6);
}

#[test]
fn lab7_cgroup_cpu() {
    starter_fails_solution_passes_reset_cleans(7);
}

#[test]
fn lab8_cgroup_pids() {
    starter_fails_solution_passes_reset_cleans(8);
}

#[test]
fn bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    for (args, code) in [
        (&["lab", "show", "99"][..], 2),
        (&["lab", "start", "0"][..], 2),
        (&["lab", "show", "one"][..], 2),
        (&["lab", "solution", "1"][..], 2),
        (&["lab", "check"][..], 2),
        (&["lab", "check", "15"][..], 2),
    ] {
        isolab(dir.path()).args(args).assert().code(code);
    }
}

#[test]
fn a_lab_never_started_fails_its_check_with_a_hint() {
    let Some(lab) = LabDir::new(SUITE, 1) else {
        return;
    };
    let (code, report) = lab.check();
    assert_eq!(code, 1);
    assert!(
        report["steps"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("lab start 1")
    );
}

#[test]
fn show_renders_both_languages_as_plain_text_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    for (lang, title) in [
        ("en", "Processes and the PID namespace"),
        ("zh", "进程与 PID 命名空间"),
    ] {
        let out = isolab(dir.path())
            .args(["lab", "show", "1", "--lang", lang])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with(title), "{lang}: {text}");
        assert!(!text.contains('\x1b') && !text.contains("```"));
    }
}

#[test]
fn check_all_gives_a_grade_sheet_with_skips() {
    let _serial = common::serial(SUITE);
    let dir = tempfile::tempdir().unwrap();
    let out = isolab(dir.path())
        .args(["lab", "check", "--all", "--json"])
        .output()
        .unwrap();
    let sheet: Value = serde_json::from_slice(&out.stdout).unwrap();
    let labs = sheet["labs"].as_array().unwrap();
    assert_eq!(labs.len(), 14);
    for (lab, id) in labs.iter().zip(1..) {
        assert_eq!(lab["lab"], id, "{lab}");
        assert!(
            ["graded", "host-lacks"].contains(&lab["status"].as_str().unwrap()),
            "{lab}"
        );
    }
    // Nothing was started, so every graded lab fails and the sheet says so.
    assert_eq!(sheet["passed"], false);
    assert_eq!(out.status.code(), Some(1));
}
