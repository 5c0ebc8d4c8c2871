//! Lab 11: KVM from scratch. The student completes a small Rust program that opens
//! /dev/kvm, creates a VM with a few KiB of RAM and one vCPU, loads four instructions of
//! 16-bit guest code that add two registers and write the sum to an I/O port, and runs the
//! vCPU through its IoOut and Hlt exits. The checker builds it, runs it with two random
//! numbers of its own, reads the exits it printed and, while it still holds its VM, its
//! descriptors: a KVM VM and vCPU must be among them.
//!
//! Real mode is CPL 0, so on PVM (no VMX/SVM, guest ring 0 emulated) every guest
//! instruction here goes through KVM's instruction emulator; measured on this project's
//! host, the four of them run correctly, so the same program and check serve VMX, SVM and
//! PVM alike, and the lab text explains the difference.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use isolab_microvm::host::KvmKind;

use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::observe::{self, Conversation};
use crate::workspace::nonce;
use crate::{Lab, Need, StepResult, Workspace};

pub static LAB: KvmLab = KvmLab;

/// The cargo project inside the workspace, and the binary it builds.
const PROJECT: &str = "vmm";
const STARTER: &str = include_str!("../../content/11/main.rs");
const REFERENCE: &str = include_str!("../../content/11/solution.rs");
const ANSWERS: &str = include_str!("../../content/11/answers.txt");
/// The versions this workspace builds the micro-VM monitor with (see the root Cargo.toml),
/// so that `cargo build --offline` finds them in the local registry cache.
const KVM_IOCTLS: &str = "0.25";
const KVM_BINDINGS: &str = "0.14";
/// Where the program's guest lives, as the starter's constants define it.
const GUEST_RAM: u64 = 0x1000;
const RAM_SIZE: u64 = 0x4000;
const PORT: u64 = 0x3f8;
/// Long enough for a first build of kvm-ioctls on a loaded two-core host.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct KvmLab;

fn project(ws: &Workspace) -> PathBuf {
    ws.path(PROJECT)
}

fn cargo_toml() -> String {
    format!(
        "[package]\nname = \"{PROJECT}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nkvm-ioctls = \"{KVM_IOCTLS}\"\nkvm-bindings = \"{KVM_BINDINGS}\"\n\n\
         # Its own workspace, wherever the lab directory is.\n[workspace]\n"
    )
}

/// `cargo SUBCOMMAND --offline` in the project, with its target directory inside it. It
/// runs there because cargo reads its configuration from the working directory upwards,
/// and the caller's (a cross-compiling `build.target`, say) must not move the binary.
fn cargo(ws: &Workspace, subcommand: &str) -> Command {
    let dir = project(ws);
    let mut command = Command::new("cargo");
    command
        .args([subcommand, "--offline", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("CARGO_BUILD_TARGET");
    command
}

fn binary(ws: &Workspace) -> PathBuf {
    project(ws).join("target/debug").join(PROJECT)
}

/// One `exit=KIND key=value…` line the program printed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExitLine {
    kind: String,
    fields: BTreeMap<String, String>,
}

impl ExitLine {
    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("exit=")?;
        let mut words = rest.split_whitespace();
        let kind = words.next()?.to_owned();
        let fields = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(ExitLine { kind, fields })
    }

    fn number(&self, key: &str) -> Option<u64> {
        self.fields.get(key).and_then(|v| answers::number(v))
    }
}

/// What the checker saw of one run of the student's program.
#[derive(Debug, Default)]
struct Run {
    a: u16,
    b: u16,
    exits: Vec<ExitLine>,
    /// Whether it printed `done=`, i.e. got through its run loop.
    done: bool,
    /// What its descriptors pointed at while it held its VM.
    files: Vec<String>,
}

impl Run {
    fn expected_sum(&self) -> u64 {
        u64::from(self.a.wrapping_add(self.b))
    }

    fn io_out(&self) -> Option<&ExitLine> {
        self.exits.first().filter(|e| e.kind == "io_out")
    }

    fn hlt(&self) -> Option<&ExitLine> {
        self.exits.get(1).filter(|e| e.kind == "hlt")
    }
}

/// Two 16-bit numbers no earlier run could have printed the sum of.
fn random_pair() -> Result<(u16, u16), LabError> {
    let hex = nonce()?;
    let word = |at: usize| u16::from_str_radix(&hex[at..at + 4], 16).unwrap_or(at as u16);
    Ok((word(0), word(4)))
}

