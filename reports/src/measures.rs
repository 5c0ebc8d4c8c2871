//! The quantities charts, claims and plans are computed from, each taken from the run set
//! that measures it. Each getter returns what the data hold; what is absent is named by
//! [`Missing`], with the command that would produce it.

use serde::Serialize;

use crate::analysis::{Collection, Kind, Loaded, samples};
use crate::schema::StopReason;
use crate::stats::{bootstrap_ratio_ci, median};

/// Something a report cannot show, and how to get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub what: String,
    pub how: String,
}

impl Missing {
    pub fn new(what: impl Into<String>, how: impl Into<String>) -> Missing {
        Missing {
            what: what.into(),
            how: how.into(),
        }
    }

    /// Missing data for one workload mode's run set.
    fn mode(mode: &str) -> Missing {
        Missing::new(
            format!("the `{mode}` run set"),
            format!(
                "isolab bench --workload {mode} --target native,... (or isolab measure), then \
                 pass its JSON file"
            ),
        )
    }

    pub fn sentence(&self) -> String {
        format!("not measured: {}; produced by: {}", self.what, self.how)
    }
}

/// Start-up of one target: time from spawn to `ISOLAB-READY`.
#[derive(Debug, Clone)]
pub struct Startup {
    pub target: String,
    pub kind: Kind,
    /// Every run, milliseconds.
    pub ms: Vec<f64>,
    pub median_ms: f64,
    pub p95_ms: f64,
}

/// Start-up per target from the `ready` run set.
pub fn startup(c: &Collection) -> Result<(&Loaded, Vec<Startup>), Missing> {
    let set = c.mode("ready").ok_or_else(|| Missing::mode("ready"))?;
    let rows = set
        .set
        .targets
        .iter()
        .filter_map(|t| {
            let stats = t.stats.get("ready_ns")?;
            Some(Startup {
                target: t.name.clone(),
                kind: Kind::of(&t.name),
                ms: samples(t, "ready_ns").iter().map(|ns| ns / 1e6).collect(),
                median_ms: stats.median / 1e6,
                p95_ms: stats.p95 / 1e6,
            })
        })
        .collect();
    Ok((set, rows))
}

/// Host memory one instance costs: median peak PSS of what the target launched (for a VM,
/// the monitor with the guest pages it touched), and its excess over native.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub target: String,
    #[serde(skip)]
    pub kind: Kind,
    pub pss_kib: f64,
    /// `pss_kib` minus native's, never below 0: what isolation adds per instance.
    pub overhead_kib: f64,
}

/// Run sets that show what an instance costs at rest, in order of preference: `ready` (the
/// workload does nothing else), then `cpu` and `syscall` (a few pages of their own). A
/// `ready` run shorter than the PSS sampling period has no PSS (native's often has none),
/// so the first set with a native PSS is used.
const MEMORY_MODES: [&str; 3] = ["ready", "cpu", "syscall"];

/// Memory per target from the first of [`MEMORY_MODES`] with a native PSS (what is above
/// native is the isolation's own cost).
pub fn memory(c: &Collection) -> Result<(&Loaded, Vec<Memory>), Missing> {
    let pss = |set: &Loaded, name: &str| Some(set.target(name)?.stats.get("pss_kib")?.median);
    let (set, native) = MEMORY_MODES
        .iter()
        .filter_map(|mode| c.mode(mode))
        .find_map(|set| Some((set, pss(set, "native")?)))
        .ok_or_else(|| {
            Missing::new(
                "native PSS in a `ready`, `cpu` or `syscall` run set",
                "isolab bench --workload cpu --target native,...",
            )
        })?;
    let rows = set
        .set
        .targets
        .iter()
        .filter_map(|t| {
            let pss_kib = pss(set, &t.name)?;
            Some(Memory {
                target: t.name.clone(),
                kind: Kind::of(&t.name),
                pss_kib,
                overhead_kib: (pss_kib - native).max(0.0),
            })
        })
        .collect();
    Ok((set, rows))
}

