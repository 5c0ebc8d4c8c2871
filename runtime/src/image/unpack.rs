//! Unpacks a layer tar into a directory, safely and with overlay whiteouts.
//!
//! Safety: every path is split into components (`..` refused, leading `/` and `.` dropped) and
//! walked from the layer's root with `openat(O_NOFOLLOW | O_DIRECTORY)`, so neither a `..` nor
//! a symlink planted by an earlier entry (absolute or relative) can lead a write outside the
//! layer. Hard links are resolved the same way and `linkat` never follows a symlink.
//!
//! Whiteouts become what overlayfs reads: `.wh.NAME` a character device 0/0 named NAME, and
//! `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory. `trusted.overlay.*`
//! xattrs carried by the archive itself are dropped: they would let a layer redirect lookups.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmodat, fstatat, makedev, mkdirat, mknodat,
    utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};
use tar::EntryType;

use super::digest::HashingReader;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer archive: {0}")]
    Read(io::Error),
    #[error("layer entry {path:?}: {reason}")]
    Unsafe { path: String, reason: &'static str },
    #[error("layer entry {path:?}: the archive ends inside it ({got} of {want} bytes)")]
    Truncated { path: String, got: u64, want: u64 },
    #[error("the layer archive has no end-of-archive marker: it was cut short")]
    NoEnd,
    #[error("writing {path}: {error}")]
    Write { path: PathBuf, error: io::Error },
}

impl UnpackError {
    /// The archive is at fault (as opposed to the disk it is unpacked onto).
    pub fn is_archive_fault(&self) -> bool {
        !matches!(self, UnpackError::Write { .. })
    }
}

/// Unpacks the tar stream read from `hashing` into `root` (an existing, empty directory).
/// Reading stops at the end-of-archive marker; the caller finishes the hash.
pub(crate) fn unpack<R: Read>(
    hashing: &mut HashingReader<R>,
    root: &Path,
) -> Result<(), UnpackError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |error: io::Error| UnpackError::Write { path, error }
    };
    let root_fd: OwnedFd = File::open(root).map_err(write_err(root))?.into();
    let mut unpacker = Unpacker {
        root: root.to_path_buf(),
        dirs: DirCache {
            root: root_fd,
            cached: None,
        },
        preserve_owner: Uid::effective().is_root(),
    };
    let mut archive = tar::Archive::new(&mut *hashing);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let entry = entry.map_err(UnpackError::Read)?;
        unpacker.entry(entry)?;
    }
    // The tar reader stops at the first zero block; a stream cut at a header boundary looks
    // just like that, unless the two zero blocks every writer ends with are checked for.
    let mut marker = [0u8; 1024];
    let mut got = 0;
    while got < marker.len() {
        match hashing
            .read(&mut marker[got..])
            .map_err(UnpackError::Read)?
        {
            0 => break,
            n => got += n,
        }
    }
    if hashing.trailing_zeros() < 1024 {
        return Err(UnpackError::NoEnd);
    }
    Ok(())
}

/// A path inside the layer, as components; `..` refused.
fn components(raw: &[u8]) -> Result<Vec<&[u8]>, UnpackError> {
    let mut parts = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(UnpackError::Unsafe {
                    path: String::from_utf8_lossy(raw).into_owned(),
                    reason: "the path leaves the layer ('..')",
                });
            }
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// The directory last written into stays open: tar archives list a directory's files together.
#[derive(Debug)]
struct DirCache {
    root: OwnedFd,
    cached: Option<(Vec<Vec<u8>>, OwnedFd)>,
}

impl DirCache {
    /// The directory `parts` names, created (0755) where missing; never through a symlink.
    fn get(&mut self, parts: &[&[u8]], create: bool) -> Result<BorrowedFd<'_>, Errno> {
        if parts.is_empty() {
            return Ok(self.root.as_fd());
        }
        let hit = self
            .cached
            .as_ref()
            .is_some_and(|(cached, _)| cached.iter().map(Vec::as_slice).eq(parts.iter().copied()));
        if !hit {
            let fd = walk(&self.root, parts, create)?;
            self.cached = Some((parts.iter().map(|p| p.to_vec()).collect(), fd));
        }
        Ok(self
            .cached
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("just cached"))
    }
}

