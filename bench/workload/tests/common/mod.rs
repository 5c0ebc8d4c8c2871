//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_isolab-workload");

/// Runs the workload with `args` (in `cwd` when given) and waits for it.
pub fn run_in(cwd: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.output().expect("spawn isolab-workload")
}

pub fn run(args: &[&str]) -> Output {
    run_in(None, args)
}

/// Asserts exit 0 and returns the last stdout line parsed as a JSON object, after checking
/// that `"mode"` is its first key with the value `mode`.
pub fn ok_json(args: &[&str], output: &Output, mode: &str) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{args:?} failed: {:?}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    last_json(&output.stdout, mode)
}

pub fn last_json(stdout: &[u8], mode: &str) -> serde_json::Value {
    let text = std::str::from_utf8(stdout).expect("stdout is UTF-8");
    assert!(
        text.ends_with('\n'),
        "stdout must end with a newline: {text:?}"
    );
    let line = text.lines().last().expect("at least one line");
    let prefix = format!(r#"{{"mode":"{mode}""#);
    assert!(
        line.starts_with(&prefix),
        "\"mode\" must come first: {line}"
    );
    let value: serde_json::Value = serde_json::from_str(line).expect("last line is JSON");
    assert!(value.is_object(), "{line}");
    value
}

/// Asserts that `value` has exactly these keys (in any order).
pub fn assert_keys(value: &serde_json::Value, keys: &[&str]) {
    let obj = value.as_object().expect("object");
    let mut have: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut want = keys.to_vec();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want, "keys of {value}");
}

pub fn u64_of(value: &serde_json::Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer in {value}"))
}

pub fn f64_of(value: &serde_json::Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {value}"))
}