/// How a mode's headline figure is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// The run-time modes and the figure that measures each: what the overhead chart and claim 3
/// compare against native.
pub const RUNTIME_MODES: [(&str, &str, Better); 5] = [
    ("cpu", "figures.elapsed_ns", Better::Lower),
    ("mem", "figures.ns_per_page", Better::Lower),
    ("syscall", "figures.ns_per_call", Better::Lower),
    ("io", "figures.write_mb_s", Better::Higher),
    // TCP round trip between two of the target's kind (two containers on the bridge).
    ("net", "figures.rtt_median_ns", Better::Lower),
];

/// One target's run-time cost relative to native in one mode.
#[derive(Debug, Clone)]
pub struct Overhead {
    pub mode: &'static str,
    pub metric: &'static str,
    pub target: String,
    pub kind: Kind,
    /// Cost relative to native: time ratio, or native's rate over the target's; 1 = native.
    pub ratio: f64,
    /// 95 % bootstrap interval of `ratio`.
    pub ci: (f64, f64),
    pub command: String,
}

impl Overhead {
    /// The share of native throughput lost: 1 − 1/ratio (negative when faster than native).
    pub fn loss(&self) -> f64 {
        1.0 - 1.0 / self.ratio
    }
}

/// Overheads of every non-native target in every run-time mode measured; modes without a run
/// set (or without native in it) come back as [`Missing`].
pub fn overheads(c: &Collection) -> (Vec<Overhead>, Vec<Missing>) {
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for (mode, metric, better) in RUNTIME_MODES {
        let Some(set) = c.mode(mode) else {
            missing.push(Missing::mode(mode));
            continue;
        };
        let native: Vec<f64> = set
            .target("native")
            .map(|t| samples(t, metric))
            .unwrap_or_default();
        if native.is_empty() {
            missing.push(Missing::new(
                format!("native `{metric}` in the `{mode}` run set"),
                format!("isolab bench --workload {mode} --target native,..."),
            ));
            continue;
        }
        for target in set.set.targets.iter().filter(|t| t.name != "native") {
            let values = samples(target, metric);
            let (num, den) = match better {
                Better::Lower => (&values, &native),
                Better::Higher => (&native, &values),
            };
            let (Some(n), Some(d), Some(ci)) =
                (median(num), median(den), bootstrap_ratio_ci(num, den))
            else {
                continue;
            };
            rows.push(Overhead {
                mode,
                metric,
                target: target.name.clone(),
                kind: Kind::of(&target.name),
                ratio: n / d,
                ci,
                command: set.command_line(),
            });
        }
    }
    (rows, missing)
}

/// Per-instance memory of one target from a density run set: slopes of the host's used
/// memory and of the instances' summed PSS over the number running.
#[derive(Debug, Clone, Serialize)]
pub struct DensityCost {
    pub target: String,
    #[serde(skip)]
    pub kind: Kind,
    /// Instances running at the last step.
    pub instances: u32,
    /// Marginal host memory (MemTotal − MemAvailable) per instance, KiB.
    pub host_slope_kib: f64,
    /// Marginal summed PSS per instance, KiB.
    pub pss_slope_kib: f64,
    /// The figure used: the host slope, unless it is below the PSS slope (the host cannot
    /// use less than the instances' own pages, so the rest of the host's noise won).
    pub per_instance_kib: f64,
    pub basis: &'static str,
    /// Instances asked for, when the set says.
    pub requested: Option<u32>,
    /// Why the run stopped growing, in words (`completed`, `start failed: ...`).
    pub stopped: String,
    /// Host memory used at the last step over the instances running then, KiB.
    pub average_kib: f64,
    /// Marginal PSS per instance of the runtime's side and of the instance's own (workload,
    /// guest RAM), KiB; `None` in sets that do not split PSS.
    pub runtime_slope_kib: Option<f64>,
    pub instance_slope_kib: Option<f64>,
    /// Milliseconds per instance to start the first step and the last: whether starting
    /// slows down as the count grows.
    pub start_ms_first: f64,
    pub start_ms_last: f64,
}

