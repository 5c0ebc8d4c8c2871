//! isolab's measurement harness: runs one workload binary on several targets, interleaved,
//! and records start-up time, run time, memory and the workload's own figures.

pub mod blast;
pub mod density;
pub mod fingerprint;
pub mod footprint;
pub mod harness;
mod net_peer;
pub mod procfs;
pub mod progress;
pub mod rootfs;
pub mod runner;
pub mod sampler;
pub mod sandbox;
pub mod target;
pub mod workload;

pub use harness::{
    BenchConfig, BenchError, ErrorKind, Outcome, parse_timeout, prepare_out_dir, run,
};

/// An error with its causes, on one line (for stop details and test messages).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
