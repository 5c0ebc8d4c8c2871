//! A run set: every target measured with the same workload bytes, interleaved, summarised and
//! written out.
//!
//! A failed run (non-zero exit, no `ISOLAB-READY` in a mode that prints it, figures missing,
//! timeout) stops the run set and writes no result files: a result set is complete or absent,
//! so no report ever averages over a set that silently lost a target or some of its runs. The
//! error names the target and the run and carries the end of the run's stderr.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use isolab_reports::export::{Csv, ExportError, Exporter, Json, export_to_file};
use isolab_reports::schema::{ResultKind, ResultSet, RunRecord, SCHEMA_VERSION, TargetResult};
use isolab_reports::stats::summarize_runs;

use crate::fingerprint;
use crate::progress::Progress;
use crate::runner::{Launch, RunError, run_once};
use crate::sampler::PssSampler;
use crate::target::{self, Target, TargetError};
use crate::workload::{Mode, Sizes, Workload, WorkloadError};

/// Everything a run set is configured by; the CLI fills it from its options.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Built-in target names, in order.
    pub targets: Vec<String>,
    /// `NAME=CMD` peer specs, measured after the built-in targets in each round.
    pub peers: Vec<String>,
    pub mode: Mode,
    pub sizes: Sizes,
    /// The workload binary, when not taken from `$ISOLAB_WORKLOAD` or next to `isolab`.
    pub workload_bin: Option<PathBuf>,
    /// Measured runs per target.
    pub runs: u32,
    /// Discarded runs per target before the measured ones.
    pub warmup: u32,
    pub out_dir: PathBuf,
    /// Per run; a run that takes longer has its process group killed and fails.
    pub timeout: Duration,
    /// The argv that asked for this run set, recorded in the results.
    pub command: Vec<String>,
}

/// A finished run set and the files it was written to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub results: ResultSet,
    pub files: Vec<PathBuf>,
}

/// Whose problem an error is; the CLI turns it into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadInput,
    HostLacks,
    TargetFailed,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("--runs must be at least 1")]
    ZeroRuns,
    #[error("the idle workload never exits by itself: measure it for density with --count N")]
    IdleNeedsCount,
    #[error("--count and --step must be at least 1")]
    ZeroCount,
    #[error("target `{target}` failed the density measurement")]
    Density {
        target: String,
        #[source]
        source: crate::density::DensityError,
    },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("--out {0} is not a directory")]
    OutNotDir(PathBuf),
    #[error("--out {path}: cannot create the directory")]
    OutCreate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--out {path} is not writable")]
    OutUnwritable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("starting the memory sampler thread")]
    Sampler(#[source] io::Error),
    #[error("scratch directory {path} for the io workload")]
    Scratch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("target `{target}` failed in {run}")]
    Run {
        target: String,
        /// E.g. "warmup run 1 of 2" or "run 3 of 20".
        run: String,
        #[source]
        source: RunError,
    },
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Footprint(Box<crate::footprint::FootprintError>),
}

impl From<crate::footprint::FootprintError> for BenchError {
    fn from(error: crate::footprint::FootprintError) -> Self {
        BenchError::Footprint(Box::new(error))
    }
}

impl BenchError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BenchError::Run { .. } | BenchError::Density { .. } => ErrorKind::TargetFailed,
            BenchError::Footprint(e) => e.kind(),
            BenchError::Workload(e) if e.is_missing_build() => ErrorKind::HostLacks,
            BenchError::Sampler(_) => ErrorKind::HostLacks,
            BenchError::Target(e) if e.host_lacks() => ErrorKind::HostLacks,
            BenchError::ZeroRuns
            | BenchError::IdleNeedsCount
            | BenchError::ZeroCount
            | BenchError::Target(_)
            | BenchError::Workload(_)
            | BenchError::OutNotDir(_)
            | BenchError::OutCreate { .. }
            | BenchError::OutUnwritable { .. }
            | BenchError::Scratch { .. }
            | BenchError::Export(_) => ErrorKind::BadInput,
        }
    }
}

/// Parses `--timeout`: a humantime duration (`60s`, `2m`, `500ms`) or plain seconds.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{e}; expected e.g. 60s, 2m or 500ms"))?,
    };
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// Validates `config`, measures every target and writes the results as JSON and CSV into
/// `config.out_dir`. All input is checked before the first run, so a typo never costs a run.
pub fn run(config: &BenchConfig) -> Result<Outcome, BenchError> {
    if config.runs == 0 {
        return Err(BenchError::ZeroRuns);
    }
    if config.mode == Mode::Idle {
        return Err(BenchError::IdleNeedsCount);
    }
    let targets = target::resolve(&config.targets, &config.peers)?;
    let workload = Workload::prepare(config.mode, &config.sizes, config.workload_bin.as_deref())?;
    prepare_out_dir(&config.out_dir)?;
    let host = fingerprint::collect();

    let records = measure(&targets, &workload, config)?;
    let results = ResultSet {
        schema_version: SCHEMA_VERSION,
        kind: ResultKind::Bench,
        host,
        command: config.command.clone(),
        workload: workload.info(),
        runs_per_target: config.runs,
        warmup: config.warmup,
        targets: targets
            .iter()
            .zip(records)
            .map(|(target, runs)| TargetResult {
                name: target.name().to_owned(),
                description: target.description(),
                stats: summarize_runs(&runs),
                runs,
                density: None,
            })
            .collect(),
        footprint: None,
        blast_radius: None,
    };

    let stem = free_stem(&config.out_dir, "bench", &results.host.date, config.mode);
    let files = write_results(&results, &config.out_dir, &stem)?;
    Ok(Outcome { results, files })
}

