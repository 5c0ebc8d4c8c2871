//! An OCI seccomp profile (libseccomp's model: a default action and one action per listed
//! syscall, optionally with argument conditions) as seccompiler filters.
//!
//! seccompiler gives each filter one action for every rule and one for everything else, so
//! a profile becomes a stack: first the syscalls the profile allows, with the profile's
//! default for the rest; then one filter per other action, which takes that action for its
//! syscalls and allows the rest. The kernel runs every filter and keeps the strictest
//! result (and, among ERRNO results, the last filter's value), which is the profile's
//! meaning as long as a syscall's entries do not mix actions of different strictness for
//! the same arguments. Names this architecture (x86-64) does not have are skipped, as
//! libseccomp does.

use std::collections::BTreeMap;
use std::str::FromStr;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::OciError;

fn unsupported(what: String) -> OciError {
    OciError::Unsupported(format!("linux.seccomp: {what}"))
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction, OciError> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => {
            SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32))
        }
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(0)),
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(unsupported(
                "SCMP_ACT_NOTIFY (a seccomp agent) is not supported".into(),
            ));
        }
    })
}

fn condition(arg: &LinuxSeccompArg) -> Result<SeccompCondition, OciError> {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => SeccompCmpOp::Ne,
        LinuxSeccompOperator::ScmpCmpLt => SeccompCmpOp::Lt,
        LinuxSeccompOperator::ScmpCmpLe => SeccompCmpOp::Le,
        LinuxSeccompOperator::ScmpCmpEq => SeccompCmpOp::Eq,
        LinuxSeccompOperator::ScmpCmpGe => SeccompCmpOp::Ge,
        LinuxSeccompOperator::ScmpCmpGt => SeccompCmpOp::Gt,
        // libseccomp: (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => SeccompCmpOp::MaskedEq(arg.value()),
    };
    let value = match arg.op() {
        LinuxSeccompOperator::ScmpCmpMaskedEq => arg.value_two().unwrap_or(0),
        _ => arg.value(),
    };
    let index = u8::try_from(arg.index())
        .map_err(|_| unsupported(format!("argument index {} is out of range", arg.index())))?;
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| unsupported(format!("argument {index}: {e}")))
}

/// Per syscall number: `None` when the action applies whatever the arguments.
type Rules = BTreeMap<i64, Option<Vec<SeccompRule>>>;

/// The profile's filters, to install in order.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<BpfProgram>, OciError> {
    if let Some(archs) = profile.architectures() {
        if !archs.is_empty()
            && !archs
                .iter()
                .any(|a| matches!(a, Arch::ScmpArchX86_64 | Arch::ScmpArchNative))
        {
            return Err(unsupported(format!(
                "architectures {archs:?} do not include x86-64, this host's"
            )));
        }
    }
    if profile.listener_path().is_some() {
        return Err(unsupported(
            "listenerPath (a seccomp agent) is not supported".into(),
        ));
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    // Keyed by the action's debug text: SeccompAction is neither Ord nor Hash.
    let mut by_action: BTreeMap<String, (SeccompAction, Rules)> = BTreeMap::new();
    for entry in profile.syscalls().iter().flatten() {
        let act = action(entry.action(), entry.errno_ret())?;
        if act == default {
            continue;
        }
        let rule = match entry.args().as_deref() {
            None | Some([]) => None,
            Some(args) => Some(
                SeccompRule::new(args.iter().map(condition).collect::<Result<_, _>>()?)
                    .map_err(|e| unsupported(e.to_string()))?,
            ),
        };
        let (_, rules) = by_action
            .entry(format!("{act:?}"))
            .or_insert_with(|| (act.clone(), Rules::new()));
        for name in entry.names() {
            // Not a syscall of x86-64 (a 32-bit variant, another architecture's): skipped.
            let Ok(sysno) = syscalls::Sysno::from_str(name) else {
                continue;
            };
            let slot = rules.entry(sysno.id() as i64).or_insert(Some(Vec::new()));
            match (&rule, slot.as_mut()) {
                (Some(rule), Some(list)) => list.push(rule.clone()),
                (None, _) => *slot = None,
                (Some(_), None) => {}
            }
        }
    }
    let arch = TargetArch::x86_64;
    let build = |rules: Rules, mismatch: SeccompAction, matched: SeccompAction| {
        let rules = rules
            .into_iter()
            .map(|(nr, list)| (nr, list.unwrap_or_default()))
            .collect();
        SeccompFilter::new(rules, mismatch, matched, arch)
            .and_then(BpfProgram::try_from)
            .map_err(|e| unsupported(e.to_string()))
    };
    let mut filters = Vec::new();
    let allowed = by_action
        .remove(&format!("{:?}", SeccompAction::Allow))
        .map(|(_, rules)| rules);
    if default != SeccompAction::Allow {
        filters.push(build(
            allowed.unwrap_or_default(),
            default.clone(),
            SeccompAction::Allow,
        )?);
    }
    for (_, (act, rules)) in by_action {
        filters.push(build(rules, SeccompAction::Allow, act)?);
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_allowlist_compiles_to_one_filter_per_action() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "syscalls": [
                  {"names": ["read", "write", "_llseek", "socketcall"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                  {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                  {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
                ]}"#,
        );
        let filters = compile(&p).unwrap();
        assert_eq!(filters.len(), 2);
        assert!(filters.iter().all(|f| !f.is_empty()));
    }

    #[test]
    fn a_blocklist_needs_no_allow_filter() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        assert_eq!(compile(&p).unwrap().len(), 1);
    }

    #[test]
    fn other_architectures_and_agents_are_refused() {
        let arm = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_AARCH64"]}"#,
        );
        assert!(compile(&arm).unwrap_err().to_string().contains("x86-64"));
        let notify = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        );
        assert!(compile(&notify).unwrap_err().to_string().contains("NOTIFY"));
    }
}
