//! The image store, for real: archives of every format built here with the `tar` crate,
//! corrupt ones refused without a trace, concurrent imports, disk use, and overlay roots
//! mounted in a private mount namespace (whiteouts, opaque dirs, writes to upper only).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use isolab_runtime::image::{ImageError, Store};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A tar of (path, content) files; a `None` content makes a directory.
fn layer_tar(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        let mut header = header();
        match content {
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                tar.append_data(&mut header, path, *bytes).unwrap();
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(0o755);
                tar.append_data(&mut header, path, &[][..]).unwrap();
            }
        }
    }
    tar.into_inner().unwrap()
}

/// A header with the fields every real archiver fills in.
fn header() -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_mode(0o644);
    header
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Base: /etc/hostname, /gone, /dir/{a,b}; top: whites out /gone, makes /dir opaque with
/// only /dir/c, adds /new.
fn two_layers() -> (Vec<u8>, Vec<u8>) {
    let base = layer_tar(&[
        ("etc", None),
        ("etc/hostname", Some(b"base\n")),
        ("gone", Some(b"soon hidden")),
        ("dir", None),
        ("dir/a", Some(b"a")),
        ("dir/b", Some(b"b")),
    ]);
    let top = layer_tar(&[
        (".wh.gone", Some(b"")),
        ("dir", None),
        ("dir/.wh..wh..opq", Some(b"")),
        ("dir/c", Some(b"c")),
        ("new", Some(b"new")),
    ]);
    (base, top)
}

fn config_json(diff_ids: &[String], cmd: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": [cmd], "Env": ["PATH=/bin"], "WorkingDir": "/dir"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// An OCI layout in `dir`: the base layer gzipped, the top one not.
fn oci_layout(dir: &Path, name: &str) {
    let (base, top) = two_layers();
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha(bytes);
        fs::write(blobs.join(&hex), bytes).unwrap();
        serde_json::json!({"digest": format!("sha256:{hex}"), "size": bytes.len()})
    };
    let base_gz = gzip(&base);
    let mut l1 = put(&base_gz);
    l1["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
    let mut l2 = put(&top);
    l2["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
    let mut config = put(&config_json(
        &[
            format!("sha256:{}", sha(&base)),
            format!("sha256:{}", sha(&top)),
        ],
        "/bin/sh",
    ));
    config["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [l1, l2],
    }))
    .unwrap();
    let mut m = put(&manifest);
    m["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    m["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [m]})).unwrap(),
    )
    .unwrap();
}

fn tar_dir(dir: &Path, out: &Path) {
    let mut tar = tar::Builder::new(File::create(out).unwrap());
    tar.append_dir_all(".", dir).unwrap();
    tar.finish().unwrap();
}

/// A `docker save` archive (legacy layout: `<id>/layer.tar`, `<config hex>.json`).
fn docker_archive(out: &Path) {
    let (base, top) = two_layers();
    let config = config_json(
        &[
            format!("sha256:{}", sha(&base)),
            format!("sha256:{}", sha(&top)),
        ],
        "/bin/saved",
    );
    let config_name = format!("{}.json", sha(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name, "RepoTags": ["saved:v1"],
        "Layers": ["l1/layer.tar", "l2/layer.tar"],
    }]))
    .unwrap();
    let mut tar = tar::Builder::new(File::create(out).unwrap());
    for (path, bytes) in [
        (config_name.as_str(), config.as_slice()),
        ("l1/layer.tar", base.as_slice()),
        ("l2/layer.tar", top.as_slice()),
        ("manifest.json", manifest.as_slice()),
    ] {
        let mut header = header();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, bytes).unwrap();
    }
    tar.finish().unwrap();
}

/// Every path under the store with its size: what "unchanged" is compared by.
fn listing(root: &Path) -> BTreeSet<(PathBuf, u64)> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            found.insert((
                path.strip_prefix(root).unwrap().to_path_buf(),
                if meta.is_dir() { 0 } else { meta.len() },
            ));
        }
    }
    found
}

