//! isolab's micro-VM monitor. This is the only crate that talks to KVM.

pub mod host;
