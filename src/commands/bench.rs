//! `isolab bench`: the options, and the call into the harness (isolab-bench).
//!
//! A failed run stops the bench and writes no result files (see `isolab_bench::harness`).
//! With `--workload idle` it measures density instead (see `isolab_bench::density`): up
//! to N idle instances per target side by side, their memory, then a SIGTERM to each. With
//! `--experiment daemon-kill` it measures the blast radius of a runtime process's death
//! (see `isolab_bench::blast`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use isolab_bench::blast::{self, BlastConfig, BlastError};
use isolab_bench::density::DensityConfig;
use isolab_bench::footprint::FootprintConfig;
use isolab_bench::workload::{Mode, Sizes};
use isolab_bench::{BenchConfig, BenchError, ErrorKind, Outcome};
use isolab_reports::schema::{ResultSet, StopReason};

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Targets to measure, comma-separated [default: native; with --experiment daemon-kill:
    /// container, runc, podman, docker, vm-mini].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    target: Vec<String>,
    /// An extra target NAME running CMD (split like a shell would); `{workload}` becomes the
    /// workload's path and the word `{args}` its arguments, else both are appended. Repeatable.
    #[arg(long, value_name = "NAME=CMD")]
    peer: Vec<String>,
    /// Workload mode: ready, cpu, mem, syscall, io or net (native and container only: TCP
    /// round trips and throughput against a server of the same kind); idle with --count.
    #[arg(long, value_name = "MODE", default_value = "ready")]
    workload: Mode,
    /// Iterations for the cpu workload [default: 2000000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    iters: Option<u64>,
    /// MiB for the mem [default: 64], io [default: 16] and net [default: 64] workloads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    mib: Option<u64>,
    /// System calls for the syscall workload [default: 100000]; round trips for the net
    /// workload [default: 2000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    n: Option<u64>,
    /// Measured runs per target.
    #[arg(long, value_name = "N", default_value_t = 10)]
    runs: u32,
    /// Discarded runs per target before the measured ones.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    warmup: u32,
    /// Directory for the results (created if missing).
    #[arg(long, value_name = "DIR", default_value = "results")]
    out: PathBuf,
    /// The workload binary [default: $ISOLAB_WORKLOAD, else isolab-workload next to isolab].
    #[arg(long, value_name = "PATH")]
    workload_bin: Option<PathBuf>,
    /// Per-run limit (e.g. 60s, 2m, or seconds); the run's process group is then killed.
    /// With --count: for each step to be ready, and for all to stop.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = isolab_bench::parse_timeout)]
    timeout: Duration,
    /// Density (--workload idle): start up to N idle instances per target side by side,
    /// record host memory and PSS after each step, then stop them all with SIGTERM
    /// [default: 1000; 20 with --quick]. With --experiment: instances per kind [default: 3].
    #[arg(long, value_name = "N", conflicts_with_all = ["runs", "warmup"])]
    count: Option<u32>,
    /// Density: start this many instances per step [default: N/10, at least 10].
    #[arg(long, value_name = "K")]
    step: Option<u32>,
    /// Density: stop starting instances before MemAvailable would fall below SIZE (e.g.
    /// 2G, 512M).
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = parse_keep_free)]
    keep_free: u64,
    /// A small run: density, 20 instances per target; daemon-kill, 2 per kind (unless
    /// --count says otherwise).
    #[arg(long)]
    quick: bool,
    /// An experiment instead of a benchmark: daemon-kill SIGKILLs dockerd and containerd,
    /// one podman container's conmon, one isolab container's supervisor and one mini VM's
    /// monitor while instances of each run, and counts the survivors; footprint measures
    /// the bytes on disk of the busybox and scratch+workload images in a fresh store, one
    /// container's upper layer and the VMs' boot files (allocated blocks).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["runs", "warmup", "peer", "step"])]
    experiment: Option<Experiment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Experiment {
    DaemonKill,
    Footprint,
}

/// Density instances per target by default, and with --quick (started 5 at a time unless
/// --step says otherwise: four points, each costing a settling second).
const DEFAULT_COUNT: u32 = 1000;
const QUICK_COUNT: u32 = 20;
const QUICK_STEP: u32 = 5;

