//! Targets: the ways a workload invocation is launched (natively, by a peer tool, ...).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::net_peer::NetPeer;
use crate::rootfs::{
    Bundle, ImageStore, MEMORY_LIMIT, PIDS_LIMIT, Rootfs, RootfsError, WORKLOAD_IN_ROOT,
    import_image,
};
use crate::workload::{Mode, Workload};

/// Targets this build can run.
pub const AVAILABLE: [&str; 10] = [
    "native",
    "unshare",
    "container",
    "container-image",
    "runc",
    "docker",
    "podman",
    "vm-mini",
    "vm-linux",
    "qemu-microvm",
];
/// Targets later work adds; naming one gets "not available yet" instead of "unknown".
pub const PLANNED: [&str; 2] = ["firecracker", "cloud-hypervisor"];

/// The kernel the Linux VM targets boot, when not the vmlinux `isolab kernel fetch` stored.
pub const VM_KERNEL_ENV: &str = "ISOLAB_VM_KERNEL";
/// `--timeout` of a Linux VM running the idle workload, which runs until it is stopped: the
/// monitor's own default (60 s, a guard against a hung guest) would end it under a density
/// run; a day outlasts any.
const IDLE_VM_TIMEOUT_SECS: &str = "86400";
/// Where a dockerd that the docker target starts writes its output.
const DOCKERD_LOG: &str = "/var/log/isolab-dockerd.log";
/// How long a started dockerd may take to answer.
const DOCKERD_START: Duration = Duration::from_secs(30);

/// A container engine measured as a peer, running the same root filesystem imported as an
/// image ([`import_image`]) with the same network and limits as the `container` target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Engine::Docker => "install docker.io: apt-get install -y docker.io",
            Engine::Podman => "install podman: apt-get install -y podman",
        }
    }

    /// The words between the engine's executable and the image.
    fn run_options(self) -> Vec<String> {
        // Podman: runc, as Debian's crun refuses hybrid cgroups; its default rlimits are
        // higher than this host's hard limits, which crun/runc then fail to set.
        let global: &[&str] = match self {
            Engine::Docker => &[],
            Engine::Podman => &["--runtime", "runc"],
        };
        let ulimits: &[&str] = match self {
            Engine::Docker => &[],
            Engine::Podman => &[
                "--ulimit",
                "nofile=20000:20000",
                "--ulimit",
                "nproc=32768:32768",
            ],
        };
        global
            .iter()
            .chain(&["run", "--rm", "--network", "none"])
            .chain(ulimits)
            .chain(&["--memory", MEMORY_LIMIT, "--pids-limit"])
            .map(|w| w.to_string())
            .chain(std::iter::once(PIDS_LIMIT.to_string()))
            .collect()
    }
}

/// The namespaces of `isolab run` that util-linux unshare creates; `--fork` makes the
/// workload pid 1 of the new pid namespace and `--mount-proc` gives it a matching /proc.
const UNSHARE_FLAGS: [&str; 9] = [
    "--mount",
    "--uts",
    "--ipc",
    "--net",
    "--pid",
    "--cgroup",
    "--time",
    "--fork",
    "--mount-proc",
];

const WORKLOAD_PLACEHOLDER: &str = "{workload}";
const ARGS_PLACEHOLDER: &str = "{args}";

