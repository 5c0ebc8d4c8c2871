//! The in-memory file system behind `open`/`read`/`write` (the `io` workload). File data
//! lives in guest RAM, in chunks the kernel takes from the user arena, so it counts
//! against the VM's memory like a real tmpfs does; host files are never reachable.
//! This module keeps names, sizes and chunk lists; the syscall layer copies the bytes.

use std::collections::BTreeMap;

/// File data is stored in chunks of this many bytes of guest RAM.
pub const CHUNK: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("no such file")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("out of guest memory")]
    NoSpace,
}

#[derive(Debug, Default)]
struct Inode {
    size: u64,
    chunks: Vec<u64>,
    links: u32,
    opens: u32,
}

#[derive(Debug, Default)]
pub struct Tmpfs {
    names: BTreeMap<String, u64>,
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
}

impl Tmpfs {
    /// Opens (and counts an open reference to) `path`, creating or truncating it. Chunks
    /// freed by truncation are returned for the caller to release.
    pub fn open(
        &mut self,
        path: &str,
        create: bool,
        exclusive: bool,
        truncate: bool,
    ) -> Result<(u64, Vec<u64>), Error> {
        let ino = match self.names.get(path) {
            Some(_) if create && exclusive => return Err(Error::Exists),
            Some(&ino) => ino,
            None if create => {
                self.next_ino += 1;
                let ino = self.next_ino;
                self.inodes.insert(
                    ino,
                    Inode {
                        links: 1,
                        ..Inode::default()
                    },
                );
                self.names.insert(path.to_owned(), ino);
                ino
            }
            None => return Err(Error::NotFound),
        };
        let inode = self
            .inodes
            .get_mut(&ino)
            .expect("names point at live inodes");
        inode.opens += 1;
        let freed = if truncate {
            inode.size = 0;
            std::mem::take(&mut inode.chunks)
        } else {
            Vec::new()
        };
        Ok((ino, freed))
    }

    /// Another open reference to an existing inode (dup).
    pub fn reopen(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.opens += 1;
        }
    }

    /// Drops an open reference; returns the chunks to release if that was the last trace.
    pub fn close(&mut self, ino: u64) -> Vec<u64> {
        let Some(inode) = self.inodes.get_mut(&ino) else {
            return Vec::new();
        };
        inode.opens = inode.opens.saturating_sub(1);
        self.reap(ino)
    }

    /// Removes a name; the data goes when the last open reference is closed, as on Linux.
    pub fn unlink(&mut self, path: &str) -> Result<Vec<u64>, Error> {
        let ino = self.names.remove(path).ok_or(Error::NotFound)?;
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.links -= 1;
        }
        Ok(self.reap(ino))
    }

    fn reap(&mut self, ino: u64) -> Vec<u64> {
        match self.inodes.get(&ino) {
            Some(inode) if inode.links == 0 && inode.opens == 0 => self
                .inodes
                .remove(&ino)
                .map(|i| i.chunks)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    pub fn lookup(&self, path: &str) -> Option<u64> {
        self.names.get(path).copied()
    }

    pub fn size(&self, ino: u64) -> u64 {
        self.inodes.get(&ino).map_or(0, |i| i.size)
    }

    /// Makes the file at least `end` bytes long, taking zeroed chunks from `alloc`.
    pub fn grow(
        &mut self,
        ino: u64,
        end: u64,
        mut alloc: impl FnMut() -> Option<u64>,
    ) -> Result<(), Error> {
        let inode = self.inodes.get_mut(&ino).ok_or(Error::NotFound)?;
        while (inode.chunks.len() as u64) * CHUNK < end {
            inode.chunks.push(alloc().ok_or(Error::NoSpace)?);
        }
        inode.size = inode.size.max(end);
        Ok(())
    }

    /// The guest ranges holding file bytes `[offset, offset + len)`, clipped to the size.
    pub fn extents(&self, ino: u64, offset: u64, len: u64) -> Vec<(u64, u64)> {
        let Some(inode) = self.inodes.get(&ino) else {
            return Vec::new();
        };
        let end = inode.size.min(offset.saturating_add(len));
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let within = pos % CHUNK;
            let take = (CHUNK - within).min(end - pos);
            out.push((inode.chunks[(pos / CHUNK) as usize] + within, take));
            pos += take;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator() -> impl FnMut() -> Option<u64> {
        let mut next = 0x100_0000;
        move || {
            next += CHUNK;
            Some(next)
        }
    }

    #[test]
    fn create_write_extents_and_reopen() {
        let mut fs = Tmpfs::default();
        assert_eq!(fs.open("/a", false, false, false), Err(Error::NotFound));
        let (ino, freed) = fs.open("/a", true, false, false).unwrap();
        assert!(freed.is_empty());
        fs.grow(ino, CHUNK + 10, allocator()).unwrap();
        assert_eq!(fs.size(ino), CHUNK + 10);
        let ext = fs.extents(ino, CHUNK - 6, 100);
        assert_eq!(ext.len(), 2);
        assert_eq!((ext[0].1, ext[1].1), (6, 10));
        assert_eq!(fs.open("/a", true, true, false), Err(Error::Exists));
        let (again, freed) = fs.open("/a", true, false, true).unwrap();
        assert_eq!(again, ino);
        assert_eq!(freed.len(), 2);
        assert_eq!(fs.size(ino), 0);
        assert!(fs.extents(ino, 0, 10).is_empty());
    }

    #[test]
    fn unlinked_files_live_until_closed() {
        let mut fs = Tmpfs::default();
        let (ino, _) = fs.open("/f", true, false, false).unwrap();
        fs.grow(ino, 5, allocator()).unwrap();
        assert!(fs.unlink("/f").unwrap().is_empty(), "still open");
        assert_eq!(fs.lookup("/f"), None);
        assert_eq!(fs.extents(ino, 0, 5).len(), 1);
        assert_eq!(fs.close(ino).len(), 1, "last close frees the data");
        assert_eq!(fs.unlink("/f"), Err(Error::NotFound));
    }

    #[test]
    fn out_of_memory_is_reported() {
        let mut fs = Tmpfs::default();
        let (ino, _) = fs.open("/f", true, false, false).unwrap();
        assert_eq!(fs.grow(ino, 1, || None), Err(Error::NoSpace));
    }
}
