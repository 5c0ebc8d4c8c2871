//! `isolab doctor`: what this host offers, what each isolab feature needs, and how to fix
//! what is missing. Exits 0 when the basic container path works, 1 (after the report) when not.

mod human;
mod peers;
mod report;

use anyhow::{Context, anyhow};
use clap::Args;

use crate::failure::Failure;
use report::Report;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of the readable report.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DoctorArgs) -> Result<(), Failure> {
    // The overlay probe's scratch layers go where TMPDIR points, so a user whose /tmp
    // overlayfs rejects can retry with another directory.
    let report = Report::collect(&std::env::temp_dir());
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .context("serialising the doctor report")
            .map_err(Failure::CheckFailed)?;
        println!("{json}");
    } else {
        print!("{}", human::render(&report));
    }
    let verdict = &report.basic_container_path;
    if verdict.ok {
        return Ok(());
    }
    let missing: Vec<_> = verdict.missing.iter().map(|m| m.item.as_str()).collect();
    Err(Failure::CheckFailed(anyhow!(
        "the basic container path does not work on this host: missing {}",
        missing.join(", ")
    )))
}
