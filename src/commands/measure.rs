//! `isolab measure`: the main job. Prepares the host, shows what it offers, then measures
//! every workload mode on every target this build and host can run, side by side in one
//! run set per mode, plus a density run of idle instances, and writes the report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use isolab_bench::BenchConfig;
use isolab_bench::blast::{self, BlastConfig};
use isolab_bench::density::DensityConfig;
use isolab_bench::footprint::FootprintConfig;
use isolab_bench::target::{AVAILABLE, PLANNED, Target};
use isolab_bench::workload::{Mode, Sizes};

use crate::commands::bench::{self, failure, invocation, print_outcome};
use crate::commands::doctor::{self, DoctorArgs};
use crate::commands::setup::{self, Job};
use crate::failure::Failure;

/// Targets that run the workload one run at a time but cannot run several instances side
/// by side, and why: they are left out of the density run only.
/// The density run of `--quick` measures only these: the baseline and one container and
/// one VM for claim 4. Every target's density run waits for the host's memory to settle
/// after its stop (up to 10 s on a busy host), which would take `--quick` past a minute.
const QUICK_DENSITY: [&str; 3] = ["native", "container", "vm-mini"];

/// The targets the `net` workload runs on: each needs a server beside it (a second host
/// process, or a container on the isolab0 bridge).
const NET_TARGETS: [&str; 2] = ["native", "container"];

#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Fewer runs per target, fewer density instances on fewer targets (native, container,
    /// vm-mini): a rough picture in about a minute.
    #[arg(long)]
    quick: bool,
    /// Directory for the results and the report (created if missing).
    #[arg(long, value_name = "DIR", default_value = "results")]
    out: PathBuf,
    /// Measured runs per target in every workload, without warmup runs, instead of the
    /// defaults; e.g. 1 for a smoke test of the whole job.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// Idle instances per target in the density run [default: 50, 10 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    count: Option<u32>,
    /// Also boot Linux micro-VMs side by side in the QEMU/TCG sandbox (standard KVM):
    /// `vm-linux` against `qemu-microvm` (see `isolab sandbox peers`), reported apart in
    /// DIR/sandbox, as the sandbox is another host.
    #[arg(long)]
    sandbox: bool,
}

/// Runs per target for each mode: start-up is noisy and cheap, so it gets many more runs
/// than the run-time workloads, whose figures are already averages over many operations;
/// the probe reports state, not a timing, so one run says it all. Sized so that the whole
/// job stays under 5 minutes (1 with --quick) on a 2-CPU host with a mini VM among the
/// targets.
fn runs(mode: Mode, quick: bool, fixed: Option<u32>) -> (u32, u32) {
    match (mode, quick, fixed) {
        (Mode::Probe, _, _) => (1, 0),
        (_, _, Some(n)) => (n, 0),
        (Mode::Ready, false, None) => (40, 3),
        (Mode::Ready, true, None) => (5, 1),
        (_, false, None) => (8, 1),
        (_, true, None) => (2, 0),
    }
}

/// Density instances per target, and how many start per step: five steps give the
/// memory-per-instance slope five points; --quick starts all at once, as every step costs
/// a second of settling per target (see `isolab_bench::density::SETTLE`).
fn density_count(quick: bool, fixed: Option<u32>) -> (u32, u32) {
    let count = fixed.unwrap_or(if quick { 10 } else { 50 });
    (count, if quick { count } else { count.div_ceil(5) })
}

/// Where the job is: "[3/8] workload `mem` (41 s so far)".
struct Stages {
    total: usize,
    done: usize,
    start: Instant,
}

impl Stages {
    fn next(&mut self, title: &str) {
        self.done += 1;
        section(&format!(
            "[{}/{}] {title} ({:.0} s so far)",
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64()
        ));
    }
}

