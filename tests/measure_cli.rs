//! `isolab measure`: the whole main job, shrunk with `--runs 1 --count 2` so it stays a
//! test: every workload on every target this host can run, a density run, the disk
//! footprint, and the report.

use std::path::Path;

use assert_cmd::Command;

#[test]
fn quick_measure_writes_a_report_naming_every_target_it_measured() {
    // SAFETY: geteuid(2) only returns a number.
    if unsafe { libc::geteuid() } != 0 {
        // Setup installs packages and the container targets need root.
        return;
    }
    let workload = Path::new(env!("CARGO_BIN_EXE_isolab")).with_file_name("isolab-workload");
    assert!(
        workload.is_file(),
        "{} is missing: run `cargo build --workspace` before these tests",
        workload.display()
    );
    let out = tempfile::tempdir().unwrap();
    let output = Command::cargo_bin("isolab")
        .unwrap()
        .args(["measure", "--quick", "--runs", "1", "--count", "2", "--out"])
        .arg(out.path())
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let measured: Vec<&str> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("measuring: "))
        .expect("measure names its targets")
        .split(", ")
        .collect();
    assert!(measured.contains(&"native"), "{measured:?}");
    let report = out.path().join("report.html");
    assert!(
        stdout.contains(&format!("report: {}", report.display())),
        "{stdout}"
    );

    let text = std::fs::read_to_string(&report).unwrap();
    let doc = scraper::Html::parse_document(&text);
    assert!(doc.errors.is_empty(), "{:?}", doc.errors);
    let select = |css: &str| scraper::Selector::parse(css).unwrap();
    let intro: String = doc
        .select(&select("body > p"))
        .next()
        .unwrap()
        .text()
        .collect();
    for target in &measured {
        assert!(intro.contains(target), "{target} missing from: {intro}");
    }
    // Every workload's run set, the probe's, the density run's and the footprint's charts
    // are in it; the start-up phases come from the container target, which always runs.
    for chart in [
        "startup",
        "phases",
        "overhead",
        "isolation",
        "density",
        "footprint",
    ] {
        assert!(out.path().join(format!("{chart}.png")).is_file(), "{chart}");
    }
    // Claims 2 and 9 have a verdict from the footprint stage.
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    for claim in ["| 2 |", "| 9 |"] {
        let row = md.lines().find(|l| l.starts_with(claim)).unwrap();
        assert!(!row.contains("not measured"), "{row}");
        assert!(row.contains("footprint-"), "{row}");
    }
}