/// Least-squares slope of `points`, the origin included: both series are 0 before the
/// first instance starts by construction (deltas against a baseline), and an intercept
/// keeps a one-time cost (a shared daemon's growth) out of the marginal cost.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let all: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(points.iter().copied())
        .collect();
    let n = all.len() as f64;
    let (mx, my) = (
        all.iter().map(|p| p.0).sum::<f64>() / n,
        all.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = all.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = all.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

/// Memory per instance of every target in the density run set.
pub fn density_costs(c: &Collection) -> Result<(&Loaded, Vec<DensityCost>), Missing> {
    let set = c.density().ok_or_else(density)?;
    let rows = set
        .set
        .targets
        .iter()
        .filter_map(|t| {
            let d = t.density.as_ref()?;
            let last = d.steps.last()?;
            let series = |y: &dyn Fn(&crate::schema::DensityStep) -> f64| {
                let points: Vec<(f64, f64)> = d
                    .steps
                    .iter()
                    .map(|s| (f64::from(s.running), y(s)))
                    .collect();
                slope(&points)
            };
            let host_slope_kib = series(&|s| s.host_used_kib as f64);
            let pss_slope_kib = series(&|s| s.pss_sum_kib as f64);
            let split = |side: fn(&crate::schema::DensityStep) -> Option<u64>| {
                d.steps
                    .iter()
                    .all(|s| side(s).is_some())
                    .then(|| series(&|s| side(s).unwrap_or(0) as f64))
            };
            let per_start = |s: &crate::schema::DensityStep| {
                s.ready_ns as f64 / 1e6 / f64::from(s.started.max(1))
            };
            let first = d.steps.first()?;
            let (per_instance_kib, basis) = if host_slope_kib >= pss_slope_kib {
                (host_slope_kib, "host memory slope")
            } else {
                (
                    pss_slope_kib,
                    "PSS sum slope (host memory slope below it: noise)",
                )
            };
            Some(DensityCost {
                target: t.name.clone(),
                kind: Kind::of(&t.name),
                instances: last.running,
                host_slope_kib,
                pss_slope_kib,
                per_instance_kib,
                basis,
                requested: d.requested,
                stopped: match (d.stop_reason, &d.stop_detail) {
                    (Some(StopReason::StartFailed), Some(detail)) => {
                        format!("start failed: {detail}")
                    }
                    (Some(StopReason::MemoryReserve), _) => "memory reserve reached".to_owned(),
                    (Some(StopReason::StartFailed), None) => "start failed".to_owned(),
                    (Some(StopReason::Completed) | None, _) => "completed".to_owned(),
                },
                average_kib: last.host_used_kib as f64 / f64::from(last.running.max(1)),
                runtime_slope_kib: split(|s| s.runtime_pss_kib),
                instance_slope_kib: split(|s| s.instance_pss_kib),
                start_ms_first: per_start(first),
                start_ms_last: per_start(last),
            })
        })
        .collect();
    Ok((set, rows))
}

/// The probe fields the isolation matrix shows, in order.
pub const PROBE_FIELDS: [&str; 8] = [
    "pid",
    "visible_pids",
    "hostname",
    "net_interfaces",
    "cap_eff",
    "seccomp_mode",
    "uid_map",
    "host_marker_visible",
];

/// A pid this low means the process counts pids in a namespace (or kernel) of its own: a
/// host's pid counter is past a few hundred once it has booted.
pub const OWN_PID_SPACE_MAX_PID: u64 = 10;

/// How one probe field of a target compares with the host's (native's) view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    /// The native row itself: the reference.
    Host,
    /// The target sees what the host sees.
    SameAsHost,
    /// The target sees something of its own.
    Isolated,
    /// The target has no such thing to read (e.g. no /proc under the mini kernel).
    Absent,
}

/// One target's probe figures (its first run: the probe reports state, not a timing).
#[derive(Debug, Clone)]
pub struct ProbeRow {
    pub target: String,
    pub kind: Kind,
    pub figures: serde_json::Value,
}

