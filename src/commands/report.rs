//! `isolab report`: charts, claims and tables from result files (isolab-reports does the work).

use std::path::PathBuf;

use clap::Args;

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Result files (JSON) of one host, e.g. every file `isolab measure` wrote.
    #[arg(value_name = "RESULTS", required = true)]
    results: Vec<PathBuf>,
    /// Directory for report.html, summary.md and the charts (created if missing).
    #[arg(long, value_name = "DIR", default_value = "report")]
    out: PathBuf,
}

pub fn run(args: ReportArgs) -> Result<(), Failure> {
    let files = isolab_reports::report::write(&args.results, &args.out)
        .map_err(|e| Failure::BadInput(e.into()))?;
    for file in files {
        println!("wrote {}", file.display());
    }
    Ok(())
}
