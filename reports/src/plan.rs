//! Capacity planning: how many instances of a workload fit on a host as containers, mini VMs
//! and Linux VMs, from the per-instance overheads measured.
//!
//! Per instance: memory = the workload's memory + the target's measured memory overhead;
//! from a density run set when there is one (the slope of host memory over the instances
//! running, above native's), else PSS above native in the `ready` run set; CPU = the workload's CPUs × the target's measured
//! cpu-mode cost relative to native (1 when no `cpu` run set was given). What fits is
//! ⌊(host memory − reserve) / memory per instance⌋ and ⌊(host CPUs − reserve) / CPU per
//! instance⌋; the smaller binds.

use std::path::PathBuf;

use serde::Serialize;

use crate::analysis::{Collection, Kind};
use crate::measures::{self, Missing};

/// Defaults of the host reserve: what the system itself keeps (kernel, daemons, page cache
/// headroom). 1 GiB and half a CPU suit a small server; `--reserve-mem`/`--reserve-cpu`
/// override them.
pub const DEFAULT_RESERVE_MEM_KIB: u64 = 1024 * 1024;
pub const DEFAULT_RESERVE_CPU: f64 = 0.5;
/// The workload `isolab plan` and the report's planning chart assume unless told otherwise.
pub const DEFAULT_WORKLOAD_MEM_KIB: u64 = 256 * 1024;
pub const DEFAULT_WORKLOAD_CPU: f64 = 0.25;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlanInput {
    pub host_mem_kib: u64,
    pub host_cpus: f64,
    pub workload_mem_kib: u64,
    pub workload_cpu: f64,
    pub reserve_mem_kib: u64,
    pub reserve_cpu: f64,
}

/// The measured cost of one instance of a target, beyond the workload itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerInstance {
    pub target: String,
    pub class: &'static str,
    pub overhead_kib: f64,
    /// CPU cost relative to native; 1 when not measured (see `cpu_measured`).
    pub cpu_factor: f64,
    pub cpu_measured: bool,
    /// Where `overhead_kib` comes from, with the file.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    Memory,
    Cpu,
}

/// What fits of one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit {
    #[serde(flatten)]
    pub per_instance: PerInstance,
    pub mem_per_instance_kib: f64,
    pub cpu_per_instance: f64,
    pub fit_by_memory: u64,
    pub fit_by_cpu: u64,
    pub instances: u64,
    pub binds: Binding,
}

/// A whole plan, as printed and as written in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub input: PlanInput,
    /// The results files the overheads come from.
    pub sources: Vec<PathBuf>,
    pub fits: Vec<Fit>,
    pub not_measured: Vec<(String, Missing)>,
}