impl ProbeRow {
    pub fn get(&self, field: &str) -> &serde_json::Value {
        &self.figures[field]
    }

    /// The field as a short cell text.
    pub fn text(&self, field: &str) -> String {
        use serde_json::Value;
        match self.get(field) {
            Value::Null => "absent".to_owned(),
            Value::String(s) => s.clone(),
            Value::Array(items) if field == "uid_map" => items
                .iter()
                .map(|m| format!("{}→{} ×{}", m[0], m[1], m[2]))
                .collect::<Vec<_>>()
                .join(", "),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        }
    }

    /// The field as a matrix cell: capability masks as a count of capabilities, a uid map
    /// covering every id as "all", long lists as their length; the rest as [`Self::text`].
    pub fn cell(&self, field: &str) -> String {
        use serde_json::Value;
        match (field, self.get(field)) {
            ("cap_eff", Value::String(hex)) => match u64::from_str_radix(hex, 16) {
                Ok(mask) => format!("{} caps", mask.count_ones()),
                Err(_) => hex.clone(),
            },
            ("uid_map", _) => self.text(field).replace(&format!("×{}", u32::MAX), "(all)"),
            (_, Value::Array(items)) if items.len() > 2 => format!("{} of them", items.len()),
            _ => self.text(field),
        }
    }

    /// How `field` compares with `host`'s (native's) value of it.
    pub fn seen(&self, field: &str, host: &ProbeRow) -> Seen {
        let value = self.get(field);
        if self.kind == Kind::Native {
            return Seen::Host;
        }
        if value.is_null() {
            return Seen::Absent;
        }
        let isolated = match field {
            // Two processes never share a pid: what tells is whether it counts from 1.
            "pid" => value.as_u64().is_some_and(|p| p <= OWN_PID_SPACE_MAX_PID),
            "visible_pids" => match (value.as_u64(), host.get(field).as_u64()) {
                (Some(here), Some(there)) => here < there,
                _ => true,
            },
            _ => value != host.get(field),
        };
        if isolated {
            Seen::Isolated
        } else {
            Seen::SameAsHost
        }
    }
}

/// The `probe` run set's rows, native first when present; native is required as the host's
/// view every other row is compared with.
pub fn probes(c: &Collection) -> Result<(&Loaded, Vec<ProbeRow>), Missing> {
    let set = c.mode("probe").ok_or_else(isolation_matrix)?;
    let mut rows: Vec<ProbeRow> = set
        .set
        .targets
        .iter()
        .filter_map(|t| {
            Some(ProbeRow {
                target: t.name.clone(),
                kind: Kind::of(&t.name),
                figures: t.runs.first()?.figures.clone(),
            })
        })
        .collect();
    rows.sort_by_key(|r| r.kind != Kind::Native);
    if rows.first().is_none_or(|r| r.kind != Kind::Native) {
        return Err(Missing::new(
            "native in the `probe` run set (the host's own view)",
            "isolab bench --workload probe --target native,...",
        ));
    }
    Ok((set, rows))
}

/// The start-up phases targets record (see [`crate::schema::PhaseTime`]), in the order they
/// are listed in legends and tables, with what each covers.
pub const PHASES: [(&str, &str); 9] = [
    (
        "launch",
        "launch: exec of isolab, options (and an image's overlay)",
    ),
    ("prepare", "prepare: rootfs check, plan, seccomp BPF"),
    ("monitor", "monitor set-up: KVM VM, guest memory, vCPU"),
    ("namespaces", "namespaces: clone3 into new namespaces"),
    ("boot", "guest start to its first system call"),
    ("cgroup", "cgroup: create, join, cgroup namespace"),
    ("mounts", "mounts and pivot_root"),
    ("confine", "capabilities, no_new_privs, seccomp"),
    (
        "ready",
        "to ready: exec, program or Linux guest start until ISOLAB-READY",
    ),
];
/// The one segment of a target that records no phases: its whole time to ready.
pub const TOTAL_PHASE: &str = "total";

