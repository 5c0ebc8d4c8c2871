//! `isolab run`: options in, container out; the work is in `isolab_runtime::container`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use isolab_runtime::cgroups::{MemorySwap, Resources};
use isolab_runtime::container::config::{self, ConfigError, SecurityOpt};
use isolab_runtime::container::image_root::{ImageRoot, ImageRootError};
use isolab_runtime::container::{self as runtime, ContainerConfig, Outcome, RunError, User};
use isolab_runtime::explain::Explain;
use isolab_runtime::image::Store;

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The container's name (default: generated); also names its cgroup `isolab/<name>`.
    #[arg(long)]
    name: Option<String>,
    /// Hostname inside the container (default: the name).
    #[arg(long)]
    hostname: Option<String>,
    /// Directory to use as the container's root filesystem (instead of an IMAGE).
    #[arg(long, conflicts_with = "image", required_unless_present = "image")]
    rootfs: Option<PathBuf>,
    /// Image (NAME[:TAG] or id) whose layers become the container's root: an overlay with
    /// a fresh upper layer, removed with the container. Its entrypoint, cmd, env, workdir
    /// and user apply; CMD replaces its cmd, and options given here win.
    #[arg(value_name = "IMAGE")]
    image: Option<String>,
    /// The image store's directory [default: $ISOLAB_STORE, else /var/lib/isolab].
    #[arg(long, value_name = "DIR", requires = "image")]
    store: Option<PathBuf>,
    /// Set an environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VAL")]
    env: Vec<String>,
    /// Working directory inside the container (default: /).
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// User (and group) to run the command as: numeric, or names from an image's
    /// /etc/passwd and /etc/group.
    #[arg(long, short = 'u', value_name = "UID[:GID]")]
    user: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Memory limit, e.g. 64M (k, m, g suffixes).
    #[arg(long, short = 'm')]
    memory: Option<String>,
    /// Memory plus swap limit (needs --memory; -1 for unlimited swap).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// CPU time limit in CPUs, e.g. 0.5.
    #[arg(long)]
    cpus: Option<String>,
    /// Relative CPU weight, cgroup v1 scale (2-262144; converted on cgroup v2).
    #[arg(long, short = 'c', conflicts_with = "cpu_weight")]
    cpu_shares: Option<u64>,
    /// Relative CPU weight, cgroup v2 scale (1-10000; converted on cgroup v1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    cpu_weight: Option<u64>,
    /// CPUs the container may use, e.g. 0 or 0-1.
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Most processes and threads the container may have.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pids_limit: Option<u64>,
    /// Relative block I/O weight (10-1000), where the I/O scheduler supports weights.
    #[arg(long, value_parser = clap::value_parser!(u16).range(10..=1000))]
    blkio_weight: Option<u16>,
    /// Network: none (own namespace with lo only), host, or bridge (own namespace with lo
    /// and eth0, a veth pair's end on the bridge isolab0 with an address from
    /// 10.77.0.0/24 and a default route via 10.77.0.1).
    #[arg(long, default_value = "none")]
    net: String,
    /// Map container root to an unprivileged host id range (/etc/subuid's range for root,
    /// else 100000-165535). The rootfs must be world-readable, or owned by that range.
    #[arg(long)]
    userns: bool,
    /// Turn off the isolation that protects the host: all capabilities, no seccomp, no
    /// masked or read-only kernel paths, writable /sys. Namespaces and cgroups stay.
    #[arg(long)]
    privileged: bool,
    /// Security options: seccomp=unconfined (no Docker profile), seccomp=FILE (load the
    /// filters of a seccompiler JSON profile too, after Docker's).
    #[arg(long = "security-opt", value_name = "OPT")]
    security_opt: Vec<String>,
    /// Give the command a pseudo-terminal as stdin, stdout, stderr and /dev/console, and
    /// relay this terminal (in raw mode) to it; with --detach, its output goes to the log
    /// and it gets no input.
    #[arg(long, short = 't')]
    tty: bool,
    /// Print each step (system call or file write) with a time stamp in µs to stderr.
    #[arg(long, conflicts_with = "detach")]
    explain: bool,
    /// Start the container in the background, print its name and return; its output goes
    /// to `isolab logs NAME`, and a small supervisor process records how it ends.
    #[arg(long, short = 'd')]
    detach: bool,
    /// The command to run as the container's PID 1, and its arguments (with an image: the
    /// arguments to its entrypoint, replacing its cmd; optional).
    #[arg(last = true, required_unless_present = "image", value_name = "CMD")]
    command: Vec<String>,
}