/// The classes a plan answers for, each with the kinds that stand for it.
const CLASSES: [(&str, Kind); 3] = [
    ("container", Kind::Container),
    ("mini VM", Kind::MiniVm),
    ("Linux VM", Kind::LinuxVm),
];

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("`{0}`: expected a size such as 256M, 1G or 1048576 (bytes)")]
    BadSize(String),
    #[error("{what} must be positive and finite, got {value}")]
    NotPositive { what: &'static str, value: f64 },
    #[error("the reserve ({reserve}) leaves nothing of the host's {what}")]
    ReserveTooLarge { what: &'static str, reserve: String },
}

/// Parses `256M`, `1G`, `512K`, `2T` (binary units) or plain bytes into KiB, rounding up.
pub fn parse_size_kib(text: &str) -> Result<u64, PlanError> {
    let bad = || PlanError::BadSize(text.to_owned());
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = number.checked_mul(factor).ok_or_else(bad)?;
    Ok(bytes.div_ceil(1024))
}

/// The per-instance costs measured in `c`, by class; classes without a measured target are
/// returned as missing. A density run set is preferred: it measures what N instances cost
/// the host side by side (kernel memory included), where the `ready` PSS of one short-lived
/// instance misses what is not mapped into its processes.
pub fn per_instance(c: &Collection) -> (Vec<PerInstance>, Vec<(String, Missing)>) {
    let memory = measures::memory(c);
    let density = measures::density_costs(c).ok();
    let (overheads, _) = measures::overheads(c);
    // What an instance costs with no isolation at all, from the same source as the target's.
    let native_density = density.as_ref().and_then(|(_, rows)| {
        rows.iter()
            .find(|d| d.kind == Kind::Native)
            .map(|d| d.per_instance_kib)
    });
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (class, kind) in CLASSES {
        let from_density = density.as_ref().and_then(|(set, rows)| {
            let d = rows.iter().find(|d| d.kind == kind)?;
            let native = native_density?;
            Some((
                d.target.clone(),
                (d.per_instance_kib - native).max(0.0),
                format!(
                    "density: {} per instance over {} instances, above native's ({})",
                    d.basis,
                    d.instances,
                    set.path.display()
                ),
            ))
        });
        let from_ready = || {
            let (set, rows) = memory.as_ref().ok()?;
            let m = rows.iter().find(|m| m.kind == kind)?;
            Some((
                m.target.clone(),
                m.overhead_kib,
                format!(
                    "ready: median peak PSS above native's ({})",
                    set.path.display()
                ),
            ))
        };
        match (from_density.or_else(from_ready), &memory) {
            (Some((target, overhead_kib, source)), _) => {
                let cpu = overheads
                    .iter()
                    .find(|o| o.mode == "cpu" && o.target == target);
                found.push(PerInstance {
                    target,
                    class,
                    overhead_kib,
                    cpu_factor: cpu.map_or(1.0, |o| o.ratio),
                    cpu_measured: cpu.is_some(),
                    source,
                });
            }
            (None, Err(why)) => missing.push((class.to_owned(), why.clone())),
            (None, Ok(_)) => missing.push((
                class.to_owned(),
                Missing::new(
                    format!("a {class} target in the `ready` or density run set"),
                    match kind {
                        Kind::Container => "isolab bench --workload ready --target native,container",
                        Kind::MiniVm => "isolab bench --workload ready --target native,vm-mini",
                        _ => "isolab bench --workload ready --target native,vm-linux (or --peer qemu-microvm=...)",
                    },
                ),
            )),
        }
    }
    (found, missing)
}

/// What fits, per measured class.
pub fn compute(input: &PlanInput, per_instance: &[PerInstance]) -> Result<Vec<Fit>, PlanError> {
    for (what, value) in [
        ("the host's CPUs", input.host_cpus),
        ("--workload-cpu", input.workload_cpu),
        ("--workload-mem", input.workload_mem_kib as f64),
    ] {
        if !(value.is_finite() && value > 0.0) {
            return Err(PlanError::NotPositive { what, value });
        }
    }
    let mem = input
        .host_mem_kib
        .checked_sub(input.reserve_mem_kib)
        .filter(|m| *m > 0)
        .ok_or_else(|| PlanError::ReserveTooLarge {
            what: "memory",
            reserve: format!("{} KiB", input.reserve_mem_kib),
        })? as f64;
    let cpus = input.host_cpus - input.reserve_cpu;
    if !(cpus > 0.0 && input.reserve_cpu >= 0.0) {
        return Err(PlanError::ReserveTooLarge {
            what: "CPUs",
            reserve: format!("{} CPUs", input.reserve_cpu),
        });
    }
    Ok(per_instance
        .iter()
        .map(|p| {
            let mem_per_instance_kib = input.workload_mem_kib as f64 + p.overhead_kib;
            let cpu_per_instance = input.workload_cpu * p.cpu_factor;
            let fit_by_memory = (mem / mem_per_instance_kib).floor() as u64;
            let fit_by_cpu = (cpus / cpu_per_instance).floor() as u64;
            Fit {
                per_instance: p.clone(),
                mem_per_instance_kib,
                cpu_per_instance,
                fit_by_memory,
                fit_by_cpu,
                instances: fit_by_memory.min(fit_by_cpu),
                binds: if fit_by_memory <= fit_by_cpu {
                    Binding::Memory
                } else {
                    Binding::Cpu
                },
            }
        })
        .collect())
}

/// A plan for `input` from the overheads measured in `c`.
pub fn plan(input: PlanInput, c: &Collection) -> Result<Plan, PlanError> {
    let (found, not_measured) = per_instance(c);
    Ok(Plan {
        input,
        sources: c.sets.iter().map(|l| l.path.clone()).collect(),
        fits: compute(&input, &found)?,
        not_measured,
    })
}

impl Plan {
    /// The table `isolab plan` prints.
    pub fn render(&self) -> String {
        let i = &self.input;
        let mut out = format!(
            "host: {:.1} GiB, {} CPUs; reserved for the host: {:.1} GiB, {} CPUs\n\
             workload: {} MiB, {} CPUs per instance\n\n",
            i.host_mem_kib as f64 / 1048576.0,
            i.host_cpus,
            i.reserve_mem_kib as f64 / 1048576.0,
            i.reserve_cpu,
            i.workload_mem_kib / 1024,
            i.workload_cpu,
        );
        out += &crate::table::layout(
            &[
                "class",
                "target",
                "overhead MiB",
                "cpu factor",
                "MiB/inst",
                "CPU/inst",
                "fit by mem",
                "fit by cpu",
                "instances",
                "binds",
            ]
            .map(String::from),
            self.fits.iter().map(|f| {
                vec![
                    f.per_instance.class.to_owned(),
                    f.per_instance.target.clone(),
                    format!("{:.2}", f.per_instance.overhead_kib / 1024.0),
                    if f.per_instance.cpu_measured {
                        format!("{:.3}", f.per_instance.cpu_factor)
                    } else {
                        "1 (not measured)".to_owned()
                    },
                    format!("{:.1}", f.mem_per_instance_kib / 1024.0),
                    format!("{:.3}", f.cpu_per_instance),
                    f.fit_by_memory.to_string(),
                    f.fit_by_cpu.to_string(),
                    f.instances.to_string(),
                    match f.binds {
                        Binding::Memory => "memory",
                        Binding::Cpu => "cpu",
                    }
                    .to_owned(),
                ]
            }),
        );
        for fit in &self.fits {
            out += &format!(
                "{} overhead from {}\n",
                fit.per_instance.target, fit.per_instance.source
            );
        }
        for (class, missing) in &self.not_measured {
            out += &format!("{class}: {}\n", missing.sentence());
        }
        let files: Vec<String> = self
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        out += &format!("per-instance overheads from: {}\n", files.join(", "));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{ALL_FIXTURES, FULL_FIXTURES, fixture};

    fn instance(overhead_kib: f64, cpu_factor: f64) -> PerInstance {
        PerInstance {
            target: "t".into(),
            class: "container",
            overhead_kib,
            cpu_factor,
            cpu_measured: true,
            source: "hand".into(),
        }
    }

    #[test]
    fn arithmetic_matches_a_hand_calculation() {
        let input = PlanInput {
            host_mem_kib: 16 * 1024 * 1024,
            host_cpus: 8.0,
            workload_mem_kib: 256 * 1024,
            workload_cpu: 0.25,
            reserve_mem_kib: 1024 * 1024,
            reserve_cpu: 0.5,
        };
        // Memory: (16 − 1) GiB = 15 728 640 KiB; per instance 262 144 + 4 096 = 266 240 KiB
        // → 59.08 → 59. CPU: 7.5 / 0.25 = 30. CPU binds at 30.
        let fits = compute(&input, &[instance(4096.0, 1.0)]).unwrap();
        assert_eq!(
            (fits[0].fit_by_memory, fits[0].fit_by_cpu, fits[0].instances),
            (59, 30, 30)
        );
        assert_eq!(fits[0].binds, Binding::Cpu);
        // A VM: 128 MiB overhead → 15 728 640 / 393 216 = 40; cpu ×2 → 7.5 / 0.5 = 15.
        let vm = &compute(&input, &[instance(131072.0, 2.0)]).unwrap()[0];
        assert_eq!((vm.fit_by_memory, vm.fit_by_cpu), (40, 15));
        // A tiny workload is memory-bound: 15 728 640 / (1024 + 0) = 15 360 vs 7.5/0.0001.
        let tiny = PlanInput {
            workload_mem_kib: 1024,
            workload_cpu: 0.0001,
            ..input
        };
        let fit = &compute(&tiny, &[instance(0.0, 1.0)]).unwrap()[0];
        assert_eq!((fit.instances, fit.binds), (15360, Binding::Memory));
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size_kib("256M").unwrap(), 262144);
        assert_eq!(parse_size_kib("1G").unwrap(), 1048576);
        assert_eq!(parse_size_kib("1GiB").unwrap(), 1048576);
        assert_eq!(parse_size_kib("1500").unwrap(), 2);
        assert!(parse_size_kib("12Q").is_err());
        assert!(parse_size_kib("M").is_err());
    }

    #[test]
    fn reserve_larger_than_host_is_refused() {
        let input = PlanInput {
            host_mem_kib: 1024,
            host_cpus: 1.0,
            workload_mem_kib: 1,
            workload_cpu: 0.1,
            reserve_mem_kib: 2048,
            reserve_cpu: 0.0,
        };
        assert!(matches!(
            compute(&input, &[]),
            Err(PlanError::ReserveTooLarge { what: "memory", .. })
        ));
    }

    #[test]
    fn fixtures_give_container_and_mini_vm_and_name_the_missing_linux_vm() {
        let (found, missing) = per_instance(&fixture(&ALL_FIXTURES));
        let classes: Vec<&str> = found.iter().map(|p| p.class).collect();
        assert_eq!(classes, ["container", "mini VM"]);
        assert!(found.iter().all(|p| p.cpu_measured));
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].0, "Linux VM");
    }

    #[test]
    fn a_density_set_is_preferred_over_ready_pss() {
        let (found, _) = per_instance(&fixture(&FULL_FIXTURES));
        // The first container-class target stands for the class: the fixture's unshare
        // costs 900 KiB per instance, native 420 KiB (steps with ±130 KiB of noise).
        let container = found.iter().find(|p| p.class == "container").unwrap();
        assert_eq!(container.target, "unshare");
        assert!(
            (container.overhead_kib - 480.0).abs() < 5.0,
            "{container:?}"
        );
        assert!(container.source.starts_with("density: host memory slope"));
        let (ready, _) = per_instance(&fixture(&ALL_FIXTURES));
        assert!(ready[0].source.starts_with("ready: median peak PSS"));
    }
}