/// What a phase covers, for legends and tables; unknown names stand for themselves.
pub fn phase_label(name: &str) -> &str {
    PHASES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(name, |(_, label)| label)
}

/// One target's start-up, phase by phase: the mean of each phase over the runs of the
/// `ready` set, in the order they happened; a target that records no phases has one
/// [`TOTAL_PHASE`], its mean time to ready. Means, unlike medians, add up: the phases of a
/// run add up to its time to ready, so their means add up to the mean time to ready.
#[derive(Debug, Clone)]
pub struct StartupPhases {
    pub target: String,
    /// Whether the target recorded its phases.
    pub recorded: bool,
    /// (phase, mean ms).
    pub phases: Vec<(String, f64)>,
    pub mean_ready_ms: f64,
    pub median_ready_ms: f64,
}

impl StartupPhases {
    pub fn sum_ms(&self) -> f64 {
        self.phases.iter().map(|(_, ms)| ms).sum()
    }
}

/// Start-up phases per target from the `ready` run set; missing when no target there
/// recorded any.
pub fn start_up_phases(c: &Collection) -> Result<(&Loaded, Vec<StartupPhases>), Missing> {
    let set = c.mode("ready").ok_or_else(|| Missing::mode("ready"))?;
    let rows: Vec<StartupPhases> = set
        .set
        .targets
        .iter()
        .filter_map(|t| {
            let ready = t.stats.get("ready_ns")?;
            let mut names: Vec<&str> = Vec::new();
            for phase in t.runs.iter().flat_map(|r| r.phases.iter().flatten()) {
                if !names.contains(&phase.name.as_str()) {
                    names.push(&phase.name);
                }
            }
            let phases: Vec<(String, f64)> = names
                .iter()
                .map(|name| {
                    let values: Vec<f64> = t
                        .runs
                        .iter()
                        .map(|r| {
                            r.phases
                                .iter()
                                .flatten()
                                .filter(|p| p.name == *name)
                                .map(|p| p.ns as f64 / 1e6)
                                .sum::<f64>()
                        })
                        .collect();
                    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
                    ((*name).to_owned(), mean)
                })
                .collect();
            Some(StartupPhases {
                target: t.name.clone(),
                recorded: !phases.is_empty(),
                phases: if phases.is_empty() {
                    vec![(TOTAL_PHASE.to_owned(), ready.mean / 1e6)]
                } else {
                    phases
                },
                mean_ready_ms: ready.mean / 1e6,
                median_ready_ms: ready.median / 1e6,
            })
        })
        .collect();
    if !rows.iter().any(|r| r.recorded) {
        return Err(Missing::new(
            "start-up phases (no target of the `ready` run set recorded them)",
            "isolab bench --workload ready --target native,container,vm-mini (isolab's \
             container and mini VM record their phases)",
        ));
    }
    Ok((set, rows))
}

/// A container image on disk: its layers (unpacked and blob) and metadata.
#[derive(Debug, Clone)]
pub struct ImageDisk {
    /// Its first name, else the start of its id.
    pub name: String,
    pub bytes: u64,
}

/// A container's own disk: its upper layer, beside the image it runs.
#[derive(Debug, Clone)]
pub struct ContainerDisk {
    pub id: String,
    pub upper_bytes: u64,
    /// The image it runs, when the footprint set has it.
    pub image: Option<ImageDisk>,
}

/// What a VM target boots from, file by file.
#[derive(Debug, Clone)]
pub struct VmDisk {
    pub target: String,
    /// (role, bytes), e.g. ("kernel", ...), ("initramfs", ...).
    pub files: Vec<(String, u64)>,
}

impl VmDisk {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b).sum()
    }
}

/// Bytes on disk of container images, containers and VM targets, as counted by the
/// footprint set (allocated blocks, see its `units`).
#[derive(Debug, Clone)]
pub struct DiskFootprint {
    pub units: String,
    pub images: Vec<ImageDisk>,
    pub containers: Vec<ContainerDisk>,
    pub vms: Vec<VmDisk>,
}