/// `--explain` time stamps count from here.
fn explain_from(enabled: bool, start: Instant) -> Explain {
    if enabled {
        Explain::on(start)
    } else {
        Explain::off()
    }
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    let start = Instant::now();
    let explain = explain_from(args.explain, start);
    let detach = args.detach;
    let image = args.image.clone();
    let store = Store::default_root(args.store.as_deref());
    let (user, command) = (args.user.clone(), args.command.clone());
    let mut config = container_config(args).map_err(|e| Failure::Coded(125, anyhow!(e)))?;
    // Held until the container is gone: dropping it removes the upper layer.
    let image_root = match image {
        Some(image) => {
            let root = ImageRoot::prepare(&store, &image, &config.name).map_err(image_failure)?;
            root.apply(&mut config, command, user.as_deref())
                .map_err(image_failure)?;
            Some(root)
        }
        None => None,
    };
    if config.privileged {
        eprintln!(
            "isolab: WARNING: --privileged: container {} gets every capability, no seccomp filter and the host's kernel interfaces writable; it can take over the host",
            config.name
        );
    }
    if detach {
        // The supervisor is a fresh image of this very binary (see lifecycle::detach).
        let supervisor = ["/proc/self/exe".to_string(), "supervise".to_string()];
        runtime::lifecycle::detach(&config, &supervisor).map_err(run_failure)?;
        // Removed by `isolab rm`, or `gc` once nothing owns it.
        if let Some(root) = image_root {
            root.keep();
        }
        println!("{}", config.name);
        return Ok(());
    }
    match runtime::run(&config, explain) {
        Ok(Outcome::Exited(0)) => Ok(()),
        Ok(
            outcome @ Outcome::Signaled {
                oom_killed: true, ..
            },
        ) => {
            let limit = config
                .resources
                .memory
                .map_or_else(|| "unset".to_string(), config::format_size);
            Err(Failure::Coded(
                outcome.exit_code(),
                anyhow!(
                    "container {} was OOM-killed (memory limit {limit})",
                    config.name
                ),
            ))
        }
        Ok(outcome) => Err(Failure::PassThrough(outcome.exit_code())),
        Err(e) => Err(run_failure(e)),
    }
}

/// Docker's convention: a missing image or a bad option is isolab's own failure, 125.
fn image_failure(error: ImageRootError) -> Failure {
    Failure::Coded(125, anyhow!(error))
}

fn run_failure(error: RunError) -> Failure {
    Failure::Coded(error.exit_code(), anyhow!(error))
}

fn container_config(args: RunArgs) -> Result<ContainerConfig, ConfigError> {
    let name = match args.name {
        Some(name) => {
            config::validate_name(&name)?;
            name
        }
        None => config::generated_name(),
    };
    let memory = args.memory.as_deref().map(config::parse_size).transpose()?;
    let memory_swap = args
        .memory_swap
        .as_deref()
        .map(|text| config::parse_memory_swap(text, memory))
        .transpose()?
        .map(|total| total.map_or(MemorySwap::Unlimited, MemorySwap::Total));
    let (mut seccomp, mut seccomp_profile) = (true, None);
    for opt in &args.security_opt {
        match config::parse_security_opt(opt)? {
            SecurityOpt::Unconfined => seccomp = false,
            SecurityOpt::SeccompProfile(json) => seccomp_profile = Some(json),
        }
    }
    Ok(ContainerConfig {
        hostname: args.hostname.unwrap_or_else(|| name.clone()),
        name,
        // An image root's path, command and user are set by ImageRoot::apply.
        rootfs: args.rootfs.unwrap_or_default(),
        overlay: None,
        command: args.command,
        env: args
            .env
            .iter()
            .map(|e| config::parse_env(e))
            .collect::<Result<_, _>>()?,
        workdir: args.workdir,
        user: match (&args.image, args.user.as_deref()) {
            (None, Some(user)) => config::parse_user(user)?,
            _ => User::default(),
        },
        read_only: args.read_only,
        resources: Resources {
            memory,
            memory_swap,
            cpu_quota_us: args.cpus.as_deref().map(config::parse_cpus).transpose()?,
            cpu_shares: args.cpu_shares,
            cpu_weight: args.cpu_weight,
            cpuset_cpus: args.cpuset_cpus,
            pids_limit: args.pids_limit,
            blkio_weight: args.blkio_weight,
            all_devices: args.privileged,
        },
        network: config::parse_network(&args.net)?,
        userns: args.userns,
        privileged: args.privileged,
        seccomp,
        seccomp_profile,
        tty: args.tty,
        extra: Default::default(),
    })
}
