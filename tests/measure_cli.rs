//! `isolab measure`: the whole main job, shrunk with `--runs 1 --count 2` so it stays a
//! test: every workload on every target this host can run, a density run, and the report.

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
    // Every workload's run set, the probe's and the density run's charts are in it.
    for chart in ["startup", "overhead", "isolation", "density"] {
        assert!(out.path().join(format!("{chart}.png")).is_file(), "{chart}");
    }
    assert!(out.path().join("summary.md").is_file());
}
