//! Lab 6: the memory cgroup. The student makes a cgroup, limits it to 32 MiB and watches the
//! OOM killer end a process that wants more; the checker reads the cgroup's own files.

use std::time::Duration;

use crate::answers::{self, Answers};
use crate::cgroup::{self, LabCgroup};
use crate::error::LabError;
use crate::{Lab, Need, StepResult, Workspace};

pub static LAB: MemoryLab = MemoryLab;

const LIMIT: u64 = 32 * 1024 * 1024;
const ANSWERS: &str = include_str!("../../content/6/answers.txt");

#[derive(Debug)]
pub struct MemoryLab;

/// The limit file, and where the OOM kills are counted, in each cgroup version.
fn limit_file(cg: &LabCgroup) -> &'static str {
    cg.name("memory.limit_in_bytes", "memory.max")
}

/// The limit file's name in the other cgroup version, which the student names too.
fn other_file(cg: &LabCgroup) -> &'static str {
    cg.name("memory.max", "memory.limit_in_bytes")
}

fn oom_file(cg: &LabCgroup) -> &'static str {
    cg.name("memory.oom_control", "memory.events")
}

impl Lab for MemoryLab {
    lab_number!(6);

    fn minutes(&self) -> u32 {
        30
    }

    fn needs(&self) -> &'static [Need] {
        &[
            Need::Root,
            Need::Controller("memory"),
            Need::Command("tail"),
        ]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        let cg = LabCgroup::for_lab("memory", self.id())?;
        cg.start(ws, ANSWERS)
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let cg = LabCgroup::for_lab("memory", self.id())?;
        let created = cg.exists();
        let limit = cg.read(limit_file(&cg));
        let oom_kills = cg.keyed(oom_file(&cg), "oom_kill");
        let limit_ok = limit.as_deref().and_then(answers::number) == Some(LIMIT);
        let killed = oom_kills.is_some_and(|n| n > 0);
        let answers = Answers::load(ws)?;
        let mut steps = vec![
            cg.created_step(),
            StepResult::judge(
                "limit it to 32 MiB",
                limit_ok,
                format!(
                    "{}: {}",
                    cg.file(limit_file(&cg)).display(),
                    limit.as_deref().unwrap_or("(missing)")
                ),
                &format!(
                    "write 32M (or {LIMIT}) to {}; on this host that is the limit file",
                    limit_file(&cg)
                ),
            ),
            StepResult::judge(
                "an OOM kill in the cgroup",
                killed,
                format!(
                    "{}: oom_kill {}",
                    cg.file(oom_file(&cg)).display(),
                    oom_kills.map_or("(missing)".into(), |n| n.to_string())
                ),
                "move a shell into the cgroup (echo $$ > cgroup.procs) and run something that allocates more than the limit, e.g. `tail /dev/zero`; if it is not killed, swap may be absorbing it: limit swap as step 3 says",
            ),
        ];
        let measured_limit = limit_ok.then(|| LIMIT.to_string());
        steps.push(answers.grade(
            "limit_file",
            created.then_some(limit_file(&cg)),
            answers::same,
        ));
        let other = other_file(&cg);
        steps.push(answers.grade(
            "other_version_file",
            created.then_some(other),
            answers::same,
        ));
        steps.push(answers.grade(
            "limit_bytes",
            measured_limit.as_deref(),
            answers::same_number,
        ));
        // The counter only grows; any count the student read after a kill is right.
        let measured_kills = oom_kills.filter(|n| *n > 0).map(|n| n.to_string());
        steps.push(answers.grade(
            "oom_kills",
            measured_kills.as_deref(),
            answers::counted_up_to,
        ));
        Ok(steps)
    }

    fn reset(&self, _ws: &Workspace) -> Result<(), LabError> {
        LabCgroup::for_lab("memory", self.id())?.destroy()
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        let cg = LabCgroup::for_lab("memory", self.id())?;
        cg.create()?;
        cg.write(limit_file(&cg), &LIMIT.to_string())?;
        // Without swap limited too, the kernel would swap the process out rather than kill it.
        let swap = cg.name("memory.memsw.limit_in_bytes", "memory.swap.max");
        if cg.file(swap).exists() {
            cg.write(swap, if cg.v2 { "0" } else { "33554432" })?;
        }
        let status = crate::observe::output(&mut cgroup::sh_in(&cg.dir, "exec tail /dev/zero"))?;
        if status.status.success() {
            return Err(LabError::Command {
                command: "tail /dev/zero in the limited cgroup".into(),
                detail: "it ended without being killed".into(),
            });
        }
        // The OOM kill is counted as the process dies; give the counter a moment.
        std::thread::sleep(Duration::from_millis(100));
        let kills = cg.keyed(oom_file(&cg), "oom_kill").unwrap_or(0);
        let filled = answers::fill(
            ANSWERS,
            &[
                ("limit_file", limit_file(&cg).to_owned()),
                ("other_version_file", other_file(&cg).to_owned()),
                ("limit_bytes", LIMIT.to_string()),
                ("oom_kills", kills.to_string()),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}
