//! Importing archives that another tool wrote: a real `podman save` archive (docker-archive
//! format) and a real `podman save --format oci-dir` layout, both of a two-layer image whose
//! upper layer deletes a file of the lower one (a `.wh.` whiteout written by podman), then
//! running them with isolab. A truncated copy of the podman archive is refused and leaves
//! the store as it was.
//!
//! Needs root, podman and runc (installed by `isolab setup --for tests`) and /bin/busybox.
//! podman runs its one container with runc (its default, crun, refuses hybrid cgroup hosts)
//! and the ulimits this host's hard limits allow.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn podman(args: &[&str]) -> Output {
    std::process::Command::new("podman")
        .args(args)
        .output()
        .expect("podman is installed by `isolab setup --for tests`")
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert_eq!(code(&out), 0, "podman {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// The two podman images and the one container this test makes, removed when dropped (also
/// when an assertion fails).
struct PodmanImages {
    base: String,
    two: String,
    container: String,
}

impl PodmanImages {
    /// `base`: busybox and /etc/{gone,kept}, imported from a rootfs tar; `two`: `base` plus
    /// the layer of a container that deleted /etc/gone and wrote /etc/new.
    fn build(dir: &Path) -> PodmanImages {
        let tag = std::process::id();
        let images = PodmanImages {
            base: format!("localhost/isolab-test-base-{tag}"),
            two: format!("localhost/isolab-test-two-{tag}"),
            container: format!("isolab-test-{tag}"),
        };
        let root = dir.join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        std::fs::write(root.join("etc/gone"), "deleted by the upper layer\n").unwrap();
        std::fs::write(root.join("etc/kept"), "kept\n").unwrap();
        let tar = dir.join("base.tar");
        let status = std::process::Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        podman_ok(&["import", "-q", tar.to_str().unwrap(), &images.base]);
        podman_ok(&[
            "--runtime",
            "runc",
            "run",
            "--name",
            &images.container,
            "--net",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
            &images.base,
            "/bin/sh",
            "-c",
            "/bin/busybox rm /etc/gone && echo new > /etc/new",
        ]);
        podman_ok(&["commit", "-q", &images.container, &images.two]);
        images
    }
}

impl Drop for PodmanImages {
    fn drop(&mut self) {
        podman(&["rm", "-f", &self.container]);
        podman(&["rmi", "-f", &self.two, &self.base]);
    }
}

struct Store {
    root: PathBuf,
}

impl Store {
    fn isolab(&self, args: &[&str]) -> Output {
        Command::cargo_bin("isolab")
            .unwrap()
            .env("ISOLAB_STORE", &self.root)
            .args(args)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    }

    /// Every path in the store with its size: what "the store is unchanged" compares.
    fn listing(&self) -> BTreeSet<(PathBuf, u64)> {
        fn walk(dir: &Path, into: &mut BTreeSet<(PathBuf, u64)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries {
                let entry = entry.unwrap();
                let meta = entry.path().symlink_metadata().unwrap();
                into.insert((entry.path(), meta.len()));
                if meta.is_dir() {
                    walk(&entry.path(), into);
                }
            }
        }
        let mut all = BTreeSet::new();
        walk(&self.root, &mut all);
        all
    }

    /// Imports `archive` as `name` and checks, from inside a container, that the upper
    /// layer's whiteout hides /etc/gone while both layers' other files are there.
    fn import_and_check(&self, archive: &Path, name: &str) {
        let out = self.isolab(&["image", "import", archive.to_str().unwrap(), "--name", name]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        let inspect = self.isolab(&["image", "inspect", name]);
        let value: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(
            value["record"]["layers"].as_array().unwrap().len(),
            2,
            "{value}"
        );
        let out = self.isolab(&[
            "run",
            name,
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "cat /etc/kept /etc/new; test -e /etc/gone && echo visible || echo hidden",
        ]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "kept\nnew\nhidden\n");
    }
}

/// Whether any layer tar of the docker-archive at `archive` holds `etc/.wh.gone`.
fn archive_has_whiteout(archive: &Path) -> bool {
    let mut outer = tar::Archive::new(std::fs::File::open(archive).unwrap());
    outer.entries().unwrap().any(|entry| {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        path.extension().is_some_and(|e| e == "tar")
            && tar::Archive::new(entry)
                .entries()
                .unwrap()
                .any(|inner| inner.unwrap().path().unwrap().ends_with("etc/.wh.gone"))
    })
}

#[test]
fn podman_save_archives_and_oci_layouts_import_with_their_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let images = PodmanImages::build(dir.path());
    let archive = dir.path().join("two.tar");
    let layout = dir.path().join("two-oci");
    podman_ok(&["save", "-q", "-o", archive.to_str().unwrap(), &images.two]);
    podman_ok(&[
        "save",
        "-q",
        "--format",
        "oci-dir",
        "-o",
        layout.to_str().unwrap(),
        &images.two,
    ]);
    assert!(
        archive_has_whiteout(&archive),
        "podman wrote no whiteout for the deleted file"
    );

    let store = Store {
        root: dir.path().join("store"),
    };
    store.import_and_check(&archive, "from-podman-save");
    store.import_and_check(&layout, "from-podman-oci-dir");

    let before = store.listing();
    let bytes = std::fs::read(&archive).unwrap();
    let truncated = dir.path().join("truncated.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let fresh = Store {
        root: dir.path().join("fresh-store"),
    };
    // An empty store: its directory skeleton is made on first use.
    assert_eq!(code(&fresh.isolab(&["image", "ls"])), 0);
    for store in [&store, &fresh] {
        let before = store.listing();
        let out = store.isolab(&["image", "import", truncated.to_str().unwrap()]);
        assert_eq!(code(&out), 2, "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("truncated.tar") && stderr.lines().count() == 1,
            "{stderr}"
        );
        assert_eq!(
            store.listing(),
            before,
            "the failed import changed the store"
        );
    }
    assert_eq!(store.listing(), before);
}
