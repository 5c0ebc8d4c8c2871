//! The classic container-vs-VM claims, checked against the data. Every verdict is computed
//! from the results with the thresholds below; a claim without the data it needs is "not
//! measured", with what is missing and what would produce it.

use std::fmt;

use serde::Serialize;

use crate::analysis::{Collection, Kind, Loaded};
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
/// Claim 6: "process-level" isolation is a target that runs on the host's kernel (the same
/// `kernel_release` as native) behind a namespace boundary (fewer pids visible than native);
/// "system-level" is a target whose system calls another kernel answers (another
/// `kernel_release`). No numeric threshold: the probe fields are compared as they are.
/// Claim 7: a container's root "equals host root" when its uid 0 is the host's uid 0 (its
/// uid map sends 0 to 0, i.e. no user namespace remaps it) and it keeps host root's
/// effective capabilities (native's `cap_eff`, when native runs as uid 0).
pub const HOST_ROOT_UID: u64 = 0;
/// Claim 2: an image "is MB" below this many bytes on disk, and what a VM boots from "is GB"
/// at or above it (1 GiB).
pub const GB_BYTES: u64 = 1 << 30;
/// Claim 9: a container's own disk (its upper layer after a write) is "near zero" when it
/// is at most this share of the image it runs, which it would cost without copy-on-write.
pub const COW_NEAR_ZERO_SHARE: f64 = 0.01;

/// Claim 8: a daemon's crash "takes every container down" when at most this share of its
/// containers runs and answers once the daemon is back...
pub const DAEMON_DOWN_MAX_SHARE: f64 = 0.0;
/// ...and a runtime or monitor is "independent" when at least this share of the instances
/// whose own process was not killed still run, answer and can be managed.
pub const INDEPENDENT_MIN_SHARE: f64 = 1.0;
/// The target whose daemon the claim is about.
pub const DAEMON_TARGET: &str = "docker";

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
    /// Which run set (and file) the verdict is computed from, or "none".
    pub source: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl Claim {
    /// A claim with nothing measured yet: no values, commands or source, and `verdict`
    /// until the data say otherwise.
    fn new(number: u8, claim: &'static str, verdict: Verdict) -> Claim {
        Claim {
            number,
            claim,
            measured: String::new(),
            commands: Vec::new(),
            source: NO_SOURCE.to_owned(),
            verdict,
        }
    }
}

/// All claims, in the usual order.
pub fn check(c: &Collection) -> Vec<Claim> {
    vec![
        start_up(c),
        image_sizes(c),
        run_time(c),
        density(c),
        memory(c),
        isolation(c),
        root(c),
        blast_radius(c),
        copy_on_write(c),
    ]
}

/// A claim computed from the footprint set, or "not measured" with what it lacks.
fn footprint_claim(
    c: &Collection,
    number: u8,
    claim: &'static str,
    judge: impl FnOnce(&measures::DiskFootprint) -> Result<(String, Verdict), Missing>,
) -> Claim {
    let mut out = Claim::new(number, claim, Verdict::Holds);
    let judged = measures::disk_footprint(c).and_then(|(set, disk)| {
        out.commands.push(set.command_line());
        out.source = source_of("footprint set: allocated bytes on disk", set);
        judge(&disk)
    });
    match judged {
        Ok((measured, verdict)) => {
            out.measured = measured;
            out.verdict = verdict;
        }
        Err(missing) => out.verdict = Verdict::NotMeasured(missing),
    }
    out
}

