//! The versioned result schema every isolab measurement is written in.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

/// The schema version this build writes and reads. Bump it whenever a field is added, changes
/// meaning, is renamed or removed: a reader must never guess what an older or newer file
/// means (readers refuse unknown fields, so an addition needs a bump too).
///
/// - 1: bench results.
/// - 2: `kind: density` result sets, with [`TargetResult::density`].
/// - 3: `kind: footprint` result sets, with [`ResultSet::footprint`]. A pure addition, so
///   version 2 files are still read (as sets without a footprint). Optional within 3, absent
///   from older files: [`RunRecord::phases`] and [`Footprint::vm_files`].
pub const SCHEMA_VERSION: u32 = 3;
/// The oldest version this build still reads.
pub const OLDEST_READABLE_VERSION: u32 = 2;

/// Where a result was measured. Results whose fingerprints differ in anything but `git_revision`
/// and `date` come from different hosts and are never merged into one series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFingerprint {
    /// Kernel release, as `uname -r` prints it.
    pub kernel: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// Logical CPUs online.
    pub cores: u32,
    /// MemTotal in KiB.
    pub mem_total_kib: u64,
    /// `v1`, `hybrid` or `v2`.
    pub cgroup_mode: String,
    /// `vmx`, `svm`, `pvm` or `absent`.
    pub kvm_kind: String,
    /// isolab's git revision (`git describe --always --dirty`), or `unknown` outside a checkout.
    pub git_revision: String,
    /// When the measurement started, RFC 3339 in UTC.
    pub date: String,
}

impl HostFingerprint {
    /// True when two fingerprints describe the same host, whatever the revision and date.
    pub fn same_host(&self, other: &HostFingerprint) -> bool {
        (
            &self.kernel,
            &self.cpu_model,
            self.cores,
            self.mem_total_kib,
            &self.cgroup_mode,
            &self.kvm_kind,
        ) == (
            &other.kernel,
            &other.cpu_model,
            other.cores,
            other.mem_total_kib,
            &other.cgroup_mode,
            &other.kvm_kind,
        )
    }
}

/// What produced a result file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    /// Runs launched one after another (`isolab bench`).
    Bench,
    /// Idle instances started side by side, measured while all run, then stopped
    /// (`isolab bench --count N`); each instance is one of its target's `runs`.
    Density,
    /// Bytes on disk of the image store (`isolab image du --results`): no runs, only
    /// [`ResultSet::footprint`].
    Footprint,
    /// Instances of every kind running side by side while a daemon, a supervisor and a
    /// monitor are killed (`isolab bench --experiment daemon-kill`): each instance is one of
    /// its target's `runs`, and [`ResultSet::blast_radius`] counts the survivors.
    BlastRadius,
}

/// One run set: every target measured with the same workload bytes on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultSet {
    pub schema_version: u32,
    pub kind: ResultKind,
    pub host: HostFingerprint,
    /// The exact argv that produced this set.
    pub command: Vec<String>,
    pub workload: WorkloadInfo,
    /// Measured runs per target; warmup runs are discarded and not recorded.
    pub runs_per_target: u32,
    pub warmup: u32,
    pub targets: Vec<TargetResult>,
    /// Disk footprint of container images; present only in `kind: footprint` sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footprint: Option<Footprint>,
    /// What the kills took down; present only in `kind: blast_radius` sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blast_radius: Option<BlastRadius>,
}

/// What SIGKILLing one runtime process (a daemon, a container's supervisor, a VM's monitor)
/// did to the instances running beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlastRadius {
    /// Every process killed, in order, e.g. `dockerd (pid 812)`.
    pub killed: Vec<String>,
    /// Daemons started again afterwards, e.g. `dockerd (pid 907)`.
    pub restored: Vec<String>,
    /// Nanoseconds waited after the kills before the survivors were counted.
    pub settle_ns: u64,
    pub kinds: Vec<BlastKind>,
    /// Targets asked for or known that were not measured, and why (a peer not installed).
    pub skipped: Vec<BlastSkipped>,
}

/// One kind of instance in the daemon-kill experiment. An instance is *running* when its
/// workload process still exists, *answers* when the workload `ready` mode, run in it
/// through its manager (`exec`; a VM: the guest handling SIGTERM and printing its final
/// line), prints `ISOLAB-READY`, and is *managed* when its manager still lists it and can
/// stop and remove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlastKind {
    pub target: String,
    pub instances: u32,
    /// What was SIGKILLed for this kind, in words; `None`: nothing of its own (a bystander).
    pub killed: Option<String>,
    /// Instances whose own runtime process was killed (all of them when a shared daemon was).
    pub hit: u32,
    /// Running once the kills settled, before any daemon was restarted.
    pub running_after_kill: u32,
    /// Running once every killed daemon answered again.
    pub running_after_restore: u32,
    pub answered: u32,
    pub managed: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlastSkipped {
    pub target: String,
    pub reason: String,
}