/// The disk footprint from the footprint set.
pub fn disk_footprint(c: &Collection) -> Result<(&Loaded, DiskFootprint), Missing> {
    let missing = || {
        Missing::new(
            "disk footprint (image layers; kernel + initramfs + disk image)",
            "isolab measure (its footprint stage), or isolab image du --results FILE for the \
             image store alone",
        )
    };
    let set = c.footprint().ok_or_else(missing)?;
    let f = set.set.footprint.as_ref().ok_or_else(missing)?;
    let image = |id: &str| {
        f.images.iter().find(|i| i.id == id).map(|i| ImageDisk {
            name: i
                .names
                .first()
                .cloned()
                .unwrap_or_else(|| i.id.chars().take(12).collect()),
            bytes: i.total_bytes,
        })
    };
    let mut vms: Vec<VmDisk> = Vec::new();
    for file in &f.vm_files {
        let entry = (file.role.clone(), file.bytes);
        match vms.iter_mut().find(|v| v.target == file.target) {
            Some(vm) => vm.files.push(entry),
            None => vms.push(VmDisk {
                target: file.target.clone(),
                files: vec![entry],
            }),
        }
    }
    Ok((
        set,
        DiskFootprint {
            units: f.units.clone(),
            images: f.images.iter().filter_map(|i| image(&i.id)).collect(),
            containers: f
                .containers
                .iter()
                .map(|k| ContainerDisk {
                    id: k.id.clone(),
                    upper_bytes: k.upper_bytes,
                    image: k.image.as_deref().and_then(image),
                })
                .collect(),
            vms,
        },
    ))
}

/// Bytes in the largest unit that keeps them at or above 1 (B, KiB, MiB, GiB).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn density() -> Missing {
    Missing::new(
        "density (host memory used vs number of instances)",
        "isolab bench --workload idle --count 50 --step 10 --target native,container,vm-mini \
         (or isolab measure)",
    )
}

