//! Lab 13: measuring the claims. The student benchmarks native, isolab's container and its
//! mini VM (`isolab bench`, start-up and cpu), builds the report (`isolab report`) and
//! answers the classic container-vs-VM claims with numbers from their own results. The
//! checker loads those result files with the report's own code: they must come from this
//! host, measured after the lab started, and each answer must match what they hold.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use isolab_reports::analysis::{Collection, Kind};
use isolab_reports::claims::{self, Claim};
use isolab_reports::measures;

use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::observe;
use crate::{Lab, Need, StepResult, Workspace};

pub static LAB: ClaimsLab = ClaimsLab;

const ANSWERS: &str = include_str!("../../content/13/answers.txt");
/// Inside the workspace: where the student's `--out` goes for results, and for the report.
const RESULTS: &str = "results";
const REPORT: &str = "report";
/// When `start` ran, RFC 3339 in UTC, as result files date their measurements.
const STARTED: &str = ".started";
const TARGETS: &str = "native,container,vm-mini";
const CONTAINER: &str = "container";
const VM: &str = "vm-mini";
/// How the report rounds: start-up to 0.1 ms, run-time change to whole percent, memory
/// to 0.1 MiB; answers may be that far off, or this share of the value.
const MS_SLACK: f64 = 0.1;
const PCT_SLACK: f64 = 1.0;
const MIB_SLACK: f64 = 0.1;
const RELATIVE_SLACK: f64 = 0.05;

#[derive(Debug)]
pub struct ClaimsLab;

/// The `isolab bench` commands of the lab, with `--out` in the workspace.
fn bench_args(ws: &Workspace) -> [Vec<String>; 2] {
    let out = ws.path(RESULTS).to_string_lossy().into_owned();
    let args = |rest: &str| {
        format!("bench --target {TARGETS} {rest} --out {out}")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    [
        args("--workload ready --runs 5"),
        args("--workload cpu --iters 2000000 --runs 3"),
    ]
}

fn result_files(ws: &Workspace) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ws.path(RESULTS))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// The student's results as the report reads them, or why they cannot be used.
fn load(ws: &Workspace) -> Result<Collection, String> {
    let files = result_files(ws);
    if files.is_empty() {
        return Err(format!("no result files in {}", ws.path(RESULTS).display()));
    }
    let collection = Collection::load(&files).map_err(|e| {
        let causes = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source());
        causes.map(|e| e.to_string()).collect::<Vec<_>>().join(": ")
    })?;
    let here = isolab_bench::fingerprint::collect();
    if !collection.host().same_host(&here) {
        return Err(format!(
            "measured on another host: {}",
            isolab_reports::analysis::host_differences(collection.host(), &here)
        ));
    }
    let started = ws
        .read(STARTED)
        .ok()
        .flatten()
        .unwrap_or_default()
        .trim()
        .to_owned();
    // RFC 3339 UTC dates sort as text.
    if let Some(old) = collection.sets.iter().find(|l| l.set.host.date < started) {
        return Err(format!(
            "{} was measured at {}, before this lab started ({started})",
            old.path.display(),
            old.set.host.date
        ));
    }
    Ok(collection)
}

/// What the report says, reduced to the numbers the questions ask for.
#[derive(Debug, Default)]
struct Figures {
    container_ready_ms: Option<f64>,
    vm_ready_ms: Option<f64>,
    vm_cpu_change_pct: Option<f64>,
    vm_memory_mib: Option<f64>,
    startup_verdict: Option<String>,
    runtime_verdict: Option<String>,
    /// The files each figure came from, for the report check.
    ready_file: Option<PathBuf>,
    cpu_file: Option<PathBuf>,
}

fn verdict(claims: &[Claim], number: u8) -> Option<String> {
    claims
        .iter()
        .find(|c| c.number == number)
        .filter(|c| c.verdict.class() != "not-measured")
        .map(|c| c.verdict.class().to_owned())
}

