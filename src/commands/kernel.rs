//! `isolab kernel fetch`: Debian's cloud kernel for Linux guests (see
//! `isolab_microvm::kernel`). Prints the stored vmlinuz, the vmlinux decompressed from it,
//! its package and SHA-256; a second
//! run finds it in the cache without the network.
//!
//! `isolab kernel build --minimal`: a small guest kernel compiled from Debian's
//! `linux-source` with isolab's config fragment (`isolab_microvm::kernel::build`), after
//! `isolab setup --for kernel` has installed what the build needs. Prints the vmlinux, its
//! size and build time; a second run finds it in the cache and builds nothing.
//!
//! Exit status: 0, or 3 when apt/dpkg are missing, the download fails or the kernel
//! source is not installed (the host lacks what fetching or building needs), 125 for any
//! other failure (a failed build among them).

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use isolab_microvm::kernel::build::{self, BuildError};
use isolab_microvm::kernel::{self, KernelError};

use crate::commands::setup::{self, Job};
use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct KernelArgs {
    #[command(subcommand)]
    pub command: KernelCommand,
}

#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Download linux-image-cloud-amd64 with apt-get, keep its vmlinuz with version and
    /// sha256 and the ELF vmlinux decompressed from it ($ISOLAB_KERNEL_CACHE, default
    /// /var/cache/isolab/kernels).
    Fetch,
    /// Compile a guest kernel from Debian's linux-source (installed by `isolab setup --for
    /// kernel`, which this runs first) and keep its vmlinux in the kernel cache as
    /// minimal-<version>-<config sha>/vmlinux; rebuilt only when the source or the config
    /// changes. Takes 10-30 minutes on two cores.
    Build {
        /// The only kind there is: tinyconfig plus isolab's fragment
        /// (microvm/kernel/minimal.config).
        #[arg(long, required = true)]
        minimal: bool,
        /// make's -j.
        #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
        jobs: u32,
        /// Where the source is unpacked and built; kept for incremental rebuilds.
        #[arg(long, value_name = "DIR", default_value = build::DEFAULT_WORK)]
        work: PathBuf,
    },
}

pub fn run(args: KernelArgs) -> Result<(), Failure> {
    match args.command {
        KernelCommand::Fetch => fetch(),
        KernelCommand::Build {
            minimal: _,
            jobs,
            work,
        } => build_minimal(jobs, &work),
    }
}

fn fetch() -> Result<(), Failure> {
    let stored =
        kernel::fetch(&kernel::default_cache(), &mut |step| eprintln!("{step}")).map_err(|e| {
            match e {
                KernelError::Spawn { .. } | KernelError::Failed { .. } | KernelError::NoPackage => {
                    Failure::HostLacks(e.into())
                }
                other => Failure::Coded(125, anyhow!(other)),
            }
        })?;
    println!(
        "{}\tvmlinux={}\tpackage={}\tsha256={}",
        stored.vmlinuz.display(),
        stored.vmlinux.display(),
        stored.package,
        stored.sha256
    );
    Ok(())
}

fn build_minimal(jobs: u32, work: &std::path::Path) -> Result<(), Failure> {
    setup::ensure(Job::Kernel, false)?;
    let built = build::build_minimal(&kernel::default_cache(), work, jobs, &mut |step| {
        eprintln!("kernel build: {step}")
    })
    .map_err(|e| match e {
        BuildError::Spawn { .. } | BuildError::NoSource | BuildError::NoTarball { .. } => {
            Failure::HostLacks(e.into())
        }
        other => Failure::Coded(125, anyhow!(other)),
    })?;
    println!(
        "{}\tbytes={}\tbuild_seconds={:.1}\tcached={}",
        built.vmlinux.display(),
        built.bytes,
        built.build_seconds,
        if built.cached { "yes" } else { "no" }
    );
    Ok(())
}
