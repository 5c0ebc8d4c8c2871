//! Lab 3: UTS and IPC namespaces. The student keeps a new UTS and a new IPC namespace alive by
//! bind-mounting their nsfs files into the workspace, names the UTS one and creates a System V
//! message queue in the IPC one; the checker enters each through those very files and
//! compares what it sees there with what the host sees.

use std::path::{Path, PathBuf};
use std::process::Command;

use isolab_runtime::host::NamespaceKind;

use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::observe;
use crate::{Lab, Need, StepResult, Workspace};

pub static LAB: UtsIpcLab = UtsIpcLab;

const HOSTNAME: &str = "lab3";
const MSG_QUEUES: &str = "/proc/sysvipc/msg";
const ANSWERS: &str = include_str!("../../content/3/answers.txt");
const BIND_HINT: &str = "in the workspace: `touch uts ipc && unshare --uts=$PWD/uts --ipc=$PWD/ipc true`; unshare bind-mounts each new namespace's file there, which keeps the namespace alive after `true` exits";

#[derive(Debug)]
pub struct UtsIpcLab;

/// A namespace file the student was to bind-mount into the workspace, as the host sees it.
#[derive(Debug)]
struct NsFile {
    kind: &'static str,
    path: PathBuf,
    /// What nsfs mount is there: `uts:[4026532177]`; `None` when none is.
    mounted: Option<String>,
    inode: Option<u64>,
    host_inode: Option<u64>,
}

impl NsFile {
    fn observe(ws: &Workspace, kind: &'static str) -> Result<Self, LabError> {
        let path = ws.path(kind);
        Ok(NsFile {
            kind,
            mounted: observe::nsfs_at(&path)?,
            inode: observe::ns_inode(&path),
            host_inode: observe::ns_inode(Path::new(&format!("/proc/self/ns/{kind}"))),
            path,
        })
    }

    /// A namespace of the right kind that is not the host's own.
    fn is_new(&self) -> bool {
        self.mounted
            .as_deref()
            .is_some_and(|m| m.starts_with(&format!("{}:", self.kind)))
            && self.inode.is_some()
            && self.inode != self.host_inode
    }

    fn grade(&self) -> StepResult {
        StepResult::judge(
            &format!("a persistent {} namespace", self.kind.to_uppercase()),
            self.is_new(),
            format!(
                "{}: {}; its inode {}, the host's /proc/self/ns/{} inode {}",
                self.path.display(),
                self.mounted.as_deref().map_or_else(
                    || "no nsfs mount".to_owned(),
                    |m| format!("nsfs mount of {m}")
                ),
                observe::show_inode(self.inode),
                self.kind,
                observe::show_inode(self.host_inode)
            ),
            BIND_HINT,
        )
    }

    /// `nsenter --<kind>=FILE` followed by `command`.
    fn enter(&self, command: &[&str]) -> Command {
        let mut nsenter = Command::new("nsenter");
        nsenter
            .arg(format!("--{}={}", self.kind, self.path.display()))
            .args(command);
        nsenter
    }

    /// Kills what still runs in the namespace: a shell the student left in it. Never the
    /// host's own namespace, whatever got bind-mounted.
    fn end_processes(&self) {
        if let Some(ns) = self.inode.filter(|_| self.is_new()) {
            observe::kill_all(&observe::processes_in_ns(self.kind, ns));
        }
    }
}

/// One queue of /proc/sysvipc/msg: key, msqid and creation time identify it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Queue {
    key: String,
    msqid: String,
    ctime: String,
}

fn parse_queues(text: &str) -> Vec<Queue> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            Some(Queue {
                key: (*fields.first()?).to_owned(),
                msqid: (*fields.get(1)?).to_owned(),
                ctime: (*fields.last()?).to_owned(),
            })
        })
        .collect()
}

impl Lab for UtsIpcLab {
    lab_number!(3);

    fn minutes(&self) -> u32 {
        30
    }

