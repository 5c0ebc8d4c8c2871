//! Lab 9: copy-on-write. The student mounts an overlay of two layers by hand, deletes a file
//! of the lower layer through it (the upper layer gets a whiteout) and changes another (copy
//! up); then starts 100 containers from one image and measures what they cost on disk. The
//! checker reads the mount table, the upper directory, the container records and the image
//! store's own disk accounting.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use isolab_runtime::container::state::Status;
use isolab_runtime::image::{DiskUsage, Store};

use super::containers;
use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::workspace::nonce;
use crate::{Lab, Need, StepResult, Workspace, observe, rootfs};

pub static LAB: CopyOnWriteLab = CopyOnWriteLab;

const BASE: &str = "layers/base";
const APP: &str = "layers/app";
const UPPER: &str = "upper";
const WORK: &str = "work";
const MERGED: &str = "merged";
const STORE: &str = "store";
const IMAGE: &str = "lab9";
/// What the lower layer's `notes` says before the student appends to it through the overlay.
const NOTES: &str = "written in the base layer\n";
const CONTAINERS: usize = 100;
/// Disk figures may move a little between the student's `du` and the checker's.
const TOLERANCE: f64 = 0.10;
const ANSWERS: &str = include_str!("../../content/9/answers.txt");

#[derive(Debug)]
pub struct CopyOnWriteLab;

/// The overlay the student mounted on `merged`, as the mount table has it.
#[derive(Debug)]
struct Overlay {
    options: Option<String>,
    lower: Vec<PathBuf>,
    upper: Option<PathBuf>,
}

