//! Lab 8: the pids cgroup. The student limits a cgroup to 32 tasks and sets a fork bomb
//! off inside it; the checker reads the refused forks from pids.events and times process
//! creation on the host while the cgroup is full.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::answers::{self, Answers};
use crate::cgroup::{self, LabCgroup};
use crate::error::LabError;
use crate::{Lab, Need, StepResult, Workspace};

pub static LAB: PidsLab = PidsLab;

const MAX: u64 = 32;
const ANSWERS: &str = include_str!("../../content/8/answers.txt");
/// The classic bomb, in POSIX sh: every call starts two more in the background.
const BOMB: &str = "bomb() { bomb | bomb & }; bomb";
/// Host processes the checker starts to show that the host still forks freely.
const HOST_SPAWNS: u32 = 20;
/// What "responsive" means here: the median spawn of `true` stays under this.
const RESPONSIVE: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct PidsLab;

impl Lab for PidsLab {
    lab_number!(8);

    fn minutes(&self) -> u32 {
        25
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Root, Need::Controller("pids"), Need::Command("sh")]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        let cg = LabCgroup::for_lab("pids", self.id())?;
        cg.start(ws, ANSWERS)
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let cg = LabCgroup::for_lab("pids", self.id())?;
        let created = cg.exists();
        let max = cg.read("pids.max");
        let max_ok = max.as_deref() == Some(&MAX.to_string());
        let refused = cg.keyed("pids.events", "max");
        let current = cg.read("pids.current");
        let spawn = median_spawn()?;
        let answers = Answers::load(ws)?;
        let mut steps = vec![
            cg.created_step(),
            StepResult::judge(
                "limit it to 32 tasks",
                max_ok,
                format!("pids.max: {}", max.as_deref().unwrap_or("(missing)")),
                &format!("echo {MAX} > {}", cg.file("pids.max").display()),
            ),
            StepResult::judge(
                "the bomb hit the limit",
                refused.is_some_and(|n| n > 0),
                format!(
                    "pids.events: max {}; pids.current {}",
                    refused.map_or("(missing)".into(), |n| n.to_string()),
                    current.as_deref().unwrap_or("(missing)")
                ),
                "start a shell in the cgroup (echo $$ > cgroup.procs) and run the bomb from the lab text there; pids.events counts each fork the limit refused",
            ),
            StepResult::judge(
                "the host stays responsive",
                created && max_ok && spawn < RESPONSIVE,
                format!(
                    "median time to start `true` on the host: {} µs over {HOST_SPAWNS} runs",
                    spawn.as_micros()
                ),
                "the host can only be judged once the limit is in place; if the limit is set and spawning is still slow, look at `top` for something outside the cgroup",
            ),
        ];
        steps.push(answers.grade(
            "pids_max",
            max_ok.then(|| MAX.to_string()).as_deref(),
            answers::same_number,
        ));
        // pids.events only grows: any count read after the bomb ran is right.
        let measured = refused.filter(|n| *n > 0).map(|n| n.to_string());
        steps.push(answers.grade("refused_forks", measured.as_deref(), answers::counted_up_to));
        Ok(steps)
    }

    fn reset(&self, _ws: &Workspace) -> Result<(), LabError> {
        LabCgroup::for_lab("pids", self.id())?.destroy()
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        let cg = LabCgroup::for_lab("pids", self.id())?;
        cg.create()?;
        cg.write("pids.max", &MAX.to_string())?;
        let mut bomb = cgroup::sh_in(&cg.dir, BOMB);
        bomb.stdout(Stdio::null()).stderr(Stdio::null());
        let mut shell = bomb.spawn().map_err(|source| LabError::Spawn {
            command: BOMB.into(),
            source,
        })?;
        // Let the bomb fill the cgroup, then stop it: a contained bomb still burns CPU.
        let deadline = Instant::now() + Duration::from_secs(10);
        while cg.keyed("pids.events", "max").unwrap_or(0) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let refused = cg.keyed("pids.events", "max").unwrap_or(0);
        cg.kill_all();
        let _ = shell.wait();
        let filled = answers::fill(
            ANSWERS,
            &[
                ("pids_max", MAX.to_string()),
                ("refused_forks", refused.to_string()),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

/// The median time to start and reap `true` on the host.
fn median_spawn() -> Result<Duration, LabError> {
    let mut times = Vec::new();
    for _ in 0..HOST_SPAWNS {
        let start = Instant::now();
        crate::observe::output(&mut Command::new("true"))?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}