/// What container images cost on disk, counted as allocated blocks (`st_blocks * 512`), not
/// apparent sizes; hard links count once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Footprint {
    /// What the numbers mean, in words.
    pub units: String,
    pub layers: Vec<FootprintLayer>,
    pub images: Vec<FootprintImage>,
    /// Containers that had a root in the store when it was measured.
    pub containers: Vec<FootprintContainer>,
    /// Everything under the store's directory, each inode once.
    pub store_bytes: u64,
    /// What the VM targets boot from (kernel, initramfs, disk image, the mini VM's program),
    /// counted the same way; empty when only the image store was measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vm_files: Vec<FootprintFile>,
}

/// One file a VM target needs on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FootprintFile {
    /// The target that boots it (`vm-mini`, `vm-linux`).
    pub target: String,
    /// What it is to that target: `kernel`, `initramfs`, `disk image`, `program`.
    pub role: String,
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FootprintLayer {
    pub diff_id: String,
    /// The unpacked directory overlayfs reads.
    pub unpacked_bytes: u64,
    /// The (compressed) blob as imported.
    pub blob_bytes: u64,
    /// Images using it: above 1 it is shared.
    pub images: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FootprintImage {
    pub id: String,
    pub names: Vec<String>,
    /// Its layers (unpacked and blob) no other image uses.
    pub unique_bytes: u64,
    /// Its layers other images use as well.
    pub shared_bytes: u64,
    /// Config, manifest and record.
    pub metadata_bytes: u64,
    /// unique + shared + metadata: what it costs alone.
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FootprintContainer {
    pub id: String,
    pub image: Option<String>,
    /// Its upper layer: what it changed.
    pub upper_bytes: u64,
}

/// The workload binary and how it was invoked; path, size and hash make "same bytes
/// everywhere" checkable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadInfo {
    /// Absolute path of the binary.
    pub path: String,
    /// Lowercase hex SHA-256 of the binary's bytes.
    pub sha256: String,
    pub size_bytes: u64,
    /// The workload mode (`ready`, `cpu`, ...).
    pub mode: String,
    /// The arguments after the mode, e.g. `["--iters", "2000000"]`.
    pub args: Vec<String>,
}

/// Everything measured for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetResult {
    pub name: String,
    /// How the target launches the workload, for a human reading the file.
    pub description: String,
    pub runs: Vec<RunRecord>,
    /// Per metric (see [`RunRecord::metrics`]), the summary over `runs`.
    pub stats: BTreeMap<String, Summary>,
    /// Host-level memory of a density measurement; absent in bench results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density: Option<Density>,
}

/// What N instances running side by side cost the host, and whether they all went away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Density {
    /// One entry per start step, in order; the last one has every instance running.
    pub steps: Vec<DensityStep>,
    /// Nanoseconds from sending SIGTERM to every instance to the last one being reaped.
    pub stop_ns: u64,
    /// Whether every instance ended of SIGTERM by itself (no SIGKILL was needed) and no
    /// process of any instance's process group was left afterwards.
    pub stopped_clean: bool,
    /// MemTotal − MemAvailable after the stop minus before the start, in KiB: what the
    /// instances left behind (noise from the rest of the host included).
    pub host_used_after_stop_kib: i64,
    /// Instances asked for (`--count`); the last step's `running` is how many were reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<u32>,
    /// Why no further instance was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// The failed start's error, or the memory figures that stopped the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_detail: Option<String>,
    /// MemAvailable the run kept free (`--keep-free`), KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_free_kib: Option<u64>,
    /// Nanoseconds after the last instance was reaped until the host's used memory was
    /// stable (when `host_used_after_stop_kib` was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_ns: Option<u64>,
}

impl Density {
    /// Instances running at the last step.
    pub fn reached(&self) -> u32 {
        self.steps.last().map_or(0, |s| s.running)
    }
}

/// Why a density run stopped starting instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every instance asked for runs.
    Completed,
    /// An instance failed to start (exited, or was not ready in time).
    StartFailed,
    /// Another step would have left less than the reserve of MemAvailable.
    MemoryReserve,
}

