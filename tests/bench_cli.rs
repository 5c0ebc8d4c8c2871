//! `isolab bench` end to end, with the real workload binary that `cargo build` puts next to
//! `isolab`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;
use isolab_reports::schema::{ExitStatus, ResultSet};
use predicates::prelude::*;

fn isolab() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isolab"));
    // The workload must be the one next to the binary, whatever the caller's environment says.
    cmd.env_remove("ISOLAB_WORKLOAD");
    cmd
}

/// The real workload; the package's tests do not build it, `cargo build --workspace` does.
fn workload() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_isolab")).with_file_name("isolab-workload");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` before these tests",
        path.display()
    );
    path
}

fn sha256_of(path: &Path) -> String {
    let output = StdCommand::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()[..64].to_owned()
}

/// The JSON and CSV files a bench wrote into `dir`, after checking it wrote exactly those.
fn result_files(dir: &Path) -> (PathBuf, PathBuf) {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    (files[1].clone(), files[0].clone())
}

#[test]
fn native_ready_writes_json_and_csv() {
    let workload = workload();
    let out = tempfile::tempdir().unwrap();
    let assert = isolab()
        .args(["bench", "--target", "native", "--workload", "ready"])
        .args(["--runs", "3", "--warmup", "1", "--out"])
        .arg(out.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("ready ms"))
        .stdout(predicate::str::contains("wrote "));
    let (json, csv) = result_files(out.path());
    let name = json.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("bench-") && name.ends_with("-ready.json"),
        "{name}"
    );
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(stdout.contains(&json.display().to_string()), "{stdout}");

    let set = ResultSet::load(&json).unwrap();
    assert_eq!(set.workload.sha256, sha256_of(&workload));
    assert_eq!(
        Path::new(&set.workload.path),
        workload.canonicalize().unwrap()
    );
    assert_eq!(
        set.workload.size_bytes,
        fs::metadata(&workload).unwrap().len()
    );
    assert_eq!((set.runs_per_target, set.warmup), (3, 1));
    assert_eq!(set.command[1..4], ["bench", "--target", "native"]);
    assert_eq!(set.targets.len(), 1);
    let native = &set.targets[0];
    assert_eq!(native.name, "native");
    assert_eq!(native.runs.len(), 3);
    for (i, run) in native.runs.iter().enumerate() {
        assert_eq!(run.index as usize, i);
        assert!(run.ready_ns.unwrap() < run.exit_ns, "{run:?}");
        assert_eq!(run.exit_status, ExitStatus::Code(0));
        assert_eq!(run.figures["mode"], "ready");
        assert!(run.max_rss_kib > 0);
    }
    assert_eq!(native.stats["ready_ns"].count, 3);
    assert_eq!(native.stats["exit_ns"].count, 3);

    let csv = fs::read_to_string(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "target,index,ready_ns,exit_ns,status,pss_kib,max_rss_kib"
    );
    assert_eq!(lines.len(), 4);
    assert!(lines[1].starts_with("native,0,"));
}

#[test]
fn a_peer_is_measured_interleaved_with_native() {
    workload();
    let out = tempfile::tempdir().unwrap();
    let assert = isolab()
        .args(["bench", "--workload", "syscall", "--n", "1000"])
        .args(["--runs", "3", "--warmup", "1"])
        .args(["--peer", "env=/usr/bin/env {workload} {args}", "--out"])
        .arg(out.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("ns_per_call"));
    let set = ResultSet::load(&result_files(out.path()).0).unwrap();
    let names: Vec<&str> = set.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["native", "env"]);
    for target in &set.targets {
        assert_eq!(target.runs.len(), 3);
        for run in &target.runs {
            assert_eq!(run.ready_ns, None);
            assert_eq!(run.figures["n"], 1000);
        }
        assert!(target.stats.contains_key("figures.ns_per_call"));
    }
    assert!(set.targets[1].description.contains("/usr/bin/env"));

    // Without a terminal, progress comes as plain lines; their order shows the interleaving.
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    let order: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("isolab bench: "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(order.len(), 8, "{stderr}");
    assert!(
        order.windows(2).filter(|w| w[0] != w[1]).count() >= 4,
        "not interleaved: {order:?}"
    );
}

#[test]
fn a_failing_peer_exits_4_naming_it_and_writes_nothing() {
    workload();
    let out = tempfile::tempdir().unwrap();
    isolab()
        .args(["bench", "--runs", "2", "--peer", "bad=false", "--out"])
        .arg(out.path())
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "target `bad` failed in warmup run 1 of 1: ended with exit code 1",
        ));
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn bad_input_exits_2_with_its_message() {
    workload();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    fs::write(&file, "").unwrap();
    let file = file.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--runs", "0"], "--runs must be at least 1"),
        (&["--warmup", "-1"], "invalid value '-1' for '--warmup <N>'"),
        (
            &["--warmup", "many"],
            "invalid value 'many' for '--warmup <N>'",
        ),
        (
            &["--target", "nope"],
            "unknown target `nope`; available: native",
        ),
        (
            &["--target", "native,firecracker"],
            "target `firecracker` is not available yet in this build",
        ),
        (&["--workload", "nope"], "unknown workload `nope`"),
        (
            &["--workload", "ready", "--iters", "5"],
            "--iters does not apply",
        ),
        (&["--peer", ""], "empty --peer: expected NAME=CMD"),
        (
            &["--experiment", "footprint", "--target", "native"],
            "--experiment footprint measures images and boot files, not targets",
        ),
        (&["--peer", "true"], "--peer `true`: expected NAME=CMD"),
        (
            &["--target", "native,native"],
            "target `native` is given more than once",
        ),
        (
            &["--peer", "native=true"],
            "target `native` is given more than once",
        ),
        (&["--out", file], "is not a directory"),
        (&["--timeout", "0"], "must be longer than zero"),
        (
            &["--workload-bin", "/nonexistent/wl"],
            "workload binary /nonexistent/wl (named by --workload-bin) not found",
        ),
    ];
    for (args, message) in cases {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = isolab();
        cmd.arg("bench").args(*args);
        if !args.contains(&"--out") {
            cmd.arg("--out").arg(out.path());
        }
        cmd.assert()
            .code(2)
            .stderr(predicate::str::contains(*message));
    }
}

#[test]
fn an_unwritable_out_dir_exits_2() {
    workload();
    // SAFETY: geteuid(2) only returns a number.
    if unsafe { libc::geteuid() } == 0 {
        // Root writes through permission bits: nothing to test here.
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let locked = tmp.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    isolab()
        .args(["bench", "--out"])
        .arg(&locked)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "--out {} is not writable",
            locked.display()
        )));
}

#[test]
fn a_missing_workload_build_exits_3_saying_cargo_build() {
    // A copy of isolab alone in a directory has no workload next to it.
    let tmp = tempfile::tempdir().unwrap();
    let lonely = tmp.path().join("isolab");
    // Copied by cp, not fs::copy: a write descriptor held in this process could be
    // inherited by a child another test thread forks meanwhile, and exec of a file open
    // for writing fails with ETXTBSY.
    let copied = std::process::Command::new("cp")
        .arg(env!("CARGO_BIN_EXE_isolab"))
        .arg(&lonely)
        .status()
        .unwrap();
    assert!(copied.success());
    Command::new(&lonely)
        .env_remove("ISOLAB_WORKLOAD")
        .args(["bench", "--out"])
        .arg(tmp.path().join("out"))
        .assert()
        .code(3)
        .stderr(predicate::str::contains("run `cargo build`"));
}
