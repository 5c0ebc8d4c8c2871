//! `isolab kernel build --minimal`: a small guest kernel built from Debian's
//! `linux-source` package with the checked-in fragment `microvm/kernel/minimal.config`
//! applied over `make tinyconfig`. Debian's cloud kernel spends seconds of an emulated boot
//! in initcalls a micro-VM guest never needs; this one has only the console, the
//! initramfs, virtio-mmio and what the workload's system calls need.
//!
//! The source is unpacked once into a build tree under [`DEFAULT_WORK`] (kept, so a
//! changed config rebuilds incrementally), and the ELF `vmlinux` is kept in the kernel
//! cache as `minimal-<source version>-<config sha>/vmlinux` with an [`INFO`] file recording
//! its size and build time. A cached kernel is returned without running anything, so the
//! build is repeated only when the fragment or the installed source changes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::hex;

/// The fragment, as checked in; built into isolab so the command works from anywhere.
pub const MINIMAL_CONFIG: &str = include_str!("../../kernel/minimal.config");
/// The metapackage that depends on Debian's current kernel source.
pub const SOURCE_PACKAGE: &str = "linux-source";
/// Where source trees are unpacked and built.
pub const DEFAULT_WORK: &str = "/var/tmp/isolab/kernel-build";
/// Beside a built vmlinux: `key=value` lines about its build.
pub const INFO: &str = "build-info";
/// The config sha's length in a cache directory's name.
const SHA_SHOWN: usize = 12;
/// Lines of a failed step's log quoted in its error.
const LOG_TAIL: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("running `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{SOURCE_PACKAGE} is not installed (or names no installed linux-source-X.Y): run `isolab setup --for kernel`"
    )]
    NoSource,
    #[error("{path}: missing; reinstall {package}")]
    NoTarball { package: String, path: PathBuf },
    #[error(
        "line {line} of the config fragment: `{text}` is neither CONFIG_X=value nor `# CONFIG_X is not set`"
    )]
    BadLine { line: usize, text: String },
    #[error("the config fragment sets {0} twice")]
    Duplicate(String),
    #[error(
        "make olddefconfig did not keep {}: a dependency is missing from the fragment",
        .0.join(", ")
    )]
    Unmet(Vec<String>),
    #[error("`{command}` failed ({status}); last lines of {}:\n{tail}", log.display())]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One option of a fragment: its name and the value it must have; `None` is
/// `# CONFIG_X is not set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    pub value: Option<String>,
}

/// Parses a Kconfig fragment: `CONFIG_X=value` and `# CONFIG_X is not set` lines; other
/// comments and blank lines are skipped, anything else is an error.
pub fn parse_fragment(text: &str) -> Result<Vec<Setting>, BuildError> {
    let mut settings: Vec<Setting> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let setting = if let Some(name) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            Some((name, None))
        } else if line.is_empty() || line.starts_with('#') {
            None
        } else {
            Some(
                line.split_once('=')
                    .map(|(name, value)| (name, Some(value.to_owned())))
                    .ok_or_else(|| BuildError::BadLine {
                        line: index + 1,
                        text: line.to_owned(),
                    })?,
            )
        };
        let Some((name, value)) = setting else {
            continue;
        };
        let valid = name.strip_prefix("CONFIG_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if !valid || value.as_deref().is_some_and(str::is_empty) {
            return Err(BuildError::BadLine {
                line: index + 1,
                text: line.to_owned(),
            });
        }
        if settings.iter().any(|s| s.name == name) {
            return Err(BuildError::Duplicate(name.to_owned()));
        }
        settings.push(Setting {
            name: name.to_owned(),
            value,
        });
    }
    Ok(settings)
}