fn observe_run(ws: &Workspace) -> Result<Run, LabError> {
    let (a, b) = random_pair()?;
    let program = Conversation::start(
        Command::new(binary(ws))
            .arg(format!("{a:#x}"))
            .arg(format!("{b:#x}")),
    )?;
    let lines = program.lines_until("done", RUN_TIMEOUT);
    // The program keeps its VM until its input closes, so its descriptors show it now.
    let files = observe::open_files(program.pid());
    program.finish(Duration::from_secs(3));
    Ok(Run {
        a,
        b,
        exits: lines.iter().filter_map(|l| ExitLine::parse(l)).collect(),
        done: lines.iter().any(|l| l.starts_with("done=")),
        files,
    })
}

fn build(ws: &Workspace) -> Result<std::process::Output, LabError> {
    observe::output(&mut cargo(ws, "build"))
}

fn grade(run: &Run) -> Vec<StepResult> {
    let has = |file: &str| run.files.iter().any(|f| f == file);
    let (vm, vcpu) = (has("anon_inode:kvm-vm"), has("anon_inode:kvm-vcpu:0"));
    let kvm_files: Vec<&str> = run
        .files
        .iter()
        .map(String::as_str)
        .filter(|f| f.contains("kvm"))
        .collect();
    let shown = |exit: Option<&ExitLine>| {
        exit.map_or_else(
            || "(none)".to_owned(),
            |e| {
                let fields: Vec<String> =
                    e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} {}", e.kind, fields.join(" "))
            },
        )
    };
    let io = run.io_out();
    let io_ok = io.is_some_and(|e| {
        e.number("port") == Some(PORT)
            && e.number("size") == Some(2)
            && e.number("value") == Some(run.expected_sum())
    });
    let hlt_rip = run.hlt().and_then(|e| e.number("rip"));
    // After a hlt, RIP points past it: inside guest RAM, beyond the first instruction.
    let halted = run.exits.len() == 2
        && hlt_rip.is_some_and(|rip| rip > GUEST_RAM && rip <= GUEST_RAM + RAM_SIZE);
    let sequence: Vec<&str> = run.exits.iter().map(|e| e.kind.as_str()).collect();
    vec![
        StepResult::judge(
            "a VM with a vCPU",
            vm && vcpu,
            format!(
                "while it waited, the program held {}",
                if kvm_files.is_empty() {
                    "nothing of KVM's".to_owned()
                } else {
                    kvm_files.join(", ")
                }
            ),
            if !run.done {
                "the program never printed done=1: run it yourself (`cargo run -- 1 2`) and read its error"
            } else if !vm {
                "TODO 1: create the VM with kvm.create_vm(), and keep it in a variable until the end of main"
            } else {
                "TODO 4: create vCPU 0 with vm.create_vcpu(0), and keep it until the end of main"
            },
        ),
        StepResult::judge(
            "the guest wrote A+B to port 0x3f8",
            io_ok,
            format!(
                "run with A={:#x} B={:#x} (so A+B={:#x}); first exit: {}",
                run.a,
                run.b,
                run.expected_sum(),
                shown(run.exits.first())
            ),
            "TODO 2 to 5: map the RAM, copy GUEST_CODE (add ax, bx = 01 d8; mov dx, imm16 = ba lo hi; out dx, ax = ef; hlt = f4) to it, start at RIP=GUEST_RAM with RAX=A, RBX=B, and report IoOut exits",
        ),
        StepResult::judge(
            "then the guest halted",
            halted,
            format!(
                "exits in order: {}; the last: {}",
                if sequence.is_empty() {
                    "(none)".to_owned()
                } else {
                    sequence.join(", ")
                },
                shown(run.exits.last())
            ),
            "TODO 5: on VcpuExit::Hlt read the registers, call report_hlt(rip) and leave the loop; the guest's last instruction must be hlt (f4)",
        ),
    ]
}

impl Lab for KvmLab {
    lab_number!(11);

