//! The quantities charts, claims and plans are computed from, each taken from the run set
//! that measures it. Each getter returns what the data hold; what is absent is named by
//! [`Missing`], with the command that would produce it.

use serde::Serialize;

use crate::analysis::{Collection, Kind, Loaded, samples};
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

/// Memory per target from the `ready` run set (the workload does nothing else there, so
/// what is above native is the isolation's own cost).
pub fn memory(c: &Collection) -> Result<(&Loaded, Vec<Memory>), Missing> {
    let set = c.mode("ready").ok_or_else(|| Missing::mode("ready"))?;
    let pss = |name: &str| Some(set.target(name)?.stats.get("pss_kib")?.median);
    let native = pss("native").ok_or_else(|| {
        Missing::new(
            "native PSS in the `ready` run set",
            "isolab bench --workload ready --target native,...",
        )
    })?;
    let rows = set
        .set
        .targets
        .iter()
        .filter_map(|t| {
            let pss_kib = pss(&t.name)?;
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
pub const RUNTIME_MODES: [(&str, &str, Better); 4] = [
    ("cpu", "figures.elapsed_ns", Better::Lower),
    ("mem", "figures.ns_per_page", Better::Lower),
    ("syscall", "figures.ns_per_call", Better::Lower),
    ("io", "figures.write_mb_s", Better::Higher),
];

/// Run-time modes the workload has no mode for yet.
pub const UNMEASURED_MODES: [(&str, &str); 1] = [(
    "net",
    "a network workload mode (isolab-workload has none yet)",
)];

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
    missing.extend(
        UNMEASURED_MODES
            .iter()
            .map(|(mode, how)| Missing::new(format!("`{mode}` run-time overhead"), *how)),
    );
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

/// Start-up phases: the harness times spawn to ready only; `--explain` prints each phase's
/// time stamps on stderr but no result file records them yet.
pub fn start_up_phases() -> Missing {
    Missing::new(
        "start-up phases (namespaces, mounts, cgroup, exec; VM: monitor set-up, kernel boot, init)",
        "`isolab run --explain --rootfs DIR -- CMD` and `isolab vm run --guest mini --explain \
         --workload ready` print them; the harness does not record them in results yet",
    )
}

pub fn disk_footprint() -> Missing {
    Missing::new(
        "disk footprint (image layers; kernel + initramfs + disk image)",
        "a footprint section in the results schema (not produced by this build yet)",
    )
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
            [
                "the `mem` run set",
                "the `io` run set",
                "`net` run-time overhead"
            ]
        );
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
}
