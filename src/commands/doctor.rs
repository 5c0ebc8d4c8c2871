use clap::Args;

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct DoctorArgs {}

pub fn run(_args: DoctorArgs) -> Result<(), Failure> {
    Ok(())
}