/// Something that launches the workload and is measured doing so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The workload binary executed directly.
    Native,
    /// A fresh mini-kernel micro-VM per run: `isolab vm run --guest mini`, given the very
    /// file the harness hashed (`--workload-bin`). `monitor` is the isolab executable.
    VmMini { monitor: String },
    /// A fresh Linux micro-VM per run: `isolab vm run --kernel K --vmm VMM` with the
    /// workload as init of an initramfs, under isolab's monitor (`vm-linux`) or QEMU's
    /// microvm machine (`qemu-microvm`), on the same kernel file.
    VmLinux {
        monitor: String,
        vmm: &'static str,
        kernel: String,
    },
    /// The floor of container start-up: util-linux `unshare` with new mount, uts, ipc,
    /// net, pid, cgroup and time namespaces and a fresh /proc, running the workload from
    /// the host's filesystem: no root filesystem, no cgroup limits, no capability or
    /// seccomp confinement.
    Unshare { unshare: String },
    /// `isolab run` with its full default isolation and limits, in a root filesystem that
    /// holds the hashed workload (see [`crate::rootfs`]).
    /// With `from_image` (target `container-image`) the root is a scratch image of the
    /// workload in a temporary image store: an overlay with a fresh upper layer per run.
    Container { isolab: String, from_image: bool },
    /// `runc run` of an OCI bundle with the same root filesystem and isolation.
    Runc { runc: String, id: String },
    /// `docker run` / `podman run` of the same root filesystem imported as an image.
    Engine { engine: Engine, cli: String },
    /// An arbitrary command (`--peer NAME=CMD`), so tools like runc, podman or qemu are
    /// measured in the same run set as isolab's own targets.
    Peer { name: String, template: Vec<String> },
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("unknown target `{name}`; available: {available}; not available yet in this build: {planned}", available = AVAILABLE.join(", "), planned = PLANNED.join(", "))]
    Unknown { name: String },
    #[error("target `{name}` is not available yet in this build; available: {available}", available = AVAILABLE.join(", "))]
    NotYetAvailable { name: String },
    #[error("target `{0}` is given more than once")]
    Duplicate(String),
    #[error("no target to measure: give --target or --peer")]
    None,
    #[error("empty --peer: expected NAME=CMD")]
    EmptyPeer,
    #[error("--peer `{0}`: expected NAME=CMD")]
    PeerWithoutName(String),
    #[error("--peer name `{0}` must be non-empty and use only letters, digits, `.`, `_` and `-`")]
    BadPeerName(String),
    #[error("--peer `{0}`: the command is empty")]
    EmptyPeerCommand(String),
    #[error("--peer `{name}`: cannot split the command into words")]
    PeerSplit {
        name: String,
        #[source]
        source: shell_words::ParseError,
    },
    #[error("--peer `{0}`: {{args}} must be a word of its own")]
    ArgsInsideWord(String),
    #[error("target `{0}`: locating the isolab executable that runs the VM")]
    Monitor(String, #[source] std::io::Error),
    #[error(
        "target `{target}` needs standard KVM (VMX or SVM), and this host's KVM is {kind}; \
         on a PVM host measure it in the sandbox: `isolab measure --sandbox`"
    )]
    NoStandardKvm { target: String, kind: &'static str },
    #[error(
        "target `{0}` needs a guest kernel: run `isolab kernel fetch` (or set {VM_KERNEL_ENV})"
    )]
    NoKernel(String),
    #[error("target `{0}`: locating the isolab executable that runs the container")]
    Isolab(String, #[source] std::io::Error),
    #[error("target `{target}` needs {tool}, which is not installed: {fix}")]
    MissingTool {
        target: String,
        tool: &'static str,
        fix: &'static str,
    },
    #[error("target `{0}`: preparing its root filesystem")]
    Prepare(String, #[source] RootfsError),
    #[error(
        "target `{0}` cannot run the net workload: it runs on native (two host processes) and container (two containers on the bridge isolab0)"
    )]
    NetUnsupported(String),
    #[error("target `{target}`: starting the net workload's server: {detail}")]
    NetPeer { target: String, detail: String },
    #[error("target `docker`: running {dockerd}")]
    StartDaemon {
        dockerd: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "target `docker`: dockerd (pid {pid}) did not answer within {secs}s; see {log}",
        secs = DOCKERD_START.as_secs()
    )]
    DaemonSilent { pid: u32, log: PathBuf },
}

impl TargetError {
    /// Whether installing something would fix it (the CLI exits 3 then).
    pub fn host_lacks(&self) -> bool {
        matches!(
            self,
            TargetError::MissingTool { .. }
                | TargetError::NoStandardKvm { .. }
                | TargetError::NoKernel(_)
        )
    }
}

/// What a target needs for a whole run set: its argv, and the root filesystem or bundle
/// it runs in (removed when this is dropped).
#[derive(Debug)]
pub struct Prepared {
    pub argv: Vec<String>,
    _root: Option<Box<dyn std::fmt::Debug>>,
}

/// `tool` from PATH, or from the sbin directories root's PATH has and a user's may lack.
fn find_tool(tool: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|dir| !dir.is_empty())
        .map(|dir| std::path::Path::new(dir).join(tool))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

