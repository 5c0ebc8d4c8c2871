use clap::Args;

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> Result<(), Failure> {
    Ok(())
}