/// Writes `results` as `<stem>.json` and `<stem>.csv` into `dir`.
pub(crate) fn write_results(
    results: &ResultSet,
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>, ExportError> {
    let exporters: [&dyn Exporter; 2] = [&Json, &Csv];
    exporters
        .into_iter()
        .map(|exporter| {
            let path = dir.join(format!("{stem}.{}", exporter.extension()));
            export_to_file(exporter, results, &path).map(|()| path)
        })
        .collect()
}

/// Runs every target `warmup + runs` times in rounds, one run per target per round, and
/// returns each target's measured runs.
fn measure(
    targets: &[Target],
    workload: &Workload,
    config: &BenchConfig,
) -> Result<Vec<Vec<RunRecord>>, BenchError> {
    let sampler = PssSampler::spawn().map_err(BenchError::Sampler)?;
    let progress = Progress::new(targets.len(), config.warmup, config.runs);
    // Root filesystems and bundles live until every round is done.
    let prepared = targets
        .iter()
        .map(|t| t.prepare(workload))
        .collect::<Result<Vec<_>, _>>()?;
    let mut records = vec![Vec::new(); targets.len()];
    for round in 0..config.warmup + config.runs {
        for k in 0..targets.len() {
            // Rotating which target goes first spreads order effects (caches warmed by the
            // previous run, CPU frequency ramps) over all targets instead of one.
            let t = (round as usize + k) % targets.len();
            let name = targets[t].name();
            progress.starting(name, round);
            let scratch = config
                .mode
                .needs_scratch_dir()
                .then(|| {
                    tempfile::Builder::new()
                        .prefix("isolab-io-")
                        .tempdir()
                        .map_err(|source| BenchError::Scratch {
                            path: std::env::temp_dir(),
                            source,
                        })
                })
                .transpose()?;
            let launch = Launch {
                argv: &prepared[t].argv,
                cwd: scratch.as_ref().map(|dir| dir.path()),
                mode: config.mode,
                timeout: config.timeout,
                phases: targets[t].records_phases(),
            };
            let measurement = run_once(&launch, &sampler).map_err(|source| BenchError::Run {
                target: name.to_owned(),
                run: run_label(round, config.warmup, config.runs),
                source,
            })?;
            if let Some(dir) = scratch {
                let path = dir.path().to_owned();
                dir.close()
                    .map_err(|source| BenchError::Scratch { path, source })?;
            }
            progress.finished(name, round);
            if let Some(index) = round.checked_sub(config.warmup) {
                records[t].push(measurement.into_record(index));
            }
        }
    }
    Ok(records)
}

fn run_label(round: u32, warmup: u32, runs: u32) -> String {
    match round.checked_sub(warmup) {
        None => format!("warmup run {} of {warmup}", round + 1),
        Some(index) => format!("run {} of {runs}", index + 1),
    }
}

/// Creates `dir` if needed and proves it writable before any run is spent.
pub fn prepare_out_dir(dir: &Path) -> Result<(), BenchError> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(BenchError::OutNotDir(dir.to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|source| BenchError::OutCreate {
                path: dir.to_owned(),
                source,
            })?;
        }
        Err(source) => {
            return Err(BenchError::OutUnwritable {
                path: dir.to_owned(),
                source,
            });
        }
    }
    tempfile::Builder::new()
        .prefix(".isolab-write-test-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|source| BenchError::OutUnwritable {
            path: dir.to_owned(),
            source,
        })
}

/// `<kind>-<UTC timestamp>-<what>` (`what`: the mode, or what else was measured), with a
/// `-N` suffix when a set from the same second is already there; results are never
/// overwritten.
pub(crate) fn free_stem(
    dir: &Path,
    kind: &str,
    date: &str,
    what: impl std::fmt::Display,
) -> String {
    let timestamp: String = date.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    let base = format!("{kind}-{timestamp}-{what}");
    let taken = |stem: &str| {
        ["json", "csv"]
            .iter()
            .any(|ext| dir.join(format!("{stem}.{ext}")).exists())
    };
    std::iter::once(base.clone())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|stem| !taken(stem))
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_durations_or_seconds() {
        assert_eq!(parse_timeout("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_timeout("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_timeout("0s"),
            Err("must be longer than zero".to_owned())
        );
        assert!(parse_timeout("soon").unwrap_err().contains("e.g. 60s"));
    }

    #[test]
    fn run_labels_count_from_one() {
        assert_eq!(run_label(0, 2, 5), "warmup run 1 of 2");
        assert_eq!(run_label(2, 2, 5), "run 1 of 5");
        assert_eq!(run_label(6, 2, 5), "run 5 of 5");
    }

    #[test]
    fn out_dir_is_created_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let nested = tmp.path().join("a/b");
        prepare_out_dir(&nested).unwrap();
        assert!(nested.is_dir());
        assert_eq!(fs::read_dir(&nested).unwrap().count(), 0);
        let file = tmp.path().join("f");
        fs::write(&file, "").unwrap();
        let err = prepare_out_dir(&file).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("--out {} is not a directory", file.display())
        );
        assert_eq!(err.kind(), ErrorKind::BadInput);
    }

    #[test]
    fn stems_never_reuse_a_taken_name() {
        let tmp = tempfile::tempdir().unwrap();
        let date = "2026-05-01T12:03:04Z";
        let first = free_stem(tmp.path(), "bench", date, Mode::Ready);
        assert_eq!(first, "bench-20260501T120304Z-ready");
        fs::write(tmp.path().join(format!("{first}.csv")), "").unwrap();
        assert_eq!(
            free_stem(tmp.path(), "bench", date, Mode::Ready),
            "bench-20260501T120304Z-ready-2"
        );
    }
}
