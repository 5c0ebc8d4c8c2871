//! What the sandbox test files share: one prepared sandbox per test process, the directory
//! the binaries it carries come from, and readable error chains.

use std::error::Error;
use std::path::PathBuf;
use std::sync::OnceLock;

use isolab_bench::sandbox::Sandbox;

/// Prepared once per test process: preparation is cached on disk, but still costs a look.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        Sandbox::prepare().unwrap_or_else(|e| panic!("preparing the sandbox: {}", chain(&e)))
    })
}

/// Where cargo put `isolab` and `isolab-workload`.
pub fn bin_dir() -> PathBuf {
    let isolab = assert_cmd::cargo::cargo_bin("isolab");
    let dir = isolab.parent().expect("a directory").to_owned();
    assert!(
        dir.join("isolab-workload").is_file(),
        "{} is missing: run `cargo build -p isolab -p isolab-workload`",
        dir.join("isolab-workload").display()
    );
    dir
}

/// An error and all its sources on one line.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
