//! isolab's measurement harness.

pub mod fingerprint;