fn tool(target: &str, tool: &'static str, fix: &'static str) -> Result<String, TargetError> {
    find_tool(tool).ok_or_else(|| TargetError::MissingTool {
        target: target.to_owned(),
        tool,
        fix,
    })
}

impl Target {
    /// The built-in target called `name`.
    pub fn named(name: &str) -> Result<Target, TargetError> {
        match name {
            "native" => Ok(Target::Native),
            "vm-mini" => {
                let monitor = std::env::current_exe()
                    .map_err(|e| TargetError::Monitor(name.to_owned(), e))?;
                Ok(Target::VmMini {
                    monitor: monitor.to_string_lossy().into_owned(),
                })
            }
            "vm-linux" | "qemu-microvm" => {
                let monitor = std::env::current_exe()
                    .map_err(|e| TargetError::Monitor(name.to_owned(), e))?;
                let vmm = if name == "vm-linux" {
                    "isolab"
                } else {
                    tool(
                        name,
                        isolab_microvm::linux::peer::QEMU,
                        "install qemu-system-x86: apt-get install -y qemu-system-x86",
                    )?;
                    "qemu-microvm"
                };
                use isolab_microvm::host::KvmKind;
                let kind = KvmKind::detect();
                if !matches!(kind, KvmKind::Vmx { .. } | KvmKind::Svm { .. }) {
                    return Err(TargetError::NoStandardKvm {
                        target: name.to_owned(),
                        kind: kind.name(),
                    });
                }
                // Both monitors boot the same file: the ELF vmlinux (QEMU through its PVH
                // entry), which spares the guest the decompression a bzImage costs.
                let kernel = match std::env::var_os(VM_KERNEL_ENV).filter(|k| !k.is_empty()) {
                    Some(kernel) => PathBuf::from(kernel),
                    None => {
                        isolab_microvm::kernel::stored(&isolab_microvm::kernel::default_cache())
                            .map_err(|_| TargetError::NoKernel(name.to_owned()))?
                            .vmlinux
                    }
                };
                Ok(Target::VmLinux {
                    monitor: monitor.to_string_lossy().into_owned(),
                    vmm,
                    kernel: kernel.to_string_lossy().into_owned(),
                })
            }
            "unshare" => Ok(Target::Unshare {
                unshare: tool(
                    name,
                    "unshare",
                    "install util-linux: apt-get install -y util-linux",
                )?,
            }),
            "container" | "container-image" => {
                let isolab =
                    std::env::current_exe().map_err(|e| TargetError::Isolab(name.to_owned(), e))?;
                Ok(Target::Container {
                    isolab: isolab.to_string_lossy().into_owned(),
                    from_image: name == "container-image",
                })
            }
            "runc" => Ok(Target::Runc {
                runc: tool(name, "runc", "install runc: apt-get install -y runc")?,
                id: format!("isolab-bench-{}", std::process::id()),
            }),
            "docker" | "podman" => {
                let engine = if name == "docker" {
                    Engine::Docker
                } else {
                    Engine::Podman
                };
                Ok(Target::Engine {
                    engine,
                    cli: tool(name, engine.name(), engine.fix())?,
                })
            }
            _ if PLANNED.contains(&name) => Err(TargetError::NotYetAvailable {
                name: name.to_owned(),
            }),
            _ => Err(TargetError::Unknown {
                name: name.to_owned(),
            }),
        }
    }

