//! What several integration test files share.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Holds an exclusive flock on `<tmp>/isolab-<suite>.lock` until dropped: one test of
/// `suite` at a time, across threads and across processes. The suites use fixed container
/// names and compare host state before and after, and on a shared host another run of the
/// same suite (a second `cargo test`) may start meanwhile.
#[derive(Debug)]
pub struct Serial {
    _lock: File,
}

pub fn serial(suite: &str) -> Serial {
    let path = std::env::temp_dir().join(format!("isolab-{suite}.lock"));
    let file = File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Each File is its own open file description, so the lock also excludes this
    // process's other threads.
    loop {
        // SAFETY: flock on a descriptor this File owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Serial { _lock: file };
        }
        let error = std::io::Error::last_os_error();
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::Interrupted,
            "{}: {error}",
            path.display()
        );
    }
}
