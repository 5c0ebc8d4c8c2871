//! A writer for the "newc" cpio format, the one format the kernel's initramfs unpacker reads.
//!
//! Written here rather than taken from a crate: the sandbox needs only directories, regular
//! files, symlinks and one character device (`/dev/console`), streamed without holding a
//! 50 MB debug binary in memory twice, and the format is a fixed 110-byte ASCII header plus
//! 4-byte padding — smaller than the glue a crate would need. Archives are left
//! uncompressed: under TCG every instruction the guest spends inflating is emulated, while
//! an uncompressed archive is only copied.
//!
//! The kernel unpacks concatenated archives one after another, so a cached base archive
//! plus a small per-run one form a single initramfs.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Every header starts with this magic ("newc", no checksum).
const MAGIC: &[u8; 6] = b"070701";
/// The header is the magic plus 13 eight-digit hexadecimal fields.
const HEADER_LEN: usize = 6 + 13 * 8;
/// The name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("writing the cpio archive")]
    Write(#[source] io::Error),
    #[error("reading {path} into the cpio archive")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{name}: {len} bytes is more than a newc entry can hold (4 GiB)")]
    TooLarge { name: String, len: u64 },
    #[error("{path} changed size while it was being archived")]
    Changed { path: PathBuf },
    #[error("cpio entry name {name:?} must be relative, without `..`, and without a NUL byte")]
    BadName { name: String },
}

