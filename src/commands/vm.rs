use clap::Args;

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct VmArgs {}

pub fn run(_args: VmArgs) -> Result<(), Failure> {
    Ok(())
}
