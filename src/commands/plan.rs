//! `isolab plan`: how many containers and VMs of a workload fit a host, from measured
//! per-instance overheads.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use isolab_reports::analysis::Collection;
use isolab_reports::plan::{self, PlanInput, parse_size_kib};

use crate::failure::Failure;

fn size(text: &str) -> Result<u64, String> {
    parse_size_kib(text).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Result files with the measured overheads (a `ready` set; a `cpu` set adds CPU cost).
    #[arg(value_name = "RESULTS", required = true)]
    results: Vec<PathBuf>,
    /// Memory of one workload instance, e.g. 256M.
    #[arg(long, default_value = "256M", value_parser = size)]
    workload_mem: u64,
    /// CPUs of one workload instance.
    #[arg(long, default_value_t = plan::DEFAULT_WORKLOAD_CPU)]
    workload_cpu: f64,
    /// Host memory [default: this host's MemTotal].
    #[arg(long, value_parser = size)]
    host_mem: Option<u64>,
    /// Host CPUs [default: this host's online CPUs].
    #[arg(long)]
    host_cpus: Option<f64>,
    /// Memory kept for the host itself (kernel, daemons).
    #[arg(long, default_value = "1G", value_parser = size)]
    reserve_mem: u64,
    /// CPUs kept for the host itself.
    #[arg(long, default_value_t = plan::DEFAULT_RESERVE_CPU)]
    reserve_cpu: f64,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

fn mem_total_kib() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("/proc/meminfo has no MemTotal")
}

pub fn run(args: PlanArgs) -> Result<(), Failure> {
    let bad = |e: anyhow::Error| Failure::BadInput(e);
    let c = Collection::load(&args.results).map_err(|e| bad(e.into()))?;
    let host_mem_kib = match args.host_mem {
        Some(kib) => kib,
        None => mem_total_kib().map_err(Failure::HostLacks)?,
    };
    let host_cpus = match args.host_cpus {
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
    };
    let input = PlanInput {
        host_mem_kib,
        host_cpus,
        workload_mem_kib: args.workload_mem,
        workload_cpu: args.workload_cpu,
        reserve_mem_kib: args.reserve_mem,
        reserve_cpu: args.reserve_cpu,
    };
    let plan = plan::plan(input, &c).map_err(|e| bad(e.into()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).expect("plain data serializes")
        );
    } else {
        print!("{}", plan.render());
    }
    Ok(())
}