/// The settings a resolved `.config` does not have as the fragment asks, each as the
/// fragment writes it. An unset option may be absent from `.config` altogether.
pub fn unmet(settings: &[Setting], config: &str) -> Result<Vec<String>, BuildError> {
    let resolved = parse_fragment(config)?;
    Ok(settings
        .iter()
        .filter(|want| {
            let have = resolved
                .iter()
                .find(|s| s.name == want.name)
                .and_then(|s| s.value.as_deref());
            have != want.value.as_deref()
        })
        .map(|s| match &s.value {
            Some(value) => format!("{}={value}", s.name),
            None => format!("{} unset", s.name),
        })
        .collect())
}

/// The cache directory's name: the source package's version and the fragment's SHA-256,
/// so either changing means a new build and nothing else does.
pub fn cache_key(source_version: &str, fragment: &str) -> String {
    let sha = hex(&Sha256::digest(fragment.as_bytes()));
    // Debian versions may hold `:` (an epoch), which is awkward in a path.
    let version = source_version.replace(':', "_");
    format!("minimal-{version}-{}", &sha[..SHA_SHOWN])
}

/// The installed kernel source: the package `linux-source` depends on and its tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// e.g. `linux-source-6.1`.
    pub package: String,
    /// e.g. `6.1.192-2`.
    pub version: String,
    pub tarball: PathBuf,
}

/// The package a `linux-source` `Depends:` field names, e.g. `linux-source-6.1`.
fn parse_source_depends(depends: &str) -> Option<&str> {
    depends
        .split([',', '|'])
        .map(|alt| alt.split_whitespace().next().unwrap_or(""))
        .find(|p| p.starts_with("linux-source-"))
}

fn dpkg_field(format: &str, package: &str) -> Result<Option<String>, BuildError> {
    let mut command = Command::new("dpkg-query");
    command.args(["-W", &format!("-f={format}"), package]);
    let output = command.output().map_err(|source| BuildError::Spawn {
        command: format!("{command:?}"),
        source,
    })?;
    Ok(output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned()))
}

/// The installed source, found through dpkg.
pub fn installed_source() -> Result<Source, BuildError> {
    let installed = |package: &str| -> Result<bool, BuildError> {
        Ok(dpkg_field("${db:Status-Status}", package)?.as_deref() == Some("installed"))
    };
    if !installed(SOURCE_PACKAGE)? {
        return Err(BuildError::NoSource);
    }
    let depends = dpkg_field("${Depends}", SOURCE_PACKAGE)?.unwrap_or_default();
    let package = parse_source_depends(&depends)
        .ok_or(BuildError::NoSource)?
        .to_owned();
    if !installed(&package)? {
        return Err(BuildError::NoSource);
    }
    let version = dpkg_field("${Version}", &package)?.ok_or(BuildError::NoSource)?;
    let tarball = PathBuf::from(format!("/usr/src/{package}.tar.xz"));
    if !tarball.is_file() {
        return Err(BuildError::NoTarball {
            package,
            path: tarball,
        });
    }
    Ok(Source {
        package,
        version,
        tarball,
    })
}

/// A minimal kernel in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub vmlinux: PathBuf,
    pub bytes: u64,
    /// Configuring and compiling, as recorded when it was built.
    pub build_seconds: f64,
    /// Whether this call found it in the cache.
    pub cached: bool,
}

/// Reads a cached kernel's [`INFO`], if the directory holds a complete build.
fn cached(dir: &Path) -> Option<Built> {
    let vmlinux = dir.join("vmlinux");
    let bytes = fs::metadata(&vmlinux).ok()?.len();
    let info = fs::read_to_string(dir.join(INFO)).ok()?;
    let build_seconds = info
        .lines()
        .find_map(|l| l.strip_prefix("build_seconds="))?
        .parse()
        .ok()?;
    Some(Built {
        vmlinux,
        bytes,
        build_seconds,
        cached: true,
    })
}

