//! isolab's micro-VM monitor. This is the only crate that talks to KVM.

pub mod explain;
pub mod host;
pub mod kernel;
pub mod linux;
pub mod mini;
pub mod vm;