fn check_two_layer_image(store: &Store, reference: &str) {
    let id = store.resolve(reference).unwrap();
    let record = store.record(&id).unwrap();
    assert_eq!(record.layers.len(), 2);
    let top = store.root().join("layers").join(&record.layers[1].diff_id);
    let whiteout = fs::symlink_metadata(top.join("gone")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "whiteout"
    );
    assert_eq!(
        xattr(&top.join("dir"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: both strings are NUL-terminated; buf is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn imports_a_plain_rootfs_tar_gzipped_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let (base, _) = two_layers();
    let plain = dir.path().join("rootfs.tar");
    fs::write(&plain, &base).unwrap();
    let gz = dir.path().join("rootfs.tar.gz");
    fs::write(&gz, gzip(&base)).unwrap();
    let a = store.import(&plain, Some("plain")).unwrap();
    let b = store.import(&gz, Some("plain-gz")).unwrap();
    assert_eq!(a.layers[0].diff_id, sha(&base));
    assert_eq!(
        a.layers[0].diff_id, b.layers[0].diff_id,
        "one unpacked layer for both"
    );
    let layer = store.root().join("layers").join(&a.layers[0].diff_id);
    assert_eq!(fs::read(layer.join("etc/hostname")).unwrap(), b"base\n");
    assert_eq!(
        fs::read_dir(store.root().join("layers")).unwrap().count(),
        1
    );
}

#[test]
fn imports_oci_layouts_as_directory_and_tar_and_docker_archives() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let layout = dir.path().join("layout");
    oci_layout(&layout, "localhost/layered:v1");
    store.import(&layout, None).unwrap();
    check_two_layer_image(&store, "localhost/layered:v1");
    let layout_tar = dir.path().join("layout.tar");
    tar_dir(&layout, &layout_tar);
    let again = store.import(&layout_tar, Some("from-tar")).unwrap();
    assert_eq!(again.id, store.resolve("localhost/layered:v1").unwrap());
    let docker = dir.path().join("docker.tar");
    docker_archive(&docker);
    store.import(&docker, None).unwrap();
    check_two_layer_image(&store, "saved:v1");
    assert_eq!(
        fs::read_dir(store.root().join("layers")).unwrap().count(),
        2,
        "layers shared"
    );
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);

    // Export and re-import into another store: same id.
    let exported = dir.path().join("export.tar");
    store
        .export("saved:v1", File::create(&exported).unwrap())
        .unwrap();
    let other = Store::open(dir.path().join("other")).unwrap();
    let back = other.import(&exported, None).unwrap();
    assert_eq!(back.id, store.resolve("saved:v1").unwrap());
    assert_eq!(
        other.resolve("saved:v1").unwrap(),
        back.id,
        "the name travels"
    );

    // rm keeps layers another image uses, and removes the rest.
    store.remove("saved:v1").unwrap();
    store.remove("localhost/layered:v1").unwrap();
    assert_eq!(
        fs::read_dir(store.root().join("layers")).unwrap().count(),
        0
    );
    assert!(matches!(
        store.resolve("from-tar"),
        Err(ImageError::NotFound(_))
    ));
}

#[test]
fn corrupt_truncated_and_mismatched_archives_leave_the_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let layout = dir.path().join("layout");
    oci_layout(&layout, "x:1");
    let good = dir.path().join("good.tar");
    tar_dir(&layout, &good);
    let bytes = fs::read(&good).unwrap();

    let mut cases = Vec::new();
    let truncated = dir.path().join("truncated.tar");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    cases.push(truncated);
    // Flip a byte inside a layer blob: its digest no longer matches.
    let mismatched = dir.path().join("mismatch");
    oci_layout(&mismatched, "x:1");
    let (_, top) = two_layers();
    let blob = mismatched.join("blobs/sha256").join(sha(&top));
    let mut data = fs::read(&blob).unwrap();
    data[600] ^= 0xff;
    fs::write(&blob, data).unwrap();
    cases.push(mismatched);
    let gz = dir.path().join("bad.tar.gz");
    fs::write(&gz, &gzip(&bytes)[..200]).unwrap();
    cases.push(gz);
    let rootfs = dir.path().join("cut-rootfs.tar");
    let (base, _) = two_layers();
    fs::write(&rootfs, &base[..1536]).unwrap();
    cases.push(rootfs);

    let before = listing(store.root());
    for case in cases {
        let err = store.import(&case, None).unwrap_err();
        let text = err.to_string();
        assert!(err.is_bad_input(), "{text}");
        assert!(text.contains(&case.display().to_string()), "{text}");
        assert!(text.contains("the store was left unchanged"), "{text}");
        assert_eq!(listing(store.root()), before, "after {text}");
    }
}

#[test]
fn concurrent_imports_of_one_archive_leave_one_layer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let archive = dir.path().join("docker.tar");
    docker_archive(&archive);
    let plain = dir.path().join("plain.tar");
    fs::write(&plain, layer_tar(&[("f", Some(b"same"))])).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let root = root.clone();
            let (archive, plain) = (&archive, &plain);
            s.spawn(move || {
                let store = Store::open(root).unwrap();
                store.import(archive, None).unwrap();
                store.import(plain, Some("plain")).unwrap();
            });
        }
    });
    let store = Store::open(&root).unwrap();
    assert_eq!(fs::read_dir(root.join("layers")).unwrap().count(), 3);
    assert_eq!(fs::read_dir(root.join("locks")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    // Plain tars get a fresh `created` time, so their configs (ids) may differ by second.
    assert!(store.resolve("saved:v1").is_ok() && store.resolve("plain").is_ok());
}

fn blocks(path: &Path) -> u64 {
    let meta = fs::symlink_metadata(path).unwrap();
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            total += blocks(&entry.unwrap().path());
        }
    }
    total
}

