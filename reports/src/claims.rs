//! The classic container-vs-VM claims, checked against the data. Every verdict is computed
//! from the results with the thresholds below; a claim without the data it needs is "not
//! measured", with what is missing and what would produce it.

use std::fmt;

use serde::Serialize;

use crate::analysis::{Collection, Kind};
use crate::measures::{self, Missing};
use crate::plan::{self, PerInstance, PlanInput};

/// Claim 1: a VM "starts in minutes" when its median time to ready is at least this.
pub const VM_MINUTES_MS: f64 = 60_000.0;
/// Claim 3: a container "runs at native speed" when it loses at most this share of native
/// throughput...
pub const CONTAINER_NATIVE_MAX_LOSS: f64 = 0.05;
/// ...and a VM "loses a large share" when it loses at least this (the quoted 50 %).
pub const VM_LARGE_LOSS: f64 = 0.5;
/// Claim 4: "thousands" of containers and "only tens" (fewer than this) of VMs.
pub const THOUSANDS: u64 = 1000;
pub const TENS_BELOW: u64 = 100;
/// Claim 5: a VM costs "far more memory" when its instance costs at least this many times
/// a container's and at least [`FAR_MORE_MIN_KIB`] more.
pub const FAR_MORE_RATIO: f64 = 4.0;
pub const FAR_MORE_MIN_KIB: f64 = 32.0 * 1024.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "snake_case")]
pub enum Verdict {
    Holds,
    DoesNotHold,
    /// Holds for some of the cases measured and not for others; says on what it depends.
    Depends(String),
    NotMeasured(Missing),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Holds => f.write_str("holds"),
            Verdict::DoesNotHold => f.write_str("does not hold"),
            Verdict::Depends(on) => write!(f, "depends {on}"),
            Verdict::NotMeasured(missing) => f.write_str(&missing.sentence()),
        }
    }
}

