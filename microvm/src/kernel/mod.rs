//! `isolab kernel fetch`: Debian's cloud kernel for Linux guests, fetched once with
//! `apt-get download` (never installed on the host), unpacked with `dpkg-deb -x`, and kept
//! as `<cache>/<package>/vmlinuz` with its version and SHA-256 beside it, and the ELF
//! `vmlinux` decompressed from it ([`vmlinux`]), which boots faster. `current` names
//! the package in use, so later runs (and `isolab vm run` without `--kernel`) work offline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub mod build;
pub mod vmlinux;

/// The metapackage that depends on Debian's current cloud kernel.
pub const METAPACKAGE: &str = "linux-image-cloud-amd64";
pub const DEFAULT_CACHE: &str = "/var/cache/isolab/kernels";
const CURRENT: &str = "current";
/// Beside a stored kernel: the modules a boot from `--disk` loads
/// ([`crate::linux::initramfs::DISK_MODULES`]), as `NAME.ko`.
pub const MODULES: &str = "modules";

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("running `{command}` (is this a Debian host with apt and dpkg?)")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error(
        "apt knows no kernel package that {METAPACKAGE} depends on, even after `apt-get update`"
    )]
    NoPackage,
    #[error("{0}: no boot/vmlinuz-* inside")]
    NoVmlinuz(PathBuf),
    #[error("module {0} is not in the kernel package")]
    NoModule(String),
    #[error("no kernel fetched yet: run `isolab kernel fetch` (or pass --kernel)")]
    NotFetched,
    #[error("decompressing {path} into an ELF vmlinux")]
    Vmlinux {
        path: PathBuf,
        #[source]
        source: vmlinux::VmlinuxError,
    },
}

/// A kernel in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `<package>_<version>_<arch>`, as the `.deb` was named.
    pub package: String,
    pub vmlinuz: PathBuf,
    /// The ELF kernel inside `vmlinuz`, what `isolab vm run` boots by default.
    pub vmlinux: PathBuf,
    pub sha256: String,
}

/// `$ISOLAB_KERNEL_CACHE`, else [`DEFAULT_CACHE`].
pub fn default_cache() -> PathBuf {
    std::env::var_os("ISOLAB_KERNEL_CACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CACHE), PathBuf::from)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KernelError + '_ {
    move |source| KernelError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The kernel `current` names, without touching the network.
pub fn stored(cache: &Path) -> Result<Stored, KernelError> {
    let package = fs::read_to_string(cache.join(CURRENT)).map_err(|_| KernelError::NotFetched)?;
    let dir = cache.join(package.trim());
    let sha_path = dir.join("sha256");
    let sha256 = fs::read_to_string(&sha_path).map_err(io_err(&sha_path))?;
    let vmlinuz = dir.join("vmlinuz");
    let vmlinux = dir.join("vmlinux");
    if !vmlinuz.is_file() || !vmlinux.is_file() {
        return Err(KernelError::NotFetched);
    }
    Ok(Stored {
        package: package.trim().to_owned(),
        vmlinuz,
        vmlinux,
        sha256: sha256.trim().to_owned(),
    })
}

/// Writes the ELF vmlinux of the bzImage `vmlinuz` to `out`.
pub fn write_vmlinux(vmlinuz: &Path, out: &Path) -> Result<(), KernelError> {
    let bytes = fs::read(vmlinuz).map_err(io_err(vmlinuz))?;
    let elf = vmlinux::extract(&bytes).map_err(|source| KernelError::Vmlinux {
        path: vmlinuz.to_owned(),
        source,
    })?;
    fs::write(out, elf).map_err(io_err(out))
}

/// The stored kernel, fetched first if there is none; `log` hears about each step.
pub fn fetch(cache: &Path, log: &mut dyn FnMut(&str)) -> Result<Stored, KernelError> {
    // A kernel stored before its vmlinux or modules were kept beside it is fetched again.
    if let Ok(kernel) = stored(cache)
        && kernel.vmlinux.with_file_name(MODULES).is_dir()
    {
        return Ok(kernel);
    }
    fs::create_dir_all(cache).map_err(io_err(cache))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(cache)
        .map_err(io_err(cache))?;
    let unpacked = download_and_unpack(work.path(), log)?;
    let (name, vmlinuz, unpacked_tree) = (unpacked.package, unpacked.vmlinuz, unpacked.tree);
    let out = work.path().join("out");
    fs::create_dir_all(&out).map_err(io_err(&out))?;
    let bytes = fs::read(&vmlinuz).map_err(io_err(&vmlinuz))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    fs::write(out.join("vmlinuz"), &bytes).map_err(io_err(&out))?;
    fs::write(out.join("sha256"), format!("{sha256}\n")).map_err(io_err(&out))?;
    log("decompressing vmlinuz into vmlinux");
    write_vmlinux(&out.join("vmlinuz"), &out.join("vmlinux"))?;
    keep_modules(&unpacked_tree, &out.join(MODULES))?;
    let dir = cache.join(&name);
    if !dir.join("vmlinuz").is_file() {
        fs::rename(&out, &dir).map_err(io_err(&dir))?;
    } else {
        for part in ["vmlinux", MODULES] {
            if !dir.join(part).exists() {
                fs::rename(out.join(part), dir.join(part)).map_err(io_err(&dir))?;
            }
        }
    }
    let current = work.path().join(CURRENT);
    fs::write(&current, &name).map_err(io_err(&current))?;
    fs::rename(&current, cache.join(CURRENT)).map_err(io_err(cache))?;
    log(&format!(
        "stored {} ({sha256})",
        dir.join("vmlinuz").display()
    ));
    stored(cache)
}

/// A kernel package downloaded and unpacked into a work directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `<package>_<version>_<arch>`, as the `.deb` was named.
    pub package: String,
    /// The root of the unpacked package (`boot/`, `lib/modules/`, ...).
    pub tree: PathBuf,
    pub vmlinuz: PathBuf,
}

/// Resolves the cloud-kernel metapackage to the real kernel package, downloads its `.deb`
/// into `work` (running `apt-get update` once if apt's lists do not know it yet) and
/// unpacks it there with dpkg-deb. The package is never installed on the host.
pub fn download_and_unpack(
    work: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<Unpacked, KernelError> {
    let package = match kernel_package()? {
        Some(p) => p,
        None => {
            log("apt-get update (apt's lists do not know the cloud kernel yet)");
            run(Command::new("apt-get").args(["update", "-q"]))?;
            kernel_package()?.ok_or(KernelError::NoPackage)?
        }
    };
    log(&format!("apt-get download {package} (for {METAPACKAGE})"));
    run(Command::new("apt-get")
        .args(["download", "-q", &package])
        .current_dir(work))?;
    let deb = fs::read_dir(work)
        .map_err(io_err(work))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| KernelError::NoVmlinuz(work.join(&package)))?;
    let name = deb
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| KernelError::NoVmlinuz(deb.clone()))?;
    log(&format!("dpkg-deb -x {}", deb.display()));
    let tree = work.join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let vmlinuz = fs::read_dir(tree.join("boot"))
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| KernelError::NoVmlinuz(deb.clone()))?;
    Ok(Unpacked {
        package: name,
        tree,
        vmlinuz,
    })
}