fn image_sizes(c: &Collection) -> Claim {
    footprint_claim(c, 2, "Container images are MB, VM images are GB.", |disk| {
        if disk.images.is_empty() || disk.vms.is_empty() {
            return Err(Missing::new(
                "container images and VM boot files in the footprint set",
                "isolab measure (its footprint stage measures both)",
            ));
        }
        let largest_image = disk.images.iter().map(|i| i.bytes).max().unwrap_or(0);
        let outcomes: Vec<(String, bool)> = disk
            .vms
            .iter()
            .map(|vm| {
                (
                    vm.target.clone(),
                    vm.bytes() >= GB_BYTES && largest_image < GB_BYTES,
                )
            })
            .collect();
        let images: Vec<String> = disk
            .images
            .iter()
            .map(|i| format!("image {} {}", i.name, measures::format_bytes(i.bytes)))
            .collect();
        let vms: Vec<String> = disk
            .vms
            .iter()
            .map(|vm| {
                let roles: Vec<&str> = vm.files.iter().map(|(r, _)| r.as_str()).collect();
                format!(
                    "{} {} ({})",
                    vm.target,
                    measures::format_bytes(vm.bytes()),
                    roles.join(" + ")
                )
            })
            .collect();
        Ok((
            format!("{}; {} ({})", images.join(", "), vms.join(", "), disk.units),
            aggregate(&outcomes, "the VM"),
        ))
    })
}

fn copy_on_write(c: &Collection) -> Claim {
    footprint_claim(
        c,
        9,
        "Copy-on-write layers make per-container disk cost near zero.",
        |disk| {
            let containers: Vec<(&measures::ContainerDisk, &measures::ImageDisk)> = disk
                .containers
                .iter()
                .filter_map(|k| Some((k, k.image.as_ref()?)))
                .collect();
            if containers.is_empty() {
                return Err(Missing::new(
                    "a container's upper layer beside its image in the footprint set",
                    "isolab measure (its footprint stage runs one container that writes a file)",
                ));
            }
            let outcomes: Vec<(String, bool)> = containers
                .iter()
                .map(|(k, image)| {
                    (
                        format!("a container of {}", image.name),
                        k.upper_bytes as f64 <= COW_NEAR_ZERO_SHARE * image.bytes as f64,
                    )
                })
                .collect();
            let measured: Vec<String> = containers
                .iter()
                .map(|(k, image)| {
                    format!(
                        "a container of {} wrote a file: upper layer {} beside the image's {} \
                         ({:.2} %)",
                        image.name,
                        measures::format_bytes(k.upper_bytes),
                        measures::format_bytes(image.bytes),
                        100.0 * k.upper_bytes as f64 / image.bytes.max(1) as f64
                    )
                })
                .collect();
            Ok((
                format!("{} ({})", measured.join("; "), disk.units),
                aggregate(&outcomes, "what the container writes"),
            ))
        },
    )
}

const NO_SOURCE: &str = "none";