pub fn isolation_matrix() -> Missing {
    Missing::new(
        "isolation matrix (what each target can see)",
        "isolab bench --workload probe --runs 1 --warmup 0 --target native,container,vm-mini \
         (or isolab measure)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{ALL_FIXTURES, fixture};

    #[test]
    fn startup_and_memory_from_the_ready_fixture() {
        let c = fixture(&ALL_FIXTURES);
        let (_, rows) = startup(&c).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["native", "unshare", "vm-mini"]);
        assert_eq!(rows[0].ms.len(), 12);
        let (_, mem) = memory(&c).unwrap();
        assert_eq!(mem[0].overhead_kib, 0.0);
        assert!(mem[2].overhead_kib > 3000.0, "{mem:?}");
    }

    #[test]
    fn overheads_cover_the_measured_modes_and_name_the_rest() {
        let c = fixture(&["cpu.json", "syscall.json"]);
        let (rows, missing) = overheads(&c);
        assert_eq!(rows.len(), 4);
        let syscall_vm = rows
            .iter()
            .find(|r| r.mode == "syscall" && r.kind == Kind::MiniVm)
            .unwrap();
        assert!(syscall_vm.ratio > 10.0 && syscall_vm.ci.0 <= syscall_vm.ratio);
        let what: Vec<&str> = missing.iter().map(|m| m.what.as_str()).collect();
        assert_eq!(
            what,
            ["the `mem` run set", "the `io` run set", "the `net` run set"]
        );
    }

    #[test]
    fn phases_come_from_the_targets_that_record_them_and_totals_from_the_rest() {
        let c = fixture(&["ready-phases.json"]);
        let (_, rows) = start_up_phases(&c).unwrap();
        let container = rows.iter().find(|r| r.target == "container").unwrap();
        assert!(container.recorded);
        let names: Vec<&str> = container.phases.iter().map(|(n, _)| n.as_str()).collect();
        for phase in [
            "launch",
            "namespaces",
            "mounts",
            "cgroup",
            "confine",
            "ready",
        ] {
            assert!(names.contains(&phase), "{phase} missing from {names:?}");
        }
        // Each run's phases add up to its time to ready, so their means to the mean.
        for run in &c.mode("ready").unwrap().target("container").unwrap().runs {
            let phases = run.phases.as_ref().unwrap();
            assert_eq!(
                phases.iter().map(|p| p.ns).sum::<u64>(),
                run.ready_ns.unwrap()
            );
        }
        assert!((container.sum_ms() - container.mean_ready_ms).abs() < 1e-6);
        let vm = rows.iter().find(|r| r.target == "vm-mini").unwrap();
        assert_eq!(vm.phases[1].0, "monitor");
        let runc = rows.iter().find(|r| r.target == "runc").unwrap();
        assert!(!runc.recorded);
        assert_eq!(runc.phases, [(TOTAL_PHASE.to_owned(), runc.mean_ready_ms)]);
        // Without any recorded phase the breakdown is missing, and says how to get it.
        let err = start_up_phases(&fixture(&["ready.json"])).unwrap_err();
        assert!(
            err.how.contains("--target native,container,vm-mini"),
            "{err:?}"
        );
    }

    #[test]
    fn footprint_items_from_the_fixture() {
        let c = fixture(&["ready.json", "footprint.json"]);
        let (set, disk) = disk_footprint(&c).unwrap();
        assert!(set.path.ends_with("footprint.json"));
        assert!(disk.units.contains("st_blocks"));
        let names: Vec<&str> = disk.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["scratch-workload:latest", "busybox:latest"]);
        let container = &disk.containers[0];
        assert_eq!(container.image.as_ref().unwrap().name, "busybox:latest");
        assert!(container.upper_bytes > 0);
        assert_eq!(disk.vms[0].target, "vm-mini");
        assert_eq!(disk.vms[0].files[0].0, "program");
        assert!(disk_footprint(&fixture(&["ready.json"])).is_err());
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn missing_ready_set_is_named() {
        let c = fixture(&["cpu.json"]);
        let err = startup(&c).unwrap_err();
        assert!(err.sentence().contains("isolab bench --workload ready"));
    }

    #[test]
    fn slopes_fit_the_origin_and_the_steps() {
        assert_eq!(slope(&[(10.0, 1000.0)]), 100.0);
        // A one-time cost stays in the intercept: by hand, with the origin, x̄ = 15,
        // ȳ = 1875, Sxx = 500, Sxy = 57 500, so 115 (100 from the steps alone).
        let s = slope(&[(10.0, 1500.0), (20.0, 2500.0), (30.0, 3500.0)]);
        assert!((s - 115.0).abs() < 1e-9, "{s}");
        assert_eq!(slope(&[]), 0.0);
    }

    #[test]
    fn density_costs_summarise_reach_split_and_start_times() {
        // A real `--quick` run (release build): 20 of each, 5 per step.
        let c = fixture(&["density-split.json"]);
        let (_, rows) = density_costs(&c).unwrap();
        assert_eq!(rows.len(), 3);
        for row in &rows {
            assert_eq!((row.instances, row.requested), (20, Some(20)), "{row:?}");
            assert_eq!(row.stopped, "completed");
            assert!(
                row.start_ms_first > 0.0 && row.start_ms_last > 0.0,
                "{row:?}"
            );
            // Every instance adds to both sides.
            assert!(row.runtime_slope_kib.unwrap() > 0.0, "{row:?}");
            assert!(row.instance_slope_kib.unwrap() > 0.0, "{row:?}");
        }
        let vm = rows.iter().find(|r| r.target == "vm-mini").unwrap();
        // By hand from the file: runtime PSS 3523, 5768, 7958, 10128 KiB at 5..20 running.
        let by_hand = slope(&[
            (5.0, 3523.0),
            (10.0, 5768.0),
            (15.0, 7958.0),
            (20.0, 10128.0),
        ]);
        assert!((vm.runtime_slope_kib.unwrap() - by_hand).abs() < 1e-9);
        // A set without the split has none.
        let (_, old) = density_costs(&fixture(&["density.json"])).unwrap();
        assert!(old.iter().all(|r| r.runtime_slope_kib.is_none()));
    }
}