/// Streams entries into a newc archive; `finish` writes the trailer.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    /// Bytes written so far, for padding to 4-byte boundaries.
    offset: u64,
    /// Entries get distinct inode numbers; every file has one link, so the kernel never
    /// tries to hard-link entries to one another.
    next_ino: u32,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            offset: 0,
            next_ino: 1,
        }
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        self.header(name, S_IFDIR | perm, 0, (0, 0))?;
        Ok(())
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.header(name, S_IFREG | perm, data.len() as u64, (0, 0))?;
        self.write(data)?;
        self.pad()
    }

    /// Copies a host file in without reading it into memory first.
    pub fn file_from(&mut self, name: &str, perm: u32, path: &Path) -> Result<(), CpioError> {
        let read_err = |source| CpioError::Read {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        self.header(name, S_IFREG | perm, len, (0, 0))?;
        let mut limited = file.take(len);
        let mut buf = vec![0u8; 1 << 16];
        let mut copied = 0u64;
        loop {
            let n = limited.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            self.write(&buf[..n])?;
            copied += n as u64;
        }
        if copied != len {
            return Err(CpioError::Changed {
                path: path.to_owned(),
            });
        }
        self.pad()
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        self.header(name, S_IFLNK | 0o777, target.len() as u64, (0, 0))?;
        self.write(target.as_bytes())?;
        self.pad()
    }

    pub fn char_device(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.header(name, S_IFCHR | perm, 0, (major, minor))
    }

    /// Writes the trailer and returns the output. The archive's length stays a multiple of
    /// four, so another archive can be appended directly.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.header(TRAILER, 0, 0, (0, 0))?;
        self.out.flush().map_err(CpioError::Write)?;
        Ok(self.out)
    }

    /// One header and the name, padded so the data starts on a 4-byte boundary.
    fn header(
        &mut self,
        name: &str,
        mode: u32,
        len: u64,
        rdev: (u32, u32),
    ) -> Result<(), CpioError> {
        if name != TRAILER && !valid_name(name) {
            return Err(CpioError::BadName {
                name: name.to_owned(),
            });
        }
        let size = u32::try_from(len).map_err(|_| CpioError::TooLarge {
            name: name.to_owned(),
            len,
        })?;
        let ino = if name == TRAILER { 0 } else { self.next_ino };
        self.next_ino += 1;
        let nlink = if mode & S_IFMT == S_IFDIR { 2 } else { 1 };
        let name_size = name.len() as u32 + 1;
        let fields = [
            ino, mode, 0, // uid
            0, // gid
            nlink, 0, // mtime: fixed, so the same inputs give the same bytes
            size, 0, // devmajor
            0, // devminor
            rdev.0, rdev.1, name_size, 0, // check
        ];
        let mut header = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        header.extend_from_slice(MAGIC);
        for field in fields {
            header.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        self.write(&header)?;
        self.pad()
    }

    fn write(&mut self, data: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(data).map_err(CpioError::Write)?;
        self.offset += data.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<(), CpioError> {
        let pad = (4 - (self.offset % 4) as usize) % 4;
        self.write(&[0u8; 3][..pad])
    }
}

/// Names are relative to the archive's root, as the kernel expects ("bin/sh", not "/bin/sh").
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\0')
        && name.split('/').all(|part| !part.is_empty() && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: name, mode, rdev and data.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// A reader for what the writer produces, following the kernel's unpacker: it also
    /// walks on into a following archive after a trailer.
    fn parse(mut bytes: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut consumed = 0usize;
        while !bytes.is_empty() {
            assert_eq!(consumed % 4, 0, "entries start 4-byte aligned");
            assert_eq!(&bytes[..6], MAGIC);
            let field = |i: usize| {
                let text = std::str::from_utf8(&bytes[6 + i * 8..6 + (i + 1) * 8]).unwrap();
                u32::from_str_radix(text, 16).unwrap()
            };
            let (mode, size, rdev, name_size) = (
                field(1),
                field(6) as usize,
                (field(9), field(10)),
                field(11),
            );
            let name_end = HEADER_LEN + name_size as usize;
            let name = std::str::from_utf8(&bytes[HEADER_LEN..name_end - 1])
                .unwrap()
                .to_owned();
            assert_eq!(bytes[name_end - 1], 0, "names end in NUL");
            let data_start = name_end.next_multiple_of(4);
            let data = bytes[data_start..data_start + size].to_vec();
            let next = (data_start + size).next_multiple_of(4);
            consumed += next;
            bytes = &bytes[next..];
            if name != TRAILER {
                entries.push((name, mode, rdev, data));
            }
        }
        entries
    }

    #[test]
    fn entries_round_trip_with_alignment() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("bin", 0o755).unwrap();
        w.file("bin/a", 0o644, b"abcde").unwrap();
        w.symlink("bin/sh", "/bin/busybox").unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        w.file("empty", 0o600, b"").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes);
        assert_eq!(
            entries,
            vec![
                ("bin".to_owned(), S_IFDIR | 0o755, (0, 0), vec![]),
                (
                    "bin/a".to_owned(),
                    S_IFREG | 0o644,
                    (0, 0),
                    b"abcde".to_vec()
                ),
                (
                    "bin/sh".to_owned(),
                    S_IFLNK | 0o777,
                    (0, 0),
                    b"/bin/busybox".to_vec()
                ),
                ("dev/console".to_owned(), S_IFCHR | 0o600, (5, 1), vec![]),
                ("empty".to_owned(), S_IFREG | 0o600, (0, 0), vec![]),
            ]
        );
    }

    #[test]
    fn header_fields_are_eight_hex_digits() {
        let bytes = CpioWriter::new(Vec::new()).finish().unwrap();
        // Trailer alone: header, "TRAILER!!!\0" (11 bytes), padded to 124.
        assert_eq!(bytes.len(), 124);
        let header = std::str::from_utf8(&bytes[..HEADER_LEN]).unwrap();
        assert_eq!(
            header,
            "070701\
             00000000000000000000000000000000\
             00000001000000000000000000000000\
             000000000000000000000000\
             0000000B00000000"
        );
    }

    #[test]
    fn appended_archives_read_as_one() {
        let mut base = CpioWriter::new(Vec::new());
        base.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        let mut bytes = base.finish().unwrap();
        let mut extra = CpioWriter::new(Vec::new());
        extra.file("sandbox/nonce", 0o644, b"1234").unwrap();
        bytes.extend(extra.finish().unwrap());
        let names: Vec<String> = parse(&bytes).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["init", "sandbox/nonce"]);
    }

    #[test]
    fn files_stream_from_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payload");
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut w = CpioWriter::new(Vec::new());
        w.file_from("usr/local/bin/payload", 0o755, &path).unwrap();
        let entries = parse(&w.finish().unwrap());
        assert_eq!(entries[0].3, data);
        let missing = CpioWriter::new(Vec::new())
            .file_from("x", 0o644, &dir.path().join("absent"))
            .unwrap_err();
        assert!(missing.to_string().contains("absent"), "{missing}");
    }

    #[test]
    fn names_must_be_relative_and_clean() {
        let mut w = CpioWriter::new(Vec::new());
        for bad in ["/init", "a/../b", "", "a//b", "a\0b"] {
            assert!(
                matches!(w.dir(bad, 0o755), Err(CpioError::BadName { .. })),
                "{bad:?}"
            );
        }
    }
}