    fn minutes(&self) -> u32 {
        60
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Kvm, Need::Command("cargo")]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        let src = project(ws).join("src");
        std::fs::create_dir_all(&src).map_err(LabError::io("creating", &src))?;
        ws.write(&format!("{PROJECT}/Cargo.toml"), &cargo_toml())?;
        ws.write(&format!("{PROJECT}/src/main.rs"), STARTER)?;
        // Pins the versions from the local registry cache now, so that a host without them
        // says so at start rather than at the first check.
        observe::succeed(&mut cargo(ws, "generate-lockfile"))?;
        ws.write(
            answers::FILE,
            &format!(
                "# your program is {}; this host's KVM is {}\n{ANSWERS}",
                project(ws).join("src/main.rs").display(),
                KvmKind::detect().name()
            ),
        )
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let built = build(ws)?;
        let mut steps = vec![StepResult::judge(
            "build the program",
            built.status.success(),
            if built.status.success() {
                "cargo build: it builds".to_owned()
            } else {
                format!(
                    "cargo build: {}{}",
                    built.status,
                    super::pidns::tail(&String::from_utf8_lossy(&built.stderr))
                )
            },
            &format!(
                "fix the compiler errors shown; build it yourself with `cd {} && cargo build --offline`",
                project(ws).display()
            ),
        )];
        let run = if built.status.success() {
            observe_run(ws)?
        } else {
            Run::default()
        };
        steps.extend(grade(&run));
        let answers = Answers::load(ws)?;
        steps.push(answers.grade("kvm_kind", Some(KvmKind::detect().name()), answers::same));
        let size = run.io_out().and_then(|e| e.fields.get("size").cloned());
        steps.push(answers.grade("io_size", size.as_deref(), answers::same_number));
        let rip = run.hlt().and_then(|e| e.fields.get("rip").cloned());
        steps.push(answers.grade("rip_at_hlt", rip.as_deref(), answers::same_number));
        Ok(steps)
    }

    fn reset(&self, ws: &Workspace) -> Result<(), LabError> {
        // A program the student left waiting for Ctrl-D still holds its VM.
        observe::kill_all(&observe::processes_running_from(ws.dir()));
        Ok(())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        ws.write(&format!("{PROJECT}/src/main.rs"), REFERENCE)?;
        let built = build(ws)?;
        if !built.status.success() {
            return Err(LabError::Command {
                command: format!("cargo build in {}", project(ws).display()),
                detail: String::from_utf8_lossy(&built.stderr).into_owned(),
            });
        }
        let run = observe_run(ws)?;
        let field = |exit: Option<&ExitLine>, key: &str| {
            exit.and_then(|e| e.fields.get(key).cloned())
                .unwrap_or_default()
        };
        let filled = answers::fill(
            ANSWERS,
            &[
                ("kvm_kind", KvmKind::detect().name().to_owned()),
                ("io_size", field(run.io_out(), "size")),
                ("rip_at_hlt", field(run.hlt(), "rip")),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exit_lines() {
        let exit = ExitLine::parse("exit=io_out port=0x3f8 size=2 value=0x123b").unwrap();
        assert_eq!(exit.kind, "io_out");
        assert_eq!(exit.number("port"), Some(0x3f8));
        assert_eq!(exit.number("value"), Some(0x123b));
        assert_eq!(ExitLine::parse("done=1"), None);
    }

    #[test]
    fn grades_a_run_by_its_exits_and_descriptors() {
        let line = |l: &str| ExitLine::parse(l).unwrap();
        let mut run = Run {
            a: 0xfff0,
            b: 0x20,
            exits: vec![
                line("exit=io_out port=0x3f8 size=2 value=0x10"),
                line("exit=hlt rip=0x1007"),
            ],
            done: true,
            files: vec![
                "/dev/kvm".into(),
                "anon_inode:kvm-vm".into(),
                "anon_inode:kvm-vcpu:0".into(),
            ],
        };
        assert!(grade(&run).iter().all(|s| s.passed), "{:#?}", grade(&run));
        // The sum of other numbers, or no VM held: each fails its own step.
        run.b = 0x21;
        assert!(!grade(&run)[1].passed);
        run.files.truncate(1);
        assert!(!grade(&run)[0].passed);
    }

    #[test]
    fn the_crate_versions_are_the_workspace_ones() {
        let workspace = include_str!("../../../Cargo.toml");
        assert!(workspace.contains(&format!("kvm-ioctls = \"{KVM_IOCTLS}\"")));
        assert!(workspace.contains(&format!("kvm-bindings = \"{KVM_BINDINGS}\"")));
    }

    #[test]
    fn the_starter_and_the_reference_share_the_guest_layout() {
        for program in [STARTER, REFERENCE] {
            assert!(program.contains(&format!("const GUEST_RAM: u64 = {GUEST_RAM:#x};")));
            assert!(program.contains(&format!("const RAM_SIZE: usize = {RAM_SIZE:#x};")));
            assert!(program.contains(&format!("const PORT: u16 = {PORT:#x};")));
        }
    }
}
