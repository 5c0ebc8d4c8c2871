//! Lab 7: the cpu cgroup. The student caps a cgroup at 25 % of one CPU with a CFS quota and
//! period, runs the cpu workload inside it and outside, and measures the slowdown; the checker
//! reads the quota and the throttling counters, and times the workload both ways itself.

use std::path::Path;

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;

use crate::answers::{self, Answers};
use crate::cgroup::{self, LabCgroup};
use crate::error::LabError;
use crate::{Lab, Need, StepResult, Workspace};

pub static LAB: CpuLab = CpuLab;

const QUOTA_US: u64 = 25_000;
const PERIOD_US: u64 = 100_000;
/// About 0.3 s of CPU in a debug build: some 1.2 s under the 25 % quota.
const ITERS: u64 = 5_000_000;
/// How far the student's slowdown may be from the checker's: timings vary between runs.
const TOLERANCE: f64 = 0.35;
const ANSWERS: &str = include_str!("../../content/7/answers.txt");

#[derive(Debug)]
pub struct CpuLab;

fn quota_file(cg: &LabCgroup) -> &'static str {
    cg.name("cpu.cfs_quota_us", "cpu.max")
}

/// The quota and the period, in µs as the kernel shows them (`max` or `-1` for none).
fn quota_and_period(cg: &LabCgroup) -> Option<(String, String)> {
    if cg.v2 {
        let max = cg.read("cpu.max")?;
        let (quota, period) = max.split_once(' ')?;
        Some((quota.to_owned(), period.trim().to_owned()))
    } else {
        Some((cg.read("cpu.cfs_quota_us")?, cg.read("cpu.cfs_period_us")?))
    }
}

/// `isolab-workload cpu --iters ITERS` born inside `cgroup`: its wall time in ns.
fn timed_workload(cgroup: &Path) -> Result<u64, LabError> {
    let workload = crate::rootfs::workload()?;
    let out = crate::observe::succeed(&mut cgroup::sh_in(
        cgroup,
        &format!("exec {} cpu --iters {ITERS}", workload.display()),
    ))?;
    elapsed_ns(&out).ok_or_else(|| LabError::Command {
        command: format!("{} cpu --iters {ITERS}", workload.display()),
        detail: format!("no elapsed_ns in its output: {}", out.trim()),
    })
}

/// CPU time (user + system) of every child reaped so far, in ns.
fn children_cpu_ns() -> Result<u64, LabError> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|e| LabError::Command {
        command: "getrusage(RUSAGE_CHILDREN)".into(),
        detail: e.to_string(),
    })?;
    let ns = |t: TimeVal| t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1_000;
    Ok(ns(usage.user_time()) + ns(usage.system_time()))
}

/// The `elapsed_ns` field of the workload's one-line JSON report.
fn elapsed_ns(json: &str) -> Option<u64> {
    let rest = &json[json.find("\"elapsed_ns\":")? + "\"elapsed_ns\":".len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|ns| *ns > 0)
}

/// How many times longer the workload takes inside the cgroup than with a CPU to itself, to
/// 0.1: the inside run's wall time over its own CPU time. On an idle host that CPU time is the
/// outside run's wall time, so this is the student's ratio; but it comes from one run, so it
/// does not move with how busy the host was across two. (Two runs gave 6.6 and 4.3 for the
/// same cgroup in the emulated test sandbox, where the host's load sets the guest's speed.)
fn slowdown(cg: &LabCgroup) -> Result<String, LabError> {
    let cpu_before = children_cpu_ns()?;
    let wall = timed_workload(&cg.dir)?;
    let cpu = children_cpu_ns()?.saturating_sub(cpu_before).max(1);
    Ok(format!("{:.1}", wall as f64 / cpu as f64))
}

impl Lab for CpuLab {
    lab_number!(7);