/// `--keep-free`: a size in bytes (suffixes K, M, G, T), kept in KiB.
fn parse_keep_free(text: &str) -> Result<u64, String> {
    isolab_reports::plan::parse_size_kib(text).map_err(|e| e.to_string())
}

pub fn run(mut args: BenchArgs) -> Result<(), Failure> {
    match args.experiment {
        Some(Experiment::DaemonKill) => return daemon_kill(args),
        Some(Experiment::Footprint) => return footprint(args),
        None => {}
    }
    if args.count.is_some() || args.workload == Mode::Idle {
        return density(args);
    }
    if args.step.is_some() || args.quick {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--step and --quick size a density run: give --workload idle"
        )));
    }
    if args.target.is_empty() {
        args.target.push("native".to_owned());
    }
    let config = BenchConfig {
        targets: args.target,
        peers: args.peer,
        mode: args.workload,
        sizes: Sizes {
            iters: args.iters,
            mib: args.mib,
            n: args.n,
        },
        workload_bin: args.workload_bin,
        runs: args.runs,
        warmup: args.warmup,
        out_dir: args.out,
        timeout: args.timeout,
        command: invocation(),
    };
    let outcome = isolab_bench::run(&config).map_err(failure)?;
    print_outcome(&outcome);
    Ok(())
}

fn density(mut args: BenchArgs) -> Result<(), Failure> {
    if args.workload != Mode::Idle {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--count measures idle instances: give --workload idle"
        )));
    }
    if args.target.is_empty() {
        args.target.push("native".to_owned());
    }
    let count = args.count.unwrap_or(if args.quick {
        QUICK_COUNT
    } else {
        DEFAULT_COUNT
    });
    let config = DensityConfig {
        targets: args.target,
        peers: args.peer,
        workload_bin: args.workload_bin,
        count,
        step: args.step.or(args.quick.then_some(QUICK_STEP)),
        keep_free_kib: args.keep_free,
        out_dir: args.out,
        timeout: args.timeout,
        command: invocation(),
    };
    let outcome = isolab_bench::density::run(&config).map_err(failure)?;
    print!("{}", isolab_reports::table::render(&outcome.results));
    for target in &outcome.results.targets {
        let Some(density) = &target.density else {
            continue;
        };
        for step in &density.steps {
            let per = |kib: f64| kib / f64::from(step.running.max(1));
            let opt = |kib: Option<u64>| kib.map_or(f64::NAN, |k| per(k as f64));
            let kernel = step
                .kernel
                .map_or(0, |k| k.slab_kib + k.kernel_stack_kib + k.page_tables_kib);
            println!(
                "{}: {} running (+{} in {:.1} ms, {:.1} ms each): host used {:+.1} MiB ({:.0} KiB \
                 each; kernel {:.0}), PSS {:.0} KiB each (runtime {:.0}, instance {:.0}); probe {:.1} ms",
                target.name,
                step.running,
                step.started,
                step.ready_ns as f64 / 1e6,
                step.ready_ns as f64 / 1e6 / f64::from(step.started.max(1)),
                step.host_used_kib as f64 / 1024.0,
                per(step.host_used_kib as f64),
                per(kernel as f64),
                per(step.pss_sum_kib as f64),
                opt(step.runtime_pss_kib),
                opt(step.instance_pss_kib),
                step.probe_ns.map_or(f64::NAN, |ns| ns as f64 / 1e6),
            );
        }
        println!(
            "{}: reached {} of {} ({}); all stopped by SIGTERM in {:.1} ms, nothing left; host \
             used afterwards {:+.1} MiB (settled in {:.1} s)",
            target.name,
            density.reached(),
            density.requested.unwrap_or(count),
            match (density.stop_reason, &density.stop_detail) {
                (_, Some(detail)) => detail.clone(),
                (Some(StopReason::MemoryReserve), None) => "memory reserve reached".to_owned(),
                (Some(StopReason::StartFailed), None) => "a start failed".to_owned(),
                (Some(StopReason::Completed) | None, None) => "completed".to_owned(),
            },
            density.stop_ns as f64 / 1e6,
            density.host_used_after_stop_kib as f64 / 1024.0,
            density.settle_ns.unwrap_or(0) as f64 / 1e9,
        );
    }
    for file in &outcome.files {
        println!("wrote {}", file.display());
    }
    Ok(())
}