/// Kernel-side memory now minus before the first start, from /proc/meminfo, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelMemory {
    pub slab_kib: i64,
    pub kernel_stack_kib: i64,
    pub page_tables_kib: i64,
}

/// The host once `running` instances were up (each had printed `ISOLAB-READY`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DensityStep {
    /// Instances started in this step.
    pub started: u32,
    /// Instances running after it.
    pub running: u32,
    /// Nanoseconds from the step's first spawn until its last instance was ready.
    pub ready_ns: u64,
    /// MemTotal − MemAvailable now minus before the first start, in KiB.
    pub host_used_kib: i64,
    /// The summed PSS of every running instance's process tree, in KiB.
    pub pss_sum_kib: u64,
    /// Of the PSS: the runtime's side (launcher, supervisor, a peer's daemons and shims, a
    /// VM monitor's own memory), in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_pss_kib: Option<u64>,
    /// Of the PSS: the instances' side (the workload processes; a VM's guest RAM), in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_pss_kib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelMemory>,
    /// Nanoseconds a probe process (the workload's `ready` mode, run natively) took from
    /// spawn to being reaped, right after the step: whether the host stays responsive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_ns: Option<u64>,
}

/// One measured run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// 0-based among the target's measured runs.
    pub index: u32,
    /// Nanoseconds from just before spawn to reading the `ISOLAB-READY` line, for modes that
    /// print it.
    pub ready_ns: Option<u64>,
    /// Nanoseconds from just before spawn until the process has exited and its stdout and
    /// stderr are both at end of file.
    pub exit_ns: u64,
    pub exit_status: ExitStatus,
    /// The workload's own last stdout line, a JSON object whose `mode` key names the mode.
    pub figures: Value,
    /// Peak summed PSS of the launched process and its descendants over the samples taken;
    /// `None` when the process exited before any sample could be taken.
    pub pss_kib: Option<u64>,
    /// `ru_maxrss` from `wait4`: the largest RSS of the launched process or of a descendant
    /// it reaped. Linux also charges the address space a process had before `exec` to it,
    /// which for a spawned child is isolab's own: this is never below isolab's RSS at spawn
    /// time, so it tells large workloads apart, not small ones (`pss_kib` does).
    pub max_rss_kib: u64,
    /// Where the time to `ISOLAB-READY` went, for targets that report their start-up phases
    /// (isolab's container and mini VM); absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<PhaseTime>>,
}

/// One start-up phase of a run. A run's phases follow each other and add up to its
/// `ready_ns`; a phase that happened in several pieces (e.g. mounts before and after the
/// cgroup is joined) is one entry with their sum, at the place of its first piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseTime {
    /// `launch`, `prepare`, `cgroup`, `namespaces`, `mounts`, `confine`, `monitor`, `boot`
    /// or `ready` (the last mark to `ISOLAB-READY` read by the harness).
    pub name: String,
    pub ns: u64,
}

impl RunRecord {
    /// The metrics statistics are computed over, by name: `ready_ns` (when present),
    /// `exit_ns`, `pss_kib` (when present), `max_rss_kib` and `figures.<key>` for every
    /// numeric figure (see [`numeric_figures`]).
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut metrics = Vec::new();
        if let Some(ready) = self.ready_ns {
            metrics.push(("ready_ns".to_owned(), ready as f64));
        }
        metrics.push(("exit_ns".to_owned(), self.exit_ns as f64));
        if let Some(pss) = self.pss_kib {
            metrics.push(("pss_kib".to_owned(), pss as f64));
        }
        metrics.push(("max_rss_kib".to_owned(), self.max_rss_kib as f64));
        metrics.extend(
            numeric_figures(&self.figures)
                .into_iter()
                .filter_map(|(key, n)| Some((format!("{FIGURE_PREFIX}{key}"), n.as_f64()?))),
        );
        metrics
    }
}

/// The prefix that keeps workload figures apart from the harness's own metrics.
pub const FIGURE_PREFIX: &str = "figures.";

/// The numeric leaves of a figures object, keyed by their dotted path (`a.b` for
/// `{"a":{"b":1}}`). Strings, booleans, nulls and arrays carry no figure and are skipped.
pub fn numeric_figures(figures: &Value) -> BTreeMap<String, &Number> {
    fn walk<'v>(prefix: &str, value: &'v Value, out: &mut BTreeMap<String, &'v Number>) {
        match value {
            Value::Number(n) => {
                out.insert(prefix.to_owned(), n);
            }
            Value::Object(map) => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, child, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk("", figures, &mut out);
    out
}

/// How a run's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// Descriptive statistics of one metric; computed by [`crate::stats::summarize`], which
/// documents each definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub count: u32,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub median: f64,
    pub p95: f64,
    /// Raw (unscaled) median absolute deviation.
    pub mad: f64,
    /// Indices of the runs flagged as outliers.
    pub outliers: Vec<u32>,
}

