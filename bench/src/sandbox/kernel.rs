//! The sandbox's kernel: Debian's cloud kernel, downloaded with `apt-get download` and
//! unpacked with `dpkg-deb -x` into the cache — never installed on the host.
//!
//! Only `vmlinuz` and the modules init loads (KVM for AMD, with `nested=1`, and whatever
//! those depend on, read from each module's `.modinfo`) are kept, decompressed, so the
//! guest needs neither `depmod` nor a decompressor. The kernel is pinned once fetched: the
//! cache's `kernel` file names the package, and a later preparation reuses it without
//! asking apt; remove that file (or the cache) to move to Debian's newest cloud kernel.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use goblin::elf::Elf;
use isolab_microvm::kernel::download_and_unpack;

/// The modules init loads, with their parameters: KVM, as on a standard AMD host —
/// `nested=1` lets the sandbox's own KVM run guests that use SVM themselves, and makes the
/// setting explicit rather than a default that differs between kernel versions — and
/// overlayfs, which container runtimes (and `isolab doctor`'s basic path) expect.
pub const WANTED: &[(&str, &str)] = &[("kvm_amd", "nested=1"), ("overlay", "")];

/// The file, in the cache, naming the unpacked kernel package in use.
const PINNED: &str = "kernel";
/// In a kernel's directory: its modules in load order, one `name file params` a line.
const MANIFEST: &str = "modules.load";

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("running `{command}` (is this a Debian host with apt and dpkg?)")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("fetching the cloud kernel")]
    Fetch(#[from] isolab_microvm::kernel::KernelError),
    #[error("module {name} (needed for {wanted}) is not in {dir}")]
    NoModule {
        name: String,
        wanted: String,
        dir: PathBuf,
    },
    #[error("{path}: not a kernel module ({reason})")]
    BadModule { path: PathBuf, reason: String },
    #[error("{path}: malformed; remove {cache} to fetch the kernel again")]
    BadManifest { path: PathBuf, cache: PathBuf },
}

/// An unpacked kernel in the cache.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `<package>_<version>_<arch>`, as the `.deb` was named.
    pub package: String,
    pub vmlinuz: PathBuf,
    /// In load order: dependencies first.
    pub modules: Vec<Module>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The kernel's name for it (`kvm_amd`).
    pub name: String,
    /// The uncompressed `.ko`.
    pub path: PathBuf,
    /// Parameters for `insmod`, possibly empty.
    pub params: String,
}