pub fn run(args: MeasureArgs) -> Result<(), Failure> {
    // Checked before anything slow, so a typo fails at once.
    isolab_bench::prepare_out_dir(&args.out).map_err(failure)?;
    section("installing what the measurement needs");
    setup::ensure(Job::Main, false)?;

    section("what this host offers");
    if let Err(problem) = doctor::run(DoctorArgs { json: false }) {
        // A host without the container path still measures its native targets.
        eprintln!("isolab measure: {}", problem.message().unwrap_or_default());
    }

    section("targets");
    let targets: Vec<String> = AVAILABLE
        .iter()
        .filter(|t| usable(t))
        .map(|t| t.to_string())
        .collect();
    let idle_targets: Vec<String> = targets
        .iter()
        .filter(|t| {
            let kept = !args.quick || QUICK_DENSITY.contains(&t.as_str());
            if !kept {
                println!("leaving {t} out of the quick density run");
            }
            kept
        })
        .cloned()
        .collect();
    println!("measuring: {}", targets.join(", "));

    let mut stages = Stages {
        total: Mode::ALL.len() + 5 + usize::from(args.sandbox),
        done: 0,
        start: Instant::now(),
    };
    let mut files = Vec::new();
    let net_targets: Vec<String> = targets
        .iter()
        .filter(|t| NET_TARGETS.contains(&t.as_str()))
        .cloned()
        .collect();
    for (mode, targets) in Mode::ALL
        .into_iter()
        .map(|mode| (mode, &targets))
        .chain([(Mode::Net, &net_targets)])
    {
        stages.next(&format!(
            "workload `{}` on {}",
            mode.name(),
            targets.join(", ")
        ));
        let (runs, warmup) = runs(mode, args.quick, args.runs);
        let config = BenchConfig {
            targets: targets.clone(),
            peers: Vec::new(),
            mode,
            sizes: Sizes::default(),
            workload_bin: None,
            runs,
            warmup,
            out_dir: args.out.clone(),
            timeout: Duration::from_secs(60),
            command: invocation(),
        };
        let outcome = isolab_bench::run(&config).map_err(failure)?;
        print_outcome(&outcome);
        files.extend(outcome.files);
    }

    let (count, step) = density_count(args.quick, args.count);
    stages.next(&format!(
        "density: {count} idle instances, {step} per step, on {}",
        idle_targets.join(", ")
    ));
    let config = DensityConfig {
        targets: idle_targets,
        peers: Vec::new(),
        workload_bin: None,
        count,
        step: Some(step),
        keep_free_kib: isolab_bench::density::DEFAULT_KEEP_FREE_KIB,
        out_dir: args.out.clone(),
        timeout: Duration::from_secs(60),
        command: invocation(),
    };
    let outcome = isolab_bench::density::run(&config).map_err(failure)?;
    print_outcome(&outcome);
    files.extend(outcome.files);

    stages.next("disk footprint: busybox and scratch images, a container, VM boot files");
    let outcome = isolab_bench::footprint::run(&FootprintConfig {
        workload_bin: None,
        out_dir: args.out.clone(),
        command: invocation(),
    })
    .map_err(|e| failure(e.into()))?;
    bench::print_footprint(&outcome.results);
    files.extend(outcome.files);

    let kinds = blast_kinds(&targets);
    stages.next(&format!(
        "blast radius: a supervisor, a monitor and the daemons killed under {}",
        kinds.join(", ")
    ));
    files.extend(bench::blast_radius(&BlastConfig {
        targets: kinds,
        workload_bin: None,
        per_kind: blast::QUICK_PER_KIND,
        out_dir: args.out.clone(),
        timeout: Duration::from_secs(60),
        command: invocation(),
    })?);

    if args.sandbox {
        // The sandbox is another host: its results get a report of their own.
        stages.next("Linux micro-VMs in the sandbox: vm-linux, qemu-microvm");
        let (runs, warmup) = runs(Mode::Ready, args.quick, args.runs);
        let out = args.out.join("sandbox");
        let json = crate::commands::sandbox::peers(&crate::commands::sandbox::PeersArgs {
            runs,
            warmup,
            out: out.clone(),
            timeout: Duration::from_secs(900),
        })?;
        isolab_reports::report::write(&json, &out).map_err(|e| Failure::BadInput(e.into()))?;
        println!("sandbox report: {}", out.join("report.html").display());
    }

    stages.next("report");
    let json: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
        .collect();
    let written =
        isolab_reports::report::write(&json, &args.out).map_err(|e| Failure::BadInput(e.into()))?;
    for file in &written {
        println!("wrote {}", file.display());
    }
    section("not measured by this build");
    println!("{}", PLANNED.join(", "));
    println!(
        "\nreport: {} (measured in {:.0} s)",
        args.out.join("report.html").display(),
        stages.start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether this host can run `target`; says why not when it cannot. `vm-mini` needs
/// /dev/kvm to open, whatever its kind (the mini kernel runs on PVM too); every other
/// target needs what [`Target::named`] checks (its tool installed).
fn usable(target: &str) -> bool {
    let reason = if target == "vm-mini" {
        match isolab_microvm::host::KvmSupport::detect() {
            Ok(kvm) if kvm.open => None,
            Ok(kvm) => Some(
                kvm.open_error
                    .unwrap_or_else(|| "there is no /dev/kvm".to_owned()),
            ),
            Err(e) => Some(e.to_string()),
        }
    } else {
        Target::named(target).err().map(|e| e.to_string())
    };
    match reason {
        None => true,
        Some(why) => {
            println!("skipping target {target}: {why}");
            false
        }
    }
}

/// The daemon-kill kinds among `targets`. Docker is left out while containers the job did
/// not start are running: killing dockerd and containerd would stop them too.
fn blast_kinds(targets: &[String]) -> Vec<String> {
    let foreign_docker = || {
        std::process::Command::new("docker")
            .args(["ps", "--quiet"])
            .output()
            .map_or(true, |out| !out.status.success() || !out.stdout.is_empty())
    };
    blast::KINDS
        .iter()
        .filter(|kind| targets.iter().any(|t| t == *kind))
        .filter(|kind| {
            let keep = **kind != "docker" || !foreign_docker();
            if !keep {
                println!(
                    "leaving docker out of the blast radius: other Docker containers are running \
                     (or dockerd does not answer), and killing dockerd would stop them; run \
                     `isolab bench --experiment daemon-kill --target docker` yourself"
                );
            }
            keep
        })
        .map(|kind| kind.to_string())
        .collect()
}

fn section(title: &str) {
    println!("\n==> {title}");
}
