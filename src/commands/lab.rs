//! `isolab lab`: the guided exercises of `isolab_labs` — list, show, start, check, reset and
//! the instructors' solution. Exit 1 when a check fails, 2 for bad input, 3 when this host
//! (or this build) cannot run the lab.

use std::io::IsTerminal;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use isolab_labs::{Lab, Lang, StepResult, lab, render};
use serde::Serialize;

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Every lab: id, title, time, what it needs, and whether this host can run it.
    List {
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print a lab's text: goal, background, steps and questions.
    Show {
        id: u32,
        #[arg(long, value_enum, default_value = "en")]
        lang: LangArg,
    },
    /// Prepare a clean workspace (and whatever the lab needs) for a lab.
    Start { id: u32 },
    /// Grade each step of a lab from the kernel's state; exit 0 only when all pass.
    Check {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u32>,
        /// Every lab this host can run: an instructor's grade sheet.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Undo a lab on the host and remove its workspace.
    Reset { id: u32 },
    /// Print a lab's reference solution, or (--apply) carry it out in the workspace.
    Solution {
        id: u32,
        /// Solutions are for instructors; say that you are one.
        #[arg(long)]
        i_am_instructor: bool,
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LangArg {
    En,
    Zh,
}

impl From<LangArg> for Lang {
    fn from(lang: LangArg) -> Self {
        match lang {
            LangArg::En => Lang::En,
            LangArg::Zh => Lang::Zh,
        }
    }
}

pub fn run(args: LabArgs) -> Result<(), Failure> {
    match args.command {
        LabCommand::List { json } => list(json),
        LabCommand::Show { id, lang } => {
            let text = known(id)?.text(lang.into());
            print!("{}", render::render(text, std::io::stdout().is_terminal()));
            Ok(())
        }
        LabCommand::Start { id } => {
            let lab = runnable(id)?;
            let ws = lab::start(lab).map_err(|e| Failure::TargetFailed(anyhow!(e)))?;
            println!(
                "lab {id} ({}) is ready in {}",
                lab.title(Lang::En),
                ws.dir().display()
            );
            if let Some(note) = ws.read("answers.txt").ok().flatten()
                && let Some(first) = note.lines().next()
            {
                println!("{}", first.trim_start_matches("# "));
            }
            println!(
                "read the steps with `isolab lab show {id}`; grade them with `isolab lab check {id}`"
            );
            Ok(())
        }
        LabCommand::Check {
            id: Some(id), json, ..
        } => {
            let lab = runnable(id)?;
            let report = graded(lab)?;
            if json {
                print_json(&report)?;
            } else {
                print_human(&report);
            }
            verdict(&[report])
        }
        LabCommand::Check { id: None, json, .. } => check_all(json),
        LabCommand::Reset { id } => {
            let lab = known(id)?;
            lab::reset(lab).map_err(|e| Failure::TargetFailed(anyhow!(e)))?;
            println!("lab {id} reset: its workspace, processes and cgroups are gone");
            Ok(())
        }
        LabCommand::Solution {
            id,
            i_am_instructor,
            apply,
        } => {
            if !i_am_instructor {
                return Err(Failure::BadInput(anyhow!(
                    "solutions are for instructors: add --i-am-instructor"
                )));
            }
            if !apply {
                print!("{}", known(id)?.solution());
                return Ok(());
            }
            let lab = runnable(id)?;
            let ws = lab::apply_solution(lab).map_err(|e| Failure::TargetFailed(anyhow!(e)))?;
            println!(
                "applied the reference solution of lab {id} in {}",
                ws.dir().display()
            );
            Ok(())
        }
    }
}

/// The lab numbered `id`.
fn known(id: u32) -> Result<&'static dyn Lab, Failure> {
    isolab_labs::find(id).ok_or_else(|| {
        Failure::BadInput(anyhow!(
            "there is no lab {id}: the labs are 1 to {} (isolab lab list)",
            isolab_labs::labs().len()
        ))
    })
}

/// A lab this host can run.
fn runnable(id: u32) -> Result<&'static dyn Lab, Failure> {
    let lab = known(id)?;
    let unmet = isolab_labs::unmet(lab.needs());
    if unmet.is_empty() {
        Ok(lab)
    } else {
        Err(Failure::HostLacks(anyhow!(
            "this host cannot run lab {id}: {}",
            unmet.join("; ")
        )))
    }
}

#[derive(Debug, Serialize)]
struct ListedLab {
    id: u32,
    title: &'static str,
    title_zh: &'static str,
    minutes: u32,
    needs: Vec<String>,
    /// `ready` or `host-lacks`.
    status: &'static str,
    /// What this host lacks, for `host-lacks`.
    missing: Vec<String>,
}

fn listed(lab: &'static dyn Lab) -> ListedLab {
    let missing = isolab_labs::unmet(lab.needs());
    let status = if missing.is_empty() {
        "ready"
    } else {
        "host-lacks"
    };
    ListedLab {
        id: lab.id(),
        title: lab.title(Lang::En),
        title_zh: lab.title(Lang::Zh),
        minutes: lab.minutes(),
        needs: lab.needs().iter().map(|n| n.describe()).collect(),
        status,
        missing,
    }
}

fn list(json: bool) -> Result<(), Failure> {
    let labs: Vec<ListedLab> = isolab_labs::labs().into_iter().map(listed).collect();
    if json {
        return print_json(&serde_json::json!({ "labs": labs }));
    }
    println!(
        "{:>3}  {:<50} {:>5}  {:<42} CAN RUN HERE",
        "ID", "TITLE", "TIME", "NEEDS"
    );
    for lab in labs {
        let can = match lab.status {
            "ready" => "yes".to_owned(),
            _ => format!("no: {}", lab.missing.join("; ")),
        };
        println!(
            "{:>3}  {:<50} {:>3}m  {:<42} {can}",
            lab.id,
            lab.title,
            lab.minutes,
            lab.needs.join(", ")
        );
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct Report {
    lab: u32,
    title: &'static str,
    /// `graded`, or `host-lacks` for a lab this host cannot run.
    status: &'static str,
    passed: bool,
    /// What this host or build lacks, for a skipped lab.
    missing: Vec<String>,
    steps: Vec<StepResult>,
}

fn graded(lab: &'static dyn Lab) -> Result<Report, Failure> {
    let steps = lab::check(lab)
        .with_context(|| format!("checking lab {}", lab.id()))
        .map_err(Failure::TargetFailed)?;
    Ok(Report {
        lab: lab.id(),
        title: lab.title(Lang::En),
        status: "graded",
        passed: steps.iter().all(|s| s.passed),
        missing: Vec::new(),
        steps,
    })
}

/// Grades every lab this host can run; lists the others as skipped, with the reason.
fn check_all(json: bool) -> Result<(), Failure> {
    let mut reports = Vec::new();
    for lab in isolab_labs::labs() {
        let listing = listed(lab);
        reports.push(match listing.status {
            "ready" => graded(lab)?,
            _ => Report {
                lab: listing.id,
                title: listing.title,
                status: listing.status,
                passed: false,
                missing: listing.missing,
                steps: Vec::new(),
            },
        });
    }
    if json {
        let all_passed = reports
            .iter()
            .filter(|r| r.status == "graded")
            .all(|r| r.passed);
        print_json(&serde_json::json!({ "passed": all_passed, "labs": reports }))?;
    } else {
        for report in &reports {
            print_human(report);
        }
    }
    verdict(&reports)
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .context("serialising the lab report")
        .map_err(Failure::TargetFailed)?;
    println!("{text}");
    Ok(())
}

fn print_human(report: &Report) {
    println!("lab {}: {}", report.lab, report.title);
    if report.status != "graded" {
        println!(
            "  skipped ({}): {}",
            report.status,
            report.missing.join("; ")
        );
        return;
    }
    for step in &report.steps {
        let mark = if step.passed { "PASS" } else { "FAIL" };
        println!("  {mark}  {}: {}", step.step, step.observed);
        if !step.passed {
            println!("        hint: {}", step.hint);
        }
    }
    let passed = report.steps.iter().filter(|s| s.passed).count();
    println!("  {passed}/{} steps pass", report.steps.len());
}

/// Exit 0 only when every graded lab passed every step.
fn verdict(reports: &[Report]) -> Result<(), Failure> {
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.status == "graded" && !r.passed)
        .map(|r| r.lab.to_string())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::CheckFailed(anyhow!(
            "steps fail in lab {}",
            failed.join(", ")
        )))
    }
}