/// Returns the pinned kernel, fetching and unpacking it first if the cache has none.
/// `busybox` decompresses `.ko.xz` modules; `log` hears about every step that does work.
pub fn ensure(
    cache: &Path,
    busybox: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<Kernel, KernelError> {
    let kernels = cache.join("kernels");
    let pinned = cache.join(PINNED);
    if let Ok(package) = fs::read_to_string(&pinned) {
        let dir = kernels.join(package.trim());
        if dir.join(MANIFEST).is_file() {
            let kernel = load(&dir, cache)?;
            // A kernel unpacked when fewer modules were wanted is unpacked again.
            if WANTED
                .iter()
                .all(|(name, _)| kernel.modules.iter().any(|m| m.name == *name))
            {
                return Ok(kernel);
            }
        }
    }
    mkdir(&kernels)?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(cache)
        .map_err(|source| io_err(cache, source))?;
    let unpacked = download_and_unpack(work.path(), log)?;
    let (package, tree) = (unpacked.package, unpacked.tree);
    let out = work.path().join("kernel");
    mkdir(&out)?;
    fs::copy(&unpacked.vmlinuz, out.join("vmlinuz"))
        .map_err(|source| io_err(&unpacked.vmlinuz, source))?;
    let modules = extract_modules(&tree, &out, busybox)?;
    let manifest: String = modules
        .iter()
        .map(|m| format!("{} {}.ko {}\n", m.name, m.name, m.params))
        .collect();
    write(&out.join(MANIFEST), manifest.as_bytes())?;
    let dir = kernels.join(&package);
    // Replaces an older unpacking (fewer modules); if another process unpacked the same
    // package meanwhile, its copy is as good as this one.
    if dir.exists() {
        let stale = work.path().join("stale");
        let _ = fs::rename(&dir, &stale);
    }
    if let Err(source) = fs::rename(&out, &dir) {
        if !dir.join(MANIFEST).is_file() {
            return Err(io_err(&dir, source));
        }
    }
    let pin_tmp = work.path().join(PINNED);
    write(&pin_tmp, package.as_bytes())?;
    fs::rename(&pin_tmp, &pinned).map_err(|source| io_err(&pinned, source))?;
    log(&format!(
        "kept vmlinuz and {} module(s) in {}",
        modules.len(),
        dir.display()
    ));
    load(&dir, cache)
}

fn load(dir: &Path, cache: &Path) -> Result<Kernel, KernelError> {
    let manifest_path = dir.join(MANIFEST);
    let bad = || KernelError::BadManifest {
        path: manifest_path.clone(),
        cache: cache.to_owned(),
    };
    let text =
        fs::read_to_string(&manifest_path).map_err(|source| io_err(&manifest_path, source))?;
    let modules = text
        .lines()
        .map(|line| {
            let mut words = line.splitn(3, ' ');
            let (name, file) = (words.next().ok_or_else(bad)?, words.next().ok_or_else(bad)?);
            Ok(Module {
                name: name.to_owned(),
                path: dir.join(file),
                params: words.next().unwrap_or("").trim().to_owned(),
            })
        })
        .collect::<Result<Vec<_>, KernelError>>()?;
    Ok(Kernel {
        package: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(bad)?,
        vmlinuz: dir.join("vmlinuz"),
        modules,
    })
}

/// Copies the wanted modules and their dependencies, uncompressed, into `out`; returns
/// them in load order.
fn extract_modules(tree: &Path, out: &Path, busybox: &Path) -> Result<Vec<Module>, KernelError> {
    let root = tree.join("lib/modules");
    let mut files = Vec::new();
    walk(&root, &mut files)?;
    let by_name: HashMap<String, PathBuf> = files
        .into_iter()
        .filter_map(|path| Some((module_name(&path)?, path)))
        .collect();
    let mut order = Vec::new();
    for (wanted, params) in WANTED {
        let mut deps = HashMap::new();
        let mut pending = vec![wanted.to_string()];
        while let Some(name) = pending.pop() {
            if deps.contains_key(&name) {
                continue;
            }
            let source = by_name.get(&name).ok_or_else(|| KernelError::NoModule {
                name: name.clone(),
                wanted: wanted.to_string(),
                dir: root.clone(),
            })?;
            let bytes = uncompressed(source, busybox)?;
            let needs = depends(&bytes).map_err(|reason| KernelError::BadModule {
                path: source.clone(),
                reason,
            })?;
            write(&out.join(format!("{name}.ko")), &bytes)?;
            pending.extend(needs.iter().cloned());
            deps.insert(name, needs);
        }
        for name in load_order(wanted, &deps) {
            if !order.iter().any(|m: &Module| m.name == name) {
                let params = if name == *wanted { *params } else { "" };
                order.push(Module {
                    path: out.join(format!("{name}.ko")),
                    name,
                    params: params.to_owned(),
                });
            }
        }
    }
    Ok(order)
}

/// Dependencies before dependents (depth first; module dependencies have no cycles).
fn load_order(root: &str, deps: &HashMap<String, Vec<String>>) -> Vec<String> {
    fn visit(name: &str, deps: &HashMap<String, Vec<String>>, order: &mut Vec<String>) {
        if order.iter().any(|n| n == name) {
            return;
        }
        for dep in deps.get(name).into_iter().flatten() {
            visit(dep, deps, order);
        }
        order.push(name.to_owned());
    }
    let mut order = Vec::new();
    visit(root, deps, &mut order);
    order
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), KernelError> {
    for entry in fs::read_dir(dir).map_err(|source| io_err(dir, source))? {
        let entry = entry.map_err(|source| io_err(dir, source))?;
        let kind = entry
            .file_type()
            .map_err(|source| io_err(&entry.path(), source))?;
        if kind.is_dir() {
            walk(&entry.path(), files)?;
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// `…/kvm-amd.ko` and `…/kvm-amd.ko.xz` are module `kvm_amd`, as the kernel names it.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))?;
    Some(stem.replace('-', "_"))
}

fn uncompressed(path: &Path, busybox: &Path) -> Result<Vec<u8>, KernelError> {
    if path.extension().is_some_and(|e| e == "xz") {
        let mut command = Command::new(busybox);
        command.args(["xz", "-dc"]).arg(path);
        return run(&mut command);
    }
    fs::read(path).map_err(|source| io_err(path, source))
}

/// The `depends=` entry of the module's `.modinfo` section: NUL-separated `key=value`s.
fn depends(module: &[u8]) -> Result<Vec<String>, String> {
    let elf = Elf::parse(module).map_err(|e| e.to_string())?;
    let section = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".modinfo"))
        .ok_or("no .modinfo section")?;
    let range = section.file_range().ok_or(".modinfo has no contents")?;
    let info = module.get(range).ok_or(".modinfo lies outside the file")?;
    Ok(info
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| list.split(|&b| b == b','))
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect())
}

