//! The report for people: one section per subsystem, a mark per item, a fix per gap.

use std::fmt::Write;

use isolab_runtime::host::{CgroupMode, CgroupSupport, NamespaceKind};

use super::report::{
    Missing, REQUIRED_CONTROLLERS, REQUIRED_NAMESPACES, Report, Section, namespace_missing,
};

const OK: &str = "✓";
const BAD: &str = "✗";
/// Absent but optional: worth knowing, never a failure.
const OPTIONAL: &str = "–";

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    host(&mut out, report);
    cgroups(&mut out, report);
    namespaces(&mut out, report);
    user_namespaces(&mut out, report);
    overlayfs(&mut out, report);
    seccomp(&mut out, report);
    kvm(&mut out, report);
    peers(&mut out, report);
    features(&mut out, report);
    let verdict = &report.basic_container_path;
    if verdict.ok {
        out.push_str("\nBasic container path: works\n");
    } else {
        let items: Vec<_> = verdict.missing.iter().map(|m| m.item.as_str()).collect();
        let _ = writeln!(
            out,
            "\nBasic container path: BROKEN (missing: {})",
            items.join(", ")
        );
    }
    out
}

// Writing into a String cannot fail, so the fmt::Results below are ignored.

fn heading(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n{title}");
}

fn item(out: &mut String, mark: &str, label: &str, detail: &str) {
    let line = format!("  {mark} {label:<22} {detail}");
    out.push_str(line.trim_end());
    out.push('\n');
}

fn note(out: &mut String, text: &str) {
    let _ = writeln!(out, "      {text}");
}

fn fix(out: &mut String, command: &str) {
    let _ = writeln!(out, "      fix: {command}");
}

fn failed_section(out: &mut String, label: &str, error: &str) {
    item(out, BAD, label, error);
}

fn host(out: &mut String, report: &Report) {
    let _ = writeln!(out, "Host");
    item(out, OK, "kernel", &report.kernel);
    item(
        out,
        OK,
        "cpu",
        &format!("{} × {}", report.cpu_model, report.cpus),
    );
    item(
        out,
        OK,
        "memory",
        &format!(
            "{:.1} GiB ({} KiB)",
            report.mem_total_kib as f64 / (1024.0 * 1024.0),
            report.mem_total_kib
        ),
    );
}

