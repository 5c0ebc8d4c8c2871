//! The workload binary: where it is, which bytes it has, and how a mode is invoked.

use std::env;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use isolab_reports::schema::WorkloadInfo;
use sha2::{Digest, Sha256};

/// The environment variable that names the workload binary when `--workload-bin` does not.
pub const WORKLOAD_ENV: &str = "ISOLAB_WORKLOAD";
/// The workload's file name; `cargo build` puts it next to `isolab`.
pub const WORKLOAD_FILE: &str = "isolab-workload";

/// What the workload does in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Print `ISOLAB-READY` and exit: start-up cost alone.
    Ready,
    Cpu,
    Mem,
    Syscall,
    Io,
    /// Print `ISOLAB-READY`, then sleep until SIGTERM/SIGINT: never ends by itself, so it is
    /// only measured for density (`--count`), not among [`Mode::ALL`].
    Idle,
    /// Describe what the process can see (ids, capabilities, seccomp, pids, network,
    /// hostname...): the figures are the isolation matrix's row for the target. The harness
    /// gives it the workload's own host path as `--host-marker` (see [`Workload::prepare`]).
    Probe,
    /// TCP round trips and throughput against a server the target starts beside each run
    /// (two host processes, or two containers on the bridge): only for the targets that
    /// can give it a peer, so not among [`Mode::ALL`].
    Net,
}

impl Mode {
    /// The modes a run set measures one run at a time.
    pub const ALL: [Mode; 6] = [
        Mode::Ready,
        Mode::Cpu,
        Mode::Mem,
        Mode::Syscall,
        Mode::Io,
        Mode::Probe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ready => "ready",
            Mode::Cpu => "cpu",
            Mode::Mem => "mem",
            Mode::Syscall => "syscall",
            Mode::Io => "io",
            Mode::Idle => "idle",
            Mode::Probe => "probe",
            Mode::Net => "net",
        }
    }

    /// Whether the workload prints `ISOLAB-READY` in this mode.
    pub fn prints_ready(self) -> bool {
        matches!(self, Mode::Ready | Mode::Idle)
    }

    /// Whether the mode writes files, and so runs in a scratch directory of its own.
    pub fn needs_scratch_dir(self) -> bool {
        self == Mode::Io
    }

    /// The size options the mode takes and their defaults. The defaults keep one native run
    /// well under a second, so a default bench of a few targets stays interactive.
    fn size_options(self) -> &'static [(SizeOption, u64)] {
        match self {
            Mode::Ready | Mode::Idle | Mode::Probe => &[],
            Mode::Cpu => &[(SizeOption::Iters, 2_000_000)],
            Mode::Mem => &[(SizeOption::Mib, 64)],
            Mode::Syscall => &[(SizeOption::N, 100_000)],
            Mode::Io => &[(SizeOption::Mib, 16)],
            // Round trips, then MiB sent.
            Mode::Net => &[(SizeOption::N, 2_000), (SizeOption::Mib, 64)],
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = WorkloadError;

    fn from_str(s: &str) -> Result<Mode, WorkloadError> {
        Mode::ALL
            .into_iter()
            .chain([Mode::Idle, Mode::Net])
            .find(|mode| mode.name() == s)
            .ok_or_else(|| WorkloadError::UnknownMode(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeOption {
    Iters,
    Mib,
    N,
}

impl SizeOption {
    fn flag(self) -> &'static str {
        match self {
            SizeOption::Iters => "--iters",
            SizeOption::Mib => "--mib",
            SizeOption::N => "--n",
        }
    }
}

/// The size options given on the command line; each applies to some modes only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    pub iters: Option<u64>,
    pub mib: Option<u64>,
    pub n: Option<u64>,
}

/// The workload's arguments after the mode name: the mode's size options, given or default.
pub fn mode_args(mode: Mode, sizes: &Sizes) -> Result<Vec<String>, WorkloadError> {
    let expected = mode.size_options();
    let given = [
        (SizeOption::Iters, sizes.iters),
        (SizeOption::Mib, sizes.mib),
        (SizeOption::N, sizes.n),
    ];
    if let Some((option, _)) = given
        .iter()
        .find(|(option, value)| value.is_some() && !expected.iter().any(|(o, _)| o == option))
    {
        return Err(WorkloadError::SizeNotApplicable {
            flag: option.flag(),
            mode,
        });
    }
    Ok(expected
        .iter()
        .flat_map(|&(option, default)| {
            let value = given
                .iter()
                .find_map(|&(o, v)| if o == option { v } else { None })
                .unwrap_or(default);
            [option.flag().to_owned(), value.to_string()]
        })
        .collect())
}

/// How the workload binary was named, which decides whose mistake a missing file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    NextToIsolab,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("named by --workload-bin"),
            Source::Env => write!(f, "named by ${WORKLOAD_ENV}"),
            Source::NextToIsolab => f.write_str("expected next to the isolab executable"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("unknown workload `{0}`; known: ready, cpu, mem, syscall, io, probe, idle, net")]
    UnknownMode(String),
    #[error("{flag} does not apply to the `{mode}` workload")]
    SizeNotApplicable { flag: &'static str, mode: Mode },
    #[error("locating the isolab executable, next to which the workload is expected")]
    CurrentExe(#[source] io::Error),
    #[error("workload binary {path} ({source_kind}) not found")]
    Missing {
        path: PathBuf,
        source_kind: Source,
        #[source]
        source: io::Error,
    },
    #[error(
        "workload binary {path} not found: run `cargo build` (it builds isolab-workload next to isolab), or name it with --workload-bin or ${WORKLOAD_ENV}"
    )]
    NotBuilt {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("workload binary path {0} is not UTF-8")]
    NonUtf8Path(PathBuf),
    #[error("reading workload binary {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl WorkloadError {
    /// True when the host lacks the binary, as opposed to the user naming a wrong one.
    pub fn is_missing_build(&self) -> bool {
        matches!(self, WorkloadError::NotBuilt { .. })
    }
}

/// The workload to run: its bytes identified and its invocation fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub mode: Mode,
    /// The absolute path, so it stays valid in a scratch working directory.
    pub path: String,
    pub args: Vec<String>,
    pub sha256: String,
    pub size_bytes: u64,
}

