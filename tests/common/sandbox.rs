//! What the sandbox test files share: one prepared sandbox per test process, the directory
//! the binaries it carries come from, and readable error chains.

use std::path::PathBuf;
use std::sync::OnceLock;

pub use isolab_bench::chain;
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
