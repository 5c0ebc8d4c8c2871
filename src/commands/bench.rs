//! `isolab bench`: the options, and the call into the harness (isolab-bench).
//!
//! A failed run stops the bench and writes no result files (see `isolab_bench::harness`).
//! With `--count N` it measures density instead (see `isolab_bench::density`): N idle
//! instances per target side by side, their memory, then a SIGTERM to each.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use isolab_bench::density::DensityConfig;
use isolab_bench::workload::{Mode, Sizes};
use isolab_bench::{BenchConfig, BenchError, ErrorKind, Outcome};

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Targets to measure, comma-separated; available: native, vm-mini.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "native"
    )]
    target: Vec<String>,
    /// An extra target NAME running CMD (split like a shell would); `{workload}` becomes the
    /// workload's path and the word `{args}` its arguments, else both are appended. Repeatable.
    #[arg(long, value_name = "NAME=CMD")]
    peer: Vec<String>,
    /// Workload mode: ready, cpu, mem, syscall or io; idle with --count.
    #[arg(long, value_name = "MODE", default_value = "ready")]
    workload: Mode,
    /// Iterations for the cpu workload [default: 2000000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    iters: Option<u64>,
    /// MiB for the mem [default: 64] and io [default: 16] workloads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    mib: Option<u64>,
    /// System calls for the syscall workload [default: 100000].
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
    /// Density: run N idle instances per target side by side (needs --workload idle),
    /// record host memory and PSS, then stop them all with SIGTERM.
    #[arg(long, value_name = "N", conflicts_with_all = ["runs", "warmup", "peer"])]
    count: Option<u32>,
    /// With --count: start this many instances per step [default: all at once].
    #[arg(long, value_name = "K", requires = "count")]
    step: Option<u32>,
}

pub fn run(args: BenchArgs) -> Result<(), Failure> {
    if let Some(count) = args.count {
        return density(args, count);
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

fn density(args: BenchArgs, count: u32) -> Result<(), Failure> {
    if args.workload != Mode::Idle {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "--count measures idle instances: give --workload idle"
        )));
    }
    let config = DensityConfig {
        targets: args.target,
        peers: args.peer,
        workload_bin: args.workload_bin,
        count,
        step: args.step,
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
            println!(
                "{}: {} running (+{} in {:.1} ms): host used {:+.1} MiB ({:.0} KiB each), PSS sum {:.1} MiB ({:.0} KiB each)",
                target.name,
                step.running,
                step.started,
                step.ready_ns as f64 / 1e6,
                step.host_used_kib as f64 / 1024.0,
                per(step.host_used_kib as f64),
                step.pss_sum_kib as f64 / 1024.0,
                per(step.pss_sum_kib as f64),
            );
        }
        println!(
            "{}: all stopped by SIGTERM in {:.1} ms, nothing left; host used afterwards {:+.1} MiB",
            target.name,
            density.stop_ns as f64 / 1e6,
            density.host_used_after_stop_kib as f64 / 1024.0
        );
    }
    for file in &outcome.files {
        println!("wrote {}", file.display());
    }
    Ok(())
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
