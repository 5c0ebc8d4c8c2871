//! One module per subcommand: its options and the call into the crate that does the work.

pub mod bench;
pub mod changes;
pub mod compare;
pub mod container;
pub mod doctor;
pub mod image;
pub mod kernel;
pub mod lab;
pub mod measure;
pub mod plan;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod setup;
pub mod vm;

use crate::cli::{Cli, Command};
use crate::failure::Failure;

pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Doctor(args) => doctor::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Report(args) => report::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Measure(args) => measure::run(args),
        Command::Run(args) => run::run(*args),
        Command::Ps(args) => container::ps(args),
        Command::Exec(args) => container::exec(args),
        Command::Logs(args) => container::logs(args),
        Command::Kill(args) => container::kill(args),
        Command::Stop(args) => container::stop(args),
        Command::Rm(args) => container::rm(args),
        Command::Stats(args) => container::stats(args),
        Command::Gc(args) => container::gc(args),
        Command::Supervise(args) => container::supervise(args),
        Command::Setup(args) => setup::run(args),
        Command::Sandbox(args) => sandbox::run(args),
        Command::Vm(args) => vm::run(args),
        Command::Image(args) => image::run(args),
        Command::Diff(args) => changes::diff(args),
        Command::Commit(args) => changes::commit(args),
        Command::Lab(args) => lab::run(args),
        Command::Kernel(args) => kernel::run(args),
    }
}