fn figures(c: &Collection) -> Figures {
    let mut figures = Figures::default();
    if let Ok((set, rows)) = measures::startup(c) {
        let median = |name: &str| rows.iter().find(|r| r.target == name).map(|r| r.median_ms);
        figures.container_ready_ms = median(CONTAINER);
        figures.vm_ready_ms = median(VM);
        figures.ready_file = Some(set.path.clone());
    }
    if let Ok((_, rows)) = measures::memory(c) {
        figures.vm_memory_mib = rows
            .iter()
            .find(|r| r.target == VM)
            .map(|r| r.pss_kib / 1024.0);
    }
    let (overheads, _) = measures::overheads(c);
    figures.vm_cpu_change_pct = overheads
        .iter()
        .find(|o| o.mode == "cpu" && o.target == VM && o.kind == Kind::MiniVm)
        .map(|o| -100.0 * o.loss());
    figures.cpu_file = c.mode("cpu").map(|l| l.path.clone());
    let claims = claims::check(c);
    figures.startup_verdict = verdict(&claims, 1);
    figures.runtime_verdict = verdict(&claims, 3);
    figures
}

/// Whether an answer agrees with what the checker measured.
type Agrees<'a> = &'a dyn Fn(&str, &str) -> bool;

/// A number within `absolute` of the measured one, or within [`RELATIVE_SLACK`] of it.
fn close(absolute: f64) -> impl Fn(&str, &str) -> bool {
    move |answer, measured| {
        let parse = |t: &str| {
            t.trim()
                .trim_end_matches(['%', 's', 'm', 'M', 'i', 'B'])
                .trim()
                .parse::<f64>()
                .ok()
        };
        parse(answer).zip(parse(measured)).is_some_and(|(a, m)| {
            (a - m).abs() <= absolute.max(m.abs() * RELATIVE_SLACK) + f64::EPSILON
        })
    }
}

/// `holds`, `does not hold`, `doesn't hold`, `depends`, as the report's verdict classes.
fn same_verdict(answer: &str, class: &str) -> bool {
    let normal = answer
        .trim()
        .to_ascii_lowercase()
        .replace("doesn't", "does not")
        .replace(['-', '_'], " ");
    let normal = normal.split_whitespace().collect::<Vec<_>>().join("-");
    normal == class || (class == "depends" && normal.starts_with("depends"))
}

fn shown(value: Option<f64>, digits: usize) -> Option<String> {
    value.map(|v| format!("{v:.digits$}"))
}

/// Whether the report in the workspace was made from these files: its summary names them.
fn report_names(ws: &Workspace, files: &[&Path]) -> Result<bool, String> {
    let summary = ws.path(REPORT).join("summary.md");
    let text =
        std::fs::read_to_string(&summary).map_err(|e| format!("{}: {e}", summary.display()))?;
    Ok(files.iter().all(|f| {
        f.file_name()
            .is_some_and(|name| text.contains(&*name.to_string_lossy()))
    }))
}

fn run_isolab(args: &[String]) -> Result<(), LabError> {
    observe::succeed(Command::new(crate::rootfs::isolab()?).args(args)).map(drop)
}

impl Lab for ClaimsLab {
    lab_number!(13);

