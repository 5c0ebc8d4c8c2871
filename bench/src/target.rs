//! Targets: the ways a workload invocation is launched (natively, by a peer tool, ...).

/// Targets this build can run.
pub const AVAILABLE: [&str; 1] = ["native"];
/// Targets later work adds; naming one gets "not available yet" instead of "unknown".
pub const PLANNED: [&str; 7] = [
    "container",
    "runc",
    "docker",
    "podman",
    "vm-mini",
    "vm-linux",
    "qemu-microvm",
];

const WORKLOAD_PLACEHOLDER: &str = "{workload}";
const ARGS_PLACEHOLDER: &str = "{args}";

/// Something that launches the workload and is measured doing so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The workload binary executed directly.
    Native,
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
}

impl Target {
    /// The built-in target called `name`.
    pub fn named(name: &str) -> Result<Target, TargetError> {
        match name {
            "native" => Ok(Target::Native),
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
            Target::Peer { name, .. } => name,
        }
    }

    pub fn description(&self) -> String {
        match self {
            Target::Native => "the workload executed directly by isolab".to_owned(),
            Target::Peer { template, .. } => {
                format!("peer command: {}", shell_words::join(template))
            }
        }
    }

    /// The argv that launches the workload at `path` with `args` (mode first).
    pub fn argv(&self, path: &str, args: &[String]) -> Vec<String> {
        let direct = || std::iter::once(path.to_owned()).chain(args.iter().cloned());
        match self {
            Target::Native => direct().collect(),
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
            err(&["vm-mini"], &[]),
            "target `vm-mini` is not available yet in this build; available: native"
        );
        assert_eq!(
            err(&["nope"], &[]),
            "unknown target `nope`; available: native; not available yet in this build: \
             container, runc, docker, podman, vm-mini, vm-linux, qemu-microvm"
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
