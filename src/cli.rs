//! The command-line grammar. Each subcommand's options live beside its implementation.

use clap::{Parser, Subcommand};

use crate::commands::{bench, doctor, measure, run, setup, vm};

/// Container or VM? Measurements instead of folklore.
#[derive(Debug, Parser)]
#[command(name = "isolab", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this host offers and what each isolab feature needs.
    Doctor(doctor::DoctorArgs),
    /// The main job: prepare the host, check it, and measure every target side by side.
    Measure(measure::MeasureArgs),
    /// Run the identical workload on several targets, side by side, and record the results.
    Bench(bench::BenchArgs),
    /// Run a command in a new container and return its exit status.
    Run(run::RunArgs),
    /// Boot and run micro-VMs.
    Vm(vm::VmArgs),
    /// Install, idempotently, the Debian packages a job needs.
    Setup(setup::SetupArgs),
}
