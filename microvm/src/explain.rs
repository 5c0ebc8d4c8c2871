//! What a VM run did and where its time went: set-up steps with µs time stamps, system
//! calls with counts and times, VM exits by reason. `isolab vm run --explain` prints it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::vm::{ExitStats, RamUse};

/// One timed step, relative to the start of the run.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub start: Duration,
    pub took: Duration,
}

/// A stopwatch for the boot path: every step is recorded, so the explanation is the
/// measurement, not an estimate.
#[derive(Debug)]
pub struct Trace {
    origin: Instant,
    steps: Vec<Step>,
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

impl Trace {
    pub fn new() -> Self {
        Trace {
            origin: Instant::now(),
            steps: Vec::new(),
        }
    }

    /// Runs `f` and records how long it took.
    pub fn step<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let start = self.origin.elapsed();
        let value = f();
        let took = self.origin.elapsed() - start;
        self.steps.push(Step {
            name: name.to_owned(),
            start,
            took,
        });
        value
    }

    /// Records an instant (a milestone such as the first exit or `ISOLAB-READY`).
    pub fn mark(&mut self, name: &str) {
        self.steps.push(Step {
            name: name.to_owned(),
            start: self.origin.elapsed(),
            took: Duration::ZERO,
        });
    }

    pub fn since_start(&self) -> Duration {
        self.origin.elapsed()
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

/// Per system call: how often, how it was answered, and the monitor's time serving it.
#[derive(Debug, Default, Clone)]
pub struct SyscallStat {
    pub count: u64,
    pub enosys: u64,
    pub monitor_time: Duration,
}

/// Everything `--explain` prints about one run.
#[derive(Debug, Default, Clone)]
pub struct Explanation {
    pub steps: Vec<Step>,
    /// Keyed by the syscall's name (or `syscall_<nr>` when we do not know it).
    pub syscalls: BTreeMap<String, SyscallStat>,
    pub exits: ExitStats,
    pub cpuid_leaves_set: usize,
    pub guest_ram_touched: Option<RamUse>,
    /// Registers were exchanged through `kvm_run` (KVM_CAP_SYNC_REGS), not ioctls.
    pub registers_via_kvm_run: bool,
}

impl Explanation {
    /// When the milestone `name` (a [`Trace::mark`]) was reached, since the run started.
    pub fn milestone(&self, name: &str) -> Option<Duration> {
        self.steps
            .iter()
            .find(|s| s.name == name && s.took.is_zero())
            .map(|s| s.start)
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "set-up and milestones (µs since the monitor started):")?;
        for step in &self.steps {
            if step.took.is_zero() {
                writeln!(f, "  {:>10.1}            {}", us(step.start), step.name)?;
            } else {
                writeln!(
                    f,
                    "  {:>10.1} +{:>9.1} {}",
                    us(step.start),
                    us(step.took),
                    step.name
                )?;
            }
        }
        let total_calls: u64 = self.syscalls.values().map(|s| s.count).sum();
        let enosys: u64 = self.syscalls.values().map(|s| s.enosys).sum();
        writeln!(
            f,
            "system calls: {total_calls} ({} kinds), {enosys} answered ENOSYS; monitor time per call:",
            self.syscalls.len()
        )?;
        for (name, stat) in &self.syscalls {
            writeln!(
                f,
                "  {name:<20} {:>7} calls {:>10.1} µs total {:>8.1} µs mean{}",
                stat.count,
                us(stat.monitor_time),
                us(stat.monitor_time) / stat.count.max(1) as f64,
                if stat.enosys > 0 { "  ENOSYS" } else { "" }
            )?;
        }
        writeln!(f, "VM exits (time is host time inside KVM_RUN):")?;
        for (reason, (count, time)) in &self.exits.by_reason {
            writeln!(
                f,
                "  {reason:<20} {count:>7} exits {:>10.1} µs total {:>8.1} µs mean",
                us(*time),
                us(*time) / (*count).max(1) as f64
            )?;
        }
        writeln!(
            f,
            "CPUID leaves given to the guest: {}",
            self.cpuid_leaves_set
        )?;
        writeln!(
            f,
            "registers exchanged through: {}",
            if self.registers_via_kvm_run {
                "kvm_run (KVM_CAP_SYNC_REGS)"
            } else {
                "KVM_GET/SET_(S)REGS ioctls"
            }
        )?;
        if let Some(ram) = self.guest_ram_touched {
            writeln!(
                f,
                "guest RAM backed by host memory: {} KiB ({} KiB of it the workload file's page cache, shared)",
                ram.total / 1024,
                ram.file / 1024
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_records_steps_in_order_with_durations() {
        let mut trace = Trace::new();
        trace.step("sleep", || std::thread::sleep(Duration::from_millis(2)));
        trace.mark("milestone");
        let steps = trace.steps();
        assert_eq!(steps[0].name, "sleep");
        assert!(steps[0].took >= Duration::from_millis(2));
        assert_eq!(steps[1].name, "milestone");
        assert!(steps[1].start >= steps[0].start + steps[0].took);
        let explanation = Explanation {
            steps: steps.to_vec(),
            ..Explanation::default()
        };
        assert_eq!(explanation.milestone("milestone"), Some(steps[1].start));
        assert_eq!(explanation.milestone("sleep"), None);
    }

    #[test]
    fn explanation_lists_enosys_calls() {
        let mut e = Explanation::default();
        e.syscalls.insert(
            "clone".into(),
            SyscallStat {
                count: 2,
                enosys: 2,
                monitor_time: Duration::from_micros(4),
            },
        );
        let text = e.to_string();
        assert!(text.contains("2 answered ENOSYS"), "{text}");
        assert!(text.contains("clone") && text.contains("ENOSYS"), "{text}");
    }
}
