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

/// Data later isolab work produces; until a results file carries them, the report shows
/// them as not measured with what would produce them.
pub fn start_up_phases() -> Missing {
    Missing::new(
        "start-up phases (namespaces, mounts, cgroup, exec; VM: monitor set-up, kernel boot, init)",
        "per-phase timestamps in the results schema (not produced by this build yet)",
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
        "a density run set (not produced by this build yet)",
    )
}

pub fn isolation_matrix() -> Missing {
    Missing::new(
        "isolation matrix (what each target can see)",
        "`isolab-workload probe` run on every target; isolab bench has no `probe` workload mode \
         yet",
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
}
