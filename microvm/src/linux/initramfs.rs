//! The guest's initramfs: a newc archive whose `/init` is the very `isolab-workload`
//! binary, plus `/dev/console` so the kernel can give init its stdin/stdout/stderr. Built
//! once per workload binary and kept in the cache under the hash of its content, so a
//! rebuilt workload gets a new archive and an unchanged one is reused.

use std::fs::{self, File};
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cpio::{CpioError, CpioWriter};

/// Changes whenever the archive's layout does, so old cached archives are not reused.
const LAYOUT: &[u8] = b"isolab-initramfs-1: dev/ dev/console(5,1) init";

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the initramfs")]
    Cpio(#[from] CpioError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InitramfsError + '_ {
    move |source| InitramfsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The cached initramfs for `workload`, written first if the cache lacks it.
pub fn ensure(cache: &Path, workload: &Path) -> Result<PathBuf, InitramfsError> {
    let key = content_key(workload)?;
    let path = cache.join(format!("initramfs-{key}.cpio"));
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(cache).map_err(io_err(cache))?;
    // Written under a private name and renamed, so a concurrent run never reads half.
    let tmp = tempfile::NamedTempFile::new_in(cache).map_err(io_err(cache))?;
    let mut writer = CpioWriter::new(BufWriter::new(tmp.as_file()));
    writer.dir("dev", 0o755)?;
    writer.char_device("dev/console", 0o600, 5, 1)?;
    writer.file_from("init", 0o755, workload)?;
    writer.finish()?;
    tmp.persist(&path).map_err(|e| InitramfsError::Io {
        path: path.clone(),
        source: e.error,
    })?;
    Ok(path)
}

/// The first 16 hex digits of SHA-256 over the layout and the workload's bytes.
fn content_key(workload: &Path) -> Result<String, InitramfsError> {
    let mut file = File::open(workload).map_err(io_err(workload))?;
    let mut hash = Sha256::new();
    hash.update(LAYOUT);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf).map_err(io_err(workload))? {
            0 => break,
            n => hash.update(&buf[..n]),
        }
    }
    Ok(hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_cached_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("workload");
        fs::write(&bin, b"\x7fELF first").unwrap();
        let cache = dir.path().join("cache");
        let first = ensure(&cache, &bin).unwrap();
        let bytes = fs::read(&first).unwrap();
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("dev/console") && text.contains("init"));
        assert!(text.contains("\x7fELF first"));
        assert_eq!(ensure(&cache, &bin).unwrap(), first, "reused");
        fs::write(&bin, b"\x7fELF second").unwrap();
        assert_ne!(
            ensure(&cache, &bin).unwrap(),
            first,
            "a new binary, a new archive"
        );
        assert!(matches!(
            ensure(&cache, &dir.path().join("absent")),
            Err(InitramfsError::Io { .. })
        ));
    }
}