    fn minutes(&self) -> u32 {
        45
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Root, Need::Kvm, Need::Command("busybox")]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        ws.write(
            STARTED,
            &humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        )?;
        ws.write(
            answers::FILE,
            &format!(
                "# results go to {} and the report to {}\n{ANSWERS}",
                ws.path(RESULTS).display(),
                ws.path(REPORT).display()
            ),
        )
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let [ready_cmd, cpu_cmd] = bench_args(ws).map(|a| format!("isolab {}", a.join(" ")));
        let loaded = load(ws);
        let figures = loaded.as_ref().map(figures).unwrap_or_default();
        let mut steps = vec![StepResult::judge(
            "your results, from this host, measured in this lab",
            loaded.is_ok(),
            match &loaded {
                Ok(c) => format!(
                    "{} run sets in {}",
                    c.sets.len(),
                    ws.path(RESULTS).display()
                ),
                Err(why) => why.clone(),
            },
            &format!("run step 1 and step 2 of the lab: {ready_cmd}"),
        )];
        let ready_ok = figures.container_ready_ms.is_some() && figures.vm_ready_ms.is_some();
        steps.push(StepResult::judge(
            "start-up of the container and the VM",
            ready_ok,
            format!(
                "median ms to ready: {CONTAINER} {}, {VM} {}",
                shown(figures.container_ready_ms, 3).unwrap_or("(none)".into()),
                shown(figures.vm_ready_ms, 3).unwrap_or("(none)".into())
            ),
            &format!("measure all three targets with the ready workload: {ready_cmd}"),
        ));
        steps.push(StepResult::judge(
            "run time of the VM against native",
            figures.vm_cpu_change_pct.is_some(),
            format!(
                "cpu throughput change of {VM} against native: {}",
                shown(figures.vm_cpu_change_pct, 1).map_or("(none)".into(), |p| format!("{p}%"))
            ),
            &format!("measure native and the VM with the cpu workload: {cpu_cmd}"),
        ));
        let used: Vec<&Path> = [&figures.ready_file, &figures.cpu_file]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect();
        let report = if used.is_empty() {
            Err("no results to build it from".to_owned())
        } else {
            report_names(ws, &used)
        };
        steps.push(StepResult::judge(
            "the report, from these results",
            report == Ok(true),
            match &report {
                Ok(true) => "its summary.md names the run sets the answers come from".to_owned(),
                Ok(false) => "its summary.md does not name your newest run sets".to_owned(),
                Err(why) => why.clone(),
            },
            &format!(
                "build it from your results: isolab report {}/*.json --out {}",
                ws.path(RESULTS).display(),
                ws.path(REPORT).display()
            ),
        ));
        let answers = Answers::load(ws)?;
        let (ms, pct, mib) = (close(MS_SLACK), close(PCT_SLACK), close(MIB_SLACK));
        let graded: [(&str, Option<String>, Agrees); 6] = [
            (
                "container_ready_ms",
                shown(figures.container_ready_ms, 3),
                &ms,
            ),
            ("vm_ready_ms", shown(figures.vm_ready_ms, 3), &ms),
            (
                "startup_verdict",
                figures.startup_verdict.clone(),
                &same_verdict,
            ),
            (
                "vm_cpu_change_pct",
                shown(figures.vm_cpu_change_pct, 1),
                &pct,
            ),
            (
                "runtime_verdict",
                figures.runtime_verdict.clone(),
                &same_verdict,
            ),
            ("vm_memory_mib", shown(figures.vm_memory_mib, 2), &mib),
        ];
        for (key, measured, agrees) in graded {
            steps.push(answers.grade(key, measured.as_deref(), agrees));
        }
        Ok(steps)
    }

    fn reset(&self, _ws: &Workspace) -> Result<(), LabError> {
        // `isolab bench` removes its containers and VMs when each run ends; the results and
        // the report are in the workspace.
        Ok(())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        for args in bench_args(ws) {
            run_isolab(&args)?;
        }
        let mut report = vec!["report".to_owned()];
        report.extend(
            result_files(ws)
                .iter()
                .map(|p| p.to_string_lossy().into_owned()),
        );
        report.extend([
            "--out".to_owned(),
            ws.path(REPORT).to_string_lossy().into_owned(),
        ]);
        run_isolab(&report)?;
        let collection = load(ws).map_err(|detail| LabError::Command {
            command: "loading the results just measured".into(),
            detail,
        })?;
        let figures = figures(&collection);
        let value = |v: Option<f64>, digits| shown(v, digits).unwrap_or_default();
        let verdict = |v: Option<String>| v.unwrap_or_default().replace('-', " ");
        let filled = answers::fill(
            ANSWERS,
            &[
                ("container_ready_ms", value(figures.container_ready_ms, 1)),
                ("vm_ready_ms", value(figures.vm_ready_ms, 1)),
                ("startup_verdict", verdict(figures.startup_verdict)),
                ("vm_cpu_change_pct", value(figures.vm_cpu_change_pct, 0)),
                ("runtime_verdict", verdict(figures.runtime_verdict)),
                ("vm_memory_mib", value(figures.vm_memory_mib, 1)),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_as_the_report_writes_them() {
        assert!(same_verdict("does not hold", "does-not-hold"));
        assert!(same_verdict("Doesn't hold", "does-not-hold"));
        assert!(same_verdict(" holds ", "holds"));
        assert!(same_verdict("depends on the VM", "depends"));
        assert!(!same_verdict("holds", "does-not-hold"));
        assert!(!same_verdict("", "holds"));
    }

    #[test]
    fn numbers_agree_as_the_report_rounds_them() {
        assert!(close(MS_SLACK)("10.1", "10.149"));
        assert!(close(MS_SLACK)("10.1 ms", "10.149"));
        assert!(close(PCT_SLACK)("+15%", "14.6"));
        assert!(close(PCT_SLACK)("-3", "-2.2"));
        assert!(!close(PCT_SLACK)("15", "-14.6"));
        assert!(close(MIB_SLACK)("8.5", "8.48"));
        // Far off, or no number.
        assert!(!close(MS_SLACK)("100", "10.149"));
        assert!(!close(MS_SLACK)("fast", "10.149"));
    }
}
