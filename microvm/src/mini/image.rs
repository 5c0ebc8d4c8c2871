//! The workload file, mapped instead of read.
//!
//! Reading a 1.3 MiB ELF into a buffer cost ~1.2 ms on PVM (mostly first-touch faults of
//! the buffer), and copying its segments into guest RAM as much again, plus 2.6 MiB of
//! private memory per VM. Mapped `MAP_PRIVATE`, the file is parsed in place (only the pages
//! holding the headers are touched), and the whole pages of its read-only segments are
//! mapped straight into guest RAM ([`load`]): the guest runs on the page cache's copy,
//! shared by every VM and process using the same file, and pages it never touches cost
//! nothing.

use std::fs::File;
use std::io;
use std::path::Path;

use vm_memory::{Bytes, GuestAddress};

use super::layout::{PAGE, align_down, align_up};
use super::loader::{Program, Segment};
use crate::vm::{self, Vm};

/// A file mapped read-only and private.
#[derive(Debug)]
pub struct Image {
    file: File,
    /// Null for an empty file (mmap refuses zero lengths).
    map: *const u8,
    len: usize,
}

impl Image {
    pub fn open(path: &Path) -> io::Result<Image> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        if len == 0 {
            return Ok(Image {
                file,
                map: std::ptr::null(),
                len,
            });
        }
        // SAFETY: a fresh read-only private mapping of a file we hold open; it aliases no
        // Rust object.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Image {
            file,
            map: map.cast(),
            len,
        })
    }

    /// The file's bytes. As for `execve`, the file must not be truncated or rewritten
    /// while it runs: a rewrite shows through unmodified private pages, and a page past a
    /// truncated end raises SIGBUS.
    pub fn bytes(&self) -> &[u8] {
        if self.map.is_null() {
            return &[];
        }
        // SAFETY: `map` is a live read-only mapping of `len` bytes, unmapped only in Drop,
        // which cannot run while this borrow of `self` lives.
        unsafe { std::slice::from_raw_parts(self.map, self.len) }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if !self.map.is_null() {
            // SAFETY: `map`/`len` are exactly the mapping made in `open`, and no borrow of
            // it (`bytes`) can outlive `self`.
            unsafe { libc::munmap(self.map.cast_mut().cast(), self.len) };
        }
    }
}

/// Puts every segment of `program` into guest RAM. Of a read-only segment, the pages its
/// file bytes fill completely are mapped from the file (private, so a guest write never
/// reaches it) and only the partial pages at either end are copied. A writable segment is
/// copied whole: the program writes most of its pages at start-up (relocations, .data), and
/// a copy made here costs less than a copy-on-write fault taken through KVM (measured:
/// ~80 µs less to the first exit for the workload's ~40 KiB of data). The rest of each
/// segment (bss) is left as the guest RAM's zero pages.
pub fn load(vm: &mut Vm, program: &Program, image: &Image) -> Result<(), LoadError> {
    let bytes = image.bytes();
    for segment in &program.segments {
        let Segment {
            vaddr,
            offset,
            filesz,
            ..
        } = *segment;
        let end = vaddr + filesz;
        let (first, last) = (align_up(vaddr, PAGE), align_down(end, PAGE));
        // ELF requires vaddr ≡ offset (mod p_align); a file breaking that is copied whole.
        let mappable = !segment.writable && vaddr % PAGE == offset % PAGE && first < last;
        let copies: &[(u64, u64)] = if mappable {
            vm.map_file(&image.file, offset + (first - vaddr), first, last - first)?;
            &[(vaddr, first), (last, end)]
        } else {
            &[(vaddr, end)]
        };
        for &(from, to) in copies {
            let at = (offset + (from - vaddr)) as usize;
            let len = (to - from) as usize;
            vm.memory()
                .write_slice(&bytes[at..at + len], GuestAddress(from))?;
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Map(#[from] vm::Error),
    #[error("copying a segment's partial pages into guest memory")]
    Copy(#[from] vm_memory::GuestMemoryError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_a_file_and_an_empty_one() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&[7u8; 5000]).unwrap();
        let image = Image::open(file.path()).unwrap();
        assert_eq!(image.bytes().len(), 5000);
        assert!(image.bytes().iter().all(|&b| b == 7));
        let empty = tempfile::NamedTempFile::new().unwrap();
        assert!(Image::open(empty.path()).unwrap().bytes().is_empty());
        assert!(Image::open(Path::new("/nonexistent")).is_err());
    }
}
