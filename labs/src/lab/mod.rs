//! The implemented labs, and the life cycle every lab shares: start in a clean workspace,
//! check, apply the solution, reset.

/// A lab's `id`, and its `text` and `solution` from content/<id>/: one number names them
/// all. The solution is solution.md unless given. (A macro because `include_str!` wants its
/// path when the crate is compiled.)
macro_rules! lab_number {
    ($id:literal) => {
        lab_number!($id, solution: include_str!(concat!("../../content/", $id, "/solution.md")));
    };
    ($id:literal, solution: $solution:expr) => {
        fn id(&self) -> u32 {
            $id
        }

        fn text(&self, lang: $crate::Lang) -> &'static str {
            match lang {
                $crate::Lang::En => include_str!(concat!("../../content/", $id, "/en.md")),
                $crate::Lang::Zh => include_str!(concat!("../../content/", $id, "/zh.md")),
            }
        }

        fn solution(&self) -> &'static str {
            $solution
        }
    };
}

pub mod capsec;
pub mod chroot;
pub mod claims;
pub mod containers;
pub mod cow;
pub mod cpu;
pub mod escapes;
pub mod kvm;
pub mod memory;
pub mod minivm;
pub mod netns;
pub mod pidns;
pub mod pids;
pub mod userns;
pub mod utsipc;

use crate::error::LabError;
use crate::{Lab, StepResult, Workspace};

/// Resets whatever an earlier attempt left, then creates the workspace with its starter.
pub fn start(lab: &dyn Lab) -> Result<Workspace, LabError> {
    let ws = Workspace::for_lab(lab.id());
    reset(lab)?;
    ws.create()?;
    lab.start(&ws)?;
    Ok(ws)
}

/// Grades the workspace; a lab never started fails its first step, saying so.
pub fn check(lab: &dyn Lab) -> Result<Vec<StepResult>, LabError> {
    let ws = Workspace::for_lab(lab.id());
    if !ws.exists() {
        return Ok(vec![StepResult::fail(
            "workspace",
            format!("{} does not exist", ws.dir().display()),
            format!("run `isolab lab start {}` first", lab.id()),
        )]);
    }
    lab.check(&ws)
}

/// Undoes the lab on the host, then removes its workspace; safe to repeat.
pub fn reset(lab: &dyn Lab) -> Result<(), LabError> {
    let ws = Workspace::for_lab(lab.id());
    lab.reset(&ws)?;
    ws.remove()
}

/// Applies the reference solution, starting the lab first when it was not started.
pub fn apply_solution(lab: &dyn Lab) -> Result<Workspace, LabError> {
    let ws = Workspace::for_lab(lab.id());
    let ws = if ws.exists() { ws } else { start(lab)? };
    lab.apply_solution(&ws)?;
    Ok(ws)
}
