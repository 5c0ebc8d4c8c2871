//! Guided lab exercises that grade themselves by reading real kernel state: namespaces through
//! /proc/<pid>/ns, cgroup files, mount tables, file owners as the host sees them. Each lab has
//! its text in English and Simplified Chinese (the same steps and checks), a starter workspace,
//! a checker, a reference solution and a reset that leaves the host as it was found.

mod answers;
mod cgroup;
mod error;
pub mod lab;
mod needs;
mod observe;
mod registry;
pub mod render;
mod rootfs;
mod workspace;

use serde::Serialize;

pub use error::LabError;
pub use needs::{Need, unmet};
pub use registry::{find, labs};
pub use workspace::Workspace;

/// The language a lab's text is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

/// One graded step: what the checker saw, and on failure what to try next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepResult {
    pub step: String,
    pub passed: bool,
    pub observed: String,
    /// Empty when the step passed.
    pub hint: String,
}

impl StepResult {
    pub fn pass(step: &str, observed: impl Into<String>) -> Self {
        StepResult {
            step: step.to_owned(),
            passed: true,
            observed: observed.into(),
            hint: String::new(),
        }
    }

    pub fn fail(step: &str, observed: impl Into<String>, hint: impl Into<String>) -> Self {
        StepResult {
            step: step.to_owned(),
            passed: false,
            observed: observed.into(),
            hint: hint.into(),
        }
    }

    /// Passes when `ok`, with the hint kept for the failing case only.
    pub fn judge(step: &str, ok: bool, observed: impl Into<String>, hint: &str) -> Self {
        if ok {
            Self::pass(step, observed)
        } else {
            Self::fail(step, observed, hint)
        }
    }
}

/// A lab exercise. The text's first line is its `# Title`, so titles live in one place.
pub trait Lab: Sync {
    fn id(&self) -> u32;
    fn minutes(&self) -> u32;
    /// What the host must offer; `isolab lab list` and `start` test each one for real.
    fn needs(&self) -> &'static [Need];
    /// The lab's Markdown text: goal, background, steps, questions.
    fn text(&self, lang: Lang) -> &'static str;
    /// Fills a fresh, empty workspace directory with the starter files.
    fn start(&self, ws: &Workspace) -> Result<(), LabError>;
    /// Grades every step against what the kernel reports now.
    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError>;
    /// Undoes whatever the lab (or the student) put on the host outside the workspace
    /// directory: processes, cgroups, namespace bind mounts. The directory is removed after.
    fn reset(&self, ws: &Workspace) -> Result<(), LabError>;
    /// The reference solution, for instructors.
    fn solution(&self) -> &'static str;
    /// Carries out the reference solution in the workspace.
    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError>;

    fn title(&self, lang: Lang) -> &'static str {
        title_of(self.text(lang))
    }
}

/// The first `# ` heading of a Markdown text.
pub fn title_of(text: &'static str) -> &'static str {
    text.lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or("")
        .trim()
}
