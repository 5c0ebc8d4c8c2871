//! Progress on stderr: a bar on a terminal, a few plain lines otherwise (logs, CI).

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// Plain-line mode reports each target this many times over its measured runs, at most.
const PLAIN_REPORTS_PER_TARGET: u32 = 4;

/// Reports the runs of a run set as they finish. Nothing is drawn while a run is in flight.
#[derive(Debug)]
pub struct Progress {
    warmup: u32,
    runs: u32,
    /// `None` when stderr is not a terminal: plain lines then.
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(targets: usize, warmup: u32, runs: u32) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(u64::from(warmup + runs) * targets as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} runs ({elapsed}, ~{eta} left) {msg}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress { warmup, runs, bar }
    }

    /// A run of `target` in `round` (0-based, warmup rounds first) is about to start.
    pub fn starting(&self, target: &str, round: u32) {
        if let Some(bar) = &self.bar {
            let phase = if round < self.warmup { "warmup" } else { "run" };
            bar.set_message(format!("{target}: {phase}"));
        }
    }

    /// A run of `target` in `round` has finished.
    pub fn finished(&self, target: &str, round: u32) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if let Some(line) = self.plain_line(target, round + 1) {
            // Progress is advisory; a closed stderr must not fail the measurement.
            let _ = writeln!(std::io::stderr(), "isolab bench: {line}");
        }
    }

    /// The plain line, if any, once `target` has finished `done` runs, warmups included.
    fn plain_line(&self, target: &str, done: u32) -> Option<String> {
        let (warmup, runs) = (self.warmup, self.runs);
        if warmup > 0 && done == warmup {
            return Some(format!("{target}: {warmup} warmup run(s) done"));
        }
        let measured = done.checked_sub(warmup).filter(|&m| m > 0)?;
        let batch = runs.div_ceil(PLAIN_REPORTS_PER_TARGET).max(1);
        (measured % batch == 0 || measured == runs)
            .then(|| format!("{target}: {measured}/{runs} runs done"))
    }
}

impl Drop for Progress {
    /// Clears the bar, so the results or the error that follow start on a clean line.
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_in_a_few_batches() {
        let progress = Progress {
            warmup: 2,
            runs: 10,
            bar: None,
        };
        let lines: Vec<String> = (1..=12)
            .filter_map(|done| progress.plain_line("native", done))
            .collect();
        assert_eq!(
            lines,
            [
                "native: 2 warmup run(s) done",
                "native: 3/10 runs done",
                "native: 6/10 runs done",
                "native: 9/10 runs done",
                "native: 10/10 runs done",
            ]
        );
    }

    #[test]
    fn no_warmup_line_without_warmups() {
        let progress = Progress {
            warmup: 0,
            runs: 1,
            bar: None,
        };
        assert_eq!(progress.plain_line("p", 0), None);
        assert_eq!(
            progress.plain_line("p", 1).as_deref(),
            Some("p: 1/1 runs done")
        );
    }
}