fn daemon_kill(args: BenchArgs) -> Result<(), Failure> {
    if args.workload != Mode::Ready && args.workload != Mode::Idle {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--experiment daemon-kill runs the idle workload: leave --workload out"
        )));
    }
    let config = BlastConfig {
        targets: args.target,
        workload_bin: args.workload_bin,
        per_kind: args.count.unwrap_or(if args.quick {
            blast::QUICK_PER_KIND
        } else {
            blast::DEFAULT_PER_KIND
        }),
        out_dir: args.out,
        timeout: args.timeout,
        command: invocation(),
    };
    blast_radius(&config).map(drop)
}

/// Runs the daemon-kill experiment and prints what survived; the files it wrote.
pub fn blast_radius(config: &BlastConfig) -> Result<Vec<PathBuf>, Failure> {
    let outcome = blast::run(config).map_err(|error| match error {
        BlastError::Bench(e) => failure(*e),
        e if e.is_bad_input() => Failure::BadInput(e.into()),
        e => Failure::TargetFailed(e.into()),
    })?;
    let blast = outcome
        .results
        .blast_radius
        .as_ref()
        .expect("a daemon-kill result set has its section");
    println!("killed: {}", blast.killed.join(", "));
    for kind in &blast.kinds {
        println!(
            "{}: {} instances; killed: {}; hit {}; running after the kill {}, after the \
             restore {}; answered {}; managed (ps, stop, rm) {}",
            kind.target,
            kind.instances,
            kind.killed.as_deref().unwrap_or("nothing of its own"),
            kind.hit,
            kind.running_after_kill,
            kind.running_after_restore,
            kind.answered,
            kind.managed
        );
    }
    if !blast.restored.is_empty() {
        println!("restored: {}", blast.restored.join(", "));
    }
    for skipped in &blast.skipped {
        println!("skipped {}: {}", skipped.target, skipped.reason);
    }
    for file in &outcome.files {
        println!("wrote {}", file.display());
    }
    Ok(outcome.files)
}

fn footprint(args: BenchArgs) -> Result<(), Failure> {
    if !args.target.is_empty() || args.workload != Mode::Ready || args.count.is_some() {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--experiment footprint measures images and boot files, not targets: leave \
             --target, --workload and --count out"
        )));
    }
    let outcome = isolab_bench::footprint::run(&FootprintConfig {
        workload_bin: args.workload_bin,
        out_dir: args.out,
        command: invocation(),
    })
    .map_err(|e| failure(e.into()))?;
    print_footprint(&outcome.results);
    for file in &outcome.files {
        println!("wrote {}", file.display());
    }
    Ok(())
}

/// The footprint's figures, one line each.
pub fn print_footprint(results: &ResultSet) {
    let Some(footprint) = &results.footprint else {
        return;
    };
    println!("{}", footprint.units);
    for image in &footprint.images {
        println!(
            "image {:<20} {:>12} bytes",
            image.names.join(", "),
            image.total_bytes
        );
    }
    for container in &footprint.containers {
        println!(
            "container {:<16} {:>12} bytes (its upper layer)",
            container.id, container.upper_bytes
        );
    }
    for file in &footprint.vm_files {
        println!(
            "{:<8} {:<16} {:>12} bytes ({})",
            file.target, file.role, file.bytes, file.path
        );
    }
}

/// Maps a harness error to the exit code its kind calls for.
pub fn failure(error: BenchError) -> Failure {
    let kind = error.kind();
    let error = anyhow::Error::new(error);
    match kind {
        ErrorKind::BadInput => Failure::BadInput(error),
        ErrorKind::HostLacks => Failure::HostLacks(error),
        ErrorKind::TargetFailed => Failure::TargetFailed(error),
    }
}

/// The final table, then the files the results went to.
pub fn print_outcome(outcome: &Outcome) {
    print!("{}", isolab_reports::table::render(&outcome.results));
    for file in &outcome.files {
        println!("wrote {}", file.display());
    }
}

/// The argv that asked for this work, recorded in results so they say how they were made.
pub fn invocation() -> Vec<String> {
    std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect()
}
