//! Containers whose root is an image, end to end as root: `isolab run IMAGE`, the image's
//! config, copy-on-write isolation, `diff` and `commit`, disk footprint results, and nothing
//! left behind (upper layers, mounts) after exit, failure, `rm`, or SIGKILL + `gc`.
//!
//! Needs root, overlayfs, the workload built next to isolab, and /bin/busybox
//! (busybox-static, for the busybox image).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use isolab_reports::schema::{ResultKind, ResultSet};

/// A store of its own with the busybox image `bb` (workload added), removed when dropped.
struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        let store = Store {
            dir: tempfile::tempdir().unwrap(),
        };
        let build = store.isolab(&[
            "image",
            "build",
            "bb",
            "--from",
            "busybox",
            "--add-workload",
        ]);
        assert_eq!(code(&build), 0, "{}", text(&build.stderr));
        store
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn isolab(&self, args: &[&str]) -> Output {
        Command::cargo_bin("isolab")
            .unwrap()
            .env("ISOLAB_STORE", self.root())
            .args(args)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    }

    /// `isolab run --name NAME IMAGE -- sh -c SCRIPT`, its output.
    fn sh(&self, name: &str, image: &str, script: &str) -> Output {
        self.isolab(&["run", "--name", name, image, "--", "sh", "-c", script])
    }

    fn containers(&self) -> Vec<String> {
        std::fs::read_dir(self.root().join("containers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Nothing of any container is left: no directory in the store, no overlay mounted on
    /// the host over anything in it.
    fn assert_clean(&self) {
        assert_eq!(
            self.containers(),
            Vec::<String>::new(),
            "container roots left"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.root().display().to_string();
        assert!(
            !mounts.lines().any(|l| l.contains(&root)),
            "a mount over the store is left:\n{mounts}"
        );
    }

    fn layer_file(&self, rel: &str) -> Vec<PathBuf> {
        std::fs::read_dir(self.root().join("layers"))
            .unwrap()
            .map(|e| e.unwrap().path().join(rel))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect()
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A name no other test run uses.
fn name(what: &str) -> String {
    format!("img-{what}-{}", std::process::id())
}

#[test]
fn the_images_config_applies_and_the_command_line_overrides_it() {
    let store = Store::new();
    // The busybox image's cmd is /bin/sh: with no CMD it runs (and ends on empty stdin).
    let out = store.isolab(&["run", "bb"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let out = store.isolab(&[
        "run",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "bb",
        "--",
        "sh",
        "-c",
        "echo $A $PATH; pwd; id -u; id -g",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "1 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/tmp\n1000\n1000\n"
    );
    let missing = store.isolab(&["run", "no-such-image", "--", "true"]);
    assert_eq!(code(&missing), 125);
    assert!(text(&missing.stderr).contains("no-such-image"));
    store.assert_clean();
}

#[test]
fn writes_stay_in_their_container_and_deletions_hide_lower_files() {
    let store = Store::new();
    let writer = name("writer");
    let out = store.isolab(&[
        "run", "-d", "--name", &writer, "bb", "--", "sh", "-c",
        "echo mine > /etc/written; rm /bin/true; test ! -e /bin/true && touch /deleted-ok; sleep 600",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));
    let upper = store.root().join("containers").join(&writer).join("upper");
    assert_eq!(std::fs::read(upper.join("etc/written")).unwrap(), b"mine\n");
    assert!(
        upper.join("deleted-ok").exists(),
        "the deleted lower file was still visible"
    );
    let other = store.sh(
        &name("reader"),
        "bb",
        "test ! -e /etc/written && test -e /bin/true",
    );
    assert_eq!(
        code(&other),
        0,
        "another container saw the write or the deletion"
    );
    assert!(
        store.layer_file("etc/written").is_empty(),
        "a layer was written to"
    );
    assert_eq!(
        store.layer_file("bin/true").len(),
        1,
        "the layer lost /bin/true"
    );
    let rm = store.isolab(&["rm", "-f", &writer]);
    assert_eq!(code(&rm), 0, "{}", text(&rm.stderr));
    store.assert_clean();
}

#[test]
fn diff_and_commit_round_trip_changes_and_deletions() {
    let store = Store::new();
    let source = name("source");
    let script = "echo new > /new; echo changed >> /etc/passwd; rm /bin/true; \
                  rm -r /usr; mkdir /usr; echo only > /usr/only";
    let out = store.sh(&source, "bb", script);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    store.assert_clean();

    let out = store.isolab(&[
        "run", "-d", "--name", &source, "bb", "--", "sh", "-c", script,
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));
    let diff = store.isolab(&["diff", &source]);
    assert_eq!(code(&diff), 0, "{}", text(&diff.stderr));
    let diff = text(&diff.stdout);
    for line in [
        "A /new",
        "C /etc/passwd",
        "D /bin/true",
        "C /usr",
        "A /usr/only",
        "D /usr/bin",
    ] {
        assert!(
            diff.lines().any(|l| l == line),
            "{line:?} missing in:\n{diff}"
        );
    }
    let commit = store.isolab(&["commit", &source, "bb-changed:v1"]);
    assert_eq!(code(&commit), 0, "{}", text(&commit.stderr));
    assert_eq!(code(&store.isolab(&["rm", "-f", &source])), 0);

    let check = store.sh(
        &name("check"),
        "bb-changed:v1",
        "cat /new; test ! -e /bin/true && echo deleted; ls /usr; test -x /bin/sh && echo kept",
    );
    assert_eq!(code(&check), 0, "{}", text(&check.stderr));
    assert_eq!(text(&check.stdout), "new\ndeleted\nonly\nkept\n");
    // The committed image is the parent's layers plus one.
    let inspect = store.isolab(&["image", "inspect", "bb-changed:v1"]);
    let value: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(value["record"]["layers"].as_array().unwrap().len(), 2);
    assert_eq!(code(&store.isolab(&["diff", "nothing-here"])), 2);
    store.assert_clean();
}

#[test]
fn nothing_is_left_after_failure_or_sigkill_and_gc() {
    let store = Store::new();
    let missing = store.isolab(&["run", "bb", "--", "/no/such/command"]);
    assert_eq!(code(&missing), 127);
    store.assert_clean();
    let detached = store.isolab(&["run", "-d", "bb", "--", "/no/such/command"]);
    assert_eq!(code(&detached), 127);
    store.assert_clean();

    let victim = name("victim");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("isolab"))
        .env("ISOLAB_STORE", store.root())
        .args(["run", "--name", &victim, "bb", "--", "sleep", "600"])
        .spawn()
        .unwrap();
    let dir = store.root().join("containers").join(&victim);
    for _ in 0..500 {
        if dir.join("upper").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(dir.exists(), "SIGKILL leaves the root for gc");
    let gc = store.isolab(&["gc"]);
    assert_eq!(code(&gc), 0, "{}", text(&gc.stderr));
    assert!(text(&gc.stdout).contains(&victim), "{}", text(&gc.stdout));
    store.assert_clean();
}

#[test]
fn footprint_results_count_images_layers_and_upper_layers() {
    let store = Store::new();
    let workload = assert_cmd::cargo::cargo_bin("isolab").with_file_name("isolab-workload");
    let wl = store.isolab(&[
        "image",
        "build",
        "wl",
        "--from",
        "scratch",
        "--add-workload",
    ]);
    assert_eq!(code(&wl), 0, "{}", text(&wl.stderr));
    let holder = name("holder");
    let out = store.isolab(&[
        "run",
        "-d",
        "--name",
        &holder,
        "bb",
        "--",
        "sh",
        "-c",
        "head -c 100000 /dev/urandom > /blob; sleep 600",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));
    let file = store.dir.path().join("footprint.json");
    let du = store.isolab(&["image", "du", "--results", file.to_str().unwrap()]);
    assert_eq!(code(&du), 0, "{}", text(&du.stderr));
    let set = ResultSet::load(&file).unwrap();
    assert_eq!(set.kind, ResultKind::Footprint);
    assert_eq!(set.workload.path, workload.display().to_string());
    let footprint = set.footprint.unwrap();
    assert!(footprint.units.contains("st_blocks"));
    assert_eq!(footprint.images.len(), 2);
    for image in &footprint.images {
        assert!(image.unique_bytes > 0 && image.total_bytes >= image.unique_bytes);
    }
    let container = footprint
        .containers
        .iter()
        .find(|c| c.id == holder)
        .unwrap();
    assert!(
        container.upper_bytes >= 100_000,
        "{}",
        container.upper_bytes
    );
    assert_eq!(code(&store.isolab(&["rm", "-f", &holder])), 0);
    store.assert_clean();
}

#[test]
fn a_directory_root_still_needs_a_command() {
    let out = Command::cargo_bin("isolab")
        .unwrap()
        .args(["run", "--rootfs", "/tmp"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
    assert!(Path::new("/tmp").exists());
}
