//! `isolab compare`: regressions between two result files. Exits 1 when a metric regressed
//! beyond the threshold with significance, 2 on unusable input.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use isolab_reports::compare::{compare, parse_threshold};

use crate::failure::Failure;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Md,
    Json,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    baseline: PathBuf,
    new: PathBuf,
    /// Relative change a median must exceed to count, e.g. 5% or 0.05.
    #[arg(long, default_value = "5%", value_parser = parse_threshold)]
    threshold: f64,
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Also write the new medians as github-action-benchmark `customSmallerIsBetter` JSON.
    #[arg(long, value_name = "FILE")]
    bench_json: Option<PathBuf>,
}

pub fn run(args: CompareArgs) -> Result<(), Failure> {
    let comparison = compare(&args.baseline, &args.new, args.threshold)
        .map_err(|e| Failure::BadInput(e.into()))?;
    match args.format {
        Format::Md => print!("{}", comparison.render_markdown()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&comparison).expect("plain data serializes")
        ),
    }
    if let Some(path) = &args.bench_json {
        let text = serde_json::to_string_pretty(&comparison.benchmark_entries())
            .expect("plain data serializes");
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))
            .map_err(Failure::BadInput)?;
    }
    if comparison.regressed() {
        return Err(Failure::CheckFailed(anyhow::anyhow!(
            "a metric regressed beyond {:.1}% with significance",
            args.threshold * 100.0
        )));
    }
    Ok(())
}
