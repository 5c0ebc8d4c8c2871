//! The command line as a whole: usage errors and the commands without a test file of their own.

use assert_cmd::Command;
use predicates::prelude::*;

fn isolab() -> Command {
    Command::cargo_bin("isolab").expect("the isolab binary is built by cargo test")
}

#[test]
fn no_subcommand_is_a_usage_error() {
    isolab()
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Usage: isolab"));
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    isolab()
        .arg("frobnicate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unrecognized subcommand 'frobnicate'",
        ));
}

#[test]
fn version_names_the_program() {
    isolab()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("isolab "));
}

#[test]
fn setup_rejects_an_unknown_job() {
    isolab()
        .args(["setup", "--for", "everything"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid value 'everything' for '--for",
        ));
}

#[test]
fn setup_dry_run_asks_dpkg_and_installs_nothing() {
    // The test suite's own packages are installed before it runs (.ci/test), so a dry run
    // for the tests must find every one of them and have nothing to do.
    isolab()
        .args(["setup", "--for", "tests", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("busybox-static is installed"))
        .stdout(predicate::str::contains("nothing to install"));
}

#[test]
fn measure_rejects_an_unknown_option() {
    isolab()
        .args(["measure", "--fast"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unexpected argument '--fast'"));
}

#[test]
fn measure_rejects_an_output_path_that_is_a_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    isolab()
        .args(["measure", "--quick", "--out"])
        .arg(file.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a directory"));
}