impl Overlay {
    fn observe(ws: &Workspace) -> Result<Self, LabError> {
        let merged = ws.path(MERGED);
        let options = observe::mounts()?
            .into_iter()
            .filter(|m| m.mount_point == merged && m.fstype == "overlay")
            .map(|m| m.options)
            .next_back();
        // The kernel shows relative paths as given; the lab text works in the workspace.
        let resolve = |p: &str| canonical(&ws.dir().join(p));
        let option = |key: &str| {
            options.as_deref().and_then(|o| {
                o.split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .map(str::to_owned)
            })
        };
        Ok(Overlay {
            lower: option("lowerdir")
                .map(|l| l.split(':').map(resolve).collect())
                .unwrap_or_default(),
            upper: option("upperdir").map(|u| resolve(&u)),
            options,
        })
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// The running containers whose root is in the workspace's store.
fn running_containers(ws: &Workspace) -> Result<Vec<String>, LabError> {
    Ok(containers::under(ws.dir(), false)?
        .into_iter()
        .filter(|s| s.status == Status::Running && !s.is_settled())
        .map(|s| s.name)
        .collect())
}

fn disk_usage(ws: &Workspace) -> Result<DiskUsage, LabError> {
    let du = |e: &dyn std::fmt::Display| containers::runtime_error("isolab image du", e);
    Store::open(ws.path(STORE))
        .map_err(|e| du(&e))?
        .disk_usage()
        .map_err(|e| du(&e))
}

/// The three figures the questions ask for: the image, the 100 upper layers, the store.
fn figures(usage: &DiskUsage) -> Option<(u64, u64, u64)> {
    let image = usage
        .images
        .iter()
        .find(|i| i.names.iter().any(|n| n == &format!("{IMAGE}:latest")))?;
    let uppers = usage
        .containers
        .iter()
        .filter(|c| c.image.as_deref() == Some(image.id.as_str()))
        .map(|c| c.upper_bytes)
        .sum();
    Some((image.total_bytes, uppers, usage.store_bytes))
}

impl Lab for CopyOnWriteLab {
    lab_number!(9);

    fn minutes(&self) -> u32 {
        40
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Root, Need::Overlayfs, Need::Command("busybox")]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        for dir in [BASE, APP] {
            let path = ws.path(dir);
            std::fs::create_dir_all(&path).map_err(LabError::io("creating", &path))?;
        }
        ws.write(&format!("{BASE}/motd"), "hello from the base layer\n")?;
        ws.write(&format!("{BASE}/notes"), NOTES)?;
        ws.write(&format!("{BASE}/remove-me"), &format!("{}\n", nonce()?))?;
        ws.write(&format!("{APP}/motd"), "hello from the app layer\n")?;
        ws.write(&format!("{APP}/app.conf"), "colour = blue\n")?;
        let store = ws.path(STORE);
        observe::succeed(
            Command::new(rootfs::isolab()?)
                .args([
                    "image",
                    "build",
                    "--from",
                    "busybox",
                    "--add-workload",
                    "--store",
                ])
                .arg(&store)
                .arg(IMAGE),
        )?;
        ws.write(answers::FILE, ANSWERS)
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let overlay = Overlay::observe(ws)?;
        let (base, app) = (canonical(&ws.path(BASE)), canonical(&ws.path(APP)));
        let upper = canonical(&ws.path(UPPER));
        let mounted = overlay.lower == [app.clone(), base.clone()]
            && overlay.upper.as_deref() == Some(upper.as_path());
        let dir = ws.dir().display();
        let mut steps = vec![StepResult::judge(
            "an overlay of the two layers on merged",
            mounted,
            overlay.options.as_deref().map_or_else(
                || format!("nothing of type overlay is mounted on {dir}/{MERGED}"),
                |o| format!("overlay on {dir}/{MERGED} with {o}"),
            ),
            &format!(
                "in {dir}: `mkdir -p {UPPER} {WORK} {MERGED} && mount -t overlay overlay -o lowerdir={APP}:{BASE},upperdir={UPPER},workdir={WORK} {MERGED}` (the first lowerdir is the top layer)"
            ),
        )];

        let whiteout = std::fs::symlink_metadata(ws.path(&format!("{UPPER}/remove-me"))).ok();
        let is_whiteout = whiteout
            .as_ref()
            .is_some_and(|m| m.file_type().is_char_device() && m.rdev() == 0);
        let lower_kept = ws.read(&format!("{BASE}/remove-me"))?.is_some();
        let hidden =
            mounted && std::fs::symlink_metadata(ws.path(&format!("{MERGED}/remove-me"))).is_err();
        steps.push(StepResult::judge(
            "a whiteout hides a lower file",
            is_whiteout && lower_kept && hidden,
            format!(
                "{UPPER}/remove-me: {}; {BASE}/remove-me still there: {lower_kept}; gone from {MERGED}: {hidden}",
                whiteout.as_ref().map_or_else(
                    || "does not exist".to_owned(),
                    |m| if m.file_type().is_char_device() {
                        format!("character device {}:{}", libc::major(m.rdev()), libc::minor(m.rdev()))
                    } else {
                        "not a character device".to_owned()
                    }
                )
            ),
            &format!(
                "delete the file through the overlay, never in a layer: `rm {MERGED}/remove-me`, then `ls -l {UPPER}`"
            ),
        ));

        let copied = ws.read(&format!("{UPPER}/notes"))?;
        let lower_notes = ws.read(&format!("{BASE}/notes"))?;
        let copied_up = mounted
            && lower_notes.as_deref() == Some(NOTES)
            && copied
                .as_deref()
                .is_some_and(|c| c.starts_with(NOTES) && c.len() > NOTES.len());
        steps.push(StepResult::judge(
            "a change is copied up",
            copied_up,
            format!(
                "{UPPER}/notes: {}; {BASE}/notes unchanged: {}",
                copied.as_deref().map_or_else(
                    || "does not exist".to_owned(),
                    |c| format!("{} bytes", c.len())
                ),
                lower_notes.as_deref() == Some(NOTES)
            ),
            &format!(
                "append a line through the overlay: `echo mine >> {MERGED}/notes`; the whole file is copied to {UPPER} first"
            ),
        ));

        let running = running_containers(ws)?;
        let enough = running.len() >= CONTAINERS;
        steps.push(StepResult::judge(
            "100 containers of one image",
            enough,
            format!(
                "{} running containers have their root in {dir}/{STORE}",
                running.len()
            ),
            &format!(
                "in {dir}: `for i in $(seq {CONTAINERS}); do isolab run -d --store {STORE} --name lab9-$i {IMAGE} -- sleep 3600; done`"
            ),
        ));

        let measured = if enough {
            figures(&disk_usage(ws)?)
        } else {
            None
        };
        let answers = Answers::load(ws)?;
        let within = |a: &str, m: &str| answers::ratio_within(a, m, TOLERANCE);
        let show = |f: fn(&(u64, u64, u64)) -> u64| measured.as_ref().map(|m| f(m).to_string());
        steps.push(answers.grade("image_bytes", show(|m| m.0).as_deref(), within));
        steps.push(answers.grade("upper_bytes_total", show(|m| m.1).as_deref(), within));
        steps.push(answers.grade("store_bytes", show(|m| m.2).as_deref(), within));
        Ok(steps)
    }

    fn reset(&self, ws: &Workspace) -> Result<(), LabError> {
        // The containers first (their upper layers live in the store); removing the
        // workspace then unmounts the overlay.
        containers::clear_under(ws.dir())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        for dir in [UPPER, WORK, MERGED] {
            let path = ws.path(dir);
            std::fs::create_dir_all(&path).map_err(LabError::io("creating", &path))?;
        }
        let options = format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            ws.path(APP).display(),
            ws.path(BASE).display(),
            ws.path(UPPER).display(),
            ws.path(WORK).display()
        );
        observe::succeed(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &options])
                .arg(ws.path(MERGED)),
        )?;
        let gone = ws.path(&format!("{MERGED}/remove-me"));
        std::fs::remove_file(&gone).map_err(LabError::io("removing", &gone))?;
        let notes = ws.path(&format!("{MERGED}/notes"));
        std::fs::write(&notes, format!("{NOTES}mine\n"))
            .map_err(LabError::io("writing", &notes))?;
        let isolab = rootfs::isolab()?;
        for i in 1..=CONTAINERS {
            observe::succeed(
                Command::new(&isolab)
                    .args(["run", "-d", "--store"])
                    .arg(ws.path(STORE))
                    .args(["--name", &format!("lab9-{i}"), IMAGE, "--", "sleep", "3600"]),
            )?;
        }
        let (image, uppers, store) = figures(&disk_usage(ws)?)
            .ok_or_else(|| LabError::Unsupported(format!("the store has no image {IMAGE}")))?;
        let filled = answers::fill(
            ANSWERS,
            &[
                ("image_bytes", image.to_string()),
                ("upper_bytes_total", uppers.to_string()),
                ("store_bytes", store.to_string()),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

#[cfg(test)]
mod tests {
    use isolab_runtime::image::{ContainerUsage, ImageUsage};

    use super::*;

    #[test]
    fn figures_count_only_the_lab_images_containers() {
        let image = |id: &str, name: &str, total| ImageUsage {
            id: id.into(),
            names: vec![name.into()],
            unique_bytes: total,
            shared_bytes: 0,
            metadata_bytes: 0,
            total_bytes: total,
        };
        let container = |id: &str, image: &str| ContainerUsage {
            id: id.into(),
            image: Some(image.into()),
            upper_bytes: 4096,
        };
        let usage = DiskUsage {
            units: "",
            layers: Vec::new(),
            images: vec![
                image("a", "other:latest", 1),
                image("b", "lab9:latest", 5000),
            ],
            containers: vec![
                container("1", "b"),
                container("2", "b"),
                container("3", "a"),
            ],
            store_bytes: 9999,
        };
        assert_eq!(figures(&usage), Some((5000, 8192, 9999)));
    }
}
