//! `isolab lab`, end to end as root on this host: for every implemented lab the untouched
//! starter fails with hints, the reference solution passes, and reset leaves no mounts,
//! cgroups or processes behind. Labs this host cannot run are skipped, saying why.

use std::path::Path;
use std::sync::Mutex;

use assert_cmd::Command;
use serde_json::Value;

/// One lab at a time: a fork bomb and the labs' own timings should not share the CPUs.
static SERIAL: Mutex<()> = Mutex::new(());

fn isolab(dir: &Path) -> Command {
    let mut command = Command::cargo_bin("isolab").unwrap();
    command.env("ISOLAB_LAB_DIR", dir);
    command
}

/// What a lab must not leave behind, scoped to what the lab itself creates (its workspace
/// directory, its `isolab-lab<id>` cgroups), so that tests running beside it, in this binary
/// or another, cannot make it flake.
#[derive(Debug, PartialEq, Eq)]
struct Leftovers {
    /// Mount points at or below the labs' directory.
    mounts: Vec<String>,
    cgroups: Vec<String>,
    /// Processes whose cwd, executable or command line names the labs' directory.
    processes: Vec<String>,
}

impl Leftovers {
    fn none() -> Self {
        Leftovers {
            mounts: Vec::new(),
            cgroups: Vec::new(),
            processes: Vec::new(),
        }
    }
}

/// The mountinfo lines (mount point and filesystem type) at or below `dir`.
fn mounts_below(dir: &Path) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let fstype = fields[fields.iter().position(|f| *f == "-")? + 1];
            Path::new(fields[4])
                .starts_with(dir)
                .then(|| format!("{} ({fstype})", fields[4]))
        })
        .collect();
    mounts.sort();
    mounts
}

fn leftovers(dir: &Path, id: u32) -> Leftovers {
    let name = format!("isolab-lab{id}");
    let mut cgroups = Vec::new();
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(String::from)
        .chain(
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().to_string_lossy().into_owned()),
        )
    {
        let cgroup = Path::new(&root).join(&name);
        if cgroup.is_dir() {
            cgroups.push(cgroup.to_string_lossy().into_owned());
        }
    }
    cgroups.sort();
    cgroups.dedup();
    let wanted = dir.to_string_lossy().into_owned();
    let processes = pids()
        .into_iter()
        .filter_map(|pid| {
            let proc = Path::new("/proc").join(pid.to_string());
            let links =
                ["cwd", "exe"].map(|l| std::fs::read_link(proc.join(l)).unwrap_or_default());
            let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (links.iter().any(|l| l.starts_with(dir)) || cmdline.contains(&wanted))
                .then(|| format!("{pid}: {cmdline}"))
        })
        .collect();
    Leftovers {
        mounts: mounts_below(dir),
        cgroups,
        processes,
    }
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_string_lossy().parse().ok())
        .collect()
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
    pids()
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
    assert_eq!(
        leftovers(dir.path(), id),
        Leftovers::none(),
        "lab {id}: not clean before start"
    );
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
    // A process the student left in a namespace of the workspace: reset must end it too.
    let bound = bound_namespaces(dir.path());
    let mut left = bound.first().map(|(path, ns)| {
        let kind = ns.split(':').next().unwrap();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--{kind}={path}"))
            .args(["sleep", "300"])
            .spawn()
            .unwrap();
        let link = format!("/proc/{}/ns/{kind}", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_link(&link).is_ok_and(|l| l.to_string_lossy() != *ns) {
            assert!(
                std::time::Instant::now() < deadline,
                "nsenter never joined {ns}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child
    });
    let namespaces: Vec<String> = bound.into_iter().map(|(_, ns)| ns).collect();
    isolab(dir.path())
        .args(["lab", "reset", &id.to_string()])
        .assert()
        .success();
    assert!(!dir.path().join(id.to_string()).exists());
    assert_eq!(
        leftovers(dir.path(), id),
        Leftovers::none(),
        "lab {id} left something behind"
    );
    assert_eq!(
        processes_in(&namespaces),
        Vec::<u32>::new(),
        "lab {id}: processes remain in the namespaces its workspace held: {namespaces:?}"
    );
    if let Some(left) = left.as_mut() {
        use std::os::unix::process::ExitStatusExt;
        let status = left.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "reset did not kill it: {status}");
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
