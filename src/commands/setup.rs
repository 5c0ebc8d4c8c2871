use clap::Args;

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct SetupArgs {}

pub fn run(_args: SetupArgs) -> Result<(), Failure> {
    Ok(())
}