/// Why a result file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not an isolab result file")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path} uses result schema version {found}, this isolab reads version {oldest} up to version {expected}"
    )]
    Version {
        path: PathBuf,
        found: u32,
        oldest: u32,
        expected: u32,
    },
}

impl ResultSet {
    /// Reads a result file, refusing schema versions outside [`OLDEST_READABLE_VERSION`] to
    /// [`SCHEMA_VERSION`].
    pub fn load(path: &Path) -> Result<ResultSet, SchemaError> {
        let text = fs::read_to_string(path).map_err(|source| SchemaError::Read {
            path: path.to_owned(),
            source,
        })?;
        ResultSet::parse(&text, path)
    }

    /// Parses a result file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<ResultSet, SchemaError> {
        // The version is checked before the rest, so a file from another version fails with
        // a version error instead of whatever field happens to differ first.
        #[derive(Deserialize)]
        struct VersionProbe {
            schema_version: u32,
        }
        let parse_error = |source| SchemaError::Parse {
            path: origin.to_owned(),
            source,
        };
        let probe: VersionProbe = serde_json::from_str(text).map_err(parse_error)?;
        if !(OLDEST_READABLE_VERSION..=SCHEMA_VERSION).contains(&probe.schema_version) {
            return Err(SchemaError::Version {
                path: origin.to_owned(),
                found: probe.schema_version,
                oldest: OLDEST_READABLE_VERSION,
                expected: SCHEMA_VERSION,
            });
        }
        serde_json::from_str(text).map_err(parse_error)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stats::summarize_runs;
    use serde_json::json;

    pub(crate) fn sample_set() -> ResultSet {
        let runs: Vec<RunRecord> = (0..3)
            .map(|i| RunRecord {
                index: i,
                ready_ns: Some(1_000_000 + u64::from(i) * 1000),
                exit_ns: 2_000_000 + u64::from(i) * 1000,
                exit_status: ExitStatus::Code(0),
                figures: json!({"mode": "syscall", "ns_per_call": 50 + i, "detail": {"calls": 1000}}),
                pss_kib: (i > 0).then_some(900),
                max_rss_kib: 1200,
                phases: None,
            })
            .collect();
        ResultSet {
            schema_version: SCHEMA_VERSION,
            kind: ResultKind::Bench,
            host: HostFingerprint {
                kernel: "6.1.0".into(),
                cpu_model: "Test CPU".into(),
                cores: 2,
                mem_total_kib: 1024,
                cgroup_mode: "v2".into(),
                kvm_kind: "absent".into(),
                git_revision: "abc123".into(),
                date: "2026-01-01T00:00:00Z".into(),
            },
            command: vec!["isolab".into(), "bench".into()],
            workload: WorkloadInfo {
                path: "/bin/isolab-workload".into(),
                sha256: "00".repeat(32),
                size_bytes: 42,
                mode: "syscall".into(),
                args: vec!["--n".into(), "1000".into()],
            },
            runs_per_target: 3,
            warmup: 1,
            targets: vec![TargetResult {
                name: "native".into(),
                description: "the workload run directly".into(),
                stats: summarize_runs(&runs),
                runs,
                density: None,
            }],
            footprint: None,
            blast_radius: None,
        }
    }