/// The minimal kernel for the installed source, built first unless the cache has it.
/// `work` holds the build trees, `jobs` is make's `-j`, `log` hears about each step.
pub fn build_minimal(
    cache: &Path,
    work: &Path,
    jobs: u32,
    log: &mut dyn FnMut(&str),
) -> Result<Built, BuildError> {
    let settings = parse_fragment(MINIMAL_CONFIG)?;
    let source = installed_source()?;
    let key = cache_key(&source.version, MINIMAL_CONFIG);
    let dir = cache.join(&key);
    if let Some(built) = cached(&dir) {
        return Ok(built);
    }
    // Two builds would share one source tree and its .config; the second waits, then
    // finds the first one's kernel in the cache.
    let _lock = lock_work(work, log)?;
    if let Some(built) = cached(&dir) {
        return Ok(built);
    }
    let tree = unpacked_tree(&source, work, log)?;
    let fragment = work.join("minimal.config");
    fs::write(&fragment, MINIMAL_CONFIG).map_err(io_err(&fragment))?;
    let started = Instant::now();
    log("make tinyconfig, then the fragment, then make olddefconfig");
    make(&tree, &["tinyconfig"])?;
    step(
        Command::new("scripts/kconfig/merge_config.sh")
            .args(["-m", ".config"])
            .arg(&fragment)
            .current_dir(&tree),
        &tree,
    )?;
    make(&tree, &["olddefconfig"])?;
    let config_path = tree.join(".config");
    let config = fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
    let missing = unmet(&settings, &config)?;
    if !missing.is_empty() {
        return Err(BuildError::Unmet(missing));
    }
    log(&format!(
        "make -j{jobs} vmlinux in {} (minutes; its output goes to {})",
        tree.display(),
        tree.join(MAKE_LOG).display()
    ));
    make(&tree, &[&format!("-j{jobs}"), "vmlinux"])?;
    let build_seconds = started.elapsed().as_secs_f64();
    fs::create_dir_all(cache).map_err(io_err(cache))?;
    let staging = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(cache)
        .map_err(io_err(cache))?;
    let built = tree.join("vmlinux");
    let out = staging.path().join("vmlinux");
    let bytes = fs::copy(&built, &out).map_err(io_err(&built))?;
    let kept_config = staging.path().join("config");
    fs::write(&kept_config, &config).map_err(io_err(&kept_config))?;
    let info = staging.path().join(INFO);
    fs::write(
        &info,
        format!(
            "source={} {}\nconfig_sha256={}\nvmlinux_bytes={bytes}\nbuild_seconds={build_seconds:.1}\njobs={jobs}\n",
            source.package,
            source.version,
            hex(&Sha256::digest(MINIMAL_CONFIG.as_bytes())),
        ),
    )
    .map_err(io_err(&info))?;
    // Another build of the same key may have finished meanwhile; either copy is the same.
    if !dir.join("vmlinux").is_file() {
        let _ = fs::remove_dir_all(&dir);
        fs::rename(staging.path(), &dir).map_err(io_err(&dir))?;
    }
    log(&format!("stored {}", dir.join("vmlinux").display()));
    remove_superseded(cache, &key, log);
    Ok(Built {
        vmlinux: dir.join("vmlinux"),
        bytes,
        build_seconds,
        cached: false,
    })
}

/// Holds `<work>/.lock` exclusively until dropped, saying so first when another build has it.
fn lock_work(work: &Path, log: &mut dyn FnMut(&str)) -> Result<Flock<fs::File>, BuildError> {
    fs::create_dir_all(work).map_err(io_err(work))?;
    let path = work.join(".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => return Ok(lock),
        Err((file, Errno::EWOULDBLOCK)) => file,
        Err((_, errno)) => return Err(io_err(&path)(errno.into())),
    };
    log(&format!(
        "waiting for another `isolab kernel build` in {}",
        work.display()
    ));
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| io_err(&path)(errno.into()))
}

/// Removes the minimal kernels of other sources or fragments than `current`: the command
/// never returns them again, and each is a 17 MB vmlinux.
fn remove_superseded(cache: &Path, current: &str, log: &mut dyn FnMut(&str)) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("minimal-")
            && name != current
            && fs::remove_dir_all(entry.path()).is_ok()
        {
            log(&format!(
                "removed the superseded {}",
                entry.path().display()
            ));
        }
    }
}

