//! Targets: the ways a workload invocation is launched (natively, by a peer tool, ...).

use std::path::Path;

use crate::rootfs::{Bundle, MEMORY_LIMIT, PIDS_LIMIT, Rootfs, RootfsError, WORKLOAD_IN_ROOT};
use crate::workload::Workload;

/// Targets this build can run.
pub const AVAILABLE: [&str; 5] = ["native", "unshare", "container", "runc", "vm-mini"];
/// Targets later work adds; naming one gets "not available yet" instead of "unknown".
pub const PLANNED: [&str; 4] = ["docker", "podman", "vm-linux", "qemu-microvm"];

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
    /// The floor of container start-up: util-linux `unshare` with new mount, uts, ipc,
    /// net, pid, cgroup and time namespaces and a fresh /proc, running the workload from
    /// the host's filesystem: no root filesystem, no cgroup limits, no capability or
    /// seccomp confinement.
    Unshare { unshare: String },
    /// `isolab run` with its full default isolation and limits, in a root filesystem that
    /// holds the hashed workload (see [`crate::rootfs`]).
    Container { isolab: String },
    /// `runc run` of an OCI bundle with the same root filesystem and isolation.
    Runc { runc: String, id: String },
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
}

impl TargetError {
    /// Whether installing something would fix it (the CLI exits 3 then).
    pub fn host_lacks(&self) -> bool {
        matches!(self, TargetError::MissingTool { .. })
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
            "unshare" => Ok(Target::Unshare {
                unshare: tool(
                    name,
                    "unshare",
                    "install util-linux: apt-get install -y util-linux",
                )?,
            }),
            "container" => {
                let isolab =
                    std::env::current_exe().map_err(|e| TargetError::Isolab(name.to_owned(), e))?;
                Ok(Target::Container {
                    isolab: isolab.to_string_lossy().into_owned(),
                })
            }
            "runc" => Ok(Target::Runc {
                runc: tool(name, "runc", "install runc: apt-get install -y runc")?,
                id: format!("isolab-bench-{}", std::process::id()),
            }),
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
            Target::Unshare { .. } => "unshare",
            Target::Container { .. } => "container",
            Target::Runc { .. } => "runc",
            Target::Peer { name, .. } => name,
        }
    }

    pub fn description(&self) -> String {
        match self {
            Target::Native => "the workload executed directly by isolab".to_owned(),
            Target::VmMini { .. } => {
                "a fresh mini-kernel micro-VM per run (isolab vm run --guest mini)".to_owned()
            }
            Target::Unshare { .. } => format!(
                "the workload under unshare {}: namespaces only, no rootfs, cgroup or confinement",
                UNSHARE_FLAGS.join(" ")
            ),
            Target::Container { .. } => format!(
                "isolab run --memory {MEMORY_LIMIT} --pids-limit {PIDS_LIMIT}: every namespace, \
                 a cgroup with limits, pivot_root, masks, capabilities, seccomp; the workload \
                 hard-linked (or copied) into a fresh rootfs, its sha256 checked"
            ),
            Target::Runc { .. } => format!(
                "runc run of an OCI bundle with isolab's isolation, --memory {MEMORY_LIMIT} and \
                 {PIDS_LIMIT} pids, but no time namespace and no seccomp (runc 1.1 applies none)"
            ),
            Target::Peer { template, .. } => {
                format!("peer command: {}", shell_words::join(template))
            }
        }
    }

    /// Builds what the target runs in and its argv. Targets with a root filesystem get a
    /// fresh one holding the workload's very bytes; the others run `workload.path`.
    pub fn prepare(&self, workload: &Workload) -> Result<Prepared, TargetError> {
        let args = workload.argv();
        let failed = |e| TargetError::Prepare(self.name().to_owned(), e);
        let (path, root): (_, Option<Box<dyn std::fmt::Debug>>) = match self {
            Target::Container { .. } => {
                let rootfs = Rootfs::build(workload).map_err(failed)?;
                (rootfs.workload(), Some(Box::new(rootfs)))
            }
            Target::Runc { id, .. } => {
                let bundle = Bundle::build(workload, id).map_err(failed)?;
                (bundle.workload(), Some(Box::new(bundle)))
            }
            _ => (workload.path.clone().into(), None),
        };
        Ok(Prepared {
            argv: self.argv(&path.to_string_lossy(), &args),
            _root: root,
        })
    }

    /// The argv that launches the workload at `path` with `args` (mode first).
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
            Target::Unshare { unshare } => std::iter::once(unshare.clone())
                .chain(UNSHARE_FLAGS.iter().map(|f| f.to_string()))
                .chain(std::iter::once("--".to_owned()))
                .chain(direct())
                .collect(),
            // `path` is the workload inside a root filesystem that `prepare` built: its
            // directory is the rootfs, and runc's bundle is the directory above that.
            Target::Container { isolab } => {
                let rootfs = Path::new(path).parent().unwrap_or(Path::new("/"));
                [
                    isolab.as_str(),
                    "run",
                    "--memory",
                    MEMORY_LIMIT,
                    "--pids-limit",
                ]
                .into_iter()
                .map(str::to_owned)
                .chain([PIDS_LIMIT.to_string(), "--rootfs".to_owned()])
                .chain([rootfs.to_string_lossy().into_owned(), "--".to_owned()])
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
            err(&["vm-linux"], &[]),
            format!(
                "target `vm-linux` is not available yet in this build; available: {}",
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