    fn needs(&self) -> &'static [Need] {
        &[
            Need::Root,
            Need::Namespace(NamespaceKind::Uts),
            Need::Namespace(NamespaceKind::Ipc),
            Need::Command("unshare"),
            Need::Command("nsenter"),
            Need::Command("hostname"),
            Need::Command("ipcmk"),
        ]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        ws.write(answers::FILE, ANSWERS)
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let uts = NsFile::observe(ws, "uts")?;
        let ipc = NsFile::observe(ws, "ipc")?;
        let host_name = host_name();
        let inside_name = if uts.is_new() {
            Some(observe::output(&mut uts.enter(&["hostname"]))?)
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        } else {
            None
        };
        let host_queues = std::fs::read_to_string(MSG_QUEUES)
            .map(|t| parse_queues(&t))
            .map_err(LabError::io("reading", MSG_QUEUES))?;
        let inside_queues = if ipc.is_new() {
            let out = observe::output(&mut ipc.enter(&["cat", MSG_QUEUES]))?;
            Some(parse_queues(&String::from_utf8_lossy(&out.stdout)))
        } else {
            None
        };
        let name_ok = inside_name.as_deref() == Some(HOSTNAME) && host_name != HOSTNAME;
        let queue_ok = inside_queues
            .as_ref()
            .is_some_and(|q| !q.is_empty() && q.iter().all(|q| !host_queues.contains(q)));
        let ids = |queues: &[Queue]| {
            queues
                .iter()
                .map(|q| q.msqid.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut steps = vec![
            uts.grade(),
            ipc.grade(),
            StepResult::judge(
                "hostname set inside only",
                name_ok,
                format!(
                    "`nsenter --uts={} hostname` says {}; the host's hostname is {host_name:?}",
                    uts.path.display(),
                    inside_name
                        .as_deref()
                        .map_or_else(|| "(could not enter)".to_owned(), |n| format!("{n:?}"))
                ),
                &format!(
                    "once the UTS namespace is in place: `nsenter --uts={} hostname {HOSTNAME}`; the host keeps its name",
                    uts.path.display()
                ),
            ),
            StepResult::judge(
                "a message queue inside only",
                queue_ok,
                format!(
                    "{MSG_QUEUES} inside holds queue ids [{}]; on the host [{}]",
                    inside_queues
                        .as_deref()
                        .map_or_else(|| "(could not enter)".to_owned(), ids),
                    ids(&host_queues)
                ),
                &format!(
                    "once the IPC namespace is in place: `nsenter --ipc={} ipcmk -Q`, then compare `ipcs -q` inside and on the host",
                    ipc.path.display()
                ),
            ),
        ];
        let answers = Answers::load(ws)?;
        let measured_ids = inside_queues.filter(|_| queue_ok).map(|q| ids(&q));
        steps.push(
            answers.grade("queue_id", measured_ids.as_deref(), |a, ids| {
                ids.split(' ').any(|id| answers::same_number(a, id))
            }),
        );
        steps.push(answers.grade(
            "hostname_inside",
            inside_name.as_deref().filter(|_| name_ok),
            answers::same,
        ));
        steps.push(answers.grade(
            "hostname_host",
            name_ok.then_some(host_name.as_str()),
            answers::same,
        ));
        Ok(steps)
    }

    fn reset(&self, ws: &Workspace) -> Result<(), LabError> {
        // Removing the workspace unmounts the namespace files; with no process left in them,
        // the namespaces, the hostname and the queue are gone.
        for kind in ["uts", "ipc"] {
            NsFile::observe(ws, kind)?.end_processes();
        }
        Ok(())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        let (uts, ipc) = (ws.path("uts"), ws.path("ipc"));
        ws.write("uts", "")?;
        ws.write("ipc", "")?;
        observe::succeed(
            Command::new("unshare")
                .arg(format!("--uts={}", uts.display()))
                .arg(format!("--ipc={}", ipc.display()))
                .arg("true"),
        )?;
        let uts = NsFile::observe(ws, "uts")?;
        let ipc = NsFile::observe(ws, "ipc")?;
        observe::succeed(&mut uts.enter(&["hostname", HOSTNAME]))?;
        let made = observe::succeed(&mut ipc.enter(&["ipcmk", "-Q"]))?;
        // ipcmk prints `Message queue id: N`.
        let id = made
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let host_name = host_name();
        let filled = answers::fill(
            ANSWERS,
            &[
                ("queue_id", id),
                ("hostname_inside", HOSTNAME.to_owned()),
                ("hostname_host", host_name),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_queues_from_proc() {
        let text = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n-2101373592          0   644           0          0     0     0     0     0     0     0          0          0 1795632525\n";
        assert_eq!(
            parse_queues(text),
            vec![Queue {
                key: "-2101373592".into(),
                msqid: "0".into(),
                ctime: "1795632525".into()
            }]
        );
    }
}