#[test]
fn du_counts_allocated_blocks_and_shared_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let layout = dir.path().join("layout");
    oci_layout(&layout, "a:1");
    let a = store.import(&layout, None).unwrap();
    let (base, _) = two_layers();
    let plain = dir.path().join("base.tar");
    fs::write(&plain, &base).unwrap();
    let b = store.import(&plain, Some("b")).unwrap();
    let root = store.prepare_rootfs("b", "c1", "test").unwrap();
    fs::write(root.upper.join("written"), vec![7u8; 50_000]).unwrap();

    let usage = store.disk_usage().unwrap();
    assert!(usage.units.contains("st_blocks"));
    for layer in &usage.layers {
        assert_eq!(
            layer.unpacked_bytes,
            blocks(&store.root().join("layers").join(&layer.diff_id))
        );
    }
    let shared = &a.layers[0].diff_id;
    assert_eq!(
        usage
            .layers
            .iter()
            .find(|l| &l.diff_id == shared)
            .unwrap()
            .images,
        2
    );
    let image_b = usage.images.iter().find(|i| i.id == b.id).unwrap();
    assert_eq!(image_b.unique_bytes, 0, "b's only layer is a's base");
    assert!(image_b.shared_bytes > 0);
    assert_eq!(usage.containers[0].upper_bytes, blocks(&root.upper));
    assert_eq!(usage.store_bytes, blocks(store.root()));
    store.release_rootfs("c1").unwrap();
}

/// Runs `f` on a thread of its own in a private mount namespace (unshare is per thread), so
/// the overlay mounted there vanishes with it.
fn in_private_mount_ns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn overlay_roots_hide_whiteouts_and_keep_writes_in_upper() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let layout = dir.path().join("layout");
    oci_layout(&layout, "img:1");
    let record = store.import(&layout, None).unwrap();
    let one = store.prepare_rootfs("img:1", "one", "test").unwrap();
    let two = store.prepare_rootfs("img:1", "two", "test").unwrap();
    assert!(matches!(
        store.prepare_rootfs("img:1", "one", "test"),
        Err(ImageError::ContainerExists(_))
    ));
    assert_eq!(one.config.cmd, vec!["/bin/sh"]);
    assert_eq!(one.config.working_dir.as_deref(), Some("/dir"));
    assert!(matches!(
        store.remove("img:1"),
        Err(ImageError::InUse { .. })
    ));
    let (m1, m2) = (dir.path().join("m1"), dir.path().join("m2"));
    fs::create_dir_all(&m1).unwrap();
    fs::create_dir_all(&m2).unwrap();
    let start = std::time::Instant::now();
    let three = store.prepare_rootfs("img:1", "three", "test").unwrap();
    eprintln!("prepare_rootfs: {:?}", start.elapsed());
    store.release_rootfs("three").unwrap();
    assert!(!three.upper.exists());

    in_private_mount_ns(|| {
        for (root, target) in [(&one, &m1), (&two, &m2)] {
            nix::mount::mount(
                Some("overlay"),
                target.as_path(),
                Some("overlay"),
                nix::mount::MsFlags::empty(),
                Some(root.mount_data().as_str()),
            )
            .expect("mounting overlay");
        }
        assert!(!m1.join("gone").exists(), "the whiteout hides /gone");
        let listed: BTreeSet<_> = fs::read_dir(m1.join("dir"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            listed,
            ["c".into()].into(),
            "the opaque /dir shows only its own layer"
        );
        assert_eq!(fs::read(m1.join("etc/hostname")).unwrap(), b"base\n");
        fs::write(m1.join("etc/hostname"), b"changed\n").unwrap();
        fs::remove_file(m1.join("new")).unwrap();
        assert_eq!(
            fs::read(m2.join("etc/hostname")).unwrap(),
            b"base\n",
            "invisible to another container"
        );
        assert!(m2.join("new").exists());
    });
    assert_eq!(
        fs::read(one.upper.join("etc/hostname")).unwrap(),
        b"changed\n"
    );
    assert!(
        fs::symlink_metadata(one.upper.join("new"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let base = store.root().join("layers").join(&record.layers[0].diff_id);
    assert_eq!(
        fs::read(base.join("etc/hostname")).unwrap(),
        b"base\n",
        "the layer is untouched"
    );
    store.release_rootfs("one").unwrap();
    store.release_rootfs("two").unwrap();
    assert!(!one.upper.exists());
    store.remove("img:1").unwrap();
}

#[test]
fn unsafe_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    // A symlink to / followed by a file "through" it: must not write /tmp/... on the host.
    let mut tar = tar::Builder::new(Vec::new());
    let mut link = header();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    tar.append_link(&mut link, "escape", dir.path()).unwrap();
    let mut file = header();
    file.set_size(3);
    file.set_mode(0o644);
    tar.append_data(&mut file, "escape/pwned", &b"bad"[..])
        .unwrap();
    let archive = dir.path().join("evil.tar");
    fs::write(&archive, tar.into_inner().unwrap()).unwrap();
    let err = store.import(&archive, None).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(!dir.path().join("pwned").exists());
}
