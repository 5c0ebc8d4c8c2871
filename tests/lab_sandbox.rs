//! Labs in the test sandbox (`isolab_bench::sandbox`): the cgroup labs (6 memory, 7 CPU,
//! 8 pids) on a pure cgroup v2 host, with nothing but cgroup2 at /sys/fs/cgroup and no
//! systemd to have enabled any controller — one boot runs all three, each as a student
//! would: start, check the untouched starter, apply the reference solution, check again,
//! reset; then the test reads the reports and what was left. And lab 11's reference program
//! on standard KVM (SVM), where its real-mode guest runs on the CPU instead of PVM's emulator.

use std::collections::BTreeMap;
use std::time::Duration;

use assert_cmd::Command;
use isolab_bench::sandbox::{GuestFile, RunSpec};
use serde_json::Value;

#[path = "common/sandbox.rs"]
mod sandbox_common;
use sandbox_common::{bin_dir, chain, sandbox};

const LABS: [u32; 3] = [6, 7, 8];

/// For each lab, one `key<id>=value` line per stage; the checks' JSON on one line each.
const SCRIPT: &str = r#"export ISOLAB_LAB_DIR=/root/labs
for id in 6 7 8; do
  echo "start$id=$(isolab lab start $id 2>&1 | tr '\n' ' ')"
  echo "starter$id=$(isolab lab check $id --json | tr -d '\n')"
  isolab lab solution $id --i-am-instructor --apply >/dev/null 2>/root/apply.err
  echo "apply$id=$? $(tr '\n' ' ' < /root/apply.err)"
  echo "solved$id=$(isolab lab check $id --json | tr -d '\n')"
  isolab lab reset $id >/dev/null 2>&1
  echo "reset$id=$?"
  echo "left$id=$(ls -d /sys/fs/cgroup/isolab-lab$id $ISOLAB_LAB_DIR/$id 2>/dev/null | tr '\n' ' ')"
done
echo "root_controllers=$(cat /sys/fs/cgroup/cgroup.subtree_control)""#;

#[test]
fn the_cgroup_labs_pass_and_clean_up_on_pure_cgroup_v2() {
    let spec = RunSpec::new(["sh", "-c", SCRIPT])
        .isolab_binaries(&bin_dir())
        .timeout(Duration::from_secs(480));
    let out = sandbox()
        .run(&spec)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let stdout = out.stdout_text();
    assert_eq!(out.status, 0, "{stdout}\n{}", out.stderr_text());
    let values: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    let value = |key: String| {
        *values
            .get(key.as_str())
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
    };
    let json = |key: String| -> Value {
        serde_json::from_str(value(key.clone())).unwrap_or_else(|e| panic!("{key}: {e}\n{stdout}"))
    };
    for id in LABS {
        let started = value(format!("start{id}"));
        assert!(
            started.contains("cgroup v2"),
            "lab {id} did not find cgroup v2: {started}"
        );
        let starter = json(format!("starter{id}"));
        assert_eq!(starter["passed"], false, "lab {id}: {starter:#}");
        let failing: Vec<&Value> = starter["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["passed"] == false)
            .collect();
        assert!(!failing.is_empty(), "lab {id}: {starter:#}");
        for step in failing {
            assert_ne!(step["hint"], "", "lab {id}: a failing step without a hint");
        }
        assert_eq!(value(format!("apply{id}")).trim(), "0", "lab {id}");
        let solved = json(format!("solved{id}"));
        assert_eq!(solved["passed"], true, "lab {id}: {solved:#}");
        assert_eq!(value(format!("reset{id}")), "0", "lab {id}");
        assert_eq!(
            value(format!("left{id}")),
            "",
            "lab {id}: its cgroup or workspace is left"
        );
    }
    // The labs enabled what they needed for the root's children, as systemd would have.
    let enabled = value("root_controllers".into());
    for controller in ["memory", "cpu", "pids"] {
        assert!(
            enabled.split(' ').any(|c| c == controller),
            "{controller} is not enabled at the root: {enabled}"
        );
    }
}

/// The reference program of lab 11, built static (the sandbox has no dynamic loader) in the
/// project `isolab lab start 11` prepares, prints the same exits on SVM as on this host.
#[test]
fn the_lab11_reference_program_runs_on_standard_kvm() {
    let dir = tempfile::tempdir().unwrap();
    let start = Command::cargo_bin("isolab")
        .unwrap()
        .env("ISOLAB_LAB_DIR", dir.path())
        .args(["lab", "start", "11"])
        .output()
        .unwrap();
    if start.status.code() == Some(3) {
        eprintln!(
            "skipping: {}",
            String::from_utf8_lossy(&start.stderr).trim()
        );
        return;
    }
    assert!(start.status.success(), "{start:?}");
    let project = dir.path().join("11/vmm");
    std::fs::write(
        project.join("src/main.rs"),
        include_str!("../labs/content/11/solution.rs"),
    )
    .unwrap();
    let build = std::process::Command::new("cargo")
        .args(["build", "--offline", "--quiet"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", project.join("target"))
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let mut spec = RunSpec::new(["sh", "-c", "echo | /root/vmm 0x1234 7"]);
    spec.files.push(GuestFile {
        host: project.join("target/debug/vmm"),
        guest: "/root/vmm".into(),
        strip_debug: true,
    });
    let out = sandbox()
        .run(&spec)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(out.status, 0, "{}", out.stderr_text());
    assert_eq!(
        out.stdout_text(),
        "api_version=12\nexit=io_out port=0x3f8 size=2 value=0x123b\nexit=hlt rip=0x1007\ndone=1\n"
    );
}