fn cgroups(out: &mut String, report: &Report) {
    heading(out, "Cgroups");
    let support = match &report.cgroup {
        Section::Found(support) => support,
        Section::Failed { error } => {
            failed_section(out, "cgroups", error);
            fix_each(out, &report.features.cgroup_limits.missing);
            return;
        }
    };
    item(out, OK, "mode", &mode_description(support));
    for controller in REQUIRED_CONTROLLERS {
        match support.location(controller) {
            Some(at) => item(out, OK, controller, &at.display().to_string()),
            None => {
                let gap = report
                    .features
                    .cgroup_limits
                    .missing
                    .iter()
                    .find(|m| m.item.starts_with(controller));
                item(
                    out,
                    BAD,
                    controller,
                    gap.map_or("missing", |g| g.problem.as_str()),
                );
                if let Some(gap) = gap {
                    fix(out, &gap.fix);
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "    all controllers: {}",
        list_or_none(&support.controllers)
    );
    if let (CgroupMode::Hybrid, Some(unified)) = (support.mode, &support.unified) {
        let _ = writeln!(
            out,
            "    cgroup2 at {}: {}",
            unified.mount_point.display(),
            list_or_none(&unified.controllers)
        );
    }
}

fn mode_description(support: &CgroupSupport) -> String {
    match (support.mode, &support.unified) {
        (CgroupMode::V1, _) => "v1 (one hierarchy per controller)".to_owned(),
        (CgroupMode::Hybrid, Some(u)) => format!(
            "hybrid (v1 controller hierarchies, cgroup2 at {})",
            u.mount_point.display()
        ),
        (mode, Some(u)) => format!("{} (cgroup2 at {})", mode.name(), u.mount_point.display()),
        (mode, None) => mode.name().to_owned(),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(" ")
    }
}

fn namespaces(out: &mut String, report: &Report) {
    heading(out, "Namespaces (each created for real in a child process)");
    for (kind, probe) in &report.namespaces {
        let role = if REQUIRED_NAMESPACES.contains(kind) {
            "needed by containers"
        } else {
            "optional"
        };
        if probe.ok {
            item(out, OK, kind.name(), role);
        } else {
            let gap = namespace_missing(*kind, probe, report.user_namespaces.found());
            let mark = if REQUIRED_NAMESPACES.contains(kind) {
                BAD
            } else {
                OPTIONAL
            };
            item(out, mark, kind.name(), &format!("{} ({role})", gap.problem));
            fix(out, &gap.fix);
        }
    }
}

fn user_namespaces(out: &mut String, report: &Report) {
    heading(out, "User namespaces");
    let limits = match &report.user_namespaces {
        Section::Found(limits) => limits,
        Section::Failed { error } => return failed_section(out, "limits", error),
    };
    for kind in NamespaceKind::ALL {
        let Some(max) = limits.max_namespaces.get(&kind) else {
            continue;
        };
        let label = format!("max_{}_namespaces", kind.name());
        if *max == 0 {
            item(out, BAD, &label, "0: the kernel refuses this kind");
            fix(out, &format!("sysctl -w user.{label}=15000"));
        } else {
            item(out, OK, &label, &max.to_string());
        }
    }
    let knob =
        |out: &mut String, name: &str, value: Option<bool>, blocks_when: bool, fix_cmd: &str| {
            match value {
                None => item(out, OK, name, "not present on this kernel"),
                Some(v) if v == blocks_when => {
                    item(
                        out,
                        OPTIONAL,
                        name,
                        &format!("{} (blocks unprivileged user namespaces)", u8::from(v)),
                    );
                    fix(out, fix_cmd);
                }
                Some(v) => item(out, OK, name, &u8::from(v).to_string()),
            }
        };
    knob(
        out,
        "unprivileged_userns_clone",
        limits.unprivileged_userns_clone,
        false,
        "sysctl -w kernel.unprivileged_userns_clone=1",
    );
    knob(
        out,
        "apparmor_restrict_unprivileged_userns",
        limits.apparmor_restrict_unprivileged_userns,
        true,
        "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
    );
}

fn overlayfs(out: &mut String, report: &Report) {
    heading(out, "Overlayfs");
    let gap = report
        .features
        .container_runtime
        .missing
        .iter()
        .find(|m| m.item == "overlayfs");
    match (&report.overlayfs, gap) {
        (_, Some(gap)) => {
            item(out, BAD, "mount", &gap.problem);
            fix(out, &gap.fix);
        }
        (Section::Found(support), None) => {
            let registered = if support.registered {
                "registered in /proc/filesystems"
            } else {
                "loaded on first mount"
            };
            item(
                out,
                OK,
                "mount",
                &format!(
                    "lower/upper/work under {}; {registered}",
                    support.scratch_parent.display()
                ),
            );
        }
        (Section::Failed { error }, None) => failed_section(out, "mount", error),
    }
}

fn seccomp(out: &mut String, report: &Report) {
    heading(out, "Seccomp");
    let support = match &report.seccomp {
        Section::Found(support) => support,
        Section::Failed { error } => return failed_section(out, "seccomp", error),
    };
    if support.ok {
        item(
            out,
            OK,
            "filters",
            &format!("actions: {}", support.actions_avail.join(" ")),
        );
    } else {
        let why = support.prctl_error.clone().unwrap_or_else(|| {
            "the kernel lists no filter actions (no CONFIG_SECCOMP_FILTER)".to_owned()
        });
        item(out, OPTIONAL, "filters", &why);
        fix(
            out,
            "boot a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y",
        );
    }
    let mode = support.mode.map_or("unknown".to_owned(), |m| m.to_string());
    let field = if support.status_field {
        "present"
    } else {
        "absent"
    };
    let _ = writeln!(
        out,
        "    PR_GET_SECCOMP: {mode}; Seccomp: in /proc/self/status: {field}"
    );
}

fn kvm(out: &mut String, report: &Report) {
    heading(out, "KVM");
    let support = match &report.kvm {
        Section::Found(support) => support,
        Section::Failed { error } => return failed_section(out, "/dev/kvm", error),
    };
    let flavour = match support.module {
        Some(module) => format!("{} ({module})", support.kind.name()),
        None => support.kind.name().to_owned(),
    };
    if support.open {
        let version = support
            .api_version
            .map_or(String::new(), |v| format!(", API version {v}"));
        item(out, OK, "/dev/kvm", &format!("{flavour}{version}"));
    } else {
        let why = support.open_error.as_deref().unwrap_or(if support.present {
            "unusable"
        } else {
            "absent"
        });
        item(out, BAD, "/dev/kvm", &format!("{flavour}: {why}"));
    }
    note(out, &support.implication);
    if let Some(command) = &support.fix {
        fix(out, command);
    }
    // Only a `no` deserves attention; `n/a` (PVM, no KVM) is covered by the implication.
    let yes_no = |v: Option<bool>| match v {
        Some(true) => (OK, "yes"),
        Some(false) => (OPTIONAL, "no"),
        None => (OPTIONAL, "n/a for this kind of KVM"),
    };
    let (tdp_mark, tdp) = yes_no(support.tdp);
    item(out, tdp_mark, "TDP (EPT/NPT)", tdp);
    let (nested_mark, nested) = yes_no(support.nested);
    item(out, nested_mark, "nested virt", nested);
    if support.nested == Some(false) {
        if let Some(module) = support.module {
            note(out, "optional: only guests that run KVM themselves need it");
            fix(
                out,
                &format!("modprobe -r {module} && modprobe {module} nested=1"),
            );
        }
    }
    let flags = &support.cpu_flags;
    let set: Vec<&str> = [
        ("vmx", flags.vmx),
        ("svm", flags.svm),
        ("hypervisor", flags.hypervisor),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let _ = writeln!(
        out,
        "    CPU flags: {}",
        if set.is_empty() {
            "none of vmx, svm, hypervisor".to_owned()
        } else {
            set.join(" ")
        }
    );
}

fn peers(out: &mut String, report: &Report) {
    heading(out, "Peers (optional comparison targets)");
    for peer in &report.peers.0 {
        if !peer.installed {
            item(out, OPTIONAL, peer.name, "not installed");
            if let Some(command) = peer.fix {
                fix(out, command);
            }
        } else if let Some(version) = &peer.version {
            item(out, OK, peer.name, version);
        } else {
            let error = peer.error.as_deref().unwrap_or("no version");
            item(out, BAD, peer.name, error);
        }
        if let Some(text) = peer.note {
            note(out, text);
        }
    }
}

fn features(out: &mut String, report: &Report) {
    heading(out, "Features");
    for (name, feature) in report.features.iter() {
        item(
            out,
            mark_required(feature.available),
            name,
            &format!("needs {}", feature.needs),
        );
        fix_each(out, &feature.missing);
    }
}

fn mark_required(available: bool) -> &'static str {
    if available { OK } else { BAD }
}

fn fix_each(out: &mut String, missing: &[Missing]) {
    for gap in missing {
        note(out, &format!("missing {}: {}", gap.item, gap.problem));
        fix(out, &gap.fix);
    }
}