/// "the `ready` run set (FILE)", naming what a verdict is computed from.
fn source_of(what: &str, set: &Loaded) -> String {
    format!("{what} ({})", set.path.display())
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
    let mut out = Claim::new(1, claim, Verdict::Holds);
    let rows = match measures::startup(c) {
        Ok((set, rows)) => {
            out.commands.push(set.command_line());
            out.source = source_of("`ready` run set: time to ISOLAB-READY", set);
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
    let mut sources = Vec::new();
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
        sources.extend(c.mode(mode).map(|set| source_of(&format!("`{mode}`"), set)));
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
        source: if sources.is_empty() {
            NO_SOURCE.to_owned()
        } else {
            format!("run sets {}", sources.join(", "))
        },
        verdict,
    }
}

/// Per class, the measured per-instance cost, and what fits of a minimal (idle) workload on
/// the measured host's memory. The per-instance costs come from the density run set when
/// there is one (see [`plan::per_instance`]), else from `ready` PSS arithmetic.
fn density(c: &Collection) -> Claim {
    let claim = "One host runs thousands of containers but only tens of VMs.";
    let (found, _) = plan::per_instance(c);
    let from_density = measures::density_costs(c).ok().and_then(|(set, rows)| {
        let native = rows.iter().find(|d| d.kind == Kind::Native)?;
        Some((set, native.per_instance_kib))
    });
    let from_ready = || {
        measures::memory(c).ok().and_then(|(set, rows)| {
            let native = rows.iter().find(|m| m.kind == Kind::Native)?;
            Some((set, native.pss_kib))
        })
    };
    let baseline = from_density.or_else(from_ready);
    let container = found.iter().find(|p| p.class == "container");
    let vms: Vec<&PerInstance> = found.iter().filter(|p| p.class != "container").collect();
    let not_measured = || {
        Claim::new(
            4,
            claim,
            Verdict::NotMeasured(Missing::new(
                "a native, a container and a VM target in the density (or `ready`) run set",
                "isolab bench --workload idle --count 50 --step 10 --target native,container,vm-mini",
            )),
        )
    };
    let (Some((base_set, native_kib)), Some(container), false) =
        (baseline, container, vms.is_empty())
    else {
        return not_measured();
    };
    let host = c.host();
    let input = PlanInput {
        host_mem_kib: host.mem_total_kib,
        host_cpus: f64::from(host.cores),
        workload_mem_kib: native_kib.ceil().max(1.0) as u64,
        // Idle instances: memory is what binds, so CPU is made not to.
        workload_cpu: f64::MIN_POSITIVE,
        reserve_mem_kib: plan::DEFAULT_RESERVE_MEM_KIB.min(host.mem_total_kib / 2),
        reserve_cpu: 0.0,
    };
    let instances: Vec<PerInstance> = std::iter::once(container.clone())
        .chain(vms.iter().map(|v| (*v).clone()))
        .collect();
    let Ok(fits) = plan::compute(&input, &instances) else {
        return not_measured();
    };
    // Instances a density run actually reached count too: what ran is a floor under what
    // fits, whatever the projection says.
    let reached: Vec<(String, u32, String)> = measures::density_costs(c)
        .map(|(_, rows)| {
            rows.iter()
                .filter(|d| d.kind != Kind::Native)
                .map(|d| (d.target.clone(), d.instances, d.stopped.clone()))
                .collect()
        })
        .unwrap_or_default();
    let fit = |f: &plan::Fit| {
        reached
            .iter()
            .find(|(target, ..)| *target == f.per_instance.target)
            .map_or(f.fit_by_memory, |(_, n, _)| {
                f.fit_by_memory.max(u64::from(*n))
            })
    };
    let containers_fit = fit(&fits[0]);
    let outcomes: Vec<(String, bool)> = fits[1..]
        .iter()
        .map(|f| {
            (
                f.per_instance.target.clone(),
                containers_fit >= THOUSANDS && fit(f) < TENS_BELOW,
            )
        })
        .collect();
    let density_based = base_set.set.kind == crate::schema::ResultKind::Density;
    let ran = if reached.is_empty() {
        String::new()
    } else {
        format!(
            "; reached side by side: {}",
            reached
                .iter()
                .map(|(target, n, why)| format!("{target} {n} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Claim {
        number: 4,
        claim,
        measured: format!(
            "{} fit by memory; an idle instance costs {:.0} KiB natively plus {} on this \
             host's {:.1} GiB ({}){ran}",
            fits.iter()
                .map(|f| format!("{} {}", f.per_instance.target, f.fit_by_memory))
                .collect::<Vec<_>>()
                .join(", "),
            native_kib,
            fits.iter()
                .map(|f| format!(
                    "{} {:.0} KiB",
                    f.per_instance.target, f.per_instance.overhead_kib
                ))
                .collect::<Vec<_>>()
                .join(", "),
            host.mem_total_kib as f64 / 1048576.0,
            if density_based {
                "slopes of a density run"
            } else {
                "PSS arithmetic from one instance at a time, not a density run"
            }
        ),
        commands: vec![base_set.command_line()],
        source: if density_based {
            source_of("density run set: memory slope over instances", base_set)
        } else {
            source_of("`ready` run set: PSS arithmetic", base_set)
        },
        verdict: aggregate(&outcomes, "the VM"),
    }
}

/// Claim 6, from the isolation matrix: whose kernel answers each target's system calls, and
/// whether a container's view of the pids is its own.
fn isolation(c: &Collection) -> Claim {
    let claim = "Container isolation is process-level, VM isolation is system-level.";
    let mut out = Claim::new(6, claim, Verdict::NotMeasured(measures::isolation_matrix()));
    let (set, rows) = match measures::probes(c) {
        Ok(found) => found,
        Err(missing) => {
            out.verdict = Verdict::NotMeasured(missing);
            return out;
        }
    };
    let host = &rows[0];
    let host_kernel = host.get("kernel_release");
    let subjects: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == Kind::Container || r.kind.is_vm())
        .collect();
    if !subjects.iter().any(|r| r.kind == Kind::Container)
        || !subjects.iter().any(|r| r.kind.is_vm())
    {
        out.verdict = Verdict::NotMeasured(both_kinds_missing("probe"));
        return out;
    }
    let outcomes: Vec<(String, bool)> = subjects
        .iter()
        .map(|r| {
            let host_kernel_answers = r.get("kernel_release") == host_kernel;
            let holds = if r.kind.is_vm() {
                !host_kernel_answers
            } else {
                host_kernel_answers && r.seen("visible_pids", host) == measures::Seen::Isolated
            };
            (r.target.clone(), holds)
        })
        .collect();
    out.measured = format!(
        "kernel answering: host {}; {} (visible pids: host {})",
        host.text("kernel_release"),
        subjects
            .iter()
            .map(|r| format!(
                "{} {} ({} pids)",
                r.target,
                r.text("kernel_release"),
                r.text("visible_pids")
            ))
            .collect::<Vec<_>>()
            .join(", "),
        host.text("visible_pids")
    );
    out.commands.push(set.command_line());
    out.source = source_of("`probe` run set: isolation matrix", set);
    out.verdict = aggregate(&outcomes, "the target");
    out
}

/// Claim 7, from the isolation matrix: is uid 0 in each container the host's uid 0, with
/// host root's capabilities?
fn root(c: &Collection) -> Claim {
    let claim = "Container root equals host root (with and without a user namespace).";
    let mut out = Claim::new(
        7,
        claim,
        Verdict::NotMeasured(Missing::new(
            "uid maps and capabilities seen from inside each container",
            measures::isolation_matrix().how,
        )),
    );
    let Ok((set, rows)) = measures::probes(c) else {
        return out;
    };
    let host = &rows[0];
    let containers: Vec<_> = rows.iter().filter(|r| r.kind == Kind::Container).collect();
    if containers.is_empty() || host.get("uid").as_u64() != Some(HOST_ROOT_UID) {
        out.verdict = Verdict::NotMeasured(Missing::new(
            "a container target, and native run as root, in the `probe` run set",
            "isolab bench --workload probe --target native,container (as root)",
        ));
        return out;
    }
    // A uid map line is `inside outside count`: root is the host's when 0 maps to 0.
    let maps_root_to_root = |r: &measures::ProbeRow| {
        r.get("uid").as_u64() == Some(HOST_ROOT_UID)
            && r.get("uid_map").as_array().is_some_and(|maps| {
                maps.iter().any(|m| {
                    m[0].as_u64() == Some(HOST_ROOT_UID) && m[1].as_u64() == Some(HOST_ROOT_UID)
                })
            })
    };
    let outcomes: Vec<(String, bool)> = containers
        .iter()
        .map(|r| {
            (
                r.target.clone(),
                maps_root_to_root(r) && r.get("cap_eff") == host.get("cap_eff"),
            )
        })
        .collect();
    let user_ns = containers
        .iter()
        .any(|r| r.seen("uid_map", host) == measures::Seen::Isolated);
    out.measured = format!(
        "host root: uid map {}, CapEff {}; {}{}",
        host.text("uid_map"),
        host.text("cap_eff"),
        containers
            .iter()
            .map(|r| format!(
                "{}: uid {}, uid map {}, CapEff {}",
                r.target,
                r.text("uid"),
                r.text("uid_map"),
                r.text("cap_eff")
            ))
            .collect::<Vec<_>>()
            .join("; "),
        if user_ns {
            ""
        } else {
            " (no target measured uses a user namespace)"
        }
    );
    out.commands.push(set.command_line());
    out.source = source_of("`probe` run set: isolation matrix", set);
    out.verdict = aggregate(&outcomes, "the runtime's confinement");
    out
}

/// Claim 5, from the density run set's PSS per instance at the last step (split into the
/// runtime's side and the instance's own where the set has it), else from the `ready` run
/// set's median peak PSS.
fn memory(c: &Collection) -> Claim {
    let claim = "Containers share the host kernel and use far less memory per instance.";
    let mut out = Claim::new(
        5,
        claim,
        Verdict::NotMeasured(Missing::new(
            "a container and a VM target in the density (or `ready`) run set",
            "isolab bench --workload idle --count 50 --target native,container,vm-mini",
        )),
    );
    let (set, rows, what): (&Loaded, Vec<PssRow>, &str) = match density_pss(c) {
        Some((set, rows)) => (
            set,
            rows,
            "density run set: PSS per instance at the last step",
        ),
        None => {
            let Ok((set, rows)) = measures::memory(c) else {
                return out;
            };
            let rows = rows
                .iter()
                .map(|r| PssRow {
                    target: r.target.clone(),
                    kind: r.kind,
                    kib: r.pss_kib,
                    split: String::new(),
                })
                .collect();
            (set, rows, "`ready` run set: median peak PSS")
        }
    };
    let containers: Vec<_> = rows.iter().filter(|r| r.kind == Kind::Container).collect();
    let vms: Vec<_> = rows.iter().filter(|r| r.kind.is_vm()).collect();
    if containers.is_empty() || vms.is_empty() {
        return out;
    }
    let heaviest = containers.iter().map(|r| r.kib).fold(0.0, f64::max);
    let outcomes: Vec<(String, bool)> = vms
        .iter()
        .map(|vm| {
            (
                vm.target.clone(),
                vm.kib >= FAR_MORE_RATIO * heaviest && vm.kib - heaviest >= FAR_MORE_MIN_KIB,
            )
        })
        .collect();
    out.measured = containers
        .iter()
        .chain(&vms)
        .map(|r| format!("{} {:.2} MiB{}", r.target, r.kib / 1024.0, r.split))
        .collect::<Vec<_>>()
        .join(", ")
        + &format!(" ({what}; kernel sharing itself is not measured yet)");
    out.commands.push(set.command_line());
    out.source = source_of(what, set);
    out.verdict = aggregate(&outcomes, "the VM");
    out
}

/// One target's memory per instance for claim 5.
struct PssRow {
    target: String,
    kind: Kind,
    /// PSS per instance, KiB.
    kib: f64,
    /// The runtime's and the instance's sides, in words, or empty.
    split: String,
}

/// Per target of the density set: PSS per instance at the last step, and its split.
fn density_pss(c: &Collection) -> Option<(&Loaded, Vec<PssRow>)> {
    let set = c.density()?;
    let rows: Vec<_> = set
        .set
        .targets
        .iter()
        .filter_map(|t| {
            let last = t.density.as_ref()?.steps.last()?;
            let each = |kib: u64| kib as f64 / f64::from(last.running.max(1));
            let split = match (last.runtime_pss_kib, last.instance_pss_kib) {
                (Some(runtime), Some(instance)) => format!(
                    " (runtime {:.2}, instance {:.2})",
                    each(runtime) / 1024.0,
                    each(instance) / 1024.0
                ),
                _ => String::new(),
            };
            Some(PssRow {
                target: t.name.clone(),
                kind: Kind::of(&t.name),
                kib: each(last.pss_sum_kib),
                split,
            })
        })
        .collect();
    (!rows.is_empty()).then_some((set, rows))
}

/// Claim 8, from the daemon-kill experiment: what killing dockerd and containerd did to
/// Docker's containers, and what killing one supervisor or monitor did to the instances
/// around it.
fn blast_radius(c: &Collection) -> Claim {
    let claim = "A daemon crash takes every container down (Docker); daemonless runtimes and \
                 per-VM monitors are independent.";
    let how = "isolab bench --experiment daemon-kill (docker, podman and runc installed)";
    let mut out = Claim::new(
        8,
        claim,
        Verdict::NotMeasured(Missing::new("the daemon-kill experiment", how)),
    );
    let Some((set, blast)) = c.sets.iter().find_map(|l| {
        (l.set.kind == crate::schema::ResultKind::BlastRadius)
            .then_some(l)
            .zip(l.set.blast_radius.as_ref())
    }) else {
        return out;
    };
    let outcomes: Vec<(String, bool)> = blast
        .kinds
        .iter()
        .filter(|k| k.instances > 0)
        .map(|k| {
            let kept = k.running_after_restore.min(k.answered);
            let holds = if k.target == DAEMON_TARGET {
                f64::from(kept) <= DAEMON_DOWN_MAX_SHARE * f64::from(k.instances)
            } else {
                let spared = k.instances - k.hit.min(k.instances);
                spared > 0
                    && f64::from(kept.min(k.managed)) >= INDEPENDENT_MIN_SHARE * f64::from(spared)
            };
            (k.target.clone(), holds)
        })
        .collect();
    out.measured = blast
        .kinds
        .iter()
        .map(|k| {
            format!(
                "{}: {} killed, {} of {} running afterwards, {} after the restart, {} answer, \
                 {} managed",
                k.target,
                k.killed.as_deref().unwrap_or("nothing of its own"),
                k.running_after_kill,
                k.instances,
                k.running_after_restore,
                k.answered,
                k.managed
            )
        })
        .chain(
            blast
                .skipped
                .iter()
                .map(|s| format!("{} skipped: {}", s.target, s.reason)),
        )
        .collect::<Vec<_>>()
        .join("; ");
    out.commands.push(set.command_line());
    out.source = source_of("daemon-kill run set: survivors", set);
    out.verdict = if !blast.kinds.iter().any(|k| k.target == DAEMON_TARGET) {
        Verdict::NotMeasured(Missing::new(
            format!("{DAEMON_TARGET} in the daemon-kill experiment"),
            how,
        ))
    } else if outcomes.is_empty() {
        Verdict::NotMeasured(Missing::new("instances in the daemon-kill experiment", how))
    } else {
        aggregate(&outcomes, "the runtime")
    };
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
    use crate::analysis::{ALL_FIXTURES, FULL_FIXTURES, fixture};
    use serde_json::json;

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

    #[test]
    fn claims_2_and_9_come_from_the_footprint_set_and_flip_with_it() {
        let mut c = fixture(&["ready.json", "footprint.json"]);
        let claims = check(&c);
        // The mini VM boots a 1.3 MiB program: no VM here is GB.
        assert_eq!(claims[1].verdict, Verdict::DoesNotHold, "{:?}", claims[1]);
        assert!(claims[1].measured.contains("vm-mini 1.3 MiB (program)"));
        assert!(claims[1].source.contains("footprint.json"));
        // 8 KiB of upper layer beside a 2.9 MiB image.
        assert_eq!(claims[8].verdict, Verdict::Holds, "{:?}", claims[8]);
        assert!(claims[8].measured.contains("upper layer 8.0 KiB"));

        let footprint = c.sets[1].set.footprint.as_mut().unwrap();
        footprint.vm_files.push(crate::schema::FootprintFile {
            target: "vm-linux".into(),
            role: "disk image".into(),
            path: "/var/lib/vm/debian.qcow2".into(),
            bytes: 2 << 30,
        });
        footprint.containers[0].upper_bytes = 100 << 20;
        let claims = check(&c);
        assert_eq!(claims[1].verdict.class(), "depends", "{:?}", claims[1]);
        assert!(claims[1].verdict.to_string().contains("holds for vm-linux"));
        assert_eq!(claims[8].verdict, Verdict::DoesNotHold, "{:?}", claims[8]);

        let footprint = c.sets[1].set.footprint.as_mut().unwrap();
        footprint.vm_files.retain(|f| f.target == "vm-linux");
        footprint.containers.clear();
        let claims = check(&c);
        assert_eq!(claims[1].verdict, Verdict::Holds, "{:?}", claims[1]);
        assert_eq!(claims[8].verdict.class(), "not-measured");
        assert!(claims[8].verdict.to_string().contains("isolab measure"));
    }

    /// Applies `edit` to the figures (probe) or density section of `target` in the set of
    /// `mode`.
    fn edit_target(
        c: &mut Collection,
        mode: &str,
        target: &str,
        edit: impl Fn(&mut crate::schema::TargetResult),
    ) {
        for loaded in c.sets.iter_mut().filter(|l| l.set.workload.mode == mode) {
            loaded
                .set
                .targets
                .iter_mut()
                .filter(|t| t.name == target)
                .for_each(&edit);
        }
    }

    #[test]
    fn density_and_probe_sets_are_the_sources_of_claims_4_6_and_7() {
        let c = fixture(&FULL_FIXTURES);
        let claims = check(&c);
        let v = verdicts(&c);
        assert!(
            claims[3].source.starts_with("density run set"),
            "{:?}",
            claims[3]
        );
        assert!(claims[3].measured.contains("slopes of a density run"));
        // 50 idle vm-mini instances at ~3.5 MiB each: thousands fit, not tens.
        assert_eq!(v[3].1, "does-not-hold", "{:?}", claims[3]);
        // Containers on the host kernel behind a pid namespace, the mini VM on its own.
        assert_eq!(v[5].1, "holds", "{:?}", claims[5]);
        assert!(claims[5].source.contains("probe.json"));
        // uid 0 is the host's in the container, but without host root's capabilities; the
        // unshare peer's user namespace maps it and gives it a full set of its own.
        assert_eq!(v[6].1, "does-not-hold", "{:?}", claims[6]);
        assert!(claims[6].measured.contains("00000000a80425fb"));
        // Without the density set, claim 4 falls back to PSS arithmetic and says so.
        let ready_only = fixture(&ALL_FIXTURES);
        assert!(check(&ready_only)[3].source.contains("PSS arithmetic"));
    }

    #[test]
    fn claims_4_6_and_7_flip_when_their_data_flip() {
        let mut c = fixture(&FULL_FIXTURES);
        // A VM that costs 512 MiB per instance in the density run.
        edit_target(&mut c, "idle", "vm-mini", |t| {
            for step in &mut t.density.as_mut().unwrap().steps {
                step.host_used_kib = i64::from(step.running) * 512 * 1024;
            }
        });
        // A "VM" whose system calls the host kernel answers.
        edit_target(&mut c, "probe", "vm-mini", |t| {
            t.runs[0].figures["kernel_release"] = json!("6.18.44-fc-v657");
        });
        // A container that keeps host root's capabilities.
        edit_target(&mut c, "probe", "container", |t| {
            t.runs[0].figures["cap_eff"] = json!("000001fffeffffff");
        });
        let claims = check(&c);
        assert_eq!(claims[3].verdict.class(), "holds", "{:?}", claims[3]);
        assert_eq!(claims[5].verdict.class(), "depends", "{:?}", claims[5]);
        assert!(claims[5].verdict.to_string().contains("not for vm-mini"));
        assert_eq!(claims[6].verdict.class(), "depends", "{:?}", claims[6]);
        assert!(
            claims[6]
                .verdict
                .to_string()
                .contains("holds for container")
        );
    }

    fn with_blast(names: &[&str]) -> Collection {
        let mut all: Vec<&str> = names.to_vec();
        all.push("blast.json");
        fixture(&all)
    }

    /// The docker kind of the daemon-kill set in `c`.
    fn blast(c: &mut Collection) -> &mut crate::schema::BlastRadius {
        c.sets
            .iter_mut()
            .find_map(|l| l.set.blast_radius.as_mut())
            .unwrap()
    }

    fn kind<'a>(c: &'a mut Collection, target: &str) -> &'a mut crate::schema::BlastKind {
        blast(c)
            .kinds
            .iter_mut()
            .find(|k| k.target == target)
            .unwrap()
    }

    #[test]
    fn claim_8_comes_from_the_daemon_kill_set() {
        let c = with_blast(&["ready.json"]);
        let eight = &check(&c)[7];
        assert_eq!(eight.number, 8);
        // A real run: Docker's containers outlived dockerd and containerd, then the
        // restarted dockerd stopped them all; runc, podman (one conmon killed), the isolab
        // containers and the mini VMs around the killed supervisor and monitor went on.
        assert_eq!(eight.verdict.class(), "holds", "{eight:?}");
        assert!(
            eight
                .measured
                .contains("docker: dockerd and containerd killed, 3 of 3 running afterwards, 0 after the restart"),
            "{eight:?}"
        );
        assert!(
            eight
                .measured
                .contains("runc: nothing of its own killed, 3 of 3")
        );
        assert!(eight.source.starts_with("daemon-kill run set"));
        // Without the set at all.
        assert_eq!(
            check(&fixture(&["ready.json"]))[7].verdict.class(),
            "not-measured"
        );
    }

    #[test]
    fn claim_8_flips_when_the_data_flip() {
        // Containers that outlive their daemon's restart (live-restore).
        let mut c = with_blast(&["ready.json"]);
        let d = kind(&mut c, "docker");
        (d.running_after_restore, d.answered, d.managed) = (3, 3, 3);
        let eight = &check(&c)[7];
        assert_eq!(eight.verdict.class(), "depends", "{eight:?}");
        assert!(eight.verdict.to_string().contains("not for docker"));
        // A runc container that died with nothing of its own killed: not independent.
        let mut c = with_blast(&["ready.json"]);
        let runc = kind(&mut c, "runc");
        (runc.running_after_restore, runc.answered) = (2, 2);
        let eight = &check(&c)[7];
        assert_eq!(eight.verdict.class(), "depends", "{eight:?}");
        assert!(eight.verdict.to_string().contains("not for runc"));
        // Docker skipped: what the claim is about is missing.
        let mut c = with_blast(&["ready.json"]);
        blast(&mut c).kinds.retain(|k| k.target != "docker");
        let eight = &check(&c)[7];
        assert_eq!(eight.verdict.class(), "not-measured", "{eight:?}");
        assert!(eight.verdict.to_string().contains("docker"), "{eight:?}");
    }

    #[test]
    fn claim_5_uses_density_pss_per_instance_and_flips_with_it() {
        let mut c = fixture(&FULL_FIXTURES);
        let five = &check(&c)[4];
        assert!(five.source.starts_with("density run set"), "{five:?}");
        // ~3.1 MiB per vm-mini against ~0.7 MiB per container: not "far more".
        assert_eq!(five.verdict.class(), "does-not-hold", "{five:?}");
        edit_target(&mut c, "idle", "vm-mini", |t| {
            for step in &mut t.density.as_mut().unwrap().steps {
                step.pss_sum_kib = u64::from(step.running) * 128 * 1024;
                step.runtime_pss_kib = Some(u64::from(step.running) * 2048);
                step.instance_pss_kib = Some(u64::from(step.running) * 126 * 1024);
            }
        });
        let five = &check(&c)[4];
        assert_eq!(five.verdict.class(), "holds", "{five:?}");
        assert!(
            five.measured
                .contains("vm-mini 128.00 MiB (runtime 2.00, instance 126.00)")
        );
    }

    #[test]
    fn claim_4_counts_the_instances_a_density_run_reached() {
        let mut c = fixture(&FULL_FIXTURES);
        // 1200 containers and 150 VMs ran side by side: not "only tens" of VMs, whatever
        // the memory projection says.
        edit_target(&mut c, "idle", "vm-mini", |t| {
            let d = t.density.as_mut().unwrap();
            for step in &mut d.steps {
                step.host_used_kib = i64::from(step.running) * 512 * 1024;
            }
            d.steps.last_mut().unwrap().running = 150;
            d.stop_reason = Some(crate::schema::StopReason::MemoryReserve);
        });
        let four = &check(&c)[3];
        assert_eq!(four.verdict.class(), "does-not-hold", "{four:?}");
        assert!(
            four.measured
                .contains("vm-mini 150 (memory reserve reached)"),
            "{four:?}"
        );
    }
}
