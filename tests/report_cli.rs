//! `isolab report`, `compare` and `plan` from the committed fixtures: files written, exit
//! codes, and clear errors on bad input.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("reports/tests/fixtures")
        .join(name)
}

fn isolab() -> Command {
    Command::cargo_bin("isolab").unwrap()
}

#[test]
fn report_writes_html_markdown_and_charts() {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = isolab();
    cmd.arg("report");
    for name in [
        "ready.json",
        "cpu.json",
        "mem.json",
        "syscall.json",
        "io.json",
    ] {
        cmd.arg(fixture(name));
    }
    cmd.arg("--out").arg(out.path()).assert().success();
    for file in [
        "report.html",
        "summary.md",
        "startup.png",
        "startup.svg",
        "overhead.png",
        "memory.svg",
        "plan.png",
    ] {
        assert!(out.path().join(file).is_file(), "{file}");
    }
}

#[test]
fn report_charts_start_up_phases_and_disk_footprint_and_checks_claims_2_and_9() {
    let out = tempfile::tempdir().unwrap();
    isolab()
        .arg("report")
        .arg(fixture("ready-phases.json"))
        .arg(fixture("footprint.json"))
        .arg("--out")
        .arg(out.path())
        .assert()
        .success();
    for file in ["phases.png", "phases.svg", "footprint.png", "footprint.svg"] {
        assert!(out.path().join(file).is_file(), "{file}");
    }
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    let claim = |n: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {n} |")))
            .unwrap_or_else(|| panic!("claim {n} missing from:\n{md}"))
            .to_owned()
    };
    // The fixture's VMs boot megabytes, and the container's upper layer is 8 KiB.
    assert!(claim("2").ends_with("| does not hold |"), "{}", claim("2"));
    assert!(claim("9").ends_with("| holds |"), "{}", claim("9"));
    assert!(claim("9").contains("footprint.json"), "{}", claim("9"));
    assert!(md.contains("| container |"), "the phase table: {md}");
    assert!(
        md.contains("runc (total)") || md.contains("| runc |"),
        "{md}"
    );
}

#[test]
fn report_refuses_bad_input_with_exit_2() {
    let out = tempfile::tempdir().unwrap();
    isolab()
        .args(["report", "/nonexistent/r.json", "--out"])
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("reading /nonexistent/r.json"));
    isolab()
        .arg("report")
        .arg(fixture("ready.json"))
        .arg(fixture("ready-other-host.json"))
        .arg("--out")
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("another host"));
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.json");
    let text = std::fs::read_to_string(fixture("ready.json")).unwrap();
    std::fs::write(
        &old,
        text.replacen("\"schema_version\": 2", "\"schema_version\": 99", 1),
    )
    .unwrap();
    isolab()
        .arg("report")
        .arg(&old)
        .arg("--out")
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("schema version 99"));
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    for target in value["targets"].as_array_mut().unwrap() {
        target["runs"] = serde_json::json!([]);
    }
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, value.to_string()).unwrap();
    isolab()
        .arg("report")
        .arg(&empty)
        .arg("--out")
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("holds no measured runs"));
}

#[test]
fn compare_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bench_json = dir.path().join("bench.json");
    isolab()
        .arg("compare")
        .arg(fixture("ready.json"))
        .arg(fixture("ready-regressed-20pct.json"))
        .arg("--bench-json")
        .arg(&bench_json)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("| regressed | vm-mini | ready_ns"));
    let entries: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bench_json).unwrap()).unwrap();
    let first = &entries.as_array().unwrap()[0];
    assert!(first["name"].is_string() && first["unit"].is_string() && first["value"].is_number());
    isolab()
        .arg("compare")
        .arg(fixture("ready.json"))
        .arg(fixture("ready.json"))
        .args(["--format", "json"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("\"unchanged\""));
    isolab()
        .arg("compare")
        .arg(fixture("ready.json"))
        .arg(fixture("ready-other-host.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cores `2` vs `8`"));
}

#[test]
fn plan_prints_table_and_json() {
    isolab()
        .arg("plan")
        .arg(fixture("ready.json"))
        .arg(fixture("cpu.json"))
        .args([
            "--host-mem",
            "16G",
            "--host-cpus",
            "8",
            "--workload-mem",
            "256M",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("mini VM")
                .and(predicate::str::contains("Linux VM: not measured")),
        )
        .stdout(predicate::str::contains("ready.json"));
    let output = isolab()
        .arg("plan")
        .arg(fixture("ready.json"))
        .args(["--host-mem", "16G", "--host-cpus", "8", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // 15 GiB / (256 MiB + overhead < 16 MiB) ≥ 56, 7.5 CPUs / 0.25 = 30: CPU binds at 30.
    assert_eq!(plan["fits"][0]["instances"], 30);
    assert_eq!(plan["fits"][0]["binds"], "cpu");
    isolab()
        .arg("plan")
        .arg(fixture("ready.json"))
        .args(["--workload-mem", "12Q"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("12Q"));
}

#[test]
fn plan_prefers_a_density_run_and_names_it() {
    isolab()
        .arg("plan")
        .arg(fixture("ready.json"))
        .arg(fixture("density.json"))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "unshare overhead from density: host memory slope",
        ))
        .stdout(predicate::str::contains("density.json"));
}
