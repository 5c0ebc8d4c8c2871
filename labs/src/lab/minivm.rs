//! Lab 12: inside a micro-VM. The student follows `isolab vm run --guest mini --explain`
//! through the monitor's boot steps, the guest's system calls and its VM exits, then builds
//! a model of the exit count (a fixed part plus so many per system call) and predicts the
//! exits of workloads not yet run. The checker runs the VMs itself — including a `syscall`
//! run with a count of its own choosing — and compares.

use std::process::Command;

use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::observe;
use crate::workspace::nonce;
use crate::{Lab, Need, StepResult, Workspace};

pub static LAB: MiniVmLab = MiniVmLab;

const ANSWERS: &str = include_str!("../../content/12/answers.txt");
/// Iterations of the cpu workload the checker runs: a few hundred ms in the guest.
const CPU_ITERS: u64 = 1_000_000;
/// The checker's own system-call count is drawn from this range, so that only a model of
/// the exits, not a remembered number, predicts it.
const SYSCALLS_FROM: u64 = 2_000;
const SYSCALLS_SPAN: u64 = 4_000;
/// Counts of calls and exits may differ by this much between runs of the same workload
/// (a timer read more or less, an interrupted KVM_RUN).
const COUNT_SLACK: u64 = 3;
/// The student's exits-per-call may be this far (relative) from the checker's.
const PER_CALL_TOLERANCE: f64 = 0.05;

#[derive(Debug)]
pub struct MiniVmLab;

/// What `--explain` reported for one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Explained {
    syscalls: u64,
    /// Exit reason and count, in the order printed.
    exits: Vec<(String, u64)>,
    cpuid_leaves: Option<u64>,
}

impl Explained {
    fn parse(text: &str) -> Option<Self> {
        let mut explained = Explained::default();
        let mut in_exits = false;
        let mut saw_calls = false;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("system calls: ") {
                explained.syscalls = rest.split_whitespace().next()?.parse().ok()?;
                saw_calls = true;
            } else if let Some(rest) = line.strip_prefix("CPUID leaves given to the guest: ") {
                explained.cpuid_leaves = rest.trim().parse().ok();
            }
            if line.starts_with("VM exits") {
                in_exits = true;
                continue;
            }
            if in_exits {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    [reason, count, "exits", ..] if line.starts_with(' ') => {
                        explained
                            .exits
                            .push(((*reason).to_owned(), count.parse().ok()?));
                    }
                    _ => in_exits = false,
                }
            }
        }
        saw_calls.then_some(explained)
    }

    fn exits_of(&self, reason: &str) -> u64 {
        self.exits
            .iter()
            .filter(|(r, _)| r == reason)
            .map(|(_, n)| n)
            .sum()
    }

    /// The reason most exits had.
    fn main_reason(&self) -> Option<&str> {
        self.exits
            .iter()
            .max_by_key(|(_, n)| *n)
            .map(|(r, _)| r.as_str())
    }
}

/// `isolab vm run --guest mini --explain --workload ARGS`, as the student runs it.
fn explain(workload: &[String]) -> Result<Explained, LabError> {
    let mut command = Command::new(crate::rootfs::isolab()?);
    command
        .args([
            "vm",
            "run",
            "--guest",
            "mini",
            "--timeout",
            "120",
            "--explain",
            "--workload",
        ])
        .args(workload);
    let shown = format!(
        "isolab vm run --guest mini --explain --workload {}",
        workload.join(" ")
    );
    let out = observe::output(&mut command)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(LabError::Command {
            command: shown,
            detail: format!("{}: {}", out.status, stderr.trim()),
        });
    }
    Explained::parse(&stderr).ok_or_else(|| LabError::Command {
        command: shown,
        detail: format!("no explanation found on its stderr: {}", stderr.trim()),
    })
}

fn workload(args: &str) -> Vec<String> {
    args.split_whitespace().map(str::to_owned).collect()
}

/// A system-call count no student could have run before the check.
fn random_count() -> Result<u64, LabError> {
    let hex = nonce()?;
    let draw = u64::from_str_radix(&hex[..8], 16).unwrap_or(0);
    Ok(SYSCALLS_FROM + draw % SYSCALLS_SPAN)
}

/// Two counts within `slack` of each other.
fn near(slack: u64) -> impl Fn(&str, &str) -> bool {
    move |answer, measured| {
        let signed = |t: &str| t.trim().parse::<i64>().ok();
        signed(answer)
            .zip(signed(measured))
            .is_some_and(|(a, m)| a.abs_diff(m) <= slack)
    }
}

impl Lab for MiniVmLab {
    lab_number!(12);

