//! Lab 5: the user namespace. Root writes a file in a container twice, once as host root and
//! once with `isolab run --userns`; the checker looks at the two files' owners on the host and
//! runs a container of its own to see the uid map.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use isolab_runtime::host::NamespaceKind;

use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::workspace::nonce;
use crate::{Lab, Need, StepResult, Workspace, observe, rootfs};

pub static LAB: UserNamespaceLab = UserNamespaceLab;

const ROOTFS: &str = "rootfs";
/// The nonce, as /nonce inside the containers.
const NONCE: &str = "rootfs/nonce";
/// World-writable like /tmp: under --userns container root is an unprivileged host uid.
const OUT: &str = "rootfs/out";
const ANSWERS: &str = include_str!("../../content/5/answers.txt");
/// What a container without a user namespace reads in /proc/self/uid_map: the identity.
const IDENTITY_MAP: &str = "0 0 4294967295";

#[derive(Debug)]
pub struct UserNamespaceLab;

/// One of the two files the student's containers were to write, as the host sees it.
#[derive(Debug)]
struct Written {
    path: PathBuf,
    owner: Option<u32>,
    /// The uid_map line the container wrote first, blanks collapsed.
    map: Option<String>,
    has_nonce: bool,
    /// Changed after the lab started, so it is this attempt's.
    fresh: bool,
}

impl Written {
    fn observe(ws: &Workspace, name: &str, nonce: &str, started: (i64, i64)) -> Written {
        let path = ws.path(&format!("{OUT}/{name}"));
        let meta = std::fs::metadata(&path).ok();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        Written {
            owner: meta.as_ref().map(|m| m.uid()),
            map: text.lines().next().map(collapse).filter(|l| !l.is_empty()),
            has_nonce: !nonce.is_empty() && text.contains(nonce),
            fresh: meta.is_some_and(|m| (m.ctime(), m.ctime_nsec()) >= started),
            path,
        }
    }

    fn genuine(&self) -> bool {
        self.has_nonce && self.fresh
    }

    fn describe(&self) -> String {
        match self.owner {
            None => format!("{} does not exist", self.path.display()),
            Some(uid) => format!(
                "{}: owner uid {uid} on the host; holds this attempt's nonce: {}; written since `lab start`: {}; uid_map inside: {}",
                self.path.display(),
                self.has_nonce,
                self.fresh,
                self.map.as_deref().unwrap_or("(none)")
            ),
        }
    }
}

/// Whitespace collapsed to single blanks: uid_map pads its columns.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The host uid container root maps to, from a collapsed uid_map line `0 HOST COUNT`.
fn host_root(map: &str) -> Option<u32> {
    map.split(' ').nth(1)?.parse().ok()
}

/// The shell script each container runs: `name` is `plain` or `userns`.
fn write_script(name: &str) -> String {
    format!("cat /proc/self/uid_map /nonce > /out/{name}")
}

impl Lab for UserNamespaceLab {
    lab_number!(5);

    fn minutes(&self) -> u32 {
        30
    }