/// Copies the `--disk` boot's modules out of an unpacked package's `lib/modules` into `to`.
fn keep_modules(tree: &Path, to: &Path) -> Result<(), KernelError> {
    fs::create_dir_all(to).map_err(io_err(to))?;
    for module in crate::linux::initramfs::DISK_MODULES {
        let file = format!("{module}.ko");
        let found = find_file(&tree.join("lib/modules"), &file)
            .ok_or_else(|| KernelError::NoModule(file.clone()))?;
        fs::copy(&found, to.join(&file)).map_err(io_err(&found))?;
    }
    Ok(())
}

/// The first file called `name` under `dir`, depth first.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries.iter().find_map(|path| {
        if path.is_dir() {
            find_file(path, name)
        } else {
            (path.file_name()? == name).then(|| path.clone())
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kernel_package() -> Result<Option<String>, KernelError> {
    let mut command = Command::new("apt-cache");
    command.args(["depends", METAPACKAGE]);
    let output = command.output().map_err(|source| KernelError::Spawn {
        command: format!("{command:?}"),
        source,
    })?;
    Ok(parse_depends(&String::from_utf8_lossy(&output.stdout)))
}

/// The real kernel package among `apt-cache depends` lines.
fn parse_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && !p.starts_with('<'))
        .map(str::to_owned)
}

fn run(command: &mut Command) -> Result<(), KernelError> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|source| KernelError::Spawn {
        command: shown.clone(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(KernelError::Failed {
        command: shown,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_package_is_the_metapackages_dependency() {
        let text = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n  Depends: <linux-image-virtual>\n";
        assert_eq!(
            parse_depends(text).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(parse_depends("nothing"), None);
    }

    #[test]
    fn modules_are_found_anywhere_below_lib_modules() {
        let tree = tempfile::tempdir().unwrap();
        let base = tree.path().join("lib/modules/6.1.0-x/kernel/drivers");
        for (dir, module) in [
            ("virtio", "virtio"),
            ("virtio", "virtio_ring"),
            ("virtio", "virtio_mmio"),
            ("block", "virtio_blk"),
        ] {
            fs::create_dir_all(base.join(dir)).unwrap();
            fs::write(base.join(dir).join(format!("{module}.ko")), module).unwrap();
        }
        let out = tree.path().join("out");
        keep_modules(tree.path(), &out).unwrap();
        assert_eq!(fs::read(out.join("virtio_blk.ko")).unwrap(), b"virtio_blk");
        fs::remove_file(base.join("block/virtio_blk.ko")).unwrap();
        assert!(matches!(
            keep_modules(tree.path(), &out),
            Err(KernelError::NoModule(m)) if m == "virtio_blk.ko"
        ));
    }

    #[test]
    fn a_stored_kernel_is_found_offline() {
        let cache = tempfile::tempdir().unwrap();
        assert!(matches!(stored(cache.path()), Err(KernelError::NotFetched)));
        let dir = cache.path().join("linux-image-x_1_amd64");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vmlinuz"), b"k").unwrap();
        fs::write(dir.join("sha256"), "abc\n").unwrap();
        fs::write(cache.path().join(CURRENT), "linux-image-x_1_amd64").unwrap();
        assert!(
            matches!(stored(cache.path()), Err(KernelError::NotFetched)),
            "a cache without vmlinux is fetched again"
        );
        fs::write(dir.join("vmlinux"), b"\x7fELF").unwrap();
        fs::create_dir(dir.join(MODULES)).unwrap();
        fs::write(cache.path().join(CURRENT), "linux-image-x_1_amd64").unwrap();
        let kernel = fetch(cache.path(), &mut |_| panic!("no network when cached")).unwrap();
        assert_eq!(kernel.sha256, "abc");
        assert_eq!(kernel.vmlinuz, dir.join("vmlinuz"));
        assert_eq!(kernel.vmlinux, dir.join("vmlinux"));
    }
}
