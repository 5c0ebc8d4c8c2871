//! `isolab measure`: the main job. Prepares the host, shows what it offers, then measures
//! every workload mode on every target this build and host can run, side by side in one
//! run, and writes the results.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use isolab_bench::BenchConfig;
use isolab_bench::target::{AVAILABLE, PLANNED};
use isolab_bench::workload::{Mode, Sizes};

use crate::commands::bench::{failure, invocation, print_outcome};
use crate::commands::doctor::{self, DoctorArgs};
use crate::commands::setup::{self, Job};
use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Fewer runs per target: a rough picture in well under a minute.
    #[arg(long)]
    quick: bool,
    /// Directory for the results (created if missing).
    #[arg(long, value_name = "DIR", default_value = "results")]
    out: PathBuf,
}

/// Runs per target for each mode: start-up is noisy and cheap, so it gets many more runs
/// than the run-time workloads, whose figures are already averages over many operations.
fn runs(mode: Mode, quick: bool) -> (u32, u32) {
    match (mode, quick) {
        (Mode::Ready, false) => (50, 5),
        (Mode::Ready, true) => (15, 2),
        (_, false) => (10, 1),
        (_, true) => (3, 1),
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

    let targets: Vec<String> = AVAILABLE
        .iter()
        .filter(|&&t| t != "vm-mini" || vm_mini_usable())
        .filter(|&&t| t != "runc" || runc_usable())
        .map(|t| t.to_string())
        .collect();
    for mode in Mode::ALL {
        section(&format!(
            "workload `{}` on {}",
            mode.name(),
            targets.join(", ")
        ));
        let (runs, warmup) = runs(mode, args.quick);
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
        print_outcome(&isolab_bench::run(&config).map_err(failure)?);
    }
    section("not measured by this build");
    println!("{}", PLANNED.join(", "));
    Ok(())
}

/// Whether this host can run the `vm-mini` target: /dev/kvm opens, whatever its kind (the
/// mini kernel runs on PVM too). Says why not when it cannot.
fn vm_mini_usable() -> bool {
    let reason = match isolab_microvm::host::KvmSupport::detect() {
        Ok(kvm) if kvm.open => return true,
        Ok(kvm) => kvm
            .open_error
            .unwrap_or_else(|| "there is no /dev/kvm".to_owned()),
        Err(e) => e.to_string(),
    };
    println!("skipping target vm-mini: {reason}");
    false
}

/// Whether runc is installed (setup installs it for the main job); says why not otherwise.
fn runc_usable() -> bool {
    match isolab_bench::target::Target::named("runc") {
        Ok(_) => true,
        Err(e) => {
            println!("skipping target runc: {e}");
            false
        }
    }
}

fn section(title: &str) {
    println!("\n==> {title}");
}
