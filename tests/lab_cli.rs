//! `isolab lab`, end to end as root on this host: for every implemented lab the untouched
//! starter fails with hints, the reference solution passes, and reset leaves no mounts,
//! cgroups or processes behind. Labs this host cannot run are skipped, saying why.

use std::path::Path;
use std::sync::Mutex;

use assert_cmd::Command;
use serde_json::Value;

/// One lab at a time: the leftover checks compare host state before and after.
static SERIAL: Mutex<()> = Mutex::new(());

fn isolab(dir: &Path) -> Command {
    let mut command = Command::cargo_bin("isolab").unwrap();
    command.env("ISOLAB_LAB_DIR", dir);
    command
}

/// What a lab must not leave behind: mounts, lab cgroups, and processes other than the
/// test's own (threads of this test process aside, none should be born and survive).
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    mounts: Vec<String>,
    cgroups: Vec<String>,
    namespaces: Vec<String>,
}

fn host_state() -> HostState {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut mounts: Vec<String> = mountinfo
        .lines()
        .map(|l| l.split(' ').nth(4).unwrap().to_owned())
        .collect();
    mounts.sort();
    let mut cgroups = Vec::new();
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
    ] {
        if let Ok(dir) = std::fs::read_dir(root) {
            cgroups.extend(
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("isolab-lab"))
                    .map(|n| format!("{root}/{n}")),
            );
        }
    }
    cgroups.sort();
    HostState {
        mounts,
        cgroups,
        namespaces: pid_namespaces(),
    }
}

/// The PID namespaces any process is in: a leaked lab process would add one.
fn pid_namespaces() -> Vec<String> {
    let mut namespaces: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read_link(e.path().join("ns/pid")).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    namespaces
}

fn check_json(dir: &Path, id: u32) -> (i32, Value) {
    let out = isolab(dir)
        .args(["lab", "check", &id.to_string(), "--json"])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("lab {id}: check --json printed no JSON ({e})"));
    (out.status.code().unwrap(), json)
}

/// Whether `lab list` says this host can run the lab; prints why not.
fn runnable(dir: &Path, id: u32) -> bool {
    let out = isolab(dir)
        .args(["lab", "list", "--json"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lab = list["labs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
        .unwrap();
    let ready = lab["status"] == "ready";
    if !ready {
        eprintln!("skipping lab {id}: {} {}", lab["status"], lab["missing"]);
    }
    ready
}

fn starter_fails_solution_passes_reset_cleans(id: u32) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    if !runnable(dir.path(), id) {
        return;
    }
    let before = host_state();
    isolab(dir.path())
        .args(["lab", "start", &id.to_string()])
        .assert()
        .success();
    let (code, starter) = check_json(dir.path(), id);
    assert_eq!(
        code, 1,
        "lab {id}: the untouched starter must fail: {starter:#}"
    );
    let steps = starter["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["passed"] == false));
    for step in steps.iter().filter(|s| s["passed"] == false) {
        assert!(
            !step["hint"].as_str().unwrap().is_empty(),
            "lab {id}: failing step without a hint: {step}"
        );
    }
    isolab(dir.path())
        .args([
            "lab",
            "solution",
            &id.to_string(),
            "--i-am-instructor",
            "--apply",
        ])
        .assert()
        .success();
    let (code, solved) = check_json(dir.path(), id);
    assert_eq!(
        code, 0,
        "lab {id}: the reference solution must pass: {solved:#}"
    );
    isolab(dir.path())
        .args(["lab", "reset", &id.to_string()])
        .assert()
        .success();
    assert!(!dir.path().join(id.to_string()).exists());
    assert_eq!(host_state(), before, "lab {id} left something behind");
}

#[test]
fn lab1_pid_namespace() {
    starter_fails_solution_passes_reset_cleans(1);
}

#[test]
fn lab6_cgroup_memory() {
    starter_fails_solution_passes_reset_cleans(6);
}

#[test]
fn lab8_cgroup_pids() {
    starter_fails_solution_passes_reset_cleans(8);
}

#[test]
fn bad_input_and_unbuilt_labs() {
    let dir = tempfile::tempdir().unwrap();
    for (args, code) in [
        (&["lab", "show", "99"][..], 2),
        (&["lab", "start", "0"][..], 2),
        (&["lab", "show", "one"][..], 2),
        (&["lab", "solution", "1"][..], 2),
        (&["lab", "check"][..], 2),
        (&["lab", "start", "14"][..], 3),
        (&["lab", "check", "2"][..], 3),
    ] {
        isolab(dir.path()).args(args).assert().code(code);
    }
}

#[test]
fn a_lab_never_started_fails_its_check_with_a_hint() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    if !runnable(dir.path(), 1) {
        return;
    }
    let (code, report) = check_json(dir.path(), 1);
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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = isolab(dir.path())
        .args(["lab", "check", "--all", "--json"])
        .output()
        .unwrap();
    let sheet: Value = serde_json::from_slice(&out.stdout).unwrap();
    let labs = sheet["labs"].as_array().unwrap();
    assert_eq!(labs.len(), 14);
    assert_eq!(labs[1]["status"], "not-built");
    // Nothing was started, so every graded lab fails and the sheet says so.
    assert_eq!(sheet["passed"], false);
    assert_eq!(out.status.code(), Some(1));
}