    /// A peer from `NAME=CMD`. CMD is split like a POSIX shell would split it; `{workload}`
    /// is replaced by the workload's absolute path (also inside a word) and the word `{args}`
    /// by the workload's arguments as separate words. With neither placeholder the path and
    /// the arguments are appended.
    pub fn peer(spec: &str) -> Result<Target, TargetError> {
        if spec.trim().is_empty() {
            return Err(TargetError::EmptyPeer);
        }
        let (name, command) = spec
            .split_once('=')
            .ok_or_else(|| TargetError::PeerWithoutName(spec.to_owned()))?;
        let valid_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.is_empty() || !name.chars().all(valid_name) {
            return Err(TargetError::BadPeerName(name.to_owned()));
        }
        let template = shell_words::split(command).map_err(|source| TargetError::PeerSplit {
            name: name.to_owned(),
            source,
        })?;
        if template.is_empty() {
            return Err(TargetError::EmptyPeerCommand(name.to_owned()));
        }
        if template
            .iter()
            .any(|word| word != ARGS_PLACEHOLDER && word.contains(ARGS_PLACEHOLDER))
        {
            return Err(TargetError::ArgsInsideWord(name.to_owned()));
        }
        Ok(Target::Peer {
            name: name.to_owned(),
            template,
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Target::Native => "native",
            Target::VmMini { .. } => "vm-mini",
            Target::VmLinux { vmm: "isolab", .. } => "vm-linux",
            Target::VmLinux { .. } => "qemu-microvm",
            Target::Unshare { .. } => "unshare",
            Target::Container {
                from_image: false, ..
            } => "container",
            Target::Container {
                from_image: true, ..
            } => "container-image",
            Target::Runc { .. } => "runc",
            Target::Engine { engine, .. } => engine.name(),
            Target::Peer { name, .. } => name,
        }
    }

    /// Whether the target reports its start-up phases to the harness (see
    /// `isolab_runtime::explain::PhaseLog`): isolab's own container and VMs do.
    pub fn records_phases(&self) -> bool {
        matches!(
            self,
            Target::Container { .. }
                | Target::VmMini { .. }
                | Target::VmLinux { vmm: "isolab", .. }
        )
    }

    pub fn description(&self) -> String {
        match self {
            Target::Native => "the workload executed directly by isolab".to_owned(),
            Target::VmMini { .. } => {
                "a fresh mini-kernel micro-VM per run (isolab vm run --guest mini)".to_owned()
            }
            Target::VmLinux { vmm, kernel, .. } => format!(
                "a fresh Linux micro-VM per run under {}: the kernel {kernel}, the workload as \
                 init of an initramfs (isolab vm run --vmm {vmm})",
                if *vmm == "isolab" {
                    "isolab's monitor"
                } else {
                    "QEMU's microvm machine with KVM"
                }
            ),
            Target::Unshare { .. } => format!(
                "the workload under unshare {}: namespaces only, no rootfs, cgroup or confinement",
                UNSHARE_FLAGS.join(" ")
            ),
            Target::Container { from_image, .. } => format!(
                "isolab run --memory {MEMORY_LIMIT} --pids-limit {PIDS_LIMIT}: every namespace, \
                 a cgroup with limits, pivot_root, masks, capabilities, seccomp; {}",
                if *from_image {
                    "the root an overlay of a scratch image holding the workload (its sha256 \
                     checked) with a fresh upper layer, created and removed by each run"
                } else {
                    "the workload hard-linked (or copied) into a fresh rootfs, its sha256 checked"
                }
            ),
            Target::Runc { .. } => format!(
                "runc run of an OCI bundle with isolab's isolation, --memory {MEMORY_LIMIT} and \
                 {PIDS_LIMIT} pids, but no time namespace and no seccomp (runc 1.1 applies none)"
            ),
            Target::Engine { engine, .. } => format!(
                "{} {} isolab-workload:<sha256> {WORKLOAD_IN_ROOT}: the same rootfs imported \
                 as an image, the engine's default isolation (its seccomp profile included)",
                engine.name(),
                engine.run_options().join(" ")
            ),
            Target::Peer { template, .. } => {
                format!("peer command: {}", shell_words::join(template))
            }
        }
    }

    /// Builds what the target runs in and its argv. Targets with a root filesystem get a
    /// fresh one holding the workload's very bytes; the others run `workload.path`.
    pub fn prepare(&self, workload: &Workload) -> Result<Prepared, TargetError> {
        if workload.mode == Mode::Net {
            return self.prepare_net(workload);
        }
        let args = workload.argv();
        let failed = |e| TargetError::Prepare(self.name().to_owned(), e);
        let (path, root): (_, Option<Box<dyn std::fmt::Debug>>) = match self {
            Target::Container {
                from_image: true, ..
            } => {
                let store = ImageStore::build(workload).map_err(failed)?;
                (store.workload(), Some(Box::new(store)))
            }
            Target::Container { .. } => {
                let rootfs = Rootfs::build(workload).map_err(failed)?;
                (rootfs.workload(), Some(Box::new(rootfs)))
            }
            Target::Runc { id, .. } => {
                let bundle = Bundle::build(workload, id).map_err(failed)?;
                (bundle.workload(), Some(Box::new(bundle)))
            }
            Target::Engine { engine, cli } => {
                if *engine == Engine::Docker {
                    ensure_dockerd(cli)?;
                }
                (import_image(cli, workload).map_err(failed)?.into(), None)
            }
            _ => (workload.path.clone().into(), None),
        };
        Ok(Prepared {
            argv: self.argv(&path.to_string_lossy(), &args),
            _root: root,
        })
    }

    /// The net workload: a server beside the target for the whole run set, and each run a
    /// client of it, launched the target's way.
    fn prepare_net(&self, workload: &Workload) -> Result<Prepared, TargetError> {
        let failed = |e| TargetError::Prepare(self.name().to_owned(), e);
        let (path, peer, rootfs) = match self {
            Target::Native => (
                PathBuf::from(&workload.path),
                NetPeer::native(workload)?,
                None,
            ),
            Target::Container {
                isolab,
                from_image: false,
            } => {
                let rootfs = Rootfs::build(workload).map_err(failed)?;
                let peer = NetPeer::container(isolab, rootfs.path())?;
                (rootfs.workload(), peer, Some(rootfs))
            }
            _ => return Err(TargetError::NetUnsupported(self.name().to_owned())),
        };
        let args: Vec<String> = workload.argv().into_iter().chain(peer.args()).collect();
        Ok(Prepared {
            argv: self.argv(&path.to_string_lossy(), &args),
            // A tuple drops in order: the server goes before the root it runs in.
            _root: Some(Box::new((peer, rootfs))),
        })
    }

    /// The argv that launches the workload at `path` with `args` (mode first); for an
    /// engine, `path` is the image that holds the workload.
    pub fn argv(&self, path: &str, args: &[String]) -> Vec<String> {
        let direct = || std::iter::once(path.to_owned()).chain(args.iter().cloned());
        match self {
            Target::Native => direct().collect(),
            Target::VmMini { monitor } => [monitor, "vm", "run", "--guest", "mini"]
                .into_iter()
                .map(str::to_owned)
                .chain(["--workload-bin".to_owned(), path.to_owned()])
                // --workload takes every word after it: it comes last.
                .chain(std::iter::once("--workload".to_owned()))
                .chain(args.iter().cloned())
                .collect(),
            Target::VmLinux {
                monitor,
                vmm,
                kernel,
            } => {
                let idle: &[&str] = if args.first().is_some_and(|m| m == Mode::Idle.name()) {
                    &["--timeout", IDLE_VM_TIMEOUT_SECS]
                } else {
                    &[]
                };
                [monitor, "vm", "run", "--kernel", kernel, "--vmm", vmm]
                    .into_iter()
                    .chain(idle.iter().copied())
                    .map(str::to_owned)
                    .chain(
                        ["--vm-figures", "--workload-bin", path, "--workload"].map(str::to_owned),
                    )
                    .chain(args.iter().cloned())
                    .collect()
            }
            Target::Unshare { unshare } => std::iter::once(unshare.clone())
                .chain(UNSHARE_FLAGS.iter().map(|f| f.to_string()))
                .chain(std::iter::once("--".to_owned()))
                .chain(direct())
                .collect(),
            // `path` is the workload inside a root filesystem that `prepare` built: its
            // directory is the rootfs, and runc's bundle is the directory above that. For an
            // image it is `<store>/layers/<diffid>/isolab-workload`.
            Target::Container { isolab, from_image } => {
                let dir = Path::new(path).parent().unwrap_or(Path::new("/"));
                let root = if *from_image {
                    let store = dir.parent().and_then(Path::parent).unwrap_or(dir);
                    vec![
                        "--store".to_owned(),
                        store.to_string_lossy().into_owned(),
                        ImageStore::IMAGE.to_owned(),
                    ]
                } else {
                    vec!["--rootfs".to_owned(), dir.to_string_lossy().into_owned()]
                };
                // The net workload's client joins its server on the bridge.
                let net: &[&str] = if args.first().is_some_and(|m| m == Mode::Net.name()) {
                    &["--net", "bridge"]
                } else {
                    &[]
                };
                [isolab.as_str(), "run"]
                    .into_iter()
                    .chain(net.iter().copied())
                    .chain(["--memory", MEMORY_LIMIT, "--pids-limit"])
                    .map(str::to_owned)
                    .chain(std::iter::once(PIDS_LIMIT.to_string()))
                    .chain(root)
                    .chain(std::iter::once("--".to_owned()))
                    .chain(std::iter::once(WORKLOAD_IN_ROOT.to_owned()))
                    .chain(args.iter().cloned())
                    .collect()
            }
            Target::Runc { runc, id } => {
                let bundle = Path::new(path)
                    .parent()
                    .and_then(Path::parent)
                    .unwrap_or(Path::new("/"));
                vec![
                    runc.clone(),
                    "run".to_owned(),
                    "--bundle".to_owned(),
                    bundle.to_string_lossy().into_owned(),
                    id.clone(),
                ]
            }
            Target::Engine { engine, cli } => std::iter::once(cli.clone())
                .chain(engine.run_options())
                .chain([path.to_owned(), WORKLOAD_IN_ROOT.to_owned()])
                .chain(args.iter().cloned())
                .collect(),
            Target::Peer { template, .. } => {
                let has_placeholder = template
                    .iter()
                    .any(|w| w == ARGS_PLACEHOLDER || w.contains(WORKLOAD_PLACEHOLDER));
                let mut argv = Vec::with_capacity(template.len() + args.len() + 1);
                for word in template {
                    if word == ARGS_PLACEHOLDER {
                        argv.extend(args.iter().cloned());
                    } else {
                        argv.push(word.replace(WORKLOAD_PLACEHOLDER, path));
                    }
                }
                if !has_placeholder {
                    argv.extend(direct());
                }
                argv
            }
        }
    }
}

/// Whether the docker daemon answers `cli`.
fn dockerd_answers(cli: &str) -> bool {
    Command::new(cli)
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts dockerd when it does not answer (and says so): in its own process group, so a
/// Ctrl-C of the bench does not reach it and it outlives this run as a service would;
/// without iptables rules or a bridge (the target runs with `--network none`). Returns the
/// pid of the dockerd it started, `None` when one already answered.
pub fn ensure_dockerd(cli: &str) -> Result<Option<u32>, TargetError> {
    if dockerd_answers(cli) {
        return Ok(None);
    }
    let dockerd = tool("docker", "dockerd", Engine::Docker.fix())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(DOCKERD_LOG)
        .map_err(|source| TargetError::StartDaemon {
            dockerd: dockerd.clone(),
            source,
        })?;
    let err_log = log.try_clone().map_err(|source| TargetError::StartDaemon {
        dockerd: dockerd.clone(),
        source,
    })?;
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(&dockerd)
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .process_group(0)
            .spawn()
            .map_err(|source| TargetError::StartDaemon {
                dockerd: dockerd.clone(),
                source,
            })?
    };
    let pid = child.id();
    eprintln!(
        "bench: dockerd was not running; started {dockerd} --iptables=false --ip6tables=false \
         --bridge=none (pid {pid}, log {DOCKERD_LOG}); it keeps running"
    );
    // Reaped here when it ends while this process lives (the blast-radius stage kills it):
    // a zombie's pid still exists, and a new dockerd then refuses to start over its pid
    // file ("pid file found, ensure docker is not running").
    std::thread::spawn(move || child.wait());
    let deadline = Instant::now() + DOCKERD_START;
    while Instant::now() < deadline {
        if dockerd_answers(cli) {
            return Ok(Some(pid));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(TargetError::DaemonSilent {
        pid,
        log: DOCKERD_LOG.into(),
    })
}

/// The targets to measure, in order: built-ins from `names`, then peers from `peers`
/// (`NAME=CMD` each). Every name must be unique.
pub fn resolve(names: &[String], peers: &[String]) -> Result<Vec<Target>, TargetError> {
    let targets = names
        .iter()
        .map(|name| Target::named(name.trim()))
        .chain(peers.iter().map(|spec| Target::peer(spec)))
        .collect::<Result<Vec<_>, _>>()?;
    if targets.is_empty() {
        return Err(TargetError::None);
    }
    for (i, target) in targets.iter().enumerate() {
        if targets[..i].iter().any(|t| t.name() == target.name()) {
            return Err(TargetError::Duplicate(target.name().to_owned()));
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Vec<String> {
        vec!["cpu".into(), "--iters".into(), "5".into()]
    }

    fn peer_argv(spec: &str) -> Vec<String> {
        Target::peer(spec)
            .unwrap()
            .argv("/w/isolab-workload", &args())
    }

    #[test]
    fn native_runs_the_binary_directly() {
        assert_eq!(
            Target::Native.argv("/w/x", &args()),
            ["/w/x", "cpu", "--iters", "5"]
        );
    }

    #[test]
    fn vm_mini_boots_the_hashed_file_in_a_fresh_vm() {
        let target = Target::VmMini {
            monitor: "/bin/isolab".into(),
        };
        assert_eq!(
            target.argv("/w/x", &args()),
            [
                "/bin/isolab",
                "vm",
                "run",
                "--guest",
                "mini",
                "--workload-bin",
                "/w/x",
                "--workload",
                "cpu",
                "--iters",
                "5"
            ]
        );
        assert!(matches!(
            Target::named("vm-mini"),
            Ok(Target::VmMini { .. })
        ));
    }

    #[test]
    fn linux_vms_boot_the_same_kernel_under_either_monitor() {
        let target = |vmm| Target::VmLinux {
            monitor: "/bin/isolab".into(),
            vmm,
            kernel: "/k/vmlinuz".into(),
        };
        assert_eq!(target("isolab").name(), "vm-linux");
        assert_eq!(target("qemu-microvm").name(), "qemu-microvm");
        assert_eq!(
            target("qemu-microvm").argv("/w/x", &args()),
            [
                "/bin/isolab",
                "vm",
                "run",
                "--kernel",
                "/k/vmlinuz",
                "--vmm",
                "qemu-microvm",
                "--vm-figures",
                "--workload-bin",
                "/w/x",
                "--workload",
                "cpu",
                "--iters",
                "5"
            ]
        );
        // Idle runs until stopped, past the monitor's default timeout.
        let idle = target("isolab").argv("/w/x", &["idle".to_owned()]);
        assert_eq!(idle[7..9], ["--timeout", IDLE_VM_TIMEOUT_SECS]);
        assert_eq!(idle.last().map(String::as_str), Some("idle"));
    }

    #[test]
    fn engines_run_the_imported_image_with_the_container_targets_limits() {
        let docker = Target::Engine {
            engine: Engine::Docker,
            cli: "/usr/bin/docker".into(),
        };
        assert_eq!(
            docker.argv("isolab-workload:abc", &args()),
            [
                "/usr/bin/docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--memory",
                "256M",
                "--pids-limit",
                "256",
                "isolab-workload:abc",
                "/isolab-workload",
                "cpu",
                "--iters",
                "5"
            ]
        );
        let podman = Target::Engine {
            engine: Engine::Podman,
            cli: "podman".into(),
        }
        .argv("img", &args());
        assert_eq!(podman[..4], ["podman", "--runtime", "runc", "run"]);
        assert!(
            podman
                .windows(2)
                .any(|w| w == ["--ulimit", "nofile=20000:20000"])
        );
        assert_eq!(
            podman[podman.len() - 5..],
            ["img", "/isolab-workload", "cpu", "--iters", "5"]
        );
    }

    #[test]
    fn container_image_runs_the_benchmark_image_from_its_store() {
        let target = Target::named("container-image").unwrap();
        assert_eq!(target.name(), "container-image");
        let argv = target.argv("/tmp/s/layers/abc/isolab-workload", &args());
        assert_eq!(
            argv[1..],
            [
                "run",
                "--memory",
                MEMORY_LIMIT,
                "--pids-limit",
                &PIDS_LIMIT.to_string(),
                "--store",
                "/tmp/s",
                ImageStore::IMAGE,
                "--",
                WORKLOAD_IN_ROOT,
                "cpu",
                "--iters",
                "5"
            ]
        );
    }

    #[test]
    fn the_net_client_joins_its_server_on_the_bridge_and_others_refuse_net() {
        let target = Target::named("container").unwrap();
        let args: Vec<String> = ["net", "--n", "5", "--mib", "1", "--peer", "10.77.0.2:7070"]
            .map(String::from)
            .to_vec();
        let argv = target.argv("/tmp/r/isolab-workload", &args);
        assert_eq!(argv[1..4], ["run", "--net", "bridge"]);
        let tail = argv.len() - args.len();
        assert_eq!(argv[tail - 2..tail], ["--", WORKLOAD_IN_ROOT]);
        assert_eq!(argv[tail..], args);
        let workload = Workload {
            mode: Mode::Net,
            path: "/w".into(),
            args: Vec::new(),
            sha256: String::new(),
            size_bytes: 0,
        };
        let err = Target::named("vm-mini")
            .unwrap()
            .prepare(&workload)
            .unwrap_err();
        assert!(matches!(err, TargetError::NetUnsupported(_)), "{err}");
    }

    #[test]
    fn peer_placeholders_are_substituted() {
        assert_eq!(
            peer_argv("env=/usr/bin/env {workload} {args}"),
            ["/usr/bin/env", "/w/isolab-workload", "cpu", "--iters", "5"]
        );
        assert_eq!(
            peer_argv(r#"d=docker run -v "{workload}:/wl" img /wl {args} --x"#),
            [
                "docker",
                "run",
                "-v",
                "/w/isolab-workload:/wl",
                "img",
                "/wl",
                "cpu",
                "--iters",
                "5",
                "--x"
            ]
        );
    }

    #[test]
    fn peer_without_placeholders_gets_path_and_args_appended() {
        assert_eq!(
            peer_argv("t=taskset -c '0'"),
            [
                "taskset",
                "-c",
                "0",
                "/w/isolab-workload",
                "cpu",
                "--iters",
                "5"
            ]
        );
    }

    #[test]
    fn peer_only_args_placeholder_does_not_append() {
        assert_eq!(
            peer_argv("q=run-it {args}"),
            ["run-it", "cpu", "--iters", "5"]
        );
    }

    #[test]
    fn peer_specs_are_validated() {
        let err = |spec: &str| Target::peer(spec).unwrap_err().to_string();
        assert_eq!(err(""), "empty --peer: expected NAME=CMD");
        assert_eq!(err("false"), "--peer `false`: expected NAME=CMD");
        assert!(err("=true").starts_with("--peer name `` must be"));
        assert!(err("a b=true").starts_with("--peer name `a b` must be"));
        assert_eq!(err("x=  "), "--peer `x`: the command is empty");
        assert_eq!(
            err("x=echo 'open"),
            "--peer `x`: cannot split the command into words"
        );
        assert_eq!(
            err("x=sh -c a{args}"),
            "--peer `x`: {args} must be a word of its own"
        );
    }

    #[test]
    fn names_resolve_with_clear_errors() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let targets = resolve(&names(&["native"]), &names(&["p=true"])).unwrap();
        assert_eq!(
            targets.iter().map(Target::name).collect::<Vec<_>>(),
            ["native", "p"]
        );
        let err = |t: &[&str], p: &[&str]| resolve(&names(t), &names(p)).unwrap_err().to_string();
        assert_eq!(
            err(&["firecracker"], &[]),
            format!(
                "target `firecracker` is not available yet in this build; available: {}",
                AVAILABLE.join(", ")
            )
        );
        assert_eq!(
            err(&["nope"], &[]),
            format!(
                "unknown target `nope`; available: {}; not available yet in this build: {}",
                AVAILABLE.join(", "),
                PLANNED.join(", ")
            )
        );
        assert_eq!(
            err(&["native"], &["native=true"]),
            "target `native` is given more than once"
        );
        assert_eq!(
            err(&[], &["a=true", "a=false"]),
            "target `a` is given more than once"
        );
        assert_eq!(
            err(&[], &[]),
            "no target to measure: give --target or --peer"
        );
    }

    #[test]
    fn every_planned_name_is_refused_as_not_yet_available() {
        for name in PLANNED {
            assert!(matches!(
                Target::named(name),
                Err(TargetError::NotYetAvailable { .. })
            ));
        }
    }
}