    #[test]
    fn footprint_sets_round_trip_and_version_2_files_still_load() {
        let mut set = sample_set();
        set.kind = ResultKind::Footprint;
        set.targets.clear();
        set.footprint = Some(Footprint {
            units: "bytes allocated".into(),
            layers: vec![FootprintLayer {
                diff_id: "ab".repeat(32),
                unpacked_bytes: 8192,
                blob_bytes: 4096,
                images: 2,
            }],
            images: vec![],
            containers: vec![FootprintContainer {
                id: "c".into(),
                image: None,
                upper_bytes: 4096,
            }],
            store_bytes: 1 << 20,
            vm_files: vec![FootprintFile {
                target: "vm-mini".into(),
                role: "program".into(),
                path: "/w".into(),
                bytes: 4096,
            }],
        });
        let text = serde_json::to_string(&set).unwrap();
        assert_eq!(ResultSet::parse(&text, Path::new("f.json")).unwrap(), set);
        let mut old = serde_json::to_value(sample_set()).unwrap();
        old["schema_version"] = json!(2);
        let loaded = ResultSet::parse(&old.to_string(), Path::new("v2.json")).unwrap();
        assert_eq!(loaded.footprint, None);
        old["schema_version"] = json!(1);
        assert!(ResultSet::parse(&old.to_string(), Path::new("v1.json")).is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let set = sample_set();
        let text = serde_json::to_string_pretty(&set).unwrap();
        let back = ResultSet::parse(&text, Path::new("x.json")).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn refuses_another_schema_version_naming_both() {
        let mut value = serde_json::to_value(sample_set()).unwrap();
        value["schema_version"] = json!(SCHEMA_VERSION + 1);
        let err = ResultSet::parse(&value.to_string(), Path::new("old.json")).unwrap_err();
        assert!(matches!(err, SchemaError::Version { found, expected, .. }
            if found == SCHEMA_VERSION + 1 && expected == SCHEMA_VERSION));
        let message = err.to_string();
        assert!(message.contains("old.json"), "{message}");
        assert!(
            message.contains(&format!("version {}", SCHEMA_VERSION + 1)),
            "{message}"
        );
        assert!(
            message.contains(&format!("version {SCHEMA_VERSION}")),
            "{message}"
        );
    }

    #[test]
    fn a_density_set_round_trips_and_bench_sets_omit_the_section() {
        let plain = serde_json::to_value(sample_set()).unwrap();
        assert!(plain["targets"][0].get("density").is_none());
        let mut set = sample_set();
        set.kind = ResultKind::Density;
        set.targets[0].density = Some(Density {
            steps: vec![DensityStep {
                started: 3,
                running: 3,
                ready_ns: 5_000_000,
                host_used_kib: 9000,
                pss_sum_kib: 8000,
                runtime_pss_kib: Some(3000),
                instance_pss_kib: Some(5000),
                kernel: Some(KernelMemory {
                    slab_kib: 10,
                    kernel_stack_kib: 48,
                    page_tables_kib: -4,
                }),
                probe_ns: Some(700_000),
            }],
            stop_ns: 1_000_000,
            stopped_clean: true,
            host_used_after_stop_kib: -12,
            requested: Some(5),
            stop_reason: Some(StopReason::MemoryReserve),
            stop_detail: Some("MemAvailable 2 GiB".into()),
            keep_free_kib: Some(2 << 20),
            settle_ns: Some(1_000_000_000),
        });
        let text = serde_json::to_string(&set).unwrap();
        assert!(text.contains(r#""kind":"density""#), "{text}");
        assert_eq!(ResultSet::parse(&text, Path::new("d.json")).unwrap(), set);
    }

    #[test]
    fn refuses_unknown_fields() {
        let mut value = serde_json::to_value(sample_set()).unwrap();
        value["surprise"] = json!(1);
        let err = ResultSet::parse(&value.to_string(), Path::new("x.json")).unwrap_err();
        assert!(matches!(err, SchemaError::Parse { .. }), "{err}");
    }

    #[test]
    fn load_names_the_missing_path() {
        let err = ResultSet::load(Path::new("/nonexistent/r.json")).unwrap_err();
        assert_eq!(err.to_string(), "reading /nonexistent/r.json");
    }

    #[test]
    fn exit_status_serializes_as_tagged_object() {
        assert_eq!(
            serde_json::to_value(ExitStatus::Signal(9)).unwrap(),
            json!({"signal": 9})
        );
        assert_eq!(ExitStatus::Code(3).to_string(), "exit code 3");
    }

    #[test]
    fn numeric_figures_flatten_nested_objects_and_skip_the_rest() {
        let figures = json!({"mode": "io", "mib": 4, "rate": {"read": 1.5, "note": "x"}, "ok": true, "l": [1]});
        let flat: Vec<(String, String)> = numeric_figures(&figures)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        assert_eq!(
            flat,
            [
                ("mib".into(), "4".into()),
                ("rate.read".into(), "1.5".into())
            ]
        );
    }

    #[test]
    fn metrics_skip_absent_values() {
        let run = &sample_set().targets[0].runs[0];
        let names: Vec<String> = run.metrics().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "ready_ns",
                "exit_ns",
                "max_rss_kib",
                "figures.detail.calls",
                "figures.ns_per_call"
            ]
        );
    }
}
