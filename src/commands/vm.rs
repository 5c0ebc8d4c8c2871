use clap::Args;

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct RunArgs {}

pub fn run(_args: RunArgs) -> Result<(), Failure> {
    Ok(())
}