/// Opens the directory `parts` names under `root` (a new descriptor, `root` itself for no parts).
fn walk(root: &OwnedFd, parts: &[&[u8]], create: bool) -> Result<OwnedFd, Errno> {
    if parts.is_empty() {
        return root
            .try_clone()
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)));
    }
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let mut current: Option<OwnedFd> = None;
    for part in parts {
        let name = OsStr::from_bytes(part);
        let dir = current.as_ref().unwrap_or(root);
        let next = match openat(dir, name, flags, Mode::empty()) {
            Err(Errno::ENOENT) if create => {
                mkdirat(dir, name, Mode::from_bits_truncate(0o755))?;
                openat(dir, name, flags, Mode::empty())?
            }
            other => other?,
        };
        current = Some(next);
    }
    Ok(current.expect("parts is not empty"))
}

#[derive(Debug)]
struct Unpacker {
    root: PathBuf,
    dirs: DirCache,
    preserve_owner: bool,
}

/// What every entry carries besides its type.
struct Meta {
    mode: Mode,
    uid: u32,
    gid: u32,
    mtime: u64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let bad = |reason| UnpackError::Unsafe {
            path: shown.clone(),
            reason,
        };
        let parts = components(&raw)?;
        let header = entry.header();
        let kind = header.entry_type();
        let meta = Meta {
            mode: Mode::from_bits_truncate(header.mode().map_err(UnpackError::Read)? & 0o7777),
            // Some writers leave the owner fields blank; blank means root, as GNU tar reads it.
            uid: header.uid().unwrap_or(0) as u32,
            gid: header.gid().unwrap_or(0) as u32,
            mtime: header.mtime().unwrap_or(0),
            xattrs: xattrs(&mut entry)?,
        };
        let target = self.root.join(OsStr::from_bytes(&raw));
        let write_err = |error: Errno| UnpackError::Write {
            path: target.clone(),
            error: error.into(),
        };
        let Some((&name, parents)) = parts.split_last() else {
            // The layer's root itself ("./"): only its metadata.
            if kind.is_dir() {
                let root = walk(&self.dirs.root, &[], false).map_err(write_err)?;
                return Self::apply_fd(self.preserve_owner, root, &meta).map_err(write_err);
            }
            return Err(bad("a non-directory entry for the layer's root"));
        };
        let name = OsStr::from_bytes(name);
        // A hard link's target is resolved before the cache moves to this entry's directory.
        let link_target = if kind == EntryType::Link {
            let link = entry
                .link_name_bytes()
                .ok_or_else(|| bad("a hard link without a target"))?
                .into_owned();
            let link_parts = components(&link)?;
            let Some((&link_name, link_dirs)) = link_parts.split_last() else {
                return Err(bad("a hard link to the layer's root"));
            };
            let dir = walk(&self.dirs.root, link_dirs, false)
                .map_err(|_| bad("a hard link whose target is not in the layer"))?;
            Some((dir, OsStr::from_bytes(link_name).to_os_string()))
        } else {
            None
        };
        let preserve_owner = self.preserve_owner;
        let parent = self.dirs.get(parents, true).map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => bad("a parent directory is a symlink or a file"),
            e => write_err(e),
        })?;

        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX) {
            if name.as_bytes() == OPAQUE_MARKER {
                return set_xattr(parent, c"trusted.overlay.opaque", b"y").map_err(write_err);
            }
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other `.wh..wh.` names are aufs bookkeeping, meaningless to overlayfs.
                return Ok(());
            }
            let hidden = OsStr::from_bytes(hidden);
            remove_non_dir(parent, hidden).map_err(write_err)?;
            return mknodat(parent, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(write_err);
        }

        match kind {
            EntryType::Directory => {
                match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st)
                        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
                            == SFlag::S_IFDIR => {}
                    Ok(_) => {
                        unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(write_err)?;
                        mkdirat(parent, name, Mode::from_bits_truncate(0o700))
                            .map_err(write_err)?;
                    }
                    Err(Errno::ENOENT) => {
                        mkdirat(parent, name, Mode::from_bits_truncate(0o700)).map_err(write_err)?
                    }
                    Err(e) => return Err(write_err(e)),
                }
                let fd = openat(
                    parent,
                    name,
                    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
                    Mode::empty(),
                )
                .map_err(write_err)?;
                Self::apply_fd(preserve_owner, fd, &meta).map_err(write_err)
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_non_dir(parent, name).map_err(write_err)?;
                let fd = openat(
                    parent,
                    name,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(write_err)?;
                let mut file = File::from(fd);
                let want = entry.size();
                let got = copy_data(&mut entry, &mut file).map_err(|e| match e {
                    CopyError::Read(e) => UnpackError::Read(e),
                    CopyError::Write(error) => UnpackError::Write {
                        path: target.clone(),
                        error,
                    },
                })?;
                if got != want {
                    return Err(UnpackError::Truncated {
                        path: shown,
                        got,
                        want,
                    });
                }
                file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(meta.mtime))
                    .map_err(|error| UnpackError::Write {
                        path: target.clone(),
                        error,
                    })?;
                Self::apply_fd(preserve_owner, file.into(), &meta).map_err(write_err)
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad("a symlink without a target"))?;
                remove_non_dir(parent, name).map_err(write_err)?;
                symlinkat(OsStr::from_bytes(&link), parent, name).map_err(write_err)?;
                Self::apply_at(preserve_owner, parent, name, &meta, false).map_err(write_err)
            }
            EntryType::Link => {
                let (dir, link_name) = link_target.expect("resolved above for links");
                remove_non_dir(parent, name).map_err(write_err)?;
                linkat(&dir, link_name.as_os_str(), parent, name, AtFlags::empty()).map_err(|e| {
                    match e {
                        Errno::ENOENT => bad("a hard link whose target is not in the layer"),
                        e => write_err(e),
                    }
                })
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (kind, dev) = match kind {
                    EntryType::Char => (SFlag::S_IFCHR, device(entry.header())?),
                    EntryType::Block => (SFlag::S_IFBLK, device(entry.header())?),
                    _ => (SFlag::S_IFIFO, 0),
                };
                remove_non_dir(parent, name).map_err(write_err)?;
                mknodat(parent, name, kind, Mode::from_bits_truncate(0o600), dev)
                    .map_err(write_err)?;
                Self::apply_at(preserve_owner, parent, name, &meta, true).map_err(write_err)
            }
            // Global PAX headers and other metadata-only entries change nothing on disk.
            _ => Ok(()),
        }
    }

    /// Owner first: chown clears set-id bits, so the mode goes on after it.
    fn apply_fd(preserve_owner: bool, fd: OwnedFd, meta: &Meta) -> Result<(), Errno> {
        if preserve_owner {
            nix::unistd::fchown(
                &fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )?;
        }
        nix::sys::stat::fchmod(&fd, meta.mode)?;
        for (key, value) in &meta.xattrs {
            match set_xattr(fd.as_fd(), key, value) {
                // "Where possible": a filesystem or a namespace may refuse some namespaces.
                Err(Errno::EOPNOTSUPP | Errno::EPERM) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// For what cannot be opened (symlinks, devices): by name, never following a link.
    fn apply_at(
        preserve_owner: bool,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), Errno> {
        if preserve_owner {
            fchownat(
                dir,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        if chmod {
            // Only for device nodes and FIFOs just created here: nothing can have swapped in
            // a symlink since, so following is safe (Linux cannot chmod a symlink anyway).
            fchmodat(dir, name, meta.mode, FchmodatFlags::FollowSymlink)?;
        }
        let time = TimeSpec::new(meta.mtime as i64, 0);
        utimensat(dir, name, &time, &time, UtimensatFlags::NoFollowSymlink)
    }
}

/// Makes room for a new entry: replaces anything but a directory.
fn remove_non_dir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn device(header: &tar::Header) -> Result<nix::libc::dev_t, UnpackError> {
    let major = header
        .device_major()
        .map_err(UnpackError::Read)?
        .unwrap_or(0);
    let minor = header
        .device_minor()
        .map_err(UnpackError::Read)?
        .unwrap_or(0);
    Ok(makedev(major.into(), minor.into()))
}

fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<(CString, Vec<u8>)>, UnpackError> {
    let mut found = Vec::new();
    if let Some(extensions) = entry.pax_extensions().map_err(UnpackError::Read)? {
        for extension in extensions {
            let extension = extension.map_err(UnpackError::Read)?;
            let Ok(key) = extension.key() else { continue };
            let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) else {
                continue;
            };
            if name.starts_with(OVERLAY_XATTR_PREFIX) {
                continue;
            }
            if let Ok(name) = CString::new(name) {
                found.push((name, extension.value_bytes().to_vec()));
            }
        }
    }
    Ok(found)
}

fn set_xattr(fd: BorrowedFd<'_>, name: &std::ffi::CStr, value: &[u8]) -> Result<(), Errno> {
    // SAFETY: fd is an open descriptor borrowed for the call; name is NUL-terminated; value is a valid
    // buffer of value.len() bytes that fsetxattr only reads.
    let rc = unsafe {
        nix::libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` to `to`, telling a failing source from a failing destination.
pub(crate) fn copy_data(from: &mut impl Read, to: &mut impl Write) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_drop_roots_and_dots_and_refuse_dotdot() {
        assert_eq!(
            components(b"/a/./b//c").unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert!(components(b"./").unwrap().is_empty());
        assert!(components(b"a/../../etc").is_err());
    }
}
