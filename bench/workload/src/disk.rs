//! `io --mib N`: write N MiB to a fresh file in the cwd, fsync, read back and verify.
//!
//! Rates are in MB/s with MB = 10^6 bytes (not MiB), as disk vendors and fio report them.
//! - `write_mb_s` = bytes / `write_ns`: the write(2) calls only, which mostly land in the
//!   page cache; `durable_write_mb_s` = bytes / (`write_ns` + `fsync_ns`).
//! - Before the read-back the page cache for the file is dropped with
//!   `posix_fadvise(POSIX_FADV_DONTNEED)` (best effort; `fadvise_dontneed` says whether the
//!   kernel accepted it), so `read_mb_s` measures the storage path rather than memcpy where
//!   the file system honours it (tmpfs, for one, keeps the data in memory regardless).
//! - `read_ns` covers the read(2) calls only, not the verification.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use crate::json::Object;

/// The buffer size for every write and read: 1 MiB.
const BLOCK: usize = 1 << 20;

/// Removes the file when dropped: on success, on every error path and during unwinding.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The content of block `index`: a fixed pseudo-random pattern with the block index in
/// its first 8 bytes, so a block read back from the wrong offset fails verification.
fn fill_block(buf: &mut [u8], index: u64) {
    buf[..8].copy_from_slice(&index.to_le_bytes());
}

fn pattern() -> Vec<u8> {
    let mut buf = vec![0u8; BLOCK];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in buf.chunks_exact_mut(8) {
        // xorshift64: cheap, and not all-zero (which some storage would compress away).
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    buf
}

fn mb_per_s(bytes: u64, ns: u64) -> f64 {
    // bytes / 10^6 / (ns / 10^9); a zero duration gives infinity, which prints as null.
    bytes as f64 * 1e3 / ns as f64
}

pub fn run(mib: u64) -> Result<Object, String> {
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = PathBuf::from(format!(
        ".isolab-workload-io-{}-{stamp}.tmp",
        std::process::id()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&name)
        .map_err(|e| {
            format!(
                "cannot create {} in the current directory: {e}",
                name.display()
            )
        })?;
    let _remove = RemoveOnDrop(name);
    measure(&file, mib)
}

fn measure(file: &File, mib: u64) -> Result<Object, String> {
    let bytes = mib * BLOCK as u64;
    let mut expected = pattern();

    let mut write_ns = 0u64;
    for index in 0..mib {
        fill_block(&mut expected, index);
        let start = Instant::now();
        file.write_all_at(&expected, index * BLOCK as u64)
            .map_err(|e| format!("write of MiB {index} failed: {e}"))?;
        write_ns += crate::nanos(start.elapsed());
    }

    let start = Instant::now();
    file.sync_all().map_err(|e| format!("fsync failed: {e}"))?;
    let fsync_ns = crate::nanos(start.elapsed());

    // SAFETY: a plain advice call on a file descriptor `file` keeps open; no memory is
    // passed.
    let fadvise_dontneed =
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) } == 0;

    let mut actual = vec![0u8; BLOCK];
    let mut read_ns = 0u64;
    for index in 0..mib {
        let start = Instant::now();
        file.read_exact_at(&mut actual, index * BLOCK as u64)
            .map_err(|e| format!("read of MiB {index} failed: {e}"))?;
        read_ns += crate::nanos(start.elapsed());
        fill_block(&mut expected, index);
        if actual != expected {
            return Err(format!(
                "verification failed: MiB {index} read back differs"
            ));
        }
    }

    Ok(Object::mode("io")
        .with("mib", mib)
        .with("write_ns", write_ns)
        .with("fsync_ns", fsync_ns)
        .with("read_ns", read_ns)
        .with("write_mb_s", mb_per_s(bytes, write_ns))
        .with("read_mb_s", mb_per_s(bytes, read_ns))
        .with("durable_write_mb_s", mb_per_s(bytes, write_ns + fsync_ns))
        .with("fadvise_dontneed", fadvise_dontneed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_differ_by_index_and_rates_are_decimal() {
        let mut a = pattern();
        let mut b = pattern();
        fill_block(&mut a, 1);
        fill_block(&mut b, 2);
        assert_ne!(a, b);
        assert_eq!(a[8..], b[8..]);
        // 1 MB in 1 ms = 1000 MB/s.
        assert_eq!(mb_per_s(1_000_000, 1_000_000), 1000.0);
        assert!(mb_per_s(1, 0).is_infinite());
    }
}