    fn needs(&self) -> &'static [Need] {
        &[
            Need::Root,
            Need::Namespace(NamespaceKind::User),
            Need::Namespace(NamespaceKind::Mnt),
            Need::Command("busybox"),
        ]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        rootfs::build(&ws.path(ROOTFS))?;
        let out = ws.path(OUT);
        std::fs::create_dir(&out).map_err(LabError::io("creating", &out))?;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777))
            .map_err(LabError::io("setting the mode of", &out))?;
        ws.write(NONCE, &format!("{}\n", nonce()?))?;
        ws.write(answers::FILE, ANSWERS)
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let nonce_path = ws.path(NONCE);
        let nonce = ws.read(NONCE)?.unwrap_or_default().trim().to_owned();
        // The nonce was written at start: files changed since then are this attempt's.
        let started = std::fs::metadata(&nonce_path)
            .map(|m| (m.mtime(), m.mtime_nsec()))
            .map_err(LabError::io("reading", &nonce_path))?;
        let plain = Written::observe(ws, "plain", &nonce, started);
        let mapped = Written::observe(ws, "userns", &nonce, started);
        let map = userns_map(&ws.path(ROOTFS))?;
        let expected_uid = map.as_deref().and_then(host_root);
        let plain_ok =
            plain.genuine() && plain.owner == Some(0) && plain.map.as_deref() == Some(IDENTITY_MAP);
        let mapped_ok = mapped.genuine()
            && mapped.owner.is_some_and(|uid| uid != 0)
            && mapped.owner == expected_uid
            && mapped.map == map;
        let mut steps = vec![
            StepResult::judge(
                "a file from root in a plain container",
                plain_ok,
                plain.describe(),
                &format!(
                    "in {}: `isolab run --rootfs {ROOTFS} -- sh -c '{}'`, as the lab text shows; the file must hold the uid_map and the nonce",
                    ws.dir().display(),
                    write_script("plain")
                ),
            ),
            StepResult::judge(
                "a file from root in a --userns container",
                mapped_ok,
                format!(
                    "{}; the checker's own --userns container reads uid_map {}",
                    mapped.describe(),
                    map.as_deref().unwrap_or("(its container failed)")
                ),
                &format!(
                    "in {}: `isolab run --rootfs {ROOTFS} --userns -- sh -c '{}'`",
                    ws.dir().display(),
                    write_script("userns")
                ),
            ),
        ];
        let answers = Answers::load(ws)?;
        let owner = |ok: bool, w: &Written| w.owner.filter(|_| ok).map(|u| u.to_string());
        steps.push(answers.grade(
            "owner_plain",
            owner(plain_ok, &plain).as_deref(),
            answers::same_number,
        ));
        steps.push(answers.grade(
            "owner_userns",
            owner(mapped_ok, &mapped).as_deref(),
            answers::same_number,
        ));
        steps.push(
            answers.grade("uid_map", map.as_deref().filter(|_| mapped_ok), |a, m| {
                collapse(a) == m
            }),
        );
        Ok(steps)
    }

    fn reset(&self, _ws: &Workspace) -> Result<(), LabError> {
        // Each `isolab run` removes its container's cgroup and mounts as it ends; what is
        // left is the workspace, with the root filesystem and the two files in it.
        Ok(())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        let root = ws.path(ROOTFS);
        for (name, flags) in [("plain", &[][..]), ("userns", &["--userns"][..])] {
            let script = write_script(name);
            observe::succeed(&mut rootfs::run(&root, flags, &["sh", "-c", &script])?)?;
        }
        let owner = |name: &str| {
            let path = ws.path(&format!("{OUT}/{name}"));
            std::fs::metadata(&path)
                .map(|m| m.uid().to_string())
                .map_err(LabError::io("reading", path))
        };
        let map = userns_map(&root)?.unwrap_or_default();
        let filled = answers::fill(
            ANSWERS,
            &[
                ("owner_plain", owner("plain")?),
                ("owner_userns", owner("userns")?),
                ("uid_map", map),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

/// The uid_map a `--userns` container reads, collapsed; `None` when the container failed
/// (the student broke the root filesystem, say).
fn userns_map(root: &Path) -> Result<Option<String>, LabError> {
    let out = observe::output(&mut rootfs::run(
        root,
        &["--userns"],
        &["cat", "/proc/self/uid_map"],
    )?)?;
    Ok(out
        .status
        .success()
        .then(|| collapse(&String::from_utf8_lossy(&out.stdout)))
        .filter(|m| !m.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_host_id_of_container_root() {
        let map = collapse("         0     100000      65536\n");
        assert_eq!(map, "0 100000 65536");
        assert_eq!(host_root(&map), Some(100_000));
        assert_eq!(host_root(IDENTITY_MAP), Some(0));
    }
}
