//! `isolab kernel fetch`: Debian's cloud kernel for Linux guests (see
//! `isolab_microvm::kernel`). Prints the stored vmlinuz, the vmlinux decompressed from it,
//! its package and SHA-256; a second
//! run finds it in the cache without the network.
//!
//! Exit status: 0, or 3 when apt/dpkg are missing or the download fails (the host lacks
//! what fetching needs), 125 for any other failure.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use isolab_microvm::kernel::{self, KernelError};

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
}

pub fn run(args: KernelArgs) -> Result<(), Failure> {
    let KernelCommand::Fetch = args.command;
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