impl Workload {
    /// Finds the binary (`explicit`, else `$ISOLAB_WORKLOAD`, else next to the running
    /// executable), hashes it and fixes the mode's arguments. `probe` is given the binary's
    /// own host path as its host marker: it exists on the host by construction, and a target
    /// with a root filesystem of its own holds the workload elsewhere, so seeing it means
    /// seeing the host's files.
    pub fn prepare(
        mode: Mode,
        sizes: &Sizes,
        explicit: Option<&Path>,
    ) -> Result<Workload, WorkloadError> {
        let args = mode_args(mode, sizes)?;
        let (candidate, source_kind) = match (explicit, env::var_os(WORKLOAD_ENV)) {
            (Some(path), _) => (path.to_owned(), Source::Flag),
            (None, Some(path)) if !path.is_empty() => (PathBuf::from(path), Source::Env),
            _ => {
                let exe = env::current_exe().map_err(WorkloadError::CurrentExe)?;
                (exe.with_file_name(WORKLOAD_FILE), Source::NextToIsolab)
            }
        };
        let absolute = candidate
            .canonicalize()
            .map_err(|source| match source_kind {
                Source::NextToIsolab => WorkloadError::NotBuilt {
                    path: candidate.clone(),
                    source,
                },
                source_kind => WorkloadError::Missing {
                    path: candidate.clone(),
                    source_kind,
                    source,
                },
            })?;
        let (sha256, size_bytes) = hash_file(&absolute)?;
        let path = absolute
            .to_str()
            .ok_or_else(|| WorkloadError::NonUtf8Path(absolute.clone()))?
            .to_owned();
        let args = match mode {
            Mode::Probe => vec!["--host-marker".to_owned(), path.clone()],
            _ => args,
        };
        Ok(Workload {
            mode,
            path,
            args,
            sha256,
            size_bytes,
        })
    }

    /// The workload's argv after its path: the mode, then its arguments.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.mode.name().to_owned())
            .chain(self.args.iter().cloned())
            .collect()
    }

    pub fn info(&self) -> WorkloadInfo {
        WorkloadInfo {
            path: self.path.clone(),
            sha256: self.sha256.clone(),
            size_bytes: self.size_bytes,
            mode: self.mode.name().to_owned(),
            args: self.args.clone(),
        }
    }
}

/// Lowercase hex SHA-256 and size of a file.
pub fn hash_file(path: &Path) -> Result<(String, u64), WorkloadError> {
    let error = |source| WorkloadError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(error)?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher).map_err(error)?;
    Ok((format!("{:x}", hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn modes_parse_by_name_and_reject_others() {
        for mode in Mode::ALL.into_iter().chain([Mode::Idle, Mode::Net]) {
            assert_eq!(mode.name().parse::<Mode>().unwrap(), mode);
        }
        let err = "disk".parse::<Mode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown workload `disk`; known: ready, cpu, mem, syscall, io, probe, idle, net"
        );
    }

    #[test]
    fn size_options_default_and_override_per_mode() {
        let none = Sizes::default();
        assert!(mode_args(Mode::Ready, &none).unwrap().is_empty());
        assert_eq!(mode_args(Mode::Cpu, &none).unwrap(), ["--iters", "2000000"]);
        let mib = Sizes {
            mib: Some(3),
            ..Sizes::default()
        };
        assert_eq!(mode_args(Mode::Io, &mib).unwrap(), ["--mib", "3"]);
        assert_eq!(mode_args(Mode::Mem, &mib).unwrap(), ["--mib", "3"]);
        let err = mode_args(Mode::Syscall, &mib).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--mib does not apply to the `syscall` workload"
        );
        assert!(mode_args(Mode::Ready, &mib).is_err());
        assert_eq!(
            mode_args(Mode::Net, &mib).unwrap(),
            ["--n", "2000", "--mib", "3"]
        );
    }

    #[test]
    fn prepare_hashes_the_named_binary() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"abc").unwrap();
        let sizes = Sizes {
            n: Some(5),
            ..Sizes::default()
        };
        let workload = Workload::prepare(Mode::Syscall, &sizes, Some(file.path())).unwrap();
        assert_eq!(
            workload.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(workload.size_bytes, 3);
        assert!(Path::new(&workload.path).is_absolute());
        assert_eq!(workload.argv(), ["syscall", "--n", "5"]);
        assert_eq!(workload.info().args, ["--n", "5"]);
        let probe = Workload::prepare(Mode::Probe, &Sizes::default(), Some(file.path())).unwrap();
        assert_eq!(
            probe.argv(),
            ["probe", "--host-marker", probe.path.as_str()]
        );
    }

    #[test]
    fn a_named_missing_binary_is_the_users_mistake() {
        let err = Workload::prepare(Mode::Ready, &Sizes::default(), Some(Path::new("/nope")))
            .unwrap_err();
        assert!(!err.is_missing_build());
        assert_eq!(
            err.to_string(),
            "workload binary /nope (named by --workload-bin) not found"
        );
    }
}
