//! `isolab setup`: installs, idempotently, the Debian packages a job needs, saying what it does.
//!
//! This is the only place isolab installs anything; the README's two commands call it, so a
//! fresh Debian machine needs nothing done by hand.

use std::process::Command;

use anyhow::{Context, anyhow};
use clap::{Args, ValueEnum};

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Which job to prepare the host for.
    #[arg(long = "for", value_enum, default_value_t = Job::Main)]
    job: Job,
    /// Print what would be installed without installing it.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Job {
    /// The side-by-side measurement and its report.
    Main,
    /// The test suite.
    Tests,
    /// `isolab kernel build --minimal`: a guest kernel compiled from Debian's source.
    Kernel,
}

/// A Debian package, why isolab wants it, and which jobs need it.
struct Requirement {
    package: &'static str,
    why: &'static str,
    jobs: &'static [Job],
}

const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        package: "busybox-static",
        why: "a static userland for container root filesystems",
        jobs: &[Job::Main, Job::Tests],
    },
    Requirement {
        package: "runc",
        why: "the runc target, measured beside isolab's own container runtime; podman's runtime in the image-import tests",
        jobs: &[Job::Main, Job::Tests],
    },
    Requirement {
        package: "docker.io",
        why: "the docker target (dockerd, started by isolab bench when it is not running)",
        jobs: &[Job::Main],
    },
    Requirement {
        package: "podman",
        why: "the podman target, run with runc; real `podman save` archives in the import tests; isolab-oci as podman's runtime in the OCI tests",
        jobs: &[Job::Main, Job::Tests],
    },
    Requirement {
        package: "qemu-system-x86",
        why: "the test sandbox: standard KVM and pure cgroup v2 under TCG (isolab sandbox)",
        jobs: &[Job::Tests],
    },
    Requirement {
        package: "gcc",
        why: "the labs compile C programs (the students' own in labs 1 and 2, the labs' probes in 10 and 14); the minimal guest kernel",
        jobs: &[Job::Tests, Job::Kernel],
    },
    Requirement {
        package: "libc6-dev",
        why: "libc.a: the labs' programs are linked with `gcc -static` to run in root filesystems that hold no C library; the kernel build's host tools",
        jobs: &[Job::Tests, Job::Kernel],
    },
    Requirement {
        package: "iproute2",
        why: "`ip`: lab 4 has the student build network namespaces, a bridge and veth pairs by hand, and its checker reads them back",
        jobs: &[Job::Tests],
    },
    Requirement {
        package: "binutils",
        why: "objcopy: the test sandbox copies isolab in without its debug sections, which keeps its boots (and the Linux-guest tests) fast",
        jobs: &[Job::Tests],
    },
    Requirement {
        package: "linux-source",
        why: "the kernel source `isolab kernel build --minimal` compiles",
        jobs: &[Job::Kernel],
    },
    Requirement {
        package: "make",
        why: "runs the kernel build",
        jobs: &[Job::Kernel],
    },
    Requirement {
        package: "xz-utils",
        why: "unpacks linux-source's tarball",
        jobs: &[Job::Kernel],
    },
    Requirement {
        package: "flex",
        why: "the kernel's config parser",
        jobs: &[Job::Kernel],
    },
    Requirement {
        package: "bison",
        why: "the kernel's config parser",
        jobs: &[Job::Kernel],
    },
    Requirement {
        package: "bc",
        why: "the kernel build's timeconst generator",
        jobs: &[Job::Kernel],
    },
    Requirement {
        package: "libelf-dev",
        why: "objtool, which the x86-64 kernel build runs",
        jobs: &[Job::Kernel],
    },
    Requirement {
        package: "libssl-dev",
        why: "the kernel build's signing and certificate tools",
        jobs: &[Job::Kernel],
    },
];

pub fn run(args: SetupArgs) -> Result<(), Failure> {
    ensure(args.job, args.dry_run)
}

/// Installs what `job` needs and is missing; with `dry_run`, only says what that would be.
pub fn ensure(job: Job, dry_run: bool) -> Result<(), Failure> {
    let wanted: Vec<&Requirement> = REQUIREMENTS
        .iter()
        .filter(|r| r.jobs.contains(&job))
        .collect();
    let mut missing = Vec::new();
    for requirement in &wanted {
        if is_installed(requirement.package).map_err(Failure::HostLacks)? {
            println!(
                "setup: {} is installed ({})",
                requirement.package, requirement.why
            );
        } else {
            println!(
                "setup: {} is missing ({})",
                requirement.package, requirement.why
            );
            missing.push(requirement.package);
        }
    }
    if missing.is_empty() {
        println!("setup: nothing to install");
        return Ok(());
    }
    if dry_run {
        println!("setup: would run: apt-get install -y {}", missing.join(" "));
        return Ok(());
    }
    install(&missing).map_err(Failure::HostLacks)
}

/// Asks dpkg, which knows, rather than looking for files a package happens to ship.
fn is_installed(package: &str) -> anyhow::Result<bool> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .output()
        .context(
            "running dpkg-query: isolab setup needs a Debian-based host with dpkg and apt-get",
        )?;
    Ok(output.status.success() && output.stdout == b"installed")
}

fn install(packages: &[&str]) -> anyhow::Result<()> {
    println!("setup: apt-get update");
    apt_get(&["update", "-q"])?;
    println!("setup: apt-get install -y {}", packages.join(" "));
    let mut install_args = vec!["install", "-y", "-q", "--no-install-recommends"];
    install_args.extend_from_slice(packages);
    apt_get(&install_args)
}

fn apt_get(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get (is this a Debian-based host, and are you root?)")?;
    if status.success() {
        Ok(())
    } else {
        Err(anyhow!(
            "apt-get {} failed with {status}; run it by hand to see why",
            args.join(" ")
        ))
    }
}