/// `<work>/<package>_<version>`, unpacked from the tarball unless it already is.
fn unpacked_tree(
    source: &Source,
    work: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, BuildError> {
    let tree = work.join(format!(
        "{}_{}",
        source.package,
        source.version.replace(':', "_")
    ));
    if tree.join("Makefile").is_file() {
        return Ok(tree);
    }
    fs::create_dir_all(work).map_err(io_err(work))?;
    let scratch = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(work)
        .map_err(io_err(work))?;
    log(&format!("unpacking {}", source.tarball.display()));
    step(
        Command::new("tar")
            .arg("-xf")
            .arg(&source.tarball)
            .arg("-C")
            .arg(scratch.path()),
        scratch.path(),
    )?;
    let top = scratch.path().join(&source.package);
    if !top.join("Makefile").is_file() {
        return Err(BuildError::NoTarball {
            package: source.package.clone(),
            path: source.tarball.clone(),
        });
    }
    fs::rename(&top, &tree).map_err(io_err(&tree))?;
    Ok(tree)
}

/// Where a build tree's make output goes.
const MAKE_LOG: &str = "isolab-make.log";

fn make(tree: &Path, args: &[&str]) -> Result<(), BuildError> {
    step(Command::new("make").args(args).current_dir(tree), tree)
}

/// Runs one step with its output appended to `dir`'s [`MAKE_LOG`]; on failure the error
/// quotes the log's last lines.
fn step(command: &mut Command, dir: &Path) -> Result<(), BuildError> {
    let log = dir.join(MAKE_LOG);
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io_err(&log))?;
    let err_file = file.try_clone().map_err(io_err(&log))?;
    let shown = format!("{command:?}");
    let status = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .status()
        .map_err(|source| BuildError::Spawn {
            command: shown.clone(),
            source,
        })?;
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    Err(BuildError::Failed {
        command: shown,
        status,
        tail: lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n"),
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_fragment_parses_and_builds_no_modules() {
        let settings = parse_fragment(MINIMAL_CONFIG).unwrap();
        for wanted in [
            "CONFIG_64BIT",
            "CONFIG_SERIAL_8250_CONSOLE",
            "CONFIG_BLK_DEV_INITRD",
            "CONFIG_BINFMT_ELF",
            "CONFIG_DEVTMPFS",
            "CONFIG_VIRTIO_MMIO",
            "CONFIG_VIRTIO_BLK",
        ] {
            assert!(
                settings
                    .iter()
                    .any(|s| s.name == wanted && s.value.as_deref() == Some("y")),
                "{wanted}=y"
            );
        }
        assert!(settings.contains(&Setting {
            name: "CONFIG_MODULES".into(),
            value: None
        }));
    }

    #[test]
    fn fragment_lines_are_settings_comments_or_errors() {
        let text = "# why\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"ttyS0\"\n";
        assert_eq!(
            parse_fragment(text).unwrap(),
            [
                Setting {
                    name: "CONFIG_A".into(),
                    value: Some("y".into())
                },
                Setting {
                    name: "CONFIG_B".into(),
                    value: None
                },
                Setting {
                    name: "CONFIG_C".into(),
                    value: Some("\"ttyS0\"".into())
                },
            ]
        );
        for (bad, line) in [
            ("CONFIG_A=y\nSERIAL=y\n", 2),
            ("CONFIG_A\n", 1),
            ("CONFIG_A-B=y\n", 1),
            ("CONFIG_A=\n", 1),
        ] {
            assert!(
                matches!(parse_fragment(bad), Err(BuildError::BadLine { line: l, .. }) if l == line),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_fragment("CONFIG_A=y\n# CONFIG_A is not set\n"),
            Err(BuildError::Duplicate(name)) if name == "CONFIG_A"
        ));
    }

    #[test]
    fn unmet_names_what_olddefconfig_dropped() {
        let settings = parse_fragment(
            "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n# CONFIG_D is not set\nCONFIG_E=4\n",
        )
        .unwrap();
        // Kconfig symbols may hold lower case (CRYPTO_DEV_QAT_DH895xCC).
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_E=4\n# CONFIG_QAT_DH895xCC is not set\n";
        assert_eq!(
            unmet(&settings, config).unwrap(),
            ["CONFIG_B=y", "CONFIG_C unset"]
        );
        assert!(unmet(&settings[..1], config).unwrap().is_empty());
    }

    #[test]
    fn the_cache_key_follows_the_source_version_and_the_fragment() {
        let key = cache_key("6.1.192-2", "CONFIG_A=y\n");
        assert!(key.starts_with("minimal-6.1.192-2-"), "{key}");
        assert_eq!(key.len(), "minimal-6.1.192-2-".len() + SHA_SHOWN);
        assert_eq!(key, cache_key("6.1.192-2", "CONFIG_A=y\n"));
        assert_ne!(key, cache_key("6.1.192-3", "CONFIG_A=y\n"));
        assert_ne!(key, cache_key("6.1.192-2", "CONFIG_A=n\n"));
        assert!(!cache_key("1:6.1-2", "").contains(':'));
    }

    #[test]
    fn the_source_package_is_linux_sources_dependency() {
        assert_eq!(
            parse_source_depends("linux-source-6.1 (= 6.1.192-2)"),
            Some("linux-source-6.1")
        );
        assert_eq!(
            parse_source_depends("libc6, linux-source-6.12"),
            Some("linux-source-6.12")
        );
        assert_eq!(parse_source_depends(""), None);
    }

    #[test]
    fn a_complete_cache_entry_is_reused_and_a_partial_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cached(dir.path()), None);
        fs::write(dir.path().join("vmlinux"), b"\x7fELF1234").unwrap();
        assert_eq!(
            cached(dir.path()),
            None,
            "no build-info: an interrupted build"
        );
        fs::write(
            dir.path().join(INFO),
            "vmlinux_bytes=8\nbuild_seconds=612.5\n",
        )
        .unwrap();
        let built = cached(dir.path()).unwrap();
        assert_eq!(
            (built.bytes, built.build_seconds, built.cached),
            (8, 612.5, true)
        );
    }

    #[test]
    fn a_second_build_waits_for_the_first() {
        let work = tempfile::tempdir().unwrap();
        let mut quiet = |_: &str| {};
        let first = lock_work(work.path(), &mut quiet).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = work.path().to_owned();
        let second = std::thread::spawn(move || {
            let mut said = Vec::new();
            let lock = lock_work(&path, &mut |line: &str| said.push(line.to_owned()));
            tx.send(()).unwrap();
            (lock.is_ok(), said)
        });
        let waited = rx.recv_timeout(std::time::Duration::from_millis(300));
        assert!(
            waited.is_err(),
            "the second lock was taken while the first was held"
        );
        drop(first);
        let (locked, said) = second.join().unwrap();
        assert!(locked);
        assert_eq!(said.len(), 1);
        assert!(said[0].starts_with("waiting for another"), "{said:?}");
    }

    #[test]
    fn only_other_minimal_kernels_are_removed() {
        let cache = tempfile::tempdir().unwrap();
        for dir in ["minimal-6.1-aaaa", "minimal-6.1-bbbb", "linux-image-6.1"] {
            fs::create_dir(cache.path().join(dir)).unwrap();
        }
        let mut said = Vec::new();
        remove_superseded(cache.path(), "minimal-6.1-aaaa", &mut |l: &str| {
            said.push(l.to_owned())
        });
        let mut left: Vec<String> = fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["linux-image-6.1", "minimal-6.1-aaaa"]);
        assert_eq!(said.len(), 1);
        assert!(said[0].ends_with("minimal-6.1-bbbb"), "{said:?}");
    }
}