    fn minutes(&self) -> u32 {
        40
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Root, Need::Controller("cpu"), Need::Command("sh")]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        let cg = LabCgroup::for_lab("cpu", self.id())?;
        let workload = crate::rootfs::workload()?;
        cg.start(
            ws,
            &format!("# the workload is {}\n{ANSWERS}", workload.display()),
        )
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let cg = LabCgroup::for_lab("cpu", self.id())?;
        let created = cg.exists();
        let set = quota_and_period(&cg);
        let quota_ok = set.as_ref().is_some_and(|(q, p)| {
            answers::same_number(q, &QUOTA_US.to_string())
                && answers::same_number(p, &PERIOD_US.to_string())
        });
        // Read before the checker's own run below adds throttled periods of its own.
        let throttled = cg.keyed("cpu.stat", "nr_throttled");
        let periods = cg.keyed("cpu.stat", "nr_periods");
        let answers = Answers::load(ws)?;
        let shown = match &set {
            Some((q, p)) if cg.v2 => format!("cpu.max: {q} {p}"),
            Some((q, p)) => format!("cpu.cfs_quota_us: {q}; cpu.cfs_period_us: {p}"),
            None => format!("{}: (missing)", quota_file(&cg)),
        };
        let mut steps = vec![
            cg.created_step(),
            StepResult::judge(
                "a quota of 25 % of one CPU",
                quota_ok,
                shown,
                &if cg.v2 {
                    format!(
                        "echo \"{QUOTA_US} {PERIOD_US}\" > {}",
                        cg.file("cpu.max").display()
                    )
                } else {
                    format!(
                        "echo {PERIOD_US} > {}; echo {QUOTA_US} > {}",
                        cg.file("cpu.cfs_period_us").display(),
                        cg.file("cpu.cfs_quota_us").display()
                    )
                },
            ),
            StepResult::judge(
                "the workload was throttled",
                throttled.is_some_and(|n| n > 0),
                format!(
                    "cpu.stat: nr_periods {}; nr_throttled {}",
                    periods.map_or("(missing)".into(), |n| n.to_string()),
                    throttled.map_or("(missing)".into(), |n| n.to_string())
                ),
                &format!(
                    "run the workload inside the cgroup, as step 3 says: sh -c 'echo $$ > {} && exec {} cpu --iters {ITERS}'",
                    cg.file("cgroup.procs").display(),
                    crate::rootfs::workload()?.display()
                ),
            ),
        ];
        steps.push(answers.grade(
            "quota_file",
            created.then_some(quota_file(&cg)),
            answers::same,
        ));
        steps.push(answers.grade(
            "period_us",
            quota_ok.then(|| PERIOD_US.to_string()).as_deref(),
            answers::same_number,
        ));
        // Only worth timing once the quota is the one asked for.
        let measured = if quota_ok { Some(slowdown(&cg)?) } else { None };
        steps.push(answers.grade("slowdown", measured.as_deref(), |a, m| {
            answers::ratio_within(a, m, TOLERANCE)
        }));
        Ok(steps)
    }

    fn reset(&self, _ws: &Workspace) -> Result<(), LabError> {
        LabCgroup::for_lab("cpu", self.id())?.destroy()
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        let cg = LabCgroup::for_lab("cpu", self.id())?;
        cg.create()?;
        if cg.v2 {
            cg.write("cpu.max", &format!("{QUOTA_US} {PERIOD_US}"))?;
        } else {
            cg.write("cpu.cfs_period_us", &PERIOD_US.to_string())?;
            cg.write("cpu.cfs_quota_us", &QUOTA_US.to_string())?;
        }
        let slowdown = slowdown(&cg)?;
        let filled = answers::fill(
            ANSWERS,
            &[
                ("quota_file", quota_file(&cg).to_owned()),
                ("period_us", PERIOD_US.to_string()),
                ("slowdown", slowdown),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_workload_report() {
        let json = r#"{"mode":"cpu","iters":5,"digest":"ab","elapsed_ns":60970816}"#;
        assert_eq!(elapsed_ns(json), Some(60_970_816));
        assert_eq!(elapsed_ns(r#"{"mode":"cpu"}"#), None);
    }
}
