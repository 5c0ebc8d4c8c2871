//! Lab 10: capabilities and seccomp. A probe the lab provides tries, as a container's root,
//! what that root may not do; the student writes a seccomp profile that blocks mkdir(2) with
//! EACCES and loads it with `isolab run --security-opt seccomp=FILE`. The checker builds the
//! probe itself, runs it in containers with and without the student's profile, and reads the
//! probe's capabilities and seccomp state in /proc/<pid>/status from the host.

use std::path::Path;
use std::time::Duration;

use isolab_runtime::host::NamespaceKind;

use super::containers;
use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::{Lab, Need, StepResult, Workspace, observe, rootfs};

pub static LAB: CapabilitiesSeccompLab = CapabilitiesSeccompLab;

const ROOTFS: &str = "rootfs";
const PROBE_SOURCE: &str = "probe.c";
const PROBE: &str = "rootfs/probe";
const PROFILE: &str = "profile.json";
const PROBE_C: &str = include_str!("../../content/10/probe.c");
const STARTER_PROFILE: &str = include_str!("../../content/10/profile.json");
const ANSWERS: &str = include_str!("../../content/10/answers.txt");
/// Holds the reference profile too, as its here-document between `JSON` markers.
const KEYS: [&str; 7] = [
    "mount", "clock", "module", "mkdir", "mkdirat", "getpid", "ready",
];
/// EACCES, the errno the lab asks the profile to return.
const BLOCKED_ERRNO: &str = "13";

#[derive(Debug)]
pub struct CapabilitiesSeccompLab;

/// One run of the probe in a container: what it printed, and its status lines on the host.
#[derive(Debug, Default)]
struct ProbeRun {
    values: Vec<Option<String>>,
    cap_eff: Option<String>,
    seccomp: Option<String>,
    filters: Option<String>,
    /// isolab's complaint when the container did not start.
    refused: Option<String>,
}

impl ProbeRun {
    fn get(&self, key: &str) -> Option<&str> {
        let i = KEYS.iter().position(|k| *k == key)?;
        self.values[i].as_deref()
    }

    fn ran(&self) -> bool {
        self.get("ready").is_some()
    }

    fn describe(&self) -> String {
        if let Some(why) = &self.refused {
            return format!("the container did not start: {why}");
        }
        let printed: Vec<String> = KEYS[..6]
            .iter()
            .map(|k| format!("{k}={}", self.get(k).unwrap_or("?")))
            .collect();
        format!(
            "the probe printed {}; its status: Seccomp {}, Seccomp_filters {}, CapEff {}",
            printed.join(" "),
            self.seccomp.as_deref().unwrap_or("?"),
            self.filters.as_deref().unwrap_or("?"),
            self.cap_eff.as_deref().unwrap_or("?")
        )
    }
}

/// Runs the probe in `isolab run --rootfs rootfs ARGS -- /probe`.
fn probe(root: &Path, args: &[&str]) -> Result<ProbeRun, LabError> {
    // A refused option (a profile that does not compile) is reported before any clone.
    let trial = observe::output(&mut rootfs::run(root, args, &["true"])?)?;
    if !trial.status.success() {
        return Ok(ProbeRun {
            refused: Some(String::from_utf8_lossy(&trial.stderr).trim().to_owned()),
            ..ProbeRun::default()
        });
    }
    let (values, status) =
        containers::converse(&mut rootfs::run(root, args, &["/probe"])?, &KEYS, |run| {
            let init = containers::init_of(run, Duration::from_secs(5))?;
            Some(["CapEff", "Seccomp", "Seccomp_filters"].map(|k| observe::status_field(init, k)))
        })?;
    let [cap_eff, seccomp, filters] = status.unwrap_or_default();
    Ok(ProbeRun {
        values,
        cap_eff,
        seccomp,
        filters,
        refused: None,
    })
}

/// The three runs the lab is about: default, without seccomp, with the student's profile.
fn runs(ws: &Workspace) -> Result<[ProbeRun; 3], LabError> {
    containers::build_static_or_fail(&ws.path(PROBE_SOURCE), &ws.path(PROBE))?;
    let root = ws.path(ROOTFS);
    let profile = format!("seccomp={}", ws.path(PROFILE).display());
    Ok([
        probe(&root, &[])?,
        probe(&root, &["--security-opt", "seccomp=unconfined"])?,
        probe(&root, &["--security-opt", &profile])?,
    ])
}

impl Lab for CapabilitiesSeccompLab {
    lab_number!(10);

    fn minutes(&self) -> u32 {
        45
    }

