//! Packing a directory into a gzipped layer tar: entries sorted, times zeroed (the same tree
//! packs to the same bytes), hard links as links. Overlay whiteouts, as an upper layer holds
//! them, go back to the archive form `unpack` reads: a character device 0/0 NAME becomes an
//! empty `.wh.NAME`, and a directory with `trusted.overlay.opaque=y` gets a `.wh..wh..opq`
//! entry. A freshly built root has neither, so `build` and `commit` share this.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Whether `meta` is an overlay whiteout: a character device with device number 0/0.
pub(crate) fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the directory at `path` is opaque (`trusted.overlay.opaque=y`): it hides
/// whatever the layers below hold at its path.
pub(crate) fn is_opaque(path: &Path) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 2];
    // SAFETY: both strings are NUL-terminated and live across the call; the kernel writes at
    // most value.len() bytes into the buffer.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// Packs `root` into the gzipped tar `out`, flushed to disk.
pub(crate) fn pack(root: &Path, out: &Path) -> io::Result<()> {
    let file = File::create(out)?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    pack_dir(&mut tar, root, Path::new(""), &mut links)?;
    tar.into_inner()?.finish()?.sync_all()
}

/// An empty regular file entry, for whiteout markers.
fn append_marker(tar: &mut tar::Builder<impl io::Write>, path: &Path) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_size(0);
    tar.append_data(&mut header, path, io::empty())
}

fn pack_dir(
    tar: &mut tar::Builder<impl io::Write>,
    root: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = rel.join(entry.file_name());
        let full = root.join(&path);
        let meta = fs::symlink_metadata(&full)?;
        if is_whiteout(&meta) {
            let mut name = OsString::from(WHITEOUT_PREFIX).into_vec();
            name.extend_from_slice(entry.file_name().as_bytes());
            append_marker(tar, &rel.join(OsString::from_vec(name)))?;
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_mtime(0);
        let kind = meta.file_type();
        if !kind.is_dir() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                tar.append_link(&mut header, &path, first)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), path.clone());
        }
        if kind.is_symlink() {
            header.set_size(0);
            tar.append_link(&mut header, &path, fs::read_link(&full)?)?;
        } else if kind.is_file() {
            tar.append_data(&mut header, &path, File::open(&full)?)?;
        } else {
            header.set_size(0);
            tar.append_data(&mut header, &path, io::empty())?;
            if kind.is_dir() {
                // The marker comes right after its directory, before anything in it.
                if is_opaque(&full) {
                    append_marker(tar, &path.join(OPAQUE_MARKER))?;
                }
                pack_dir(tar, root, &path, links)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_become_wh_entries_and_the_rest_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/hostname"), b"x\n").unwrap();
        nix::sys::stat::mknod(
            &root.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        let out = dir.path().join("layer.tar.gz");
        pack(&root, &out).unwrap();
        let mut archive =
            tar::Archive::new(flate2::read::GzDecoder::new(File::open(&out).unwrap()));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["etc", "etc/.wh.gone", "etc/hostname"]);
    }
}