fn run(command: &mut Command) -> Result<Vec<u8>, KernelError> {
    let output = command.output().map_err(|source| KernelError::Spawn {
        command: format!("{command:?}"),
        source,
    })?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(KernelError::Failed {
            command: format!("{command:?}"),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn mkdir(path: &Path) -> Result<(), KernelError> {
    fs::create_dir_all(path).map_err(|source| io_err(path, source))
}

fn write(path: &Path, data: &[u8]) -> Result<(), KernelError> {
    fs::write(path, data).map_err(|source| io_err(path, source))
}

fn io_err(path: &Path, source: io::Error) -> KernelError {
    KernelError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_follow_the_kernel() {
        let name = |p: &str| module_name(Path::new(p));
        assert_eq!(name("a/kvm-amd.ko").as_deref(), Some("kvm_amd"));
        assert_eq!(name("a/irqbypass.ko.xz").as_deref(), Some("irqbypass"));
        assert_eq!(name("a/modules.order"), None);
    }

    #[test]
    fn dependencies_load_first() {
        let deps: HashMap<String, Vec<String>> = [
            ("kvm_amd", vec!["kvm", "ccp"]),
            ("kvm", vec!["irqbypass"]),
            ("ccp", vec!["irqbypass"]),
            ("irqbypass", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
        assert_eq!(
            load_order("kvm_amd", &deps),
            ["irqbypass", "kvm", "ccp", "kvm_amd"]
        );
    }

    #[test]
    fn a_manifest_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("linux-image-x_1_amd64");
        fs::create_dir(&kernel).unwrap();
        fs::write(
            kernel.join(MANIFEST),
            "irqbypass irqbypass.ko \nkvm_amd kvm_amd.ko nested=1\n",
        )
        .unwrap();
        let loaded = load(&kernel, dir.path()).unwrap();
        assert_eq!(loaded.package, "linux-image-x_1_amd64");
        assert_eq!(loaded.modules[0].params, "");
        assert_eq!(loaded.modules[1].params, "nested=1");
        assert_eq!(loaded.modules[1].path, kernel.join("kvm_amd.ko"));
        fs::write(kernel.join(MANIFEST), "lonely\n").unwrap();
        assert!(matches!(
            load(&kernel, dir.path()),
            Err(KernelError::BadManifest { .. })
        ));
    }
}