    fn needs(&self) -> &'static [Need] {
        &[
            Need::Root,
            Need::Namespace(NamespaceKind::Mnt),
            Need::Namespace(NamespaceKind::Pid),
            Need::Command("busybox"),
            Need::Command("gcc"),
        ]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        rootfs::build(&ws.path(ROOTFS))?;
        ws.write(PROBE_SOURCE, PROBE_C)?;
        containers::build_static_or_fail(&ws.path(PROBE_SOURCE), &ws.path(PROBE))?;
        ws.write(PROFILE, STARTER_PROFILE)?;
        ws.write(answers::FILE, ANSWERS)
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        // The checker's own probe, whatever happened to the student's copy.
        ws.write(PROBE_SOURCE, PROBE_C)?;
        let [default, unconfined, mine] = runs(ws)?;
        let dir = ws.dir().display();
        let blocked = mine.ran()
            && mine.get("mkdir") == Some(BLOCKED_ERRNO)
            && mine.get("mkdirat") == Some("0")
            && mine.get("getpid") == Some("0");
        let more_filters =
            |run: &ProbeRun| run.filters.as_deref().and_then(|f| f.parse::<u32>().ok());
        let installed = blocked
            && mine.seccomp.as_deref() == Some("2")
            && more_filters(&mine) > more_filters(&default)
            && more_filters(&default).is_some();
        let mut steps = vec![
            StepResult::judge(
                "your profile: mkdir(2) fails with EACCES, everything else works",
                blocked,
                mine.describe(),
                &if mine.ran() {
                    format!(
                        "in {PROFILE}, match the syscall \"mkdir\" with the action {{\"errno\": {BLOCKED_ERRNO}}} and let everything else through (\"mismatch_action\": \"allow\")"
                    )
                } else {
                    format!(
                        "in {dir}: `isolab run --rootfs {ROOTFS} --security-opt seccomp={PROFILE} -- /probe < /dev/null` must start; fix what it says about {PROFILE}"
                    )
                },
            ),
            StepResult::judge(
                "your filter is installed on top of the default",
                installed,
                format!(
                    "with your profile: Seccomp {}, Seccomp_filters {}; in a default container: Seccomp_filters {}",
                    mine.seccomp.as_deref().unwrap_or("?"),
                    mine.filters.as_deref().unwrap_or("?"),
                    default.filters.as_deref().unwrap_or("?")
                ),
                if blocked {
                    "the probe's /proc/<pid>/status should say Seccomp: 2 (filter mode) with more filters than in a default container"
                } else {
                    "make the step above pass first: this one looks at the probe that ran with your profile"
                },
            ),
        ];
        let answers = Answers::load(ws)?;
        let ran = |run: &ProbeRun, key: &str| run.get(key).filter(|_| run.ran()).map(str::to_owned);
        for (key, measured) in [
            ("mount_errno", ran(&default, "mount")),
            ("clock_errno", ran(&default, "clock")),
            ("module_errno", ran(&default, "module")),
            ("mount_errno_unconfined", ran(&unconfined, "mount")),
        ] {
            steps.push(answers.grade(key, measured.as_deref(), answers::same_number));
        }
        let hex = |a: &str, m: &str| {
            let parse = |t: &str| u64::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok();
            parse(a).is_some_and(|a| Some(a) == parse(m))
        };
        steps.push(answers.grade("cap_eff", default.cap_eff.as_deref(), hex));
        steps.push(answers.grade(
            "seccomp_filters",
            mine.filters.as_deref().filter(|_| installed),
            answers::same_number,
        ));
        Ok(steps)
    }

    fn reset(&self, ws: &Workspace) -> Result<(), LabError> {
        // A probe left waiting in a foreground run, a detached container of the rootfs.
        containers::clear_under(ws.dir())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        let profile = self
            .solution()
            .split_once("<<'JSON'\n")
            .and_then(|(_, rest)| rest.split_once("JSON\n"))
            .map(|(profile, _)| profile)
            .ok_or_else(|| LabError::Unsupported("the solution text lost its profile".into()))?;
        ws.write(PROFILE, profile)?;
        ws.write(PROBE_SOURCE, PROBE_C)?;
        let [default, unconfined, mine] = runs(ws)?;
        let value = |run: &ProbeRun, key: &str| run.get(key).unwrap_or_default().to_owned();
        let filled = answers::fill(
            ANSWERS,
            &[
                ("mount_errno", value(&default, "mount")),
                ("clock_errno", value(&default, "clock")),
                ("module_errno", value(&default, "module")),
                ("mount_errno_unconfined", value(&unconfined, "mount")),
                ("cap_eff", default.cap_eff.unwrap_or_default()),
                ("seccomp_filters", mine.filters.unwrap_or_default()),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}
