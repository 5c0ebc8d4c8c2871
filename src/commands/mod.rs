//! One module per subcommand: its options and the call into the crate that does the work.

pub mod bench;
pub mod doctor;
pub mod measure;
pub mod run;
pub mod setup;
pub mod vm;

use crate::cli::{Cli, Command};
use crate::failure::Failure;

pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Doctor(args) => doctor::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Measure(args) => measure::run(args),
        Command::Run(args) => run::run(args),
        Command::Setup(args) => setup::run(args),
        Command::Vm(args) => vm::run(args),
    }
}
