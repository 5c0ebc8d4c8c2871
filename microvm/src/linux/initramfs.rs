//! The guest's initramfs: a newc archive whose `/init` is the very `isolab-workload`
//! binary, plus `/dev/console` so the kernel can give init its stdin/stdout/stderr. Built
//! once per workload binary and kept in the cache under the hash of its content, so a
//! rebuilt workload gets a new archive and an unchanged one is reused.

use std::fs::{self, File};
use std::io::{BufWriter, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::cpio::{CpioError, CpioWriter};

/// Part of every archive's cache key: bump it when the way entries are written changes.
const FORMAT: &[u8] = b"isolab-initramfs-2";
/// How long ago a file must have changed for its identity to stand for its content.
const RACY: Duration = Duration::from_secs(2);
/// The virtio modules a disk boot loads, in load order (Debian's cloud kernel builds them
/// as modules), each after what it depends on: the rings, the core, the MMIO transport,
/// the block driver.
pub const DISK_MODULES: [&str; 4] = ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk"];
/// The static busybox a disk boot's init runs on (Debian's busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";

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

/// One entry of an archive.
enum Entry<'a> {
    Dir(&'a str),
    /// `dev/console`, which the kernel opens for init before it runs.
    Console,
    /// A file copied from the host.
    File(&'a str, u32, PathBuf),
    Text(&'a str, u32, String),
}

fn workload_entries(workload: &Path) -> [Entry<'static>; 3] {
    [
        Entry::Dir("dev"),
        Entry::Console,
        Entry::File("init", 0o755, workload.to_owned()),
    ]
}

/// The cached initramfs for `workload`: `/init` is the workload itself.
pub fn ensure(cache: &Path, workload: &Path) -> Result<PathBuf, InitramfsError> {
    ensure_archive(cache, &workload_entries(workload), SystemTime::now())
}

/// The cached initramfs for a boot from `--disk`: busybox, the virtio modules from
/// `modules` ([`DISK_MODULES`], each `NAME.ko`; `None` for a kernel that has the drivers
/// built in) and an init script ([`disk_init`]) that loads them, mounts the disk read-only
/// and hands over to the disk's `/init`.
pub fn ensure_disk_boot(cache: &Path, modules: Option<&Path>) -> Result<PathBuf, InitramfsError> {
    let mut entries = vec![
        Entry::Dir("dev"),
        Entry::Console,
        Entry::Dir("bin"),
        Entry::File("bin/busybox", 0o755, PathBuf::from(BUSYBOX)),
        Entry::Dir("root"),
    ];
    let names: Vec<String> = DISK_MODULES
        .iter()
        .map(|m| format!("lib/modules/{m}.ko"))
        .collect();
    if let Some(modules) = modules {
        entries.extend([Entry::Dir("lib"), Entry::Dir("lib/modules")]);
        for (name, module) in names.iter().zip(DISK_MODULES) {
            entries.push(Entry::File(
                name,
                0o644,
                modules.join(format!("{module}.ko")),
            ));
        }
    }
    entries.push(Entry::Text("init", 0o755, disk_init(modules.is_some())));
    ensure_archive(cache, &entries, SystemTime::now())
}

/// Whether the kernel configuration at `config` (a `.config`) builds in everything a disk
/// boot needs: the virtio-mmio transport, the block driver and ext4.
pub fn disk_drivers_built_in(config: &Path) -> bool {
    let Ok(text) = fs::read_to_string(config) else {
        return false;
    };
    [
        "CONFIG_VIRTIO_MMIO=y",
        "CONFIG_VIRTIO_BLK=y",
        "CONFIG_EXT4_FS=y",
    ]
    .iter()
    .all(|wanted| text.lines().any(|line| line.trim() == *wanted))
}

/// Init of a disk boot (busybox sh, PID 1). Its arguments (the workload's, from the
/// command line after `--`) pass on to the disk's `/init`; a step that fails says which
/// on the console and ends init with status 1. `load_modules`: the drivers are modules in
/// the initramfs rather than built into the kernel.
pub fn disk_init(load_modules: bool) -> String {
    let insmods: String = DISK_MODULES
        .iter()
        .filter(|_| load_modules)
        .map(|m| format!("step insmod /lib/modules/{m}.ko\n"))
        .collect();
    format!(
        r#"#!/bin/busybox sh
# isolab disk boot (isolab_microvm::linux::initramfs::disk_init)
export PATH=/bin
/bin/busybox --install -s /bin
step() {{ "$@" || {{ echo "isolab disk boot: '$*' failed"; exit 1; }}; }}
step mount -t devtmpfs devtmpfs /dev
{insmods}# The driver probes the device as it loads (a built-in one during boot); the node
# follows at once.
tries=0
while [ ! -b /dev/vda ]; do
	tries=$((tries + 1))
	[ $tries -le 500 ] || step test -b /dev/vda
	usleep 10000
done
step mount -t ext4 -o ro /dev/vda /root
umount /dev
exec switch_root /root /init "$@"
"#
    )
}

/// Writes (once) the archive of `entries`, named after the hash of their names, modes
/// and contents. Hashing the workload is most of a cached run's set-up where the CPU is
/// emulated (27–39 ms in the test sandbox), so each archive is also found through a link
/// named after its inputs' identities: path, inode, size, and modification and change
/// times to the nanosecond (what git's index and ccache's direct mode trust). A file
/// rewritten in place gets a new change time, which no caller can set back. As in git,
/// a file changed within the last [`RACY`] is not trusted by identity: timestamps come
/// from a coarse clock, so a second same-size write in the same tick would look unchanged.
fn ensure_archive(
    cache: &Path,
    entries: &[Entry],
    now: SystemTime,
) -> Result<PathBuf, InitramfsError> {
    let Some(identity) = identity_key(entries, now)? else {
        return ensure_archive_by_content(cache, entries);
    };
    let by_identity = cache.join(format!("initramfs-id-{identity}"));
    if let Ok(name) = fs::read_link(&by_identity) {
        let archive = cache.join(name);
        if archive.is_file() {
            return Ok(archive);
        }
    }
    let archive = ensure_archive_by_content(cache, entries)?;
    link_atomically(&archive, &by_identity)?;
    Ok(archive)
}

/// The hash of the entries with files by identity rather than content; `None` when a file
/// changed too recently for its identity to be trusted.
fn identity_key(entries: &[Entry], now: SystemTime) -> Result<Option<String>, InitramfsError> {
    let mut racy = false;
    let key = entries_key(entries, |hash, path| {
        let meta = fs::metadata(path).map_err(io_err(path))?;
        let changed = UNIX_EPOCH + Duration::new(meta.ctime() as u64, meta.ctime_nsec() as u32);
        racy |= now.duration_since(changed).map_or(true, |age| age < RACY);
        hash.update(format!(
            "{} {} {} {} {}.{} {}.{}\n",
            path.display(),
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        ));
        Ok(())
    })?;
    Ok((!racy).then_some(key))
}

/// The hash of the entries' names and modes, each file given to `file` to add.
fn entries_key(
    entries: &[Entry],
    mut file: impl FnMut(&mut Sha256, &Path) -> Result<(), InitramfsError>,
) -> Result<String, InitramfsError> {
    let mut hash = Sha256::new();
    hash.update(FORMAT);
    for entry in entries {
        match entry {
            Entry::Dir(name) => hash.update(format!("d {name}\n")),
            Entry::Console => hash.update("console\n"),
            Entry::File(name, perm, path) => {
                hash.update(format!("f {name} {perm:o}\n"));
                file(&mut hash, path)?;
            }
            Entry::Text(name, perm, text) => {
                hash.update(format!("f {name} {perm:o} {}\n", text.len()));
                hash.update(text);
            }
        }
    }
    Ok(hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Points `link` at `archive`'s file name, replacing any older link in one rename.
fn link_atomically(archive: &Path, link: &Path) -> Result<(), InitramfsError> {
    let dir = link.parent().expect("links live in the cache directory");
    let name = archive.file_name().expect("archives have file names");
    let tmp = dir.join(format!(
        ".{}.{}",
        link.file_name()
            .expect("links have file names")
            .to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp).map_err(io_err(&tmp))?;
    fs::rename(&tmp, link).map_err(io_err(link))
}

/// Writes (once) the archive of `entries`, named after the hash of their names, modes
/// and contents.
fn ensure_archive_by_content(cache: &Path, entries: &[Entry]) -> Result<PathBuf, InitramfsError> {
    let key = entries_key(entries, hash_file)?;
    let path = cache.join(format!("initramfs-{key}.cpio"));
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(cache).map_err(io_err(cache))?;
    // Written under a private name and renamed, so a concurrent run never reads half.
    let tmp = tempfile::NamedTempFile::new_in(cache).map_err(io_err(cache))?;
    let mut writer = CpioWriter::new(BufWriter::new(tmp.as_file()));
    for entry in entries {
        match entry {
            Entry::Dir(name) => writer.dir(name, 0o755)?,
            Entry::Console => writer.char_device("dev/console", 0o600, 5, 1)?,
            Entry::File(name, perm, path) => writer.file_from(name, *perm, path)?,
            Entry::Text(name, perm, text) => writer.file(name, *perm, text.as_bytes())?,
        }
    }
    writer.finish()?;
    tmp.persist(&path).map_err(|e| InitramfsError::Io {
        path: path.clone(),
        source: e.error,
    })?;
    Ok(path)
}

fn hash_file(hash: &mut Sha256, path: &Path) -> Result<(), InitramfsError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf).map_err(io_err(path))? {
            0 => return Ok(()),
            n => hash.update(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_boot_loads_the_modules_in_order_and_hands_over_to_the_disks_init() {
        let init = disk_init(true);
        let insmods: Vec<&str> = init.lines().filter(|l| l.contains("insmod")).collect();
        assert_eq!(insmods.len(), 4);
        assert!(insmods[0].ends_with("/virtio_ring.ko") && insmods[3].ends_with("/virtio_blk.ko"));
        let mount = init.find("mount -t ext4 -o ro /dev/vda /root").unwrap();
        assert!(init.find("virtio_blk.ko").unwrap() < mount);
        assert!(
            init.trim_end()
                .ends_with(r#"exec switch_root /root /init "$@""#)
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = ensure_disk_boot(&dir.path().join("cache"), Some(dir.path())).unwrap_err();
        assert!(missing.to_string().contains("virtio_ring.ko"), "{missing}");
    }

    #[test]
    fn a_kernel_with_the_drivers_built_in_boots_a_disk_without_modules() {
        let init = disk_init(false);
        assert!(!init.contains("insmod"), "{init}");
        assert!(init.contains("mount -t ext4 -o ro /dev/vda /root"));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        assert!(!disk_drivers_built_in(&config), "no file, no drivers");
        fs::write(
            &config,
            "CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_BLK=m\nCONFIG_EXT4_FS=y\n",
        )
        .unwrap();
        assert!(!disk_drivers_built_in(&config), "virtio-blk is a module");
        fs::write(
            &config,
            "CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_BLK=y\n# CONFIG_X is not set\nCONFIG_EXT4_FS=y\n",
        )
        .unwrap();
        assert!(disk_drivers_built_in(&config));
    }

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

    fn identity_links(cache: &Path) -> Vec<PathBuf> {
        fs::read_dir(cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("initramfs-id-")
            })
            .collect()
    }

    #[test]
    fn a_file_is_found_by_identity_once_it_is_old_enough() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("workload");
        let cache = dir.path().join("cache");
        fs::write(&bin, b"\x7fELF first").unwrap();
        let entries = workload_entries(&bin);
        let now = SystemTime::now();
        let fresh = ensure_archive(&cache, &entries, now).unwrap();
        assert!(
            identity_links(&cache).is_empty(),
            "a file changed just now is hashed"
        );
        let later = now + RACY * 5;
        assert_eq!(ensure_archive(&cache, &entries, later).unwrap(), fresh);
        let links = identity_links(&cache);
        assert_eq!(links.len(), 1);
        assert_eq!(cache.join(fs::read_link(&links[0]).unwrap()), fresh);
        // The same size, most likely within the same clock tick: only the content tells.
        fs::write(&bin, b"\x7fELF First").unwrap();
        assert_ne!(
            ensure_archive(&cache, &entries, SystemTime::now()).unwrap(),
            fresh
        );
    }
}