impl Verdict {
    /// A short class name for styling: holds, does-not-hold, depends, not-measured.
    pub fn class(&self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does-not-hold",
            Verdict::Depends(_) => "depends",
            Verdict::NotMeasured(_) => "not-measured",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    pub number: u8,
    pub claim: &'static str,
    /// What was measured, with values; empty when nothing was.
    pub measured: String,
    /// The commands that produced the data used.
    pub commands: Vec<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// All claims, in the usual order.
pub fn check(c: &Collection) -> Vec<Claim> {
    let not_measured = |number, claim, missing: Missing| Claim {
        number,
        claim,
        measured: String::new(),
        commands: Vec::new(),
        verdict: Verdict::NotMeasured(missing),
    };
    vec![
        start_up(c),
        not_measured(
            2,
            "Container images are MB, VM images are GB.",
            measures::disk_footprint(),
        ),
        run_time(c),
        density(c),
        memory(c),
        not_measured(
            6,
            "Container isolation is process-level, VM isolation is system-level.",
            Missing::new(
                format!(
                    "{} and the security tests",
                    measures::isolation_matrix().what
                ),
                measures::isolation_matrix().how,
            ),
        ),
        not_measured(
            7,
            "Container root equals host root (with and without a user namespace).",
            Missing::new(
                "uid maps and capabilities seen from inside each target",
                measures::isolation_matrix().how,
            ),
        ),
        not_measured(
            8,
            "A daemon crash takes every container down (Docker); daemonless runtimes and \
             per-VM monitors are independent.",
            Missing::new(
                "the daemon-kill experiment",
                "not produced by this build yet",
            ),
        ),
        not_measured(
            9,
            "Copy-on-write layers make per-container disk cost near zero.",
            measures::disk_footprint(),
        ),
    ]
}

/// Holds when it holds for every subject, does not hold for none, else depends on which.
fn aggregate(outcomes: &[(String, bool)], on: &str) -> Verdict {
    let (yes, no): (Vec<_>, Vec<_>) = outcomes.iter().partition(|(_, holds)| *holds);
    let names = |v: &[&(String, bool)]| {
        v.iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (yes.is_empty(), no.is_empty()) {
        (false, true) => Verdict::Holds,
        (true, _) => Verdict::DoesNotHold,
        (false, false) => Verdict::Depends(format!(
            "on {on}: holds for {}; not for {}",
            names(&yes),
            names(&no)
        )),
    }
}

fn start_up(c: &Collection) -> Claim {
    let claim = "Containers start in seconds, VMs in minutes.";
    let mut out = Claim {
        number: 1,
        claim,
        measured: String::new(),
        commands: Vec::new(),
        verdict: Verdict::Holds,
    };
    let rows = match measures::startup(c) {
        Ok((set, rows)) => {
            out.commands.push(set.command_line());
            rows
        }
        Err(missing) => {
            out.verdict = Verdict::NotMeasured(missing);
            return out;
        }
    };
    let containers: Vec<_> = rows.iter().filter(|r| r.kind == Kind::Container).collect();
    let vms: Vec<_> = rows.iter().filter(|r| r.kind.is_vm()).collect();
    if containers.is_empty() || vms.is_empty() {
        out.verdict = Verdict::NotMeasured(both_kinds_missing("ready"));
        return out;
    }
    out.measured = rows
        .iter()
        .filter(|r| r.kind != Kind::Other)
        .map(|r| format!("{} {}", r.target, format_ms(r.median_ms)))
        .collect::<Vec<_>>()
        .join(", ")
        + " (median time from spawn to ready)";
    let slowest_container = containers.iter().map(|r| r.median_ms).fold(0.0, f64::max);
    let outcomes: Vec<(String, bool)> = vms
        .iter()
        .map(|vm| {
            (
                vm.target.clone(),
                vm.median_ms >= VM_MINUTES_MS && slowest_container < VM_MINUTES_MS,
            )
        })
        .collect();
    out.verdict = aggregate(&outcomes, "the VM");
    out
}

fn run_time(c: &Collection) -> Claim {
    let claim = "Containers run at native speed; VMs lose a large share (often quoted as 50%).";
    let (rows, missing) = measures::overheads(c);
    let mut outcomes = Vec::new();
    let mut measured = Vec::new();
    let mut commands = Vec::new();
    for (mode, _, _) in measures::RUNTIME_MODES {
        let of = |vm: bool| {
            rows.iter()
                .filter(move |r| r.mode == mode && (r.kind.is_vm() == vm))
                .filter(|r| r.kind != Kind::Other)
        };
        if of(false).next().is_none() || of(true).next().is_none() {
            continue;
        }
        let containers_native = of(false).all(|r| r.loss() <= CONTAINER_NATIVE_MAX_LOSS);
        let vms_lose = of(true).all(|r| r.loss() >= VM_LARGE_LOSS);
        outcomes.push((mode.to_owned(), containers_native && vms_lose));
        measured.push(format!(
            "{mode}: {}",
            of(false)
                .chain(of(true))
                .map(|r| format!("{} {:+.0}%", r.target, -100.0 * r.loss()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        commands.extend(of(false).next().map(|r| r.command.clone()));
    }
    let verdict = if outcomes.is_empty() {
        Verdict::NotMeasured(
            missing
                .into_iter()
                .next()
                .unwrap_or_else(|| both_kinds_missing("cpu")),
        )
    } else {
        aggregate(&outcomes, "the workload")
    };
    Claim {
        number: 3,
        claim,
        measured: if measured.is_empty() {
            String::new()
        } else {
            measured.join("; ") + " (throughput change vs native)"
        },
        commands,
        verdict,
    }
}

/// Per class, the measured per-instance cost, and what fits of a minimal (idle `ready`)
/// workload on the measured host's memory.
fn density(c: &Collection) -> Claim {
    let claim = "One host runs thousands of containers but only tens of VMs.";
    let (found, _) = plan::per_instance(c);
    let native_pss = measures::memory(c).ok().and_then(|(_, rows)| {
        rows.iter()
            .find(|m| m.kind == Kind::Native)
            .map(|m| m.pss_kib)
    });
    let container = found.iter().find(|p| p.class == "container");
    let vms: Vec<&PerInstance> = found.iter().filter(|p| p.class != "container").collect();
    let (Some(native_pss), Some(container), false) = (native_pss, container, vms.is_empty()) else {
        return Claim {
            number: 4,
            claim,
            measured: String::new(),
            commands: Vec::new(),
            verdict: Verdict::NotMeasured(both_kinds_missing("ready")),
        };
    };
    let host = c.host();
    let input = PlanInput {
        host_mem_kib: host.mem_total_kib,
        host_cpus: f64::from(host.cores),
        workload_mem_kib: native_pss.ceil() as u64,
        // Idle instances: memory is what binds, so CPU is made not to.
        workload_cpu: f64::MIN_POSITIVE,
        reserve_mem_kib: plan::DEFAULT_RESERVE_MEM_KIB.min(host.mem_total_kib / 2),
        reserve_cpu: 0.0,
    };
    let instances: Vec<PerInstance> = std::iter::once(container.clone())
        .chain(vms.iter().map(|v| (*v).clone()))
        .collect();
    let Ok(fits) = plan::compute(&input, &instances) else {
        return Claim {
            number: 4,
            claim,
            measured: String::new(),
            commands: Vec::new(),
            verdict: Verdict::NotMeasured(both_kinds_missing("ready")),
        };
    };
    let containers_fit = fits[0].fit_by_memory;
    let outcomes: Vec<(String, bool)> = fits[1..]
        .iter()
        .map(|f| {
            (
                f.per_instance.target.clone(),
                containers_fit >= THOUSANDS && f.fit_by_memory < TENS_BELOW,
            )
        })
        .collect();
    Claim {
        number: 4,
        claim,
        measured: format!(
            "{}; memory arithmetic for idle instances ({:.0} KiB workload + measured overhead) \
             on this host's {:.1} GiB, not a density run",
            fits.iter()
                .map(|f| format!("{} {}", f.per_instance.target, f.fit_by_memory))
                .collect::<Vec<_>>()
                .join(", "),
            native_pss,
            host.mem_total_kib as f64 / 1048576.0
        ),
        commands: measures::memory(c)
            .map(|(set, _)| vec![set.command_line()])
            .unwrap_or_default(),
        verdict: aggregate(&outcomes, "the VM"),
    }
}

fn memory(c: &Collection) -> Claim {
    let claim = "Containers share the host kernel and use far less memory per instance.";
    let mut out = Claim {
        number: 5,
        claim,
        measured: String::new(),
        commands: Vec::new(),
        verdict: Verdict::NotMeasured(both_kinds_missing("ready")),
    };
    let Ok((set, rows)) = measures::memory(c) else {
        return out;
    };
    let containers: Vec<_> = rows.iter().filter(|r| r.kind == Kind::Container).collect();
    let vms: Vec<_> = rows.iter().filter(|r| r.kind.is_vm()).collect();
    if containers.is_empty() || vms.is_empty() {
        return out;
    }
    let heaviest = containers
        .iter()
        .max_by(|a, b| a.pss_kib.total_cmp(&b.pss_kib))
        .map(|r| r.pss_kib)
        .unwrap_or_default();
    let outcomes: Vec<(String, bool)> = vms
        .iter()
        .map(|vm| {
            (
                vm.target.clone(),
                vm.pss_kib >= FAR_MORE_RATIO * heaviest
                    && vm.pss_kib - heaviest >= FAR_MORE_MIN_KIB,
            )
        })
        .collect();
    out.measured = containers
        .iter()
        .chain(&vms)
        .map(|r| format!("{} {:.1} MiB", r.target, r.pss_kib / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
        + " (median peak PSS per instance; kernel sharing itself is not measured yet)";
    out.commands.push(set.command_line());
    out.verdict = aggregate(&outcomes, "the VM");
    out
}

fn both_kinds_missing(mode: &str) -> Missing {
    Missing::new(
        format!("a container and a VM target in the `{mode}` run set"),
        format!("isolab bench --workload {mode} --target native,container,vm-mini"),
    )
}

fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{ALL_FIXTURES, fixture};

    fn verdicts(c: &Collection) -> Vec<(u8, String)> {
        check(c)
            .into_iter()
            .map(|c| (c.number, c.verdict.class().to_owned()))
            .collect()
    }

    #[test]
    fn fixtures_give_computed_verdicts_and_name_what_is_missing() {
        let c = fixture(&ALL_FIXTURES);
        let claims = check(&c);
        assert_eq!(claims.len(), 9);
        let v = verdicts(&c);
        assert_eq!(v[0], (1, "does-not-hold".into()));
        assert_eq!(v[1], (2, "not-measured".into()));
        // The mini VM loses > 50 % on syscalls and mem, not on cpu.
        assert_eq!(v[2], (3, "depends".into()), "{:?}", claims[2]);
        assert!(claims[2].verdict.to_string().contains("the workload"));
        assert_eq!(v[3], (4, "does-not-hold".into()));
        assert_eq!(v[4], (5, "does-not-hold".into()));
        for n in [6, 7, 8, 9] {
            assert_eq!(v[n - 1].1, "not-measured");
        }
        assert!(claims[0].measured.contains("vm-mini"));
        assert!(claims[0].commands[0].contains("isolab bench"));
    }

    #[test]
    fn verdicts_flip_when_the_data_flip() {
        let mut c = fixture(&ALL_FIXTURES);
        // A VM that takes two minutes to boot and 512 MiB per instance.
        for loaded in &mut c.sets {
            let ready = loaded.set.workload.mode == "ready";
            for t in loaded
                .set
                .targets
                .iter_mut()
                .filter(|t| t.name == "vm-mini")
            {
                for run in &mut t.runs {
                    if ready {
                        run.ready_ns = Some(120_000_000_000);
                        run.pss_kib = Some(512 * 1024);
                    }
                }
                t.stats = crate::stats::summarize_runs(&t.runs);
            }
        }
        let v = verdicts(&c);
        assert_eq!(v[0].1, "holds");
        assert_eq!(v[4].1, "holds");
        // 23.5 GiB / 513 MiB ≈ 46 VMs against > 1000 containers.
        assert_eq!(v[3].1, "holds");
    }

    #[test]
    fn without_a_vm_the_claims_are_not_measured() {
        let mut c = fixture(&ALL_FIXTURES);
        for loaded in &mut c.sets {
            loaded.set.targets.retain(|t| t.name != "vm-mini");
        }
        let claims = check(&c);
        for n in [0, 2, 3, 4] {
            assert_eq!(claims[n].verdict.class(), "not-measured", "{:?}", claims[n]);
        }
        assert!(
            claims[0]
                .verdict
                .to_string()
                .contains("--target native,container,vm-mini")
        );
    }
}