    fn minutes(&self) -> u32 {
        40
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Kvm]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        // The VM runs the workload built next to isolab: fail now if there is none.
        let workload = crate::rootfs::workload()?;
        ws.write(
            answers::FILE,
            &format!(
                "# the guest runs {}; start with: isolab vm run --guest mini --explain --workload ready\n{ANSWERS}",
                workload.display()
            ),
        )
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let answers = Answers::load(ws)?;
        let ready = explain(&workload("ready"))?;
        let n = random_count()?;
        let calls = explain(&workload(&format!("syscall --n {n}")))?;
        let cpu = explain(&workload(&format!("cpu --iters {CPU_ITERS}")))?;
        let hlt = |e: &Explained| e.exits_of("hlt");
        let per_call = hlt(&calls).saturating_sub(hlt(&ready)) as f64 / n as f64;
        let fixed = hlt(&calls) as i64 - n as i64;
        let extra = hlt(&cpu) as i64 - hlt(&ready) as i64;
        let mut steps = vec![StepResult::pass(
            "the checker's own runs",
            format!(
                "ready: {} system calls, {} hlt exits; syscall --n {n}: {} hlt exits; cpu --iters {CPU_ITERS}: {} hlt exits",
                ready.syscalls,
                hlt(&ready),
                hlt(&calls),
                hlt(&cpu)
            ),
        )];
        steps.push(answers.grade("exit_reason", ready.main_reason(), answers::same));
        steps.push(answers.grade(
            "ready_syscalls",
            Some(&ready.syscalls.to_string()),
            near(COUNT_SLACK),
        ));
        steps.push(answers.grade(
            "ready_exits",
            Some(&hlt(&ready).to_string()),
            near(COUNT_SLACK),
        ));
        steps.push(answers.grade(
            "cpuid_leaves",
            ready.cpuid_leaves.map(|n| n.to_string()).as_deref(),
            answers::same_number,
        ));
        steps.push(
            answers.grade("per_call", Some(&format!("{per_call:.3}")), |a, m| {
                answers::ratio_within(a, m, PER_CALL_TOLERANCE)
            }),
        );
        steps.push(answers.grade("fixed", Some(&fixed.to_string()), near(COUNT_SLACK)));
        steps.push(answers.grade("cpu_extra", Some(&extra.to_string()), near(COUNT_SLACK)));
        Ok(steps)
    }

    fn reset(&self, _ws: &Workspace) -> Result<(), LabError> {
        // Every VM of this lab ends with its `isolab vm run`; nothing lives outside the
        // workspace.
        Ok(())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        // What the solution does by hand: two syscall runs give the line's slope and offset.
        let ready = explain(&workload("ready"))?;
        let small = explain(&workload("syscall --n 100"))?;
        let large = explain(&workload("syscall --n 1000"))?;
        let cpu = explain(&workload("cpu --iters 3000000"))?;
        let hlt = |e: &Explained| e.exits_of("hlt") as i64;
        let per_call = (hlt(&large) - hlt(&small)) as f64 / 900.0;
        let filled = answers::fill(
            ANSWERS,
            &[
                ("exit_reason", ready.main_reason().unwrap_or("").to_owned()),
                ("ready_syscalls", ready.syscalls.to_string()),
                ("ready_exits", hlt(&ready).to_string()),
                (
                    "cpuid_leaves",
                    ready.cpuid_leaves.map_or(String::new(), |n| n.to_string()),
                ),
                ("per_call", format!("{per_call:.2}")),
                ("fixed", (hlt(&small) - 100).to_string()),
                ("cpu_extra", (hlt(&cpu) - hlt(&ready)).to_string()),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "set-up and milestones (µs since the monitor started):
         3.3 +     52.4 map workload ELF
system calls: 129 (18 kinds), 1 answered ENOSYS; monitor time per call:
  getppid                  100 calls      512.2 µs total      5.1 µs mean
VM exits (time is host time inside KVM_RUN):
  hlt                      130 exits     6963.7 µs total     53.6 µs mean
  intr                       2 exits        1.0 µs total      0.5 µs mean
CPUID leaves given to the guest: 75
outcome: Exited(0)
";

    #[test]
    fn reads_the_explanation() {
        let explained = Explained::parse(SAMPLE).unwrap();
        assert_eq!(explained.syscalls, 129);
        assert_eq!(
            explained.exits,
            vec![("hlt".to_owned(), 130), ("intr".to_owned(), 2)]
        );
        assert_eq!(explained.exits_of("hlt"), 130);
        assert_eq!(explained.main_reason(), Some("hlt"));
        assert_eq!(explained.cpuid_leaves, Some(75));
        assert_eq!(Explained::parse("outcome: Exited(0)\n"), None);
    }

    #[test]
    fn counts_agree_within_the_slack() {
        assert!(near(3)("30", "28"));
        assert!(near(3)("-1", "2"));
        assert!(!near(3)("5000", "30"));
        assert!(!near(3)("many", "30"));
    }
}
