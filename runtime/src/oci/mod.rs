//! `isolab-oci`: the OCI runtime command line over an OCI bundle, for callers such as
//! podman (through conmon). It shares one implementation with `isolab run`: a bundle's
//! config.json is translated into the runtime's own [`ContainerConfig`] ([`translate`]),
//! which [`crate::container::create`] starts like any other container, stopped at a FIFO
//! until `start` (the spec's created state).
//!
//! State lives in `--root` (default /run/isolab-oci), one directory per container.
//!
//! [`ContainerConfig`]: crate::container::ContainerConfig

pub mod cli;
mod console;
mod hooks;
mod lifecycle;
mod seccomp;
mod state;
pub mod translate;

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// The ociVersion this runtime reports.
pub const OCI_VERSION: &str = "1.2.0";

/// Where the records live unless `--root` says otherwise.
pub const DEFAULT_ROOT: &str = "/run/isolab-oci";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{path}: not a valid OCI runtime config: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("config.json: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Run(#[from] crate::container::RunError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error("container {0} does not exist")]
    NoSuchContainer(String),
    #[error("container {id} exists already ({path} is present); delete it first")]
    Exists { id: String, path: PathBuf },
    #[error("container {id} is {status}: {what}")]
    WrongState {
        id: String,
        status: String,
        what: &'static str,
    },
    #[error(
        "invalid container id {0:?}: use letters, digits, '_', '.', '-' (first a letter or digit), at most 64"
    )]
    Id(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid isolab-oci record: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{kind} hook {path}: {reason}")]
    Hook {
        kind: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("console socket {path}: {source}")]
    Console {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: Errno,
    },
}

fn sys_err(what: &'static str) -> impl FnOnce(Errno) -> OciError {
    move |source| OciError::Sys { what, source }
}
